"""Request floors for comparison only: the least a request round trip over a pipe costs.

A request needs more than an echo: the asker tags it with an id, a reader task (not the
asker: several requests may wait at once, and other frames arrive between) decodes the
answer, finds the waiting request and wakes it, and the asker then runs again. These
floors do that much and nothing more, with the same JSON as drover-py's frames and the
answering side in ``apps/floor_talk_peer.py``:

- ``"anyio"``: what any anyio program pays: ``os.read`` after `anyio.wait_readable` in
  a reader task, an `anyio.Event` per request.
- ``"direct"``: as "anyio", but the asker reads its own answer, with no reader task
  and no event, so one request at a time only. A supervisor cannot work this way (its
  reader must always be reading, for lifecycle frames and end of stream, and anyio
  lets one task at a time wait on an fd); the row shows what the hop costs.
- ``"native"`` (asyncio only): the fd stays registered with ``loop.add_reader`` and the
  selector's callback reads, decodes and resolves the asker's future itself, on both
  sides. drover-py's source may not talk to asyncio directly (it talks to anyio only);
  this row shows what that rule costs.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from _common import APPS, PYTHON, child_env

PEER = APPS / "floor_talk_peer.py"


class FloorPeer:
    """The asking side; `rtt` times ``n`` requests, one at a time."""

    def __init__(self, write_fd: int, read_fd: int) -> None:
        self._write_fd = write_fd
        self._read_fd = read_fd
        self._ids = itertools.count(1)
        self._pending: dict[int, Any] = {}
        self._buffer = bytearray()

    def _take(self, data: bytes, resolve: Callable[[Any, object], None]) -> None:
        self._buffer += data
        *lines, rest = bytes(self._buffer).split(b"\n")
        self._buffer[:] = rest
        for line in lines:
            response = json.loads(line)
            waiter = self._pending.pop(response["id"], None)
            if waiter is not None:
                resolve(waiter, response["result"])

    async def request(self, payload: object) -> object:
        raise NotImplementedError

    async def rtt(self, n: int, payload: object) -> tuple[float, float]:
        """Return p50 and p99 (us) of ``n`` requests, one at a time."""
        return await _time(n, lambda: self.request(payload))

    def _frame(self, request_id: int, payload: object) -> bytes:
        return json.dumps({"type": "request", "id": request_id, "name": "echo", "payload": payload}).encode() + b"\n"


class AnyioFloorPeer(FloorPeer):
    # The read loops here and in `DirectFloorPeer` are written out, not shared: a floor
    # pays for no layer that the least a program could do would not.
    async def read_loop(self) -> None:
        def resolve(waiter: Any, result: object) -> None:
            waiter[1].append(result)
            waiter[0].set()

        while True:
            try:
                data = os.read(self._read_fd, 65536)
            except BlockingIOError:
                await anyio.wait_readable(self._read_fd)
                continue
            if not data:
                return
            self._take(data, resolve)

    async def request(self, payload: object) -> object:
        request_id = next(self._ids)
        event, result = anyio.Event(), list[object]()
        self._pending[request_id] = (event, result)
        os.write(self._write_fd, self._frame(request_id, payload))
        await event.wait()
        return result[0]


class DirectFloorPeer(FloorPeer):
    async def request(self, payload: object) -> object:
        request_id = next(self._ids)
        answer: list[object] = []
        self._pending[request_id] = answer
        os.write(self._write_fd, self._frame(request_id, payload))
        while not answer:
            try:
                data = os.read(self._read_fd, 65536)
            except BlockingIOError:
                await anyio.wait_readable(self._read_fd)
                continue
            if not data:
                raise RuntimeError("the floor peer closed its end")
            self._take(data, lambda waiter, result: waiter.append(result))
        return answer[0]


class NativeFloorPeer(FloorPeer):
    def start(self) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._read_fd, self._on_readable)

    def stop(self) -> None:
        self._loop.remove_reader(self._read_fd)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._read_fd, 65536)
        except BlockingIOError:
            return
        self._take(data, lambda future, result: future.set_result(result))

    async def request(self, payload: object) -> object:
        request_id = next(self._ids)
        future = self._loop.create_future()
        self._pending[request_id] = future
        os.write(self._write_fd, self._frame(request_id, payload))
        return await future


async def _time(n: int, once: Callable[[], Any]) -> tuple[float, float]:
    """Return p50 and p99 (us) of ``n`` calls of ``once``, one at a time."""
    rtts = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        await once()
        rtts.append(time.perf_counter_ns() - t0)
    rtts.sort()
    return rtts[n // 2] / 1e3, rtts[min(n - 1, n * 99 // 100)] / 1e3


@asynccontextmanager
async def open_floor_peer(backend: str, impl: str) -> AsyncIterator[AnyioFloorPeer | DirectFloorPeer | NativeFloorPeer]:
    """Spawn the answering child and yield the asking side; the child ends with the block."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    fds = (to_child_r, from_child_w)
    proc = subprocess.Popen(
        [PYTHON, str(PEER), backend, impl],
        pass_fds=fds,
        env=child_env(BENCH_CHANNEL=f"{fds[0]},{fds[1]}"),
        start_new_session=True,
    )
    for fd in fds:
        os.close(fd)
    os.set_blocking(from_child_r, False)
    try:
        if impl == "native":
            native = NativeFloorPeer(to_child_w, from_child_r)
            native.start()
            try:
                yield native
            finally:
                native.stop()
        elif impl == "direct":
            yield DirectFloorPeer(to_child_w, from_child_r)
        else:
            peer = AnyioFloorPeer(to_child_w, from_child_r)
            async with anyio.create_task_group() as tg:
                tg.start_soon(peer.read_loop)
                yield peer
                tg.cancel_scope.cancel()
    finally:
        os.close(to_child_w)
        try:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(proc.wait, 20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            os.close(from_child_r)
        if proc.returncode != 0:
            raise RuntimeError(f"the floor peer exited with {proc.returncode}")
