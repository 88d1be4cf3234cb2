"""Message channel over a pair of inherited pipes, used by the master and the child.

Each side owns one read fd and one write fd, both non-blocking. Reads and writes wait
with `anyio.wait_readable` / `anyio.wait_writable`, so the channel works on asyncio and
trio alike and costs one system call per burst of messages.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Coroutine

import anyio

from .._exceptions import ChannelError, ProtocolError
from .protocol import MAX_FRAME_SIZE, Data, Decoder

_READ_SIZE = 65536
#: Seconds a half-written frame may wait for the reader before the channel counts as broken.
STALL_TIMEOUT = 10.0


class ChannelReader:
    """Receive messages from a pipe fd. Does not own the fd."""

    __slots__ = ("_fd", "_decoder", "_queue", "_emptied")

    def __init__(self, fd: int, allowed: frozenset[str], max_size: int = MAX_FRAME_SIZE) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._decoder = Decoder(allowed, max_size)
        self._queue: collections.deque[str | Data] = collections.deque()
        self._emptied = False  # the last read took less than asked: the pipe is likely empty

    async def receive(self) -> str | Data | None:
        """Return the next message (a lifecycle type or `Data`), or None at end of stream.

        Raise `ProtocolError` for an invalid frame, also for a truncated one at EOF.
        """
        if not self._queue:
            messages = await self.receive_batch()
            if messages is None:
                return None
            self._queue.extend(messages)
        return self._queue.popleft()

    async def receive_batch(self) -> list[str | Data] | None:
        """Return the messages of the next read (at least one), or None at end of stream.

        One call per read instead of one per message: a reader that takes hundreds of
        small messages per read handles them in a plain loop. Errors as `receive`.
        """
        if self._queue:  # left by `receive`
            messages = list(self._queue)
            self._queue.clear()
            return messages
        waited = False
        while True:
            if self._decoder.error is not None:
                raise self._decoder.error
            if self._emptied:  # wait first, rather than a read that fails
                self._emptied = False
                await anyio.wait_readable(self._fd)
                waited = True
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
                waited = True
                continue
            self._emptied = len(data) < _READ_SIZE
            if not data:
                if self._decoder.pending:
                    raise ProtocolError(f"stream ended inside a frame ({self._decoder.pending} bytes unterminated)")
                return None
            messages = self._decoder.feed(data)
            if messages:
                if not waited:
                    await anyio.sleep(0)  # a checkpoint, so a flood cannot starve other tasks
                return messages


class ChannelWriter:
    """Send frames on a pipe fd. Does not own the fd; senders take turns, frame by frame.

    A frame is never cut: cancelling a send before its first byte is written drops the
    whole frame; once part of it is written, the rest is written even if the caller is
    cancelled, for at most `STALL_TIMEOUT` seconds, after which the channel is broken
    (every later send raises `ChannelError`).
    """

    __slots__ = ("_fd", "_lock", "_broken", "_turns", "_check_cancelled")

    def __init__(self, fd: int) -> None:
        import anyio.lowlevel  # here, not at import time: a worker's import stays light

        self._check_cancelled = anyio.lowlevel.checkpoint_if_cancelled
        os.set_blocking(fd, False)
        self._fd = fd
        self._lock = anyio.Lock(fast_acquire=True)  # no extra trip through the loop per send
        self._broken: ChannelError | None = None
        self._turns = 0  # senders holding or waiting for the lock

    @property
    def busy(self) -> bool:
        """Return whether a frame is being written or waits its turn (a send now would queue)."""
        return self._turns > 0

    async def send(self, frame: bytes) -> None:
        """Write ``frame`` whole. Raise `ChannelError` when the reader is gone."""
        await self._check_cancelled()  # as the lock did: a cancelled send sends nothing
        if self._broken is not None:
            raise self._broken
        if not self._turns:
            # Fast path: nobody is in the middle of a frame, and nothing awaits between
            # this test and the write, so no other frame can come in between.
            written = self._write(frame)
            if written == len(frame):
                return
            self._lock.acquire_nowait()  # free: only lock holders count in _turns
            self._turns += 1
            await self._finish_held(frame, written)
            return
        self._turns += 1
        try:
            async with self._lock:
                if self._broken is not None:
                    raise self._broken
                await self._finish(frame, 0)
        finally:
            self._turns -= 1

    def send_soon(self, frame: bytes) -> Coroutine[None, None, None] | None:
        """Write ``frame`` now if that needs no wait and return None; else return what finishes it.

        The returned coroutine (run it as a task) writes the rest of the frame; until it
        is done, no other frame can come in between. Raise `ChannelError` as `send` does.
        """
        if self._broken is not None:
            raise self._broken
        if self._turns:
            return self.send(frame)
        try:  # `_write`, inlined: this runs once per frame
            written = os.write(self._fd, frame)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            self._broken = ChannelError(f"channel closed: {exc}")
            raise self._broken from exc
        if written == len(frame):
            return None
        self._lock.acquire_nowait()  # free, as in `send`'s fast path
        self._turns += 1
        return self._finish_held(frame, written)

    async def _finish_held(self, frame: bytes, written: int) -> None:
        try:
            await self._finish(frame, written)
        finally:
            self._turns -= 1
            self._lock.release()

    async def _finish(self, frame: bytes, written: int) -> None:
        """Write the rest of ``frame`` after its first ``written`` bytes (under the lock)."""
        while not written:
            written = self._write(frame)
            if not written:
                await anyio.wait_writable(self._fd)
        if written < len(frame):
            with anyio.CancelScope(shield=True), anyio.move_on_after(STALL_TIMEOUT):
                view = memoryview(frame)[written:]
                while view:
                    await anyio.wait_writable(self._fd)
                    view = view[self._write(view) :]
                return
            self._broken = ChannelError(f"the reader took no data for {STALL_TIMEOUT:g} s in the middle of a frame")
            raise self._broken

    def _write(self, data: bytes | memoryview) -> int:
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self._broken = ChannelError(f"channel closed: {exc}")
            raise self._broken from exc
