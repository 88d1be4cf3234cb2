"""Server-sent events: a master's events, as they happen, to a dashboard or ``curl -N``."""

from __future__ import annotations

import json
from collections.abc import Callable

import anyio
import anyio.abc
import h11

from .._commands import JSON
from .._exit_reasons import ExitReason
from .._status import WorkerStatus
from .._supervise.master import EVENTS, EventName, Master

#: Seconds of silence after which a comment line keeps the connection (and proxies) open.
KEEP_ALIVE = 15
#: Events buffered per client; a slower client loses events rather than holding the master up.
BUFFER = 256


def jsonable(value: object) -> JSON:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, WorkerStatus):
        return value.name
    return str(value)


def format_event(event: str, name: str, args: tuple[object, ...]) -> bytes:
    """Return one event of master ``name`` in the text/event-stream format."""
    fields: dict[str, JSON] = {"event": event, "master": name, "args": [jsonable(a) for a in args]}
    tails = [a.stderr_tail for a in args if isinstance(a, ExitReason) and a.stderr_tail]
    if tails:
        fields["stderr_tail"] = tails[0]  # the exit reason's: why the worker went
    return f"event: {event}\ndata: {json.dumps(fields)}\n\n".encode()


async def stream_events(conn: h11.Connection, stream: anyio.abc.ByteStream, master: Master, name: str) -> None:
    """Answer with the event stream of ``master`` until the client goes away."""
    send, receive = anyio.create_memory_object_stream[bytes](BUFFER)
    handlers: list[tuple[EventName, Callable[..., None]]] = []

    def forward(event: str) -> Callable[..., None]:
        def handler(*args: object) -> None:
            try:
                send.send_nowait(format_event(event, name, args))
            except anyio.WouldBlock:
                pass  # a slow reader loses events rather than holding the master up
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the client left; this handler ran as a task started before it was removed

        return handler

    for event in EVENTS:
        handlers.append((event, forward(event)))
        master.on(event, handlers[-1][1])
    try:
        head = h11.Response(
            status_code=200, headers=[("content-type", "text/event-stream"), ("cache-control", "no-store")]
        )
        await stream.send(conn.send(head) or b"")
        await stream.send(conn.send(h11.Data(data=b": connected\n\n")) or b"")
        async with receive:
            while True:
                with anyio.move_on_after(KEEP_ALIVE):
                    chunk = await receive.receive()
                    await stream.send(conn.send(h11.Data(data=chunk)) or b"")
                    continue
                await stream.send(conn.send(h11.Data(data=b": keep-alive\n\n")) or b"")
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
        pass  # the client went away
    finally:
        for event, handler in handlers:
            master.off(event, handler)
        send.close()
