"""Watch mode (``drover-py serve --reload``): a graceful reload on every change of the code.

Files are watched with watchfiles (inotify; no polling), changes debounced. A reload is
readiness-gated and rolls back, so an edit that breaks the app leaves the old workers
serving: the failed worker printed its own error, this prints the outcome, and the next
change tries again.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Sequence

import anyio

from .._exceptions import DroverError
from .._supervise.master import Master
from .._supervise.progress import show_progress

DEFAULT_INCLUDE = ("*.py",)
#: Folders never worth a reload.
IGNORED_DIRS = {"__pycache__", ".git", ".hg", ".mypy_cache", ".pytest_cache", ".venv", "venv", "node_modules"}


def make_filter(includes: Sequence[str], excludes: Sequence[str]) -> object:
    """Return a watchfiles filter: file names matching ``includes`` and none of ``excludes``."""
    wanted = tuple(includes) or DEFAULT_INCLUDE

    def accept(change: object, path: str) -> bool:
        name = os.path.basename(path)
        parts = set(path.split(os.sep))
        if parts & IGNORED_DIRS:
            return False
        if any(fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(path, pattern) for pattern in excludes):
            return False
        return any(fnmatch.fnmatch(name, pattern) for pattern in wanted)

    return accept


async def watch_and_reload(
    master: Master, dirs: Sequence[str], includes: Sequence[str], excludes: Sequence[str]
) -> None:
    """Reload ``master`` gracefully whenever a watched file under ``dirs`` changes; forever."""
    try:
        from watchfiles import awatch
    except ImportError:
        print("drover-py serve: --reload needs watchfiles: pip install 'drover-py[serve]'", file=sys.stderr, flush=True)
        return
    roots = [os.path.abspath(d) for d in dirs]
    print(f"drover-py: watching {', '.join(roots)} for changes", flush=True)
    # awatch waits for changes in a thread that a cancellation cannot interrupt; it sets
    # its stop event only once that thread returned (up to 5 s later). Set it at once.
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_set_when_cancelled, stop)
        async for changes in awatch(*roots, watch_filter=make_filter(includes, excludes), stop_event=stop):  # type: ignore[arg-type]
            changed = sorted({os.path.relpath(path) for _, path in changes})
            shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
            print(f"drover-py: {shown} changed; reloading", flush=True)
            try:
                async with show_progress(master, "reloading"):
                    report = await master.graceful_reload()
            except DroverError as exc:
                print(f"drover-py: reload failed, the previous version keeps serving: {exc}", flush=True)
            else:
                print(f"drover-py: {report}", flush=True)
        tg.cancel_scope.cancel()


async def _set_when_cancelled(event: anyio.Event) -> None:
    """Set ``event`` when this task is cancelled."""
    try:
        await anyio.sleep_forever()
    finally:
        event.set()
