"""Channels for comparison only (drover-py uses neither): a tuned prototype and a floor.

`TunedReader` / `TunedWriter`: same wire format, decoder and fds as
`drover_py._channel`, with three changes:

- the writer's lock is ``anyio.Lock(fast_acquire=True)``: an uncontended send writes at
  once instead of first yielding to the event loop (one scheduling round per message);
- the reader only adds a checkpoint when its read did not have to wait (a wait for
  readability already was one), instead of after every read;
- the reader's queue is a deque (``list.pop(0)`` is O(n) per message in a burst).

`RawReader` / `RawWriter`: the floor of any anyio channel over a pipe: ``os.read`` /
``os.write`` with `anyio.wait_readable` / `anyio.wait_writable`, no decoding (a message
is a newline), no lock, no extra checkpoint.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Protocol

import anyio
import anyio.lowlevel

from drover_py._exceptions import ChannelError, ProtocolError
from drover_py._protocol import MAX_FRAME_SIZE, Decoder

_READ_SIZE = 65536


class Reader(Protocol):
    """What the benchmark needs of a channel's reading end (ChannelReader has it too)."""

    async def receive(self) -> str | None: ...


class Writer(Protocol):
    """What the benchmark needs of a channel's writing end (ChannelWriter has it too)."""

    async def send(self, frame: bytes) -> None: ...


class TunedReader:
    __slots__ = ("_fd", "_decoder", "_queue")

    def __init__(self, fd: int, allowed: frozenset[str], max_size: int = MAX_FRAME_SIZE) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._decoder = Decoder(allowed, max_size)
        self._queue: deque[str] = deque()

    async def receive(self) -> str | None:
        waited = False
        while not self._queue:
            if self._decoder.error is not None:
                raise self._decoder.error
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
                waited = True
                continue
            if not data:
                if self._decoder.pending:
                    raise ProtocolError(f"stream ended inside a frame ({self._decoder.pending} bytes unterminated)")
                return None
            self._queue.extend(self._decoder.feed(data))
            if not waited:
                await anyio.lowlevel.checkpoint()
        return self._queue.popleft()


class TunedWriter:
    __slots__ = ("_fd", "_lock")

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._lock = anyio.Lock(fast_acquire=True)

    async def send(self, frame: bytes) -> None:
        async with self._lock:
            view = memoryview(frame)
            while view:
                try:
                    written = os.write(self._fd, view)
                except BlockingIOError:
                    await anyio.wait_writable(self._fd)
                    continue
                except (BrokenPipeError, OSError) as exc:
                    raise ChannelError(f"channel closed: {exc}") from exc
                view = view[written:]


class RawReader:
    __slots__ = ("_fd", "_pending")

    def __init__(self, fd: int, allowed: frozenset[str] = frozenset()) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._pending = 0

    async def receive(self) -> str | None:
        while not self._pending:
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
                continue
            if not data:
                return None
            self._pending += data.count(b"\n")
        self._pending -= 1
        return "message"


class RawWriter:
    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd

    async def send(self, frame: bytes) -> None:
        view = memoryview(frame)
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                await anyio.wait_writable(self._fd)
                continue
            view = view[written:]
