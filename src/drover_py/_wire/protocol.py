"""The wire protocol between a master and its workers. Pure: no I/O, no event loop.

A frame is one JSON object on one line, ``{"type": "<name>", ...}``, terminated by
``\\n``. Lifecycle frames carry only their type: the master sends "stop" and "quit"; a
worker sends "started", "stopped", "shut_down" and, when the master asked for it,
"heartbeat" every few seconds. Conversation frames travel both ways and carry data
(`Data`): "message" (a JSON payload), "request" (id, name, payload), "response" (id and
a payload or an error) and "credit" (flow control: how many more bytes of messages and
requests the receiver has room for, ``{"type": "credit", "bytes": n}``; each decoded
frame carries its length, newline included, in `Data.size`). A worker also sends
"metrics" (what its metrics did since the last batch; see `drover_py._wire.metrics`),
decoded as a `Data` when the decoder allows it (`FROM_WORKER`). Anything else, a frame
that is not a JSON object of one of those forms, or a frame longer than the size limit
raises `ProtocolError`. After an error the decoder is unusable: the stream has lost its
framing.

This module is imported by every worker, so it stays light: the frames of the known
messages are constants matched byte for byte, and ``json`` is imported only for a
frame that does not match one (to parse it properly or to say what is wrong with it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._exceptions import ProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

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
#: A worker's metrics, worker -> master only: a `Data` whose payload is a checked
#: ``MetricsBatch`` (see `drover_py._wire.metrics` for the frame).
METRICS = "metrics"
#: What the master's decoder of a worker's channel accepts.
FROM_WORKER = TO_MASTER | {METRICS}

MESSAGE = "message"
REQUEST = "request"
RESPONSE = "response"
CREDIT = "credit"
#: Conversation frames, allowed in both directions. Each has its own keys.
_DATA_KEYS: dict[str, tuple[frozenset[str], ...]] = {
    MESSAGE: (frozenset({"type", "data"}),),
    REQUEST: (frozenset({"type", "id", "name", "data"}),),
    RESPONSE: (frozenset({"type", "id", "data"}), frozenset({"type", "id", "error"})),
    CREDIT: (frozenset({"type", "bytes"}),),
}
#: Longest request name accepted.
MAX_NAME_LENGTH = 200


class Data:
    """A decoded conversation frame: "message", "request", "response" or "credit"."""

    __slots__ = ("type", "id", "name", "payload", "error", "n", "size")

    def __init__(
        self,
        type: str,
        *,
        id: int = 0,
        name: str = "",
        payload: object = None,
        error: tuple[str, str] | None = None,
        n: int = 0,
        size: int = 0,
    ) -> None:
        self.type = type
        #: Request id, echoed by its response.
        self.id = id
        #: Name of the request (which handler answers it).
        self.name = name
        #: The JSON payload of a message, request or successful response.
        self.payload = payload
        #: (exception type name, message) of a failed response.
        self.error = error
        #: Credit granted by a "credit" frame, in bytes.
        self.n = n
        #: Length of the frame this was decoded from, newline included (what it costs in credit).
        self.size = size

    def __repr__(self) -> str:
        return f"Data({self.type!r}, id={self.id}, name={self.name!r}, payload={self.payload!r}, error={self.error!r})"


class MessageData(Data):
    """A decoded "message" frame: the same fields as `Data`, made cheaply (one per message)."""

    __slots__ = ()
    # Class-level values for what a message does not carry: only two fields are set per frame.
    type = MESSAGE
    id = 0
    name = ""
    error = None
    n = 0

    def __init__(self, payload: object, size: int) -> None:
        self.payload = payload
        self.size = size


def _scan_whole(text: str) -> object:
    """Return the JSON value that is all of ``text`` (no whitespace); raise ValueError if none is."""
    assert _Json.scan is not None
    try:
        value, end = _Json.scan(text, 0)
    except StopIteration:
        raise ValueError("no JSON value") from None
    if end != len(text):
        raise ValueError("more than one JSON value")
    return value


class _Json:
    """The json functions, made on first use: this module does not import json up front."""

    encode: Callable[[object], str] | None = None
    #: ``"".join(chunks(value, 0))`` is ``encode(value)``, one call less (for each message).
    chunks: Callable[[object, int], Sequence[str]] | None = None
    decode: Callable[[str], object] | None = None
    loads: Callable[[bytes], object] | None = None
    #: ``scan(text, 0)`` returns (value, end) for the JSON value at the start of ``text``:
    #: decode's own scanner, without its whitespace handling (frames have none).
    scan: Callable[[str, int], tuple[object, int]] | None = None

    @classmethod
    def load(cls) -> None:
        import json
        import json.encoder
        import json.scanner

        # One encoder for every frame: json.dumps with options builds a new one per call,
        # and so does JSONEncoder.encode with the C encoder inside it.
        encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
        make_c_encoder = getattr(json.encoder, "c_make_encoder", None)  # not in the type stubs
        if make_c_encoder is None:  # pragma: no cover (CPython has it)
            cls.encode = encoder.encode
            cls.chunks = lambda value, _level: (encoder.encode(value),)
        else:
            # No circular check: a cycle ends in RecursionError, which `_frame` reports.
            chunks = make_c_encoder(
                None, encoder.default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False
            )

            def encode(value: object) -> str:
                return "".join(chunks(value, 0))

            cls.encode = encode
            cls.chunks = chunks
        decoder = json.JSONDecoder()
        cls.decode = decoder.decode
        cls.scan = json.scanner.make_scanner(decoder)  # type: ignore[arg-type]  # typeshed's stub wants a scanner, not the decoder
        cls.loads = json.loads


def _encoder() -> Callable[[object], str]:
    """Return the JSON encoder, made on first use."""
    if _Json.encode is None:
        _Json.load()
        assert _Json.encode is not None
    return _Json.encode


def _frame(head: str, value: object, what: str, max_size: int) -> bytes:
    """Return ``head`` + the JSON of ``value`` + ``}\\n``, checked against ``max_size``.

    Raise TypeError if ``value`` is not JSON-serialisable, ProtocolError if the frame is
    too big. The frame is ASCII: the encoder escapes every other character.
    """
    encode = _Json.encode or _encoder()
    try:
        frame = (head + encode(value) + "}\n").encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"{what} is not JSON-serialisable: {exc}") from None
    if len(frame) > max_size:
        raise ProtocolError(f"{what} makes a frame of {len(frame)} bytes, over the limit of {max_size}")
    return frame


_MESSAGE_HEAD = b'{"type":"message","data":'
_MESSAGE_HEAD_TEXT = _MESSAGE_HEAD.decode()


def encode_message(payload: object, max_size: int = MAX_FRAME_SIZE) -> bytes:
    """Return a "message" frame; raise TypeError if ``payload`` is not JSON, ProtocolError if too big."""
    # `_frame`, inlined: this runs once per message sent.
    chunks = _Json.chunks
    if chunks is None:
        _encoder()
        chunks = _Json.chunks
        assert chunks is not None
    try:
        frame = (_MESSAGE_HEAD_TEXT + "".join(chunks(payload, 0)) + "}\n").encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"message payload is not JSON-serialisable: {exc}") from None
    if len(frame) > max_size:
        raise ProtocolError(f"message payload makes a frame of {len(frame)} bytes, over the limit of {max_size}")
    return frame


def encode_request(request_id: int, name: str, payload: object, max_size: int = MAX_FRAME_SIZE) -> bytes:
    """Return a "request" frame (see `encode_message` for the errors)."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"request name must be a non-empty str of at most {MAX_NAME_LENGTH} characters, got {name!r}")
    head = f'{{"type":"request","id":{request_id:d},"name":{(_Json.encode or _encoder())(name)},"data":'
    return _frame(head, payload, f"payload of request {name!r}", max_size)


