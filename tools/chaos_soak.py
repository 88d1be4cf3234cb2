"""Chaos soak: random kills, reloads and scales against a live HTTP cluster (bounded).

Not part of the test suite. Run from the repository root:

    .venv/bin/python tools/chaos_soak.py --duration 600 [--backend trio] [--seed 1]

Workers are examples/single_app_cluster/app.py (hypercorn on trio) on one listening
socket owned by the master; a client loop sends sequential requests to 127.0.0.1 the
whole time. At the end it prints processes leaked, fds leaked in the master, master RSS
growth and failed requests (a request fails only when it reached a worker that was
then killed, since kills are part of the chaos).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import sys
import time
import urllib.request
from pathlib import Path

import anyio
import structlog

from drover_py import DroverError, MasterFactory, RestartPolicy, WorkerStatus

ROOT = Path(__file__).resolve().parent.parent
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


def children() -> list[int]:
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as file:
                    fields = file.read().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] != "Z":
                found.append(int(entry))
    return found


def rss_kib() -> int:
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def soak(duration: float, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    master = MasterFactory.create(
        script=ROOT / "examples" / "single_app_cluster" / "app.py",
        count=4,
        bind=["127.0.0.1:0"],
        env={"RESPONSE": "soak"},
        stop_timeout=10,
        restart=RestartPolicy(delay=0.05, max_restarts=1000, within=60),
    )
    counts = {"ok": 0, "failed": 0, "kills": 0, "reloads": 0, "scales": 0, "operation_errors": 0}
    fds_before = len(os.listdir("/proc/self/fd"))
    rss_before = rss_kib()

    def get() -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            response.read()

    async def client() -> None:
        while True:
            try:
                await anyio.to_thread.run_sync(get)
                counts["ok"] += 1
            except (OSError, http.client.HTTPException):
                counts["failed"] += 1

    async def chaos() -> None:
        while True:
            await anyio.sleep(rng.uniform(0.3, 1.5))
            action = rng.choice(["kill", "kill", "reload", "scale"])
            try:
                if action == "kill":
                    started = [w for w in master.workers if w.status is WorkerStatus.STARTED and w.pid]
                    if started:
                        victim = rng.choice(started)
                        assert victim.pid is not None
                        os.kill(victim.pid, rng.choice([signal.SIGKILL, signal.SIGTERM]))
                        counts["kills"] += 1
                elif action == "reload":
                    await master.graceful_reload()
                    counts["reloads"] += 1
                else:
                    await master.scale(rng.randint(2, 6))
                    counts["scales"] += 1
            except DroverError:
                counts["operation_errors"] += 1

    started_at = time.monotonic()
    async with master:
        port = master.sockets[0].getsockname()[1]
        await master.start()
        async with anyio.create_task_group() as tg:
            tg.start_soon(client)
            tg.start_soon(chaos)
            await anyio.sleep(duration)
            tg.cancel_scope.cancel()
        await master.graceful_shutdown()
    return {
        **counts,
        "seconds": round(time.monotonic() - started_at, 1),
        "processes_leaked": len(children()),
        "master_fds_leaked": len(os.listdir("/proc/self/fd")) - fds_before,
        "master_rss_growth_kib": rss_kib() - rss_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of chaos (default 600)")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(anyio.run(soak, args.duration, args.seed, backend=args.backend)))


if __name__ == "__main__":
    main()
