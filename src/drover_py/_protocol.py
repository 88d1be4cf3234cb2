"""The wire protocol between a master and its workers. Pure: no I/O, no event loop.

A frame is one JSON object on one line, ``{"type": "<name>"}``, terminated by ``\\n``.
The master sends "stop" and "quit"; a worker sends "started", "stopped",
"shut_down" and, when the master asked for it, "heartbeat" every few seconds. Anything else, a frame that is not a JSON object of that form, or a frame
longer than the size limit raises `ProtocolError`. After an error the decoder is
unusable: the stream has lost its framing.

This module is imported by every worker, so it stays light: the frames of the known
messages are constants matched byte for byte, and ``json`` is imported only for a
frame that does not match one (to parse it properly or to say what is wrong with it).
"""

from __future__ import annotations

from ._exceptions import ProtocolError

#: Largest frame accepted, newline included.
MAX_FRAME_SIZE = 64 * 1024

STOP = "stop"
QUIT = "quit"
STARTED = "started"
STOPPED = "stopped"
SHUT_DOWN = "shut_down"
HEARTBEAT = "heartbeat"

#: Message types a master may send to a worker.
TO_WORKER = frozenset({STOP, QUIT})
#: Message types a worker may send to its master.
TO_MASTER = frozenset({STARTED, STOPPED, SHUT_DOWN, HEARTBEAT})


def encode(message_type: str) -> bytes:
    """Return the frame for ``message_type`` (a known type: no escaping is needed)."""
    return b'{"type":"' + message_type.encode() + b'"}\n'


#: Frame (without its newline) -> message type, for the fast path of the decoder.
_KNOWN = {encode(t)[:-1]: t for t in TO_WORKER | TO_MASTER}


class Decoder:
    """Split a byte stream into messages; reject anything that is not a valid frame.

    ``allowed`` is the set of message types this side may receive.
    """

    __slots__ = ("_allowed", "_buffer", "_max_size", "_broken")

    def __init__(self, allowed: frozenset[str], max_size: int = MAX_FRAME_SIZE) -> None:
        if max_size < 2:
            raise ValueError("max_size must be at least 2 bytes")
        self._allowed = allowed
        self._max_size = max_size
        self._buffer = b""
        self._broken: ProtocolError | None = None

    @property
    def pending(self) -> int:
        """Return how many bytes of an unfinished frame are buffered."""
        return len(self._buffer)

    @property
    def error(self) -> ProtocolError | None:
        """Return the error that broke the stream, if any."""
        return self._broken

    def feed(self, data: bytes) -> list[str]:
        """Add ``data`` and return the message types of every frame it completed.

        Raise `ProtocolError` for an invalid frame. When valid frames precede the invalid
        one in ``data``, they are returned first and the error is raised by the next call
        (and kept in `error`). Once broken, every call raises.
        """
        if self._broken is not None:
            raise self._broken
        messages: list[str] = []
        try:
            self._feed(data, messages)
        except ProtocolError as exc:
            self._broken = exc
            self._buffer = b""
            if not messages:
                raise
        return messages

    def _feed(self, data: bytes, messages: list[str]) -> None:
        buffer = self._buffer + data
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            if end + 1 - start > self._max_size:
                raise ProtocolError(f"frame of {end + 1 - start} bytes exceeds the limit of {self._max_size}")
            messages.append(self._parse(buffer[start:end]))
            start = end + 1
        rest = buffer[start:]
        if len(rest) >= self._max_size:
            raise ProtocolError(f"frame exceeds the limit of {self._max_size} bytes without a newline")
        self._buffer = rest

    def _parse(self, line: bytes) -> str:
        known = _KNOWN.get(line)
        if known is not None and known in self._allowed:
            return known
        import json  # only for frames that are not the exact known bytes

        try:
            obj = json.loads(line)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProtocolError(f"malformed frame {_preview(line)}: {exc}") from None
        if not isinstance(obj, dict) or set(obj) != {"type"}:
            raise ProtocolError(f"frame {_preview(line)} is not an object with exactly the key 'type'")
        message_type = obj["type"]
        if not isinstance(message_type, str) or message_type not in self._allowed:
            raise ProtocolError(
                f"unknown message type {message_type!r} (expected one of {', '.join(sorted(self._allowed))})"
            )
        return message_type


def _preview(line: bytes, limit: int = 60) -> str:
    text = repr(line[:limit])
    return text + "..." if len(line) > limit else text

#: Environment variable carrying the child's channel: "<read fd>,<write fd>".
CHANNEL_ENV = "DROVER_PY_CHANNEL"
#: Environment variable carrying the worker's slot number (0 .. count-1).
SLOT_ENV = "DROVER_PY_SLOT"
#: Environment variable carrying the worker's id (unique within one master).
WORKER_ID_ENV = "DROVER_PY_WORKER_ID"
#: Environment variable carrying the heartbeat interval in seconds, if the master wants one.
HEARTBEAT_ENV = "DROVER_PY_HEARTBEAT"


def format_channel(read_fd: int, write_fd: int) -> str:
    """Return the value of `CHANNEL_ENV` for a child that reads ``read_fd``."""
    return f"{read_fd},{write_fd}"


def parse_channel(value: str) -> tuple[int, int]:
    """Parse a `CHANNEL_ENV` value into (read fd, write fd); raise ValueError if malformed."""
    read_text, sep, write_text = value.partition(",")
    if not sep:
        raise ValueError(f"expected '<read fd>,<write fd>', got {value!r}")
    read_fd, write_fd = int(read_text), int(write_text)
    if read_fd < 0 or write_fd < 0 or read_fd == write_fd:
        raise ValueError(f"invalid fds in {value!r}")
    return read_fd, write_fd
