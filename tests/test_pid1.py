"""As PID 1 (a container), drover-py reaps the orphans it inherits and shuts down on SIGTERM.

Run for real in a new PID namespace (``unshare --pid --fork --mount-proc``, which needs root).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import anyio
import pytest

from .conftest import APPS
from .helpers import kill_on_exit
from .test_cli import read_line

pytestmark = pytest.mark.anyio


def _can_unshare() -> str | None:
    """Return why a new PID namespace cannot be made here, or None if it can."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    if os.geteuid() != 0:
        return "a new PID namespace needs root"
    done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=30)
    return None if done.returncode == 0 else f"unshare refused: {done.stderr.decode().strip()}"


def children(pid: int) -> list[int]:
    """Return the child pids of ``pid`` (host view)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return None


def with_argument(marker: str) -> list[int]:
    """Return the pids whose command line has ``marker`` as an argument."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker.encode() in argv:
                found.append(int(entry.name))
    return found


async def test_as_pid1_orphans_are_reaped_and_sigterm_shuts_down(tmp_path: Path) -> None:
    why_not = _can_unshare()
    if why_not is not None:
        pytest.skip(why_not)
    marker = f"drover-py-orphan-{uuid.uuid4().hex}"
    command = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable, "-m", "drover_py", "run"]
    command += [str(APPS / "orphan_worker.py"), "-w", "1", "--no-control"]
    process = await anyio.open_process(
        command, env={**os.environ, "ORPHAN_MARKER": marker}, stdout=subprocess.PIPE, cwd=tmp_path
    )
    async with kill_on_exit(process):
        ready = await read_line(process, "drover-py:")
        assert ready.startswith("drover-py: 1 worker of orphan_worker.py started")
        [init] = children(process.pid)  # PID 1 in the namespace: drover-py's init
        [master] = [pid for pid in children(init) if marker.encode() not in cmdline(pid).split(b"\0")]
        with anyio.fail_after(20):
            while with_argument(marker) or any(state(pid) == "Z" for pid in children(init)):
                await anyio.sleep(0.05)  # sync-ok: the orphan sleeps 0.5 s; bounded by fail_after
        assert children(init) == [master]  # the orphan was reaped, the master is its only child
        os.kill(init, signal.SIGTERM)  # what `docker stop` sends to PID 1
        assert (await read_line(process, "drover-py: shut down")) == "drover-py: shut down"
        with anyio.fail_after(30):
            assert await process.wait() == 0
