"""single_app_cluster: four HTTP workers sharing one port, restarted when they crash.

Run:   python examples/single_app_cluster/main.py [--duration 10] [--backend asyncio|trio]
then:  curl -i http://127.0.0.1:1934/     (env PORT changes the port)
Try `kill -9 <worker pid>`: the master starts a replacement in its slot. A worker that
exits with code 0 shuts the cluster down. Ctrl-C (or SIGTERM) shuts the workers down
gracefully; a second Ctrl-C kills them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import anyio

from drover_py import DroverError, ExitReasons, Master, MasterFactory, open_signal_handlers

HERE = Path(__file__).resolve().parent
PORT = int(os.environ.get("PORT", "1934"))


async def show_statuses(master: Master) -> None:
    """Print every worker's status every two seconds, as drover does: ``[app-0]: STARTED`` lines, then ``---``."""
    while True:
        for worker in master.workers:
            print(f"[app-{worker.slot}]: {worker.status.name}")
        print("---", flush=True)
        await anyio.sleep(2)


async def run(duration: float | None) -> int:
    master = MasterFactory.create(
        script=HERE / "app.py",  # beside this file, whatever the working directory
        count=4,
        bind=[f"127.0.0.1:{PORT}"],  # one listener, owned by the master, shared by its workers
        env={"RESPONSE": "Hello from single_app_cluster!\n"},
    )

    async def on_worker_exit(reason: ExitReasons.ExitReason, worker_id: int) -> None:
        """A worker exited on its own (not stopped by the master): replace it, or shut down."""
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
            await master.graceful_shutdown()

    master.on("worker-exit", on_worker_exit)  # or restart=RestartPolicy(): the same, with back-off and a limit
    try:
        # SIGINT/SIGTERM: graceful shutdown (a second SIGINT kills); SIGHUP: graceful reload.
        async with master, open_signal_handlers(master):
            await master.start()  # returns once every worker sent "started"
            print(f"serving http://127.0.0.1:{PORT}/ (Ctrl-C to stop)", flush=True)
            async with anyio.create_task_group() as tg:
                tg.start_soon(show_statuses, master)
                with anyio.move_on_after(duration):
                    await master.supervise()  # returns once the master shut down
                tg.cancel_scope.cancel()
            await master.graceful_shutdown()  # after --duration (otherwise already done)
    except DroverError as exc:  # the port is taken, or a worker could not start
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
    print("shut down", flush=True)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, help="shut down gracefully after this many seconds")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="the master's event loop")
    args = parser.parse_args()
    sys.exit(anyio.run(run, args.duration, backend=args.backend))


if __name__ == "__main__":
    main()
