"""Timed starts shared by the startup and restart benchmarks (run inside an event loop)."""

from __future__ import annotations

import os
import signal
import time

import anyio
import anyio.abc
from _common import APPS, PYTHON

from drover_py import Master, MasterFactory

TINY_WORKER = APPS / "tiny_worker.py"
FLOOR_CHILD = APPS / "floor_child.py"


def tiny_master(count: int, **options: object) -> Master:
    """Return a master of `count` tiny workers with bounded timeouts."""
    return MasterFactory.create(
        script=TINY_WORKER,
        count=count,
        start_timeout=60.0,
        stop_timeout=10.0,
        kill_timeout=2.0,
        **options,  # type: ignore[arg-type]
    )


async def drover_start(count: int) -> float:
    """Return the seconds ``await master.start()`` took for ``count`` tiny workers."""
    master = tiny_master(count)
    async with master:
        start = time.perf_counter()
        await master.start()
        elapsed = time.perf_counter() - start
        await master.hard_shutdown()
    return elapsed


async def floor_start(count: int) -> float:
    """Return the seconds to spawn ``count`` floor children and read their ready bytes.

    The children are spawned concurrently with `anyio.open_process`, with the options
    drover-py uses (inherited fd, new session, same environment size), and all write to
    one pipe; the clock stops when ``count`` bytes arrived.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    env = {**os.environ, "BENCH_READY_FD": str(write_fd)}
    processes: list[anyio.abc.Process] = []

    async def spawn() -> None:
        process = await anyio.open_process(
            [PYTHON, str(FLOOR_CHILD)],
            env=env,
            pass_fds=(write_fd,),
            start_new_session=True,
            stdin=None,
            stdout=None,
            stderr=None,
        )
        processes.append(process)

    async def wait_bytes() -> None:
        got = 0
        while got < count:
            try:
                data = os.read(read_fd, 256)
            except BlockingIOError:
                await anyio.wait_readable(read_fd)
                continue
            if not data:
                raise RuntimeError("a floor child exited before writing its byte")
            got += len(data)

    try:
        start = time.perf_counter()
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_bytes)
                async with anyio.create_task_group() as spawner:
                    for _ in range(count):
                        spawner.start_soon(spawn)
                os.close(write_fd)
                write_fd = -1
        elapsed = time.perf_counter() - start
    finally:
        if write_fd >= 0:
            os.close(write_fd)
        os.close(read_fd)
        with anyio.CancelScope(shield=True):
            for process in processes:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for process in processes:
                await process.wait()
                await process.aclose()
    return elapsed