def encode_response(request_id: int, payload: object, max_size: int = MAX_FRAME_SIZE) -> bytes:
    """Return a successful "response" frame (see `encode_message` for the errors)."""
    return _frame(f'{{"type":"response","id":{request_id:d},"data":', payload, "response", max_size)


def encode_error(request_id: int, error_type: str, message: str) -> bytes:
    """Return a failed "response" frame; a message too long for a frame is cut."""
    limit = MAX_FRAME_SIZE // 8
    if len(message) > limit:
        message = message[:limit] + "..."
    error = {"type": error_type, "message": message}
    return _frame(f'{{"type":"response","id":{request_id:d},"error":', error, "error", MAX_FRAME_SIZE)


def encode_credit(n: int) -> bytes:
    """Return a "credit" frame granting ``n`` more bytes of messages and requests."""
    return b'{"type":"credit","bytes":%d}\n' % n


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

    def feed(self, data: bytes) -> list[str | Data]:
        """Add ``data`` and return every message it completed: a lifecycle type or `Data`.

        Raise `ProtocolError` for an invalid frame. When valid frames precede the invalid
        one in ``data``, they are returned first and the error is raised by the next call
        (and kept in `error`). Once broken, every call raises.
        """
        if self._broken is not None:
            raise self._broken
        messages: list[str | Data] = []
        try:
            self._feed(data, messages)
        except ProtocolError as exc:
            self._broken = exc
            self._buffer = b""
            if not messages:
                raise
        return messages

    def _feed(self, data: bytes, messages: list[str | Data]) -> None:
        buffer = self._buffer + data
        start = 0
        last = buffer.rfind(b"\n")
        if last > buffer.find(b"\n"):  # several frames (a single one, say a response, is cheaper below)
            try:
                text = str(memoryview(buffer)[: last + 1], "ascii")
            except UnicodeDecodeError:
                pass  # non-ASCII frames are not ours: each is decoded on its own, below
            else:
                start = self._feed_ascii(text, buffer, messages)
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

    def _feed_ascii(self, text: str, buffer: bytes, messages: list[str | Data]) -> int:
        """Parse the whole frames of ``text`` (``buffer``'s, all ASCII); return where they end.

        The frames this protocol encodes are ASCII (JSON with every other character
        escaped), so a character index is a byte index, and the frames of one read are
        decoded at once. A message frame's payload is scanned in place; any other frame,
        or a message frame the scan does not take whole, goes through `_parse`.
        """
        if _Json.scan is None:
            _Json.load()
        scan = _Json.scan
        assert scan is not None
        find = text.find
        is_message = text.startswith
        head, skip = _MESSAGE_HEAD_TEXT, len(_MESSAGE_HEAD_TEXT)
        max_size = self._max_size
        append = messages.append
        start, stop = 0, len(text)
        while start < stop:
            end = find("\n", start)
            size = end + 1 - start
            if size > max_size:
                raise ProtocolError(f"frame of {size} bytes exceeds the limit of {max_size}")
            if is_message(head, start):
                try:
                    payload, after = scan(text, start + skip)
                except (StopIteration, ValueError, RecursionError):
                    after = -1
                if after == end - 1 and text[after] == "}":  # the payload, then the frame's "}"
                    append(MessageData(payload, size))
                    start = end + 1
                    continue
            append(self._parse(buffer[start:end]))
            start = end + 1
        return start

    def _parse(self, line: bytes) -> str | Data:
        known = _KNOWN.get(line)
        if known is not None and known in self._allowed:
            return known
        if _Json.decode is None:  # json, only for frames that are not the exact known bytes
            _Json.load()
        assert _Json.decode is not None and _Json.loads is not None
        if line.startswith(_MESSAGE_HEAD) and line.endswith(b"}"):
            # The usual message frame: decode just its payload. If that is not exactly one
            # JSON value, the frame is something else: the full parse below says what.
            try:
                payload = _scan_whole(line[len(_MESSAGE_HEAD) : -1].decode("utf-8", "surrogatepass"))
                return MessageData(payload, len(line) + 1)
            except (UnicodeDecodeError, ValueError, RecursionError):
                pass
        try:
            if line[:1] == b"{":  # what json.loads(line) does for UTF-8, minus its detection
                text = line.decode("utf-8", "surrogatepass")
                try:
                    obj = _scan_whole(text)
                except ValueError:  # say what is wrong the way json does
                    obj = _Json.decode(text)
            else:
                obj = _Json.loads(line)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ProtocolError(f"malformed frame {_preview(line)}: {exc}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            raise ProtocolError(f"frame {_preview(line)} is not an object with a string 'type'")
        message_type: str = obj["type"]
        if message_type in _DATA_KEYS:
            data = _parse_data(obj, line)
            data.size = len(line) + 1
            return data
        if message_type == METRICS and METRICS in self._allowed:
            from . import metrics  # here: only a master reads these frames

            return Data(METRICS, payload=metrics.parse(obj, line), size=len(line) + 1)
        if message_type not in self._allowed:
            expected = ", ".join(sorted(self._allowed | _DATA_KEYS.keys()))
            raise ProtocolError(f"unknown message type {message_type!r} (expected one of {expected})")
        if len(obj) != 1:
            raise ProtocolError(f"frame {_preview(line)}: a {message_type!r} frame has no keys but 'type'")
        return message_type


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


def _parse_data(obj: dict[str, object], line: bytes) -> Data:
    kind = str(obj["type"])
    keys = frozenset(obj)
    if keys not in _DATA_KEYS[kind]:
        expected = " or ".join(str(sorted(k)) for k in _DATA_KEYS[kind])
        raise ProtocolError(f"frame {_preview(line)}: a {kind!r} frame has the keys {expected}")
    if kind == MESSAGE:
        return MessageData(obj["data"], 0)
    if kind == CREDIT:
        n = obj["bytes"]
        if not _is_id(n) or not isinstance(n, int) or n < 1:
            raise ProtocolError(f"frame {_preview(line)}: credit must be an int >= 1")
        return Data(CREDIT, n=n)
    request_id = obj["id"]
    if not _is_id(request_id) or not isinstance(request_id, int):
        raise ProtocolError(f"frame {_preview(line)}: 'id' must be an int >= 0")
    if kind == REQUEST:
        name = obj["name"]
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
            raise ProtocolError(f"frame {_preview(line)}: 'name' must be a non-empty str")
        return Data(REQUEST, id=request_id, name=name, payload=obj["data"])
    if "error" not in obj:
        return Data(RESPONSE, id=request_id, payload=obj["data"])
    error = obj["error"]
    if (
        not isinstance(error, dict)
        or set(error) != {"type", "message"}
        or not isinstance(error["type"], str)
        or not isinstance(error["message"], str)
    ):
        raise ProtocolError(f"frame {_preview(line)}: 'error' must be {{'type': str, 'message': str}}")
    return Data(RESPONSE, id=request_id, error=(error["type"], error["message"]))


def _preview(line: bytes, limit: int = 60) -> str:
    text = repr(line[:limit])
    return text + "..." if len(line) > limit else text
