"""Helpers for integration tests: waiting on events and on processes without sleeping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process

from drover_py import ExitReasons, Master


class EventLog:
    """Record a master's events in order, and let a test wait for one."""

    def __init__(self, master: Master) -> None:
        self.events: list[tuple[str, tuple[object, ...]]] = []
        self._changed = anyio.Event()
        for name in (
            "worker-exit",
            "worker-retired",
            "worker-started",
            "status-changed",
            "restarts-exhausted",
            "message",
        ):
            master.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(*args: object) -> None:
            self.events.append((name, args))
            self._changed.set()
            self._changed = anyio.Event()

        return record

    def of(self, name: str) -> list[tuple[object, ...]]:
        return [args for event, args in self.events if event == name]

    def exits(self, name: str = "worker-exit") -> list[tuple[ExitReasons.ExitReason, int]]:
        result = []
        for reason, worker_id in self.of(name):
            assert isinstance(reason, ExitReasons.ExitReason) and isinstance(worker_id, int)
            result.append((reason, worker_id))
        return result

    async def wait_for(self, name: str, count: int = 1, timeout: float = 15.0) -> list[tuple[object, ...]]:
        await self.wait_until(lambda: len(self.of(name)) >= count, timeout)
        return self.of(name)

    async def wait_until(self, done: Callable[[], bool], timeout: float = 15.0) -> None:
        """Wait until ``done()`` holds, checking it after each event."""
        with anyio.fail_after(timeout):
            while not done():
                await self._changed.wait()


async def wait_process_gone(pid: int, timeout: float) -> None:
    """Wait until ``pid`` has exited (a zombie counts as gone), via a pidfd: no polling."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        with anyio.fail_after(timeout):
            await anyio.wait_readable(fd)
    finally:
        os.close(fd)


def run_json_app(script: Path, *args: str) -> dict[str, Any]:
    """Run a test program to completion; return the JSON object it printed on stdout."""
    result = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert isinstance(outcome, dict)
    return outcome


def is_running(pid: int) -> bool:
    """Return whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            state = file.read().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@asynccontextmanager
async def kill_on_exit(process: Process) -> AsyncIterator[None]:
    """Make sure a subprocess master is gone when the test ends, whatever happened."""
    try:
        yield
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.wait()
        await process.aclose()
