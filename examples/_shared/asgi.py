"""The trivial ASGI app every example worker serves, whatever the server (no imports of it).

Answers every HTTP request with a fixed body and names the worker that answered in an
``x-worker`` header; completes the lifespan protocol at once.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

# The ASGI types, spelled out so that no server's private typing module is needed.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def make_app(name: str, response: bytes) -> ASGIApp:
    """Return an ASGI app answering every HTTP request with ``response``."""
    slot, worker_id = os.environ.get("DROVER_PY_SLOT", "?"), os.environ.get("DROVER_PY_WORKER_ID", "?")
    worker = f"{name} id={worker_id} slot={slot} pid={os.getpid()}".encode()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    # Open connection pools, load models ... here.
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "http":
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(response)).encode()),
                (b"x-worker", worker),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": response})

    return app
