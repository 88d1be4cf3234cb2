"""Worker side, server-agnostic: the ASGI middleware behind a drain that loses no request.

A stopping worker must not close a keep-alive connection on which the client may be
sending a request at that very moment (the request would be lost: no peer gets this
right). Instead, once `Drain.start` was called, every response that starts from then on
carries ``Connection: close``, so the server closes that connection right after it and
the client knows not to reuse it; idle connections are left to the server's keep-alive
timeout, as at any other time. `RequestLimit` counts the requests answered, for
``max_requests`` (the ASGI middleware here, and waitress's WSGI wrapper, feed it).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CLOSE = (b"connection", b"close")


class RequestLimit:
    """Count the requests answered (from any thread); call ``on_limit`` once at ``limit``."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.count = 0
        #: Called, once, by the request that reaches ``limit``.
        self.on_limit: Callable[[], object] | None = None
        self._lock = threading.Lock()

    def add(self) -> None:
        """Count one answered request."""
        with self._lock:
            self.count += 1
            reached = self.count == self.limit
        if reached and self.on_limit is not None:
            self.on_limit()


class Drain:
    """Wrap an ASGI app: count its HTTP requests in ``served``, and close connections once draining."""

    def __init__(self, app: ASGIApp, served: RequestLimit) -> None:
        self.app = app
        self.draining = False
        self.served = served

    def start(self) -> None:
        """Answer every response from now on with ``Connection: close``."""
        self.draining = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.draining:
                headers = [h for h in message.get("headers", ()) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, CLOSE]}
            await send(message)

        try:
            await self.app(scope, receive, send_closing)
        finally:
            self.served.add()
