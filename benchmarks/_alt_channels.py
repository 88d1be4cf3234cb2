"""A channel for comparison only: the floor of any anyio channel over a pipe.

(A "tuned" prototype that lived here too was adopted by `drover_py._wire.channel`: fast lock
acquire, a checkpoint only after a read that did not wait, a deque queue.)

`RawReader` / `RawWriter`: the floor of any anyio channel over a pipe: ``os.read`` /
``os.write`` with `anyio.wait_readable` / `anyio.wait_writable`, no decoding (a message
is a newline), no lock, no extra checkpoint.
"""

from __future__ import annotations

import os
from typing import Protocol

import anyio

from drover_py._wire.protocol import Data

_READ_SIZE = 65536


class Reader(Protocol):
    """What the benchmark needs of a channel's reading end (ChannelReader has it too)."""

    async def receive(self) -> str | Data | None: ...


class Writer(Protocol):
    """What the benchmark needs of a channel's writing end (ChannelWriter has it too)."""

    async def send(self, frame: bytes) -> None: ...


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
