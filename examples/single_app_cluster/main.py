"""single_app_cluster: four HTTP workers sharing one port, restarted when they crash.

Run from the repository root:  python examples/single_app_cluster/main.py [--duration 10]
then:                          curl http://127.0.0.1:1934/
Try `kill -9 <worker pid>`: the master starts a replacement in its slot.
Ctrl-C (or SIGTERM) shuts the workers down gracefully; a second Ctrl-C kills them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio

from drover_py import DroverError, ExitReasons, MasterFactory

# The examples folder, so that `_shared` is found whatever the working directory.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _shared import cli  # noqa: E402

HERE = Path(__file__).resolve().parent
PORT = int(os.environ.get("PORT", "1934"))


async def run(duration: float | None) -> int:
    master = MasterFactory.create(
        script=HERE / "app.py",
        count=4,
        bind=[f"127.0.0.1:{PORT}"],  # one listener, owned by the master, shared by its workers
        env={"PORT": PORT, "RESPONSE": "Hello from single_app_cluster!\n"},
    )
    stop = anyio.Event()

    async def on_worker_exit(reason: ExitReasons.ExitReason, worker_id: int) -> None:
        print(f"worker {worker_id} {reason}", flush=True)
        if isinstance(reason, (ExitReasons.ExternalSignal, ExitReasons.AbnormalExit)):
            try:
                new_id = await master.restart_worker_by_id(worker_id)
            except DroverError as exc:
                print(f"cannot restart worker {worker_id}: {exc}", flush=True)
            else:
                print(f"worker {worker_id} replaced by worker {new_id}", flush=True)
        elif isinstance(reason, ExitReasons.NormalExit):
            print("a worker exited normally: shutting everything down", flush=True)
            stop.set()

    master.on("worker-exit", on_worker_exit)
    # Start, print every worker's status every two seconds (as drover's example does) until
    # Ctrl-C, --duration or a normal exit, then shut down gracefully.
    masters = {"app": master}
    return await cli.run_masters(masters, duration, lambda: cli.show_statuses(masters), stop=stop)


def main() -> None:
    args = cli.parse_args(__doc__)
    sys.exit(anyio.run(run, args.duration, backend=args.backend))


if __name__ == "__main__":
    main()
