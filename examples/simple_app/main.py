"""simple_app: one supervised HTTP worker, a live status line, a graceful Ctrl-C.

Run from the repository root:  python examples/simple_app/main.py [--duration 5]
then:                          curl http://127.0.0.1:1999/
Ctrl-C (or SIGTERM) shuts the worker down gracefully; a second Ctrl-C kills it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio

from drover_py import Master, MasterFactory

# The examples folder, so that `_shared` is found whatever the working directory.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _shared import cli  # noqa: E402

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


async def run(duration: float | None) -> int:
    master = MasterFactory.create(
        script=HERE / "app.py",
        count=1,
        bind=[f"127.0.0.1:{PORT}"],  # one listener, owned by the master, shared by its workers
        env={"PORT": PORT, "RESPONSE": "Hello from simple_app!\n"},
    )
    # Start, show the status line until Ctrl-C or --duration, then shut down gracefully.
    # The signal messages start on a new line: the status line is drawn in place.
    return await cli.run_masters({"app": master}, duration, lambda: show_status(master), fresh_line=True)


def main() -> None:
    args = cli.parse_args(__doc__)
    sys.exit(anyio.run(run, args.duration, backend=args.backend))


if __name__ == "__main__":
    main()
