"""Shared fixtures: both anyio backends, a per-test deadline, and an orphan check.

The test process makes itself a child subreaper, so workers orphaned by a master that
ran in a subprocess are re-parented to it; the autouse `no_leftover_processes` fixture
then fails any test after which a child process (direct or adopted) is still alive.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drover_py import Master, MasterFactory

APPS = Path(__file__).parent / "apps"
WORKER = APPS / "worker.py"
PR_SET_CHILD_SUBREAPER = 36


def pytest_configure(config: pytest.Config) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:  # pragma: no cover
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


def children() -> dict[int, str]:
    """Return {pid: state} of the direct children of this process, from /proc."""
    me = os.getpid()
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                stat = file.read()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == me:
            found[int(entry)] = fields[0]
    return found


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    before = set(children())
    yield
    leftovers = []
    for pid, state in children().items():
        if pid in before:
            continue
        if state == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)  # an adopted orphan that already died
            except ChildProcessError:
                pass
            continue
        leftovers.append(pid)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    assert not leftovers, f"child processes outlived the test: {leftovers}"


MasterBuilder = Callable[..., Master]
#: Parametrise a test or module with this to run it in both spawn modes.
BOTH_SPAWN_MODES = pytest.mark.parametrize("spawn_mode", ["exec", "preload"])


@pytest.fixture
def spawn_mode() -> str:
    """Return how `make_master` spawns workers: "exec", or "preload" (forked from a template).

    Exec unless a test is parametrised with `BOTH_SPAWN_MODES`.
    """
    return "exec"


@pytest.fixture
def make_master(tmp_path: Path, spawn_mode: str) -> MasterBuilder:
    """Build a master of tests/apps/worker.py with short deadlines; options override."""

    def build(behaviour: str = "", count: int = 2, env: dict[str, object] | None = None, **options: Any) -> Master:
        options.setdefault("script", WORKER)
        options.setdefault("preload", spawn_mode == "preload")
        options.setdefault("start_timeout", 20.0)
        options.setdefault("stop_timeout", 10.0)
        options.setdefault("kill_timeout", 2.0)
        full_env: dict[str, object] = {"TEST_BEHAVIOUR": behaviour, "TEST_RECORD": tmp_path / "record.txt"}
        full_env.update(env or {})
        return MasterFactory.create(count=count, env=full_env, **options)

    return build


@pytest.fixture
def records(tmp_path: Path) -> Callable[[], list[tuple[int, str, str]]]:
    """Return a reader of the (pid, event, slot) lines the test workers recorded."""

    def read() -> list[tuple[int, str, str]]:
        path = tmp_path / "record.txt"
        if not path.exists():
            return []
        rows = []
        for line in path.read_text().splitlines():
            pid, event, slot = line.split(" ")
            rows.append((int(pid), event, slot))
        return rows

    return read


PYTHON = sys.executable
