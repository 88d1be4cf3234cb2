"""Captured worker output: split into lines, then written whole through the master.

Each worker's stderr is a pipe that the master reads, and with ``output="prefix"`` or
``output="log"`` its stdout too (with ``"inherit"``, stdout is the master's own). The
master keeps the last lines of every worker's stderr (`Tail`), so that the reason of a
worker that failed can say what the worker said. `LineSplitter` (pure) turns the bytes
into lines; `OutputSink` writes them, one whole line at a time, so lines of different
workers never interleave mid-line: as they were (``inherit``), prefixed, on the
master's own stdout/stderr, or as structlog events.

The policy when output comes faster than it can be written (a terminal or a log
collector that is slow, or a stdout nobody reads): the master keeps reading every
worker's pipes, so a worker never blocks on its output; lines that do not fit in the
sink's buffer (`MAX_PENDING` bytes) are dropped and counted, and a notice with the count
is written once the sink catches up. Writes happen in a worker thread, so a blocked
stdout never stalls the master's event loop either.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Iterable

import anyio
import anyio.to_thread
from structlog.typing import FilteringBoundLogger

from .._config.options import OUTPUT_MODES

#: The most lines, and bytes, of a worker's stderr that its exit reason carries.
TAIL_LINES, TAIL_BYTES = 20, 4096
#: Longest line written as one; a longer one is cut into pieces of this size.
MAX_LINE = 16 * 1024
#: Bytes of captured lines a sink buffers before it drops lines.
MAX_PENDING = 1024 * 1024
#: Seconds a closing sink keeps writing what it buffered.
FLUSH_TIMEOUT = 2.0

_READ_SIZE = 65536


class LineSplitter:
    """Split a byte stream into lines (without their newline). Pure.

    A line longer than ``max_line`` bytes comes out in pieces of ``max_line`` bytes;
    `flush` returns an unterminated last line.
    """

    __slots__ = ("_buffer", "_max_line")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError("max_line must be at least 1 byte")
        self._buffer = b""
        self._max_line = max_line

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every line it completed."""
        buffer = self._buffer + data
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        out: list[bytes] = []
        for line in lines:
            out.extend(self._cut(line))
        while len(self._buffer) >= self._max_line:
            out.append(self._buffer[: self._max_line])
            self._buffer = self._buffer[self._max_line :]
        return out

    def _cut(self, line: bytes) -> Iterable[bytes]:
        if len(line) <= self._max_line:
            return (line,)
        return (line[i : i + self._max_line] for i in range(0, len(line), self._max_line))

    def flush(self) -> bytes | None:
        """Return the unterminated rest of the stream, if any, and forget it."""
        rest, self._buffer = self._buffer, b""
        return rest or None


class Tail:
    """The last lines of a stream: at most ``lines`` of them and ``size`` bytes in all. Pure."""

    __slots__ = ("_lines", "_bytes", "_max_lines", "_max_bytes")

    def __init__(self, lines: int = TAIL_LINES, size: int = TAIL_BYTES) -> None:
        self._lines: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self._max_lines, self._max_bytes = lines, size

    def add(self, line: bytes) -> None:
        """Keep ``line`` (without newline), forgetting the oldest lines beyond the bounds."""
        line = line[-self._max_bytes :]
        self._lines.append(line)
        self._bytes += len(line)
        while len(self._lines) > self._max_lines or self._bytes > self._max_bytes:
            self._bytes -= len(self._lines.popleft())

    def text(self) -> str:
        """Return the lines kept, newline-separated (undecodable bytes escaped)."""
        return "\n".join(line.decode(errors="backslashreplace") for line in self._lines)


class Source:
    """Who wrote a line: the fields a sink prefixes or binds, and the tail of its stderr."""

    __slots__ = ("script", "slot", "worker_id", "pid", "prefix", "dropped", "tail")

    def __init__(self, script: str, slot: int, worker_id: int, pid: int, tail: Tail | None = None) -> None:
        self.script = script
        self.slot = slot
        self.worker_id = worker_id
        self.pid = pid
        self.prefix = f"[{script} slot {slot} id {worker_id} pid {pid}] ".encode()
        #: Lines of this worker dropped since the last notice.
        self.dropped = 0
        #: The last lines of its stderr, dropped ones included.
        self.tail = Tail() if tail is None else tail


