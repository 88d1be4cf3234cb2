"""The loopback proxy of ``drover-py ctl open``: the status page for a browser, whatever the server.

A browser cannot speak to a Unix socket, and should not be handed the access key. The
proxy listens on 127.0.0.1 (a random port) and forwards to the control server the way
``ctl`` reaches it (socket or URL, with the key). It is not an open door for the other
users of the machine: it serves the page's files to anyone (they hold no data), but
forwards any other request only when it carries the proxy's own session cookie, and only
then adds the key. That cookie comes from ``POST /login`` with the one-time token that
``ctl open`` puts in the URL's fragment (which browsers never send, so it lands in no
log), or with the server's own key. As on the server, a request that changes state needs
the ``X-Drover-CSRF`` header too.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import anyio
import anyio.abc
import h11

from .._commands import JSON
from .._log import get_logger
from .client import ControlClient, ControlConnectError
from .http import MAX_HEAD, Closed, TooLarge, json_body, receive_message, send_message
from .page import is_page_path
from .sessions import SAFE_METHODS, BadLogin, Sessions, has_csrf_header, login_key, set_cookie

#: Request headers not passed on: the browser's cookies and credentials, and hop-by-hop ones.
_DROPPED = {
    b"cookie",
    b"authorization",
    b"host",
    b"connection",
    b"keep-alive",
    b"content-length",
    b"transfer-encoding",
    b"te",
}
#: Response headers not passed back (h11 frames the reply to the browser itself).
_HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding"}
_MAX_BODY = 64 * 1024
_REQUEST_TIMEOUT = 10.0


class PageProxy:
    """A running ``ctl open`` proxy: its ``url`` (one-time sign-in link) and its sessions."""

    def __init__(self, upstream: ControlClient, address: tuple[str, int]) -> None:
        self._upstream = upstream
        self._token: str | None = secrets.token_urlsafe(32)
        self._log = get_logger(component="page-proxy")
        self._limiter = anyio.CapacityLimiter(64)
        #: The browser sessions signed in through this proxy.
        self.sessions = Sessions()
        #: Set once the one-time link was used.
        self.link_used = anyio.Event()
        host, port = address
        #: Where the proxy listens, e.g. ``http://127.0.0.1:45123``.
        self.base_url = f"http://{host}:{port}"
        #: The page with the one-time sign-in token in its fragment.
        self.url = f"{self.base_url}/#login={self._token}"

    def _check_login(self, given: str) -> bool:
        """Return whether ``given`` is the unused one-time token (using it up) or the server's key."""
        if self._token is not None and hmac.compare_digest(given.encode(), self._token.encode()):
            self._token = None
            self.link_used.set()
            return True
        key = self._upstream.key
        return key is not None and hmac.compare_digest(given.encode(), key.encode())

    async def _serve_connection(self, stream: anyio.abc.ByteStream) -> None:
        try:
            async with stream, self._limiter:
                conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
                while True:
                    try:
                        with anyio.fail_after(_REQUEST_TIMEOUT):
                            request, body = await receive_message(conn, stream, _MAX_BODY)
                    except (Closed, TimeoutError, h11.RemoteProtocolError, TooLarge):
                        return
                    assert isinstance(request, h11.Request)
                    await self._answer(conn, stream, request, body)
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        return
                    conn.start_next_cycle()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError, h11.LocalProtocolError):
            pass  # the browser went away
        except Exception:
            self._log.exception("page proxy connection failed")

    async def _answer(
        self, conn: h11.Connection, stream: anyio.abc.ByteStream, request: h11.Request, body: bytes
    ) -> None:
        method = request.method.decode("ascii", "replace")
        path = urlsplit(request.target.decode("ascii", "replace")).path
        headers = request.headers
        if path == "/login" and method == "POST":
            try:
                given = login_key(headers, body)
            except BadLogin as exc:
                return await _reply(conn, stream, 400, {"ok": False, "error": f"login: {exc}"})
            if not self._check_login(given):
                return await _reply(conn, stream, 401, {"ok": False, "error": "wrong or used sign-in token"})
            cookie = set_cookie(headers, self.sessions.create(), self.sessions.ttl)
            return await _reply(conn, stream, 200, {"ok": True, "expires_in": self.sessions.ttl}, [cookie])
        if path == "/logout" and method == "POST":
            if not has_csrf_header(headers):
                return await _reply(conn, stream, 403, {"ok": False, "error": "logout needs the X-Drover-CSRF header"})
            token = self.sessions.find(headers)
            if token is not None:
                self.sessions.drop(token)
            return await _reply(conn, stream, 200, {"ok": True}, [set_cookie(headers, "", 0)])
        if not is_page_path(path):
            if self.sessions.find(headers) is None:
                error = "sign in through the link drover-py ctl open printed"
                return await _reply(conn, stream, 401, {"ok": False, "error": error})
            if method not in SAFE_METHODS and not has_csrf_header(headers):
                error = "a request that changes state needs the X-Drover-CSRF header"
                return await _reply(conn, stream, 403, {"ok": False, "error": error})
        await self._forward(conn, stream, request, body, with_key=not is_page_path(path))

    async def _forward(
        self, conn: h11.Connection, stream: anyio.abc.ByteStream, request: h11.Request, body: bytes, *, with_key: bool
    ) -> None:
        """Send the request on to the control server; stream its reply back (``/events`` never ends)."""
        headers = [(name, value) for name, value in request.headers if name not in _DROPPED]
        headers += [(b"content-length", str(len(body)).encode()), (b"connection", b"close")]
        if with_key and self._upstream.key:
            headers.append((b"authorization", f"Bearer {self._upstream.key}".encode()))
        try:
            with anyio.fail_after(self._upstream.timeout):
                upstream, host = await self._upstream._connect()
        except (ControlConnectError, TimeoutError) as exc:
            return await _reply(conn, stream, 502, {"ok": False, "error": f"control server: {exc}"})
        async with upstream:
            up = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
            head = h11.Request(
                method=request.method, target=request.target, headers=[(b"host", host.encode()), *headers]
            )
            try:
                with anyio.fail_after(self._upstream.timeout):
                    await send_message(up, upstream, head, body)
                    response = await read_event(up, upstream)
            except (TimeoutError, OSError, anyio.BrokenResourceError, h11.ProtocolError, Closed) as exc:
                return await _reply(conn, stream, 502, {"ok": False, "error": f"control server: {exc or 'no reply'}"})
            if not isinstance(response, h11.Response):
                return await _reply(conn, stream, 502, {"ok": False, "error": "control server: no reply"})
            kept = [(name, value) for name, value in response.headers if name not in _HOP_BY_HOP]
            await stream.send(conn.send(h11.Response(status_code=response.status_code, headers=kept)) or b"")
            while True:  # the body, as it comes: an event stream is relayed event by event
                try:
                    event = await read_event(up, upstream)
                except (OSError, anyio.BrokenResourceError, h11.ProtocolError, Closed):
                    return  # the server went away mid-reply: so does the browser's connection
                if isinstance(event, h11.Data):
                    await stream.send(conn.send(event) or b"")
                elif isinstance(event, h11.EndOfMessage):
                    await stream.send(conn.send(h11.EndOfMessage()) or b"")
                    return
                else:
                    return


