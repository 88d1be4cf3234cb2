"""The web app of the deployment example: plain ASGI, counting its visits in the migrated database.

``drover-py up`` serves it as ``app = "web:app"`` (uvicorn, two workers); the table it
writes to exists because ``migrate`` ran first.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DATABASE = Path(__file__).with_name("visits.db")


def visit() -> int:
    """Record a visit; return how many there were."""
    with sqlite3.connect(DATABASE, timeout=5) as db:
        db.execute("INSERT INTO visits DEFAULT VALUES")
        (count,) = db.execute("SELECT count(*) FROM visits").fetchone()
    return int(count)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        body = f"Hello from the deployment example! {visit()} visits so far (worker pid {os.getpid()})\n".encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
