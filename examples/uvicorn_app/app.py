"""The app of the uvicorn_app example: plain ASGI, no framework, no import but `os`.

Serve it with ``drover-py serve app:app -w 2 --bind 127.0.0.1:2400`` from this folder,
or with ``python main.py`` (the same, from Python). A FastAPI or Starlette app is
served the same way.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = b"Hello from uvicorn_app!\n"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Open connection pools, load models ... here: a worker counts as started
                # (and a reload moves on to the next one) only once this completed.
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(BODY)).encode()),
            # The pid of the worker that answered (read per request: with --preload the
            # module is imported once, in the template the workers are forked from).
            (b"x-worker", f"uvicorn_app pid={os.getpid()}".encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": BODY})