async def read_event(conn: h11.Connection, stream: anyio.abc.ByteStream) -> h11.Event | type[h11.PAUSED]:
    """Return the next event of ``conn``, reading from ``stream`` as needed; raise `Closed` at its end."""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.ConnectionClosed):
            raise Closed
        if event is not h11.NEED_DATA:
            return event  # type: ignore[return-value]  # h11 types its sentinels loosely
        try:
            data = await stream.receive()
        except anyio.EndOfStream:
            data = b""
        conn.receive_data(data)


async def _reply(
    conn: h11.Connection,
    stream: anyio.abc.ByteStream,
    status: int,
    body: JSON,
    headers: list[tuple[str, str]] | None = None,
) -> None:
    data = json_body(body)
    head = h11.Response(
        status_code=status,
        headers=[
            ("content-type", "application/json"),
            ("content-length", str(len(data))),
            ("cache-control", "no-store"),
            *(headers or []),
        ],
    )
    await send_message(conn, stream, head, data)


@asynccontextmanager
async def open_page_proxy(upstream: ControlClient, *, port: int = 0) -> AsyncIterator[PageProxy]:
    """Serve the status page of the control server ``upstream`` reaches on 127.0.0.1:``port`` (0: any)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
    async with listener, anyio.create_task_group() as tg:
        address = listener.extra(anyio.abc.SocketAttribute.local_address)
        assert isinstance(address, tuple)
        proxy = PageProxy(upstream, (str(address[0]), int(address[1])))
        tg.start_soon(listener.serve, proxy._serve_connection)
        try:
            yield proxy
        finally:
            tg.cancel_scope.cancel()
