"""Message channel over a pair of inherited pipes, used by the master and the child.

Each side owns one read fd and one write fd, both non-blocking. Reads and writes wait
with `anyio.wait_readable` / `anyio.wait_writable`, so the channel works on asyncio and
trio alike and costs one system call per burst of messages.
"""

from __future__ import annotations

import collections
import os

import anyio

from ._exceptions import ChannelError, ProtocolError
from ._protocol import MAX_FRAME_SIZE, Decoder

_READ_SIZE = 65536


class ChannelReader:
    """Receive messages from a pipe fd. Does not own the fd."""

    __slots__ = ("_fd", "_decoder", "_queue")

    def __init__(self, fd: int, allowed: frozenset[str], max_size: int = MAX_FRAME_SIZE) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._decoder = Decoder(allowed, max_size)
        self._queue: collections.deque[str] = collections.deque()

    async def receive(self) -> str | None:
        """Return the next message type, or None at end of stream.

        Raise `ProtocolError` for an invalid frame, also for a truncated one at EOF.
        """
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
                await anyio.sleep(0)  # a checkpoint, so a flood cannot starve other tasks
        return self._queue.popleft()


class ChannelWriter:
    """Send frames on a pipe fd. Does not own the fd; one sender at a time."""

    __slots__ = ("_fd", "_lock")

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._lock = anyio.Lock(fast_acquire=True)  # no extra trip through the loop per send

    async def send(self, frame: bytes) -> None:
        """Write ``frame`` whole. Raise `ChannelError` when the reader is gone."""
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
