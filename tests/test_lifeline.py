"""No orphans: when the master process dies, even by SIGKILL, its workers go too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import anyio
import pytest
from anyio.abc import Process

from .conftest import APPS
from .helpers import is_running, kill_on_exit, wait_process_gone

pytestmark = pytest.mark.anyio

#: Generous bound for the test; the latency itself is measured in benchmarks/.
GONE_TIMEOUT = 10.0


def children_of(pid: int) -> list[int]:
    """Return the children of ``pid``, whichever of its threads spawned them."""
    found: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as file:
            found.extend(int(child) for child in file.read().split())
    return found


async def read_json_line(process: Process) -> object:
    assert process.stdout is not None
    data = b""
    with anyio.fail_after(30):
        while not data.endswith(b"\n"):
            chunk = await process.stdout.receive()
            data += chunk
    return json.loads(data)


async def spawn_master(
    backend: str, count: int, behaviour: str = "", spawn_mode: str = "exec"
) -> tuple[Process, list[int]]:
    process = await anyio.open_process(
        [sys.executable, str(APPS / "master.py"), backend, str(count), behaviour, spawn_mode], stderr=subprocess.DEVNULL
    )
    pids = await read_json_line(process)
    assert isinstance(pids, list) and len(pids) == count
    return process, [int(p) for p in pids]


@pytest.mark.parametrize("master_backend", ["asyncio", "trio"])
@pytest.mark.parametrize("behaviour", ["", "trio", "ignore_term"])
async def test_master_sigkill_takes_workers_down(master_backend: str, behaviour: str) -> None:
    process, pids = await spawn_master(master_backend, 3, behaviour)
    async with kill_on_exit(process):
        assert all(is_running(pid) for pid in pids)
        process.kill()
        await process.wait()
        for pid in pids:
            await wait_process_gone(pid, GONE_TIMEOUT)


async def test_master_sigterm_shuts_down_gracefully() -> None:
    process, pids = await spawn_master("asyncio", 2)
    async with kill_on_exit(process):
        process.send_signal(signal.SIGTERM)
        assert await read_json_line(process) == {"shutdown": "done", "workers": 0}
        with anyio.fail_after(30):
            assert await process.wait() == 0
        assert not any(is_running(pid) for pid in pids)


@pytest.mark.parametrize("master_backend", ["asyncio", "trio"])
async def test_master_sigkill_takes_template_and_forked_workers_down(master_backend: str) -> None:
    process, pids = await spawn_master(master_backend, 3, "ignore_term", "preload")
    async with kill_on_exit(process):
        [template] = children_of(process.pid)  # the master's only child; the workers are its children
        assert all(is_running(pid) for pid in [template, *pids])
        process.kill()
        await process.wait()
        for pid in [template, *pids]:
            await wait_process_gone(pid, GONE_TIMEOUT)
