"""Progress of a long wait on the command line: which workers are still pending, and since when.

While ``serve``/``run`` wait for workers to start (or a ``--reload`` to finish), a line
every `INTERVAL` seconds after the first `DELAY` says how many are ready and which are
still starting: updated in place on a terminal, one plain line each time otherwise (a
log file or a CI log then shows the wait too). Once serving, `show_pending` does the
same whenever workers take long to start, whatever started them (SIGHUP, SIGTTIN, the
control API, the restart policy).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TextIO

import anyio

from .._compat import open_background_tasks
from .._status import WorkerStatus
from .master import Master
from .worker import WorkerSnapshot

#: Seconds of waiting before the first progress line, and between two.
DELAY, INTERVAL = 2.0, 2.0
#: Pending workers named in one line at most.
SHOWN = 4


def progress_line(master: Master, action: str, elapsed: float) -> str:
    """Return the line that describes ``master``'s workers ``elapsed`` seconds into ``action``."""
    pending = [w for w in master.workers if w.status is WorkerStatus.STARTING]
    waiting = f"; waiting for {_names(pending)}" if pending else ""
    return f"drover-py: {action}: {master.started_count} of {master.config.count} ready after {elapsed:.0f} s{waiting}"


def _names(workers: list[WorkerSnapshot]) -> str:
    names = ", ".join(f"worker {w.id} (slot {w.slot})" for w in workers[:SHOWN])
    return names + (f" and {len(workers) - SHOWN} more" if len(workers) > SHOWN else "")


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


@asynccontextmanager
async def show_pending(master: Master, out: TextIO | None = None) -> AsyncIterator[None]:
    """While the block runs, print which workers are starting whenever one takes over `DELAY` s.

    Driven by the master's "status-changed" events: nothing runs while no worker starts.
    """
    stream = sys.stdout if out is None else out
    starting: dict[int, float] = {}  # worker id -> when it began to start
    ticking = False

    async def tick() -> None:
        nonlocal ticking
        try:
            await anyio.sleep(DELAY)
            while starting:
                now = anyio.current_time()
                pending = [w for w in master.workers if w.id in starting]
                if pending:
                    longest = now - min(starting.values())
                    stream.write(f"drover-py: waiting for {_names(pending)} to start ({longest:.0f} s)\n")
                    stream.flush()
                await anyio.sleep(INTERVAL)
        finally:
            ticking = False

    async with open_background_tasks() as tg:

        def on_status(worker_id: int, status: WorkerStatus) -> None:
            nonlocal ticking
            if status is WorkerStatus.STARTING:
                starting[worker_id] = anyio.current_time()
                if not ticking:
                    ticking = True
                    tg.start_soon(tick)
            else:
                starting.pop(worker_id, None)

        master.on("status-changed", on_status)
        try:
            yield  # an error of the block comes out unchanged
        finally:
            master.off("status-changed", on_status)
