"""Process titles shown by ``ps`` and ``top``, through setproctitle when it is installed.

The master titles itself ``drover-py master: app.py [4 workers]`` (every master of the
process in one title) and tells each worker its title, ``drover-py worker 2: app.py``,
in `PROCTITLE_ENV`; the worker sets it as soon as it imports drover_py (a preload
template's forked child: before the script runs). Without setproctitle nothing happens.

Imported by workers: the standard library only, and setproctitle only when needed.
"""

from __future__ import annotations

import itertools
import os

from .._env import PROCTITLE_ENV


def set_title(title: str) -> bool:
    """Set this process's title; return False, doing nothing, if setproctitle is missing."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return False
    setproctitle(title)
    return True


def apply_title_from_env() -> None:
    """Set the title the master chose for this worker, and keep it from the worker's children."""
    title = os.environ.get(PROCTITLE_ENV)
    if title:
        set_title(title)  # first: setproctitle finds argv through the environment as it started
    os.environ.pop(PROCTITLE_ENV, None)


def worker_title(name: str, slot: int) -> str:
    """Return the title of the worker in ``slot`` of the program called ``name``."""
    return f"drover-py worker {slot}: {name}"


class MasterTitles:
    """The masters of this process, shown in one title; the original comes back after the last."""

    def __init__(self) -> None:
        self._parts: dict[int, str] = {}
        self._keys = itertools.count()
        self._original: str | None = None

    def new_key(self) -> int:
        """Return a key for one master's part of the title."""
        return next(self._keys)

    def show(self, key: int, name: str, count: int) -> None:
        """Show (or update) the part of master ``key``: its program and worker count."""
        self._parts[key] = f"{name} [{count} worker{'' if count == 1 else 's'}]"
        self._update()

    def remove(self, key: int) -> None:
        """Remove the part of master ``key``; restore the original title after the last one."""
        if self._parts.pop(key, None) is not None:
            self._update()

    def _update(self) -> None:
        try:
            from setproctitle import getproctitle
        except ImportError:
            return
        if self._parts:
            if self._original is None:
                self._original = getproctitle()
            set_title(f"drover-py master: {', '.join(self._parts.values())}")
        elif self._original is not None:
            set_title(self._original)
            self._original = None


#: The titles of the masters of this process.
master_titles = MasterTitles()
