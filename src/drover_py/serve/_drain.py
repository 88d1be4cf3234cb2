"""Worker side, server-agnostic: the ASGI middleware behind a drain that loses no request.

A stopping worker must not close a keep-alive connection on which the client may be
sending a request at that very moment (the request would be lost: no peer gets this
right). Instead, once `Drain.start` was called, every response that starts from then on
carries ``Connection: close``, so the server closes that connection right after it and
the client knows not to reuse it; idle connections are left to the server's keep-alive
timeout, as at any other time. The middleware also counts the requests answered, for
``max_requests``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CLOSE = (b"connection", b"close")


class Drain:
    """Wrap an ASGI app: count its HTTP requests, and close connections once draining."""

    def __init__(self, app: ASGIApp, *, max_requests: int | None = None, on_limit: Callable[[], object] | None = None) -> None:
        self.app = app
        self.draining = False
        self.requests = 0
        self._max_requests = max_requests
        self.on_limit: Callable[[], object] | None = on_limit

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
            self.requests += 1
            if self.requests == self._max_requests and self.on_limit is not None:
                self.on_limit()
