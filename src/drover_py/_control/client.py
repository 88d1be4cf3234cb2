"""A small client of the control API: one request per connection, JSON in and out."""

from __future__ import annotations

import json
import os
from urllib.parse import quote, urlencode, urlsplit

import anyio
import anyio.abc
import attrs
import h11

from .._commands import JSON
from .._exceptions import DroverError
from .http import MAX_HEAD, Closed, TooLarge, json_body, receive_message, send_message

#: Largest reply accepted (a `workers` listing of thousands of workers fits).
MAX_REPLY = 16 * 1024 * 1024


class ControlConnectError(DroverError):
    """The control server cannot be reached (no socket, connection refused, timeout)."""


@attrs.frozen
class ControlReply:
    """One answer of the control server."""

    status: int
    body: JSON

    @property
    def ok(self) -> bool:
        """Return whether the command succeeded (status 200)."""
        return self.status == 200

    @property
    def error(self) -> str:
        """Return the server's one-line reason, or "" for a success."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), str):
            return str(self.body["error"])
        return "" if self.ok else f"HTTP {self.status}"


@attrs.frozen
class ControlClient:
    """Where a control server listens (``unix`` path or ``url``) and the key to send."""

    unix: str | None = None
    url: str | None = None
    key: str | None = attrs.field(default=None, repr=False)
    timeout: float = 120.0

    async def _connect(self) -> tuple[anyio.abc.ByteStream, str]:
        try:
            if self.url is not None:
                parts = urlsplit(self.url)
                if parts.scheme != "http" or parts.hostname is None:
                    raise ControlConnectError(f"expected a URL such as http://127.0.0.1:9000, got {self.url!r}")
                port = parts.port or 80
                return await anyio.connect_tcp(parts.hostname, port), f"{parts.hostname}:{port}"
            path = self.unix or "drover-py.sock"
            return await anyio.connect_unix(path), "localhost"
        except OSError as exc:
            where = self.url or os.path.abspath(self.unix or "drover-py.sock")
            raise ControlConnectError(f"cannot connect to {where}: {exc.strerror or exc}") from exc

    async def request(self, method: str, path: str, body: JSON = None, *, master: str | None = None) -> ControlReply:
        """Send one request; return the status and the decoded JSON body.

        Raise `ControlConnectError` when the server cannot be reached or does not answer
        within ``timeout`` seconds.
        """
        if master is not None:
            path += "?" + urlencode({"master": master})
        data = b"" if body is None else json_body(body)
        headers = [("host", "localhost"), ("content-length", str(len(data))), ("connection", "close")]
        if data:
            headers.append(("content-type", "application/json"))
        if self.key:
            headers.append(("authorization", f"Bearer {self.key}"))
        try:
            with anyio.fail_after(self.timeout):
                stream, host = await self._connect()
                headers[0] = ("host", host)
                async with stream:
                    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
                    await send_message(conn, stream, h11.Request(method=method, target=path, headers=headers), data)
                    response, payload = await receive_message(conn, stream, MAX_REPLY)
        except TimeoutError:
            raise ControlConnectError(f"no answer within {self.timeout:g} s") from None
        except (Closed, h11.ProtocolError, TooLarge, anyio.BrokenResourceError, OSError) as exc:
            raise ControlConnectError(
                f"the control server did not answer properly: {exc or type(exc).__name__}"
            ) from exc
        assert isinstance(response, h11.Response)
        try:
            decoded: JSON = json.loads(payload) if payload.strip() else None
        except ValueError:
            decoded = {"ok": False, "error": payload.decode("utf-8", "replace")[:200]}
        return ControlReply(response.status_code, decoded)

    async def run(self, command: str, args: JSON = None, *, master: str | None = None) -> ControlReply:
        """Run ``command`` with ``args`` (a list by position or a dict by name)."""
        return await self.request("POST", "/commands/" + quote(command, safe=""), args, master=master)
