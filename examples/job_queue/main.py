"""job_queue: job workers that pull work from the master and report back over the bus.

Run from the repository root:  python examples/job_queue/main.py [--jobs 20] [--workers 3] [--backend trio]

The master owns the queue. Each worker asks for its next job with a request
(``mb.request("next-job")``, answered by ``master.handle``), reports each result with a
message (``mb.send``, seen by ``master.on("message", ...)``) and answers the master's
"stats" request. Workers' prints are captured and prefixed (``output="prefix"``), so
lines of different workers never mix. Once every job is done the master asks each worker
for its stats, then shuts down gracefully.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import anyio

from drover_py import MasterFactory

HERE = Path(__file__).resolve().parent


async def run(jobs: int, workers: int) -> None:
    queue = collections.deque(range(jobs))
    results: dict[int, int] = {}
    all_done = anyio.Event()
    master = MasterFactory.create(script=HERE / "worker.py", count=workers, output="prefix")

    def next_job(worker_id: int, payload: object) -> int | None:
        """Answer a worker's "next-job" request: a job number, or None when the queue is empty."""
        return queue.popleft() if queue else None

    def on_result(worker_id: int, payload: dict[str, int]) -> None:
        results[payload["job"]] = payload["result"]
        if len(results) == jobs:
            all_done.set()

    master.handle("next-job", next_job)
    master.on("message", on_result)
    async with master:
        await master.start()
        await all_done.wait()
        for worker in master.workers:
            stats = await master.request(worker.id, "stats", timeout=5)
            print(f"worker {worker.id} (slot {worker.slot}): {stats}", flush=True)
        await master.graceful_shutdown()
    # Printed after the master closed: by then every captured line of the workers has
    # been written (they travel apart from the messages, so one may still be on its way).
    print(f"{len(results)} jobs done by {workers} workers", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="the master's event loop")
    args = parser.parse_args()
    anyio.run(run, args.jobs, args.workers, backend=args.backend)


if __name__ == "__main__":
    main()