class OutputSink:
    """Write captured lines of a master's workers, whole, in the order they were read.

    `emit` never blocks (it buffers or drops); `run` is the task that writes.
    """

    def __init__(self, mode: str, log: FilteringBoundLogger, *, stdout_fd: int = 1, stderr_fd: int = 2) -> None:
        if mode not in OUTPUT_MODES:
            raise ValueError(f"not an output mode: {mode!r}")
        self._mode = mode
        #: Whether workers' stdout is captured too (with "inherit", only stderr is).
        self.captures_stdout = mode != "inherit"
        self._log = log
        self._fds = {"stdout": stdout_fd, "stderr": stderr_fd}
        self._pending: collections.deque[tuple[Source, str, bytes]] = collections.deque()
        self._pending_bytes = 0
        self._dropping: set[Source] = set()
        #: Lines dropped since the sink was made.
        self.dropped_lines = 0
        self._wake = anyio.Event()
        #: Clear while a worker thread writes a batch (a cancelled task abandons it to the thread).
        self._idle = threading.Event()
        self._idle.set()

    def emit(self, source: Source, stream: str, line: bytes) -> None:
        """Queue ``line`` (without newline) of ``source``'s ``stream``, or drop and count it."""
        if self._pending_bytes + len(line) > MAX_PENDING:
            source.dropped += 1
            self.dropped_lines += 1
            self._dropping.add(source)
            return
        self._pending.append((source, stream, line))
        self._pending_bytes += len(line)
        self._wake.set()

    async def run(self) -> None:
        """Write queued lines until cancelled; then write what is left, for a bounded time."""
        try:
            while True:
                while not self._pending and not self._dropping:
                    self._wake = anyio.Event()
                    await self._wake.wait()
                await self._write_batch()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(FLUSH_TIMEOUT):
                # a batch whose write the cancellation abandoned is still being written: let it end
                await anyio.to_thread.run_sync(self._idle.wait, abandon_on_cancel=True)
                while self._pending or self._dropping:
                    await self._write_batch()

    async def _write_batch(self) -> None:
        batch = list(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        notices = [source for source in self._dropping if source.dropped]
        self._dropping.clear()
        for source in notices:
            note = (
                f"drover-py: dropped {source.dropped} lines of worker {source.worker_id}'s output (written too slowly)"
            )
            batch.append((source, "stderr", note.encode()))
            source.dropped = 0
        claim = _Claim(self._idle)
        try:
            await anyio.to_thread.run_sync(self._write, batch, claim, abandon_on_cancel=True)
        except BaseException:
            if claim.cancel():  # no thread took the batch: keep it for the final flush
                self._pending.extendleft(reversed(batch))
                self._pending_bytes += sum(len(line) for _, _, line in batch)
            raise

    def _write(self, batch: list[tuple[Source, str, bytes]], claim: _Claim) -> None:
        if not claim.take():
            return
        try:
            self._write_lines(batch)
        finally:
            self._idle.set()

    def _write_lines(self, batch: list[tuple[Source, str, bytes]]) -> None:
        if self._mode == "log":
            for source, stream, line in batch:
                self._log.info(
                    line.decode(errors="backslashreplace"),
                    stream=stream,
                    worker_id=source.worker_id,
                    slot=source.slot,
                    pid=source.pid,
                )
            return
        chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        for source, stream, line in batch:
            chunks[stream].append((source.prefix if self._mode == "prefix" else b"") + line + b"\n")
        for stream, lines in chunks.items():
            if lines:
                _write_all(self._fds[stream], b"".join(lines))


class _Claim:
    """Who writes a batch: the worker thread (`take`, clearing ``idle``) or, once cancelled, nobody."""

    def __init__(self, idle: threading.Event) -> None:
        self._idle = idle
        self._lock = threading.Lock()
        self._state = ""

    def take(self) -> bool:
        with self._lock:
            if self._state:
                return False
            self._state = "taken"
            self._idle.clear()
            return True

    def cancel(self) -> bool:
        """Return True if no thread took the batch (and none will)."""
        with self._lock:
            if self._state:
                return False
            self._state = "cancelled"
            return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            import select

            select.select([], [fd], [])
        except OSError:
            return  # the master's own output is gone: nothing left to write to


async def read_output(fd: int, source: Source, stream: str, sink: OutputSink) -> None:
    """Read a worker's output pipe until end of file, passing whole lines to ``sink``.

    Lines of stderr are kept in ``source.tail`` too.
    """
    tail = source.tail if stream == "stderr" else None
    splitter = LineSplitter()
    os.set_blocking(fd, False)
    try:
        while True:
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                await anyio.wait_readable(fd)
                continue
            if not data:
                return
            for line in splitter.feed(data):
                sink.emit(source, stream, line)
                if tail is not None:
                    tail.add(line)
    finally:
        rest = splitter.flush()
        if rest is not None:
            sink.emit(source, stream, rest)
            if tail is not None:
                tail.add(rest)
