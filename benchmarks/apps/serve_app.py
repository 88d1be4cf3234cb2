"""The trivial app of the serve benchmarks: a JSON endpoint, ``{"pid": N}``, the pid in a header too.

``app`` is the ASGI app (drover-py serve, uvicorn, gunicorn's UvicornWorker, granian),
``wsgi`` the same as a plain WSGI callable, no framework (drover-py serve, gunicorn sync).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _answer() -> tuple[bytes, str]:
    pid = str(os.getpid())  # per call: a worker forked from a template has its own pid
    return json.dumps({"pid": int(pid)}).encode(), pid


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        body, pid = _answer()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-worker-pid", pid.encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body, pid = _answer()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("X-Worker-Pid", pid)]
    )
    return [body]
