"""simple_app: one supervised HTTP worker, a live status line, a graceful Ctrl-C.

Run from the repository root:  python examples/simple_app/main.py [--duration 5]
then:                          curl http://127.0.0.1:1999/
Ctrl-C (or SIGTERM) shuts the worker down gracefully; a second Ctrl-C kills it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from drover_py import DroverError, Master, MasterFactory, StateError

HERE = Path(__file__).resolve().parent
PORT = int(os.environ.get("PORT", "1999"))


def status_line(master: Master) -> str:
    return "  ".join(f"[app-{w.slot}] {w.status.name} pid={w.pid}" for w in master.workers)


async def show_status(master: Master) -> None:
    """Print the workers' status every second, in place on a terminal."""
    tty = sys.stdout.isatty()
    try:
        while True:
            line = status_line(master)
            print(f"\r\033[K{line}" if tty else line, end="" if tty else "\n", flush=True)
            await anyio.sleep(1)
    finally:
        if tty:
            print()


async def watch_signals(master: Master, stop: anyio.Event, *, task_status: TaskStatus[None]) -> None:
    """First SIGINT/SIGTERM: ask for a graceful shutdown. Second one: hard shutdown."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            if stop.is_set():
                print(f"\n{signal.Signals(signum).name} again: killing the workers", flush=True)
                await master.hard_shutdown()
            else:
                print(f"\n{signal.Signals(signum).name}: shutting down gracefully (again to force)", flush=True)
                stop.set()


async def run(duration: float | None) -> int:
    master = MasterFactory.create(
        script=HERE / "app.py",
        count=1,
        env={"PORT": PORT, "RESPONSE": "Hello from simple_app!\n"},
    )
    stop = anyio.Event()
    exit_code = 0

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
