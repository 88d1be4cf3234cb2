"""Progress of a long wait on the command line: which workers are still pending, and since when.

While ``serve``/``run`` wait for workers to start (or a ``--reload`` to finish), a line
every `INTERVAL` seconds after the first `DELAY` says how many are ready and which are
still starting: updated in place on a terminal, one plain line each time otherwise (a
log file or a CI log then shows the wait too).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TextIO

import anyio

from ._compat import open_background_tasks
from ._master import Master
from ._status import WorkerStatus

#: Seconds of waiting before the first progress line, and between two.
DELAY, INTERVAL = 2.0, 2.0
#: Pending workers named in one line at most.
SHOWN = 4


def progress_line(master: Master, action: str, elapsed: float) -> str:
    """Return the line that describes ``master``'s workers ``elapsed`` seconds into ``action``."""
    workers = master.workers
    ready = sum(w.status is WorkerStatus.STARTED for w in workers)
    pending = [w for w in workers if w.status is WorkerStatus.STARTING]
    names = ", ".join(f"worker {w.id} (slot {w.slot})" for w in pending[:SHOWN])
    more = f" and {len(pending) - SHOWN} more" if len(pending) > SHOWN else ""
    waiting = f"; waiting for {names}{more}" if pending else ""
    return f"drover-py: {action}: {ready} of {master.config.count} ready after {elapsed:.0f} s{waiting}"


@asynccontextmanager
async def show_progress(master: Master, action: str, out: TextIO | None = None) -> AsyncIterator[None]:
    """Print progress lines about ``master`` while the block runs longer than `DELAY` seconds."""
    stream = sys.stdout if out is None else out
    tty = stream.isatty()
    began = anyio.current_time()
    shown = False

    async def tick() -> None:
        nonlocal shown
        await anyio.sleep(DELAY)
        while True:
            line = progress_line(master, action, anyio.current_time() - began)
            stream.write(f"\r\033[K{line}" if tty else f"{line}\n")
            stream.flush()
            shown = True
            await anyio.sleep(INTERVAL)

    async with open_background_tasks() as tg:
        tg.start_soon(tick)
        try:
            yield  # an error of the block comes out unchanged
        finally:
            if shown and tty:
                stream.write("\r\033[K")
                stream.flush()
