"""single_app_cluster: four HTTP workers sharing one port, restarted when they crash.

Run from the repository root:  python examples/single_app_cluster/main.py [--duration 10]
then:                          curl http://127.0.0.1:1934/
Try `kill -9 <worker pid>`: the master starts a replacement in its slot.
Ctrl-C (or SIGTERM) shuts the workers down gracefully; a second Ctrl-C kills them.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from drover_py import DroverError, ExitReasons, Master, MasterFactory, StateError

HERE = Path(__file__).resolve().parent
PORT = int(os.environ.get("PORT", "1934"))


async def show_status(master: Master) -> None:
    """Print every worker's status every two seconds, as drover's example does."""
    while True:
        for worker in master.workers:
            print(f"[app-{worker.slot}]: {worker.status.name}")
        print("---", flush=True)
        await anyio.sleep(2)


async def watch_signals(master: Master, stop: anyio.Event, *, task_status: TaskStatus[None]) -> None:
    """First SIGINT/SIGTERM: ask for a graceful shutdown. Second one: hard shutdown."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            if stop.is_set():
                print(f"{signal.Signals(signum).name} again: killing the workers", flush=True)
                await master.hard_shutdown()
            else:
                print(f"{signal.Signals(signum).name}: shutting down gracefully (again to force)", flush=True)
                stop.set()


async def run(duration: float | None) -> int:
    master = MasterFactory.create(
        script=HERE / "app.py",
        count=4,
        env={"PORT": PORT, "RESPONSE": "Hello from single_app_cluster!\n"},
    )
    stop = anyio.Event()
    exit_code = 0

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

    async def start_then_show_status() -> None:
        nonlocal exit_code
        try:
            await master.start()
        except StateError:
            return  # a shutdown interrupted the start
        except DroverError as exc:
            print(f"cannot start: {exc}", file=sys.stderr)
            exit_code = 1
            stop.set()
            return
        print(f"serving http://127.0.0.1:{PORT}/ (Ctrl-C to stop)", flush=True)
        await show_status(master)

    async with master, anyio.create_task_group() as tg:
        await tg.start(watch_signals, master, stop)
        tg.start_soon(start_then_show_status)
        with anyio.move_on_after(duration):
            await stop.wait()
        stop.set()
        await master.graceful_shutdown()
        tg.cancel_scope.cancel()
    print("shut down", flush=True)
    return exit_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, help="shut down gracefully after this many seconds")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="event loop of the master")
    args = parser.parse_args()
    sys.exit(anyio.run(run, args.duration, backend=args.backend))


if __name__ == "__main__":
    main()
