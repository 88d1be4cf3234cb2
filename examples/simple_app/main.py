"""simple_app: one supervised HTTP worker, a live status line, a graceful Ctrl-C.

Run:   python examples/simple_app/main.py [--duration 5] [--backend asyncio|trio]
then:  curl http://127.0.0.1:1999/     (env PORT changes the port)
Ctrl-C (or SIGTERM) shuts the worker down gracefully; a second Ctrl-C kills it.
kill -HUP <pid of main.py> replaces the worker with zero downtime.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import anyio

from drover_py import DroverError, Master, MasterFactory, open_signal_handlers

HERE = Path(__file__).resolve().parent
PORT = int(os.environ.get("PORT", "1999"))


async def show_status(master: Master) -> None:
    """Print the worker's status every second, in place on a terminal.

    There the cursor is left at the start of the line, so that the next line printed
    (drover-py's log lines on stderr: "signal received" ...) replaces the status.
    """
    tty = sys.stdout.isatty()
    try:
        while True:
            line = "  ".join(f"[app-{w.slot}] {w.status.name} pid={w.pid}" for w in master.workers)
            print(f"\r\033[K{line}\r" if tty else line, end="" if tty else "\n", flush=True)
            await anyio.sleep(1)
    finally:
        if tty:
            print("\r\033[K", end="", flush=True)


async def run(duration: float | None) -> int:
    master = MasterFactory.create(
        script=HERE / "app.py",  # beside this file, whatever the working directory
        count=1,
        bind=[f"127.0.0.1:{PORT}"],  # one listener, owned by the master, inherited by its workers
        env={"RESPONSE": "Hello from simple_app!\n"},
    )
    try:
        # SIGINT/SIGTERM: graceful shutdown (a second SIGINT kills); SIGHUP: graceful reload.
        async with master, open_signal_handlers(master):
            await master.start()  # returns once the worker sent "started"
            print(f"serving http://127.0.0.1:{PORT}/ (Ctrl-C to stop)", flush=True)
            async with anyio.create_task_group() as tg:
                tg.start_soon(show_status, master)
                with anyio.move_on_after(duration):
                    await master.supervise()  # returns once a signal shut the master down
                tg.cancel_scope.cancel()
            await master.graceful_shutdown()  # after --duration (after a signal: already done)
    except DroverError as exc:  # the port is taken, or the worker could not start
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
