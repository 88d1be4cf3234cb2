"""HTTP/1.1 over anyio byte streams with h11: one request in, one response out.

Shared by the control server and its client. Bounded: a head larger than
``MAX_HEAD`` or a body larger than the given limit is refused.
"""

from __future__ import annotations

import json

import anyio
import anyio.abc
import h11

#: Largest request or response head (request line and headers) accepted.
MAX_HEAD = 16 * 1024
_CHUNK = 64 * 1024


class TooLarge(Exception):
    """The message head or body is larger than allowed; ``status`` is 431 or 413."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Closed(Exception):
    """The peer closed the connection between messages."""


async def receive_message(
    conn: h11.Connection, stream: anyio.abc.ByteStream, max_body: int
) -> tuple[h11.Request | h11.Response, bytes]:
    """Read one whole message (head and body); raise Closed on EOF between messages.

    Raise `h11.RemoteProtocolError` for malformed bytes and `TooLarge` when the head
    exceeds ``MAX_HEAD`` or the body (announced or received) ``max_body``.
    """
    head: h11.Request | h11.Response | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive(_CHUNK)
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                data = b""
            conn.receive_data(data)
        elif isinstance(event, (h11.Request, h11.Response)):
            head = event
            size = sum(len(name) + len(value) + 4 for name, value in event.headers)
            if size + len(getattr(event, "target", b"")) > MAX_HEAD:
                raise TooLarge(431, f"request head is larger than {MAX_HEAD} bytes")
            length = dict(event.headers).get(b"content-length")
            if length is not None and int(length) > max_body:
                raise TooLarge(413, f"body of {int(length)} bytes is larger than {max_body}")
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_body:
                raise TooLarge(413, f"body is larger than {max_body} bytes")
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return head, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            raise Closed
        # h11.InformationalResponse and PAUSED are not expected here: loop on


async def send_message(
    conn: h11.Connection,
    stream: anyio.abc.ByteStream,
    head: h11.Request | h11.Response,
    body: bytes = b"",
) -> None:
    """Send a head, a body and the end of the message."""
    data = conn.send(head) or b""
    if body:
        data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send(data)


def json_body(value: object) -> bytes:
    """Return ``value`` as compact UTF-8 JSON followed by a newline."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
