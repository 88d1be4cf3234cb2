"""The app of the systemd example: plain ASGI, no framework, no import but `os`.

main.py serves it with uvicorn workers, as ``drover-py serve app:app`` does. A FastAPI or
Starlette app is served the same way.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = b"Hello from a systemd unit!\n"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Open connection pools, load models ... here: a worker counts as started (and
                # systemd hears READY=1) only once every worker's startup completed.
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(BODY)).encode()),
            (b"x-worker", f"systemd pid={os.getpid()}".encode()),  # the worker that answered
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": BODY})
