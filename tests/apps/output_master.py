"""A master whose own stdout may be a pipe nobody reads, for the output capture tests.

usage: output_master.py BACKEND READY_FD LINES. Captures ("prefix") the output of one
chatty worker that writes LINES lines, writes "ready\\n" on READY_FD once the worker sent
"started", then shuts down gracefully when READY_FD's peer sends anything (or closes).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import structlog

from drover_py import MasterFactory

structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


async def main(ready_fd: int, lines: int) -> None:
    master = MasterFactory.create(
        script=Path(__file__).with_name("chatty_worker.py"),
        count=1,
        env={"CHATTY": f"lines={lines},size=200"},
        output="prefix",
        stop_timeout=10,
        kill_timeout=2,
    )
    async with master:
        await master.start()
        os.write(ready_fd, b"ready\n")
        await anyio.wait_readable(ready_fd)
        await master.graceful_shutdown()


anyio.run(main, int(sys.argv[2]), int(sys.argv[3]), backend=sys.argv[1])
