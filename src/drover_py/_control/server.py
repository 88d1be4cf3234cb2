"""The control server: an HTTP/1.1 + JSON API that commands running masters.

cluster-service's REST side: a running process is commanded from outside (``drover-py
ctl``, curl, a dashboard) over a Unix socket (mode 0600) and optionally TCP, guarded by
an access key. Routes (see ``openapi_document()``)::

    GET  /openapi.json           this API's OpenAPI document (no key needed)
    GET  /healthz[?master=M]     200 or 503 with {"healthy": bool}, for probes (no key needed)
    GET  /masters                the masters served, by name
    GET  /commands[?master=M]    help for every command
    GET  /commands/NAME          help for one command
    POST /commands/NAME          run it; body: JSON array (by position) or object (by name)
    GET  /events[?master=M]      server-sent events of worker events, for dashboards
    GET  /, /page/NAME           the status page (no data in it: no key needed)
    POST /login, /logout         the page's session cookie (see sessions.py)
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import anyio.abc
import attrs
import h11

from .._commands import JSON, Command, CommandError, H, make_command
from .._compat import exit_task_group
from .._config.binds import BindSpec, parse_bind
from .._exceptions import BindError, ConfigError
from .._log import get_logger
from .._supervise.master import Master
from .app import ControlApp, Headers, HTTPError, Reply
from .directory import Directory, Masters, name_masters
from .http import MAX_HEAD, Closed, TooLarge, json_body, receive_message, send_message
from .sse import stream_events


class ControlServer:
    """A running control server: its addresses, its masters and its lifetime.

    Built by `open_control_server`; commands reach it over HTTP (or `run`).
    """

    def __init__(
        self,
        masters: dict[str, Master],
        *,
        access_key: str | None,
        max_body: int,
        request_timeout: float,
        tg: anyio.abc.TaskGroup,
    ) -> None:
        self._log = get_logger(component="control")
        self._directory = Directory(self, masters)
        self._app = ControlApp(self._directory, None if access_key is None else access_key.encode(), self._log)
        self._max_body = max_body
        self._request_timeout = request_timeout
        self._tg = tg
        self._exit = anyio.Event()
        self._limiter = anyio.CapacityLimiter(64)
        self._inflight = 0
        self._idle = anyio.Event()
        self._idle.set()
        self.unix_path: Path | None = None
        self.tcp_address: tuple[str, int] | None = None
        #: The address serving ``GET /metrics`` without a key (``metrics_tcp``), if any.
        self.metrics_address: tuple[str, int] | None = None

    # -- introspection ------------------------------------------------------------------

    @property
    def masters(self) -> dict[str, Master]:
        """Return the masters served, by name (a copy)."""
        return dict(self._directory.masters)

    @property
    def url(self) -> str | None:
        """Return ``http://host:port`` of the TCP listener, or None without one."""
        return None if self.tcp_address is None else _http(self.tcp_address)

    @property
    def metrics_url(self) -> str | None:
        """Return ``http://host:port/metrics`` of the key-less metrics listener, or None without one."""
        return None if self.metrics_address is None else f"{_http(self.metrics_address)}/metrics"

    def add_master(self, name: str, master: Master) -> None:
        """Serve ``master`` as ``name`` too (a master started after the server opened).

        Raise `ConfigError` if a master of that name is served already.
        """
        if name in self._directory.masters:
            raise ConfigError("masters", f"a master named {name!r} is served already")
        self._directory.track(name, master)

    def remove_master(self, name: str) -> None:
        """Stop serving master ``name`` (one shut down for good); unknown names are ignored."""
        self._directory.forget(name)

    def command(self, name: str, handler: H, *, help: str | None = None) -> H:
        """Register ``handler`` as command ``name`` of the whole process; return it.

        Every master served lists it (a master's own command of that name wins, as over a
        built-in), and it also runs without naming a master (its reply's ``master`` is
        null). ``drover-py up`` adds ``reload-config`` this way.
        """
        self._directory.shared[name] = make_command(name, handler, help)
        return handler

    async def wait_exit(self) -> None:
        """Wait until the ``exit`` command ran (every master was hard-shut down)."""
        await self._exit.wait()

    # -- running commands ---------------------------------------------------------------

    def commands(self, master_name: str) -> dict[str, Command]:
        """Return the commands in effect for master ``master_name``."""
        return self._directory.commands(master_name)

    async def run(self, command: str, args: object = None, *, master: str | None = None) -> object:
        """Run ``command`` with ``args`` (list or dict) for ``master``; return its result.

        Raise `CommandError` for an unknown command, master or bad arguments.
        """
        if master is None and command in self._directory.shared:
            shared = self._directory.shared[command]
            return await shared.call(shared.bind(args))
        name = self._directory.pick(master)
        commands = self.commands(name)
        if command not in commands:
            raise CommandError(f"unknown command {command!r}; try 'help'")
        cmd = commands[command]
        return await cmd.call(cmd.bind(args))

    # -- HTTP ---------------------------------------------------------------------------

    async def _serve_connection(self, stream: anyio.abc.ByteStream, *, metrics_only: bool = False) -> None:
        try:
            async with stream, self._limiter:
                await self._serve_requests(stream, metrics_only)
        except Exception:  # a connection's trouble never reaches the server's task group
            self._log.exception("control connection failed")

    async def _serve_metrics_connection(self, stream: anyio.abc.ByteStream) -> None:
        await self._serve_connection(stream, metrics_only=True)

    async def _serve_requests(self, stream: anyio.abc.ByteStream, metrics_only: bool) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        while True:
            try:
                with anyio.fail_after(self._request_timeout):
                    request, body = await receive_message(conn, stream, self._max_body)
            except Closed:
                return
            except TimeoutError:
                if conn.their_state is h11.IDLE:
                    return  # an idle keep-alive connection: close quietly
                await self._send_error(conn, stream, HTTPError(408, "request not received in time"))
                return
            except h11.RemoteProtocolError as exc:
                await self._send_error(conn, stream, HTTPError(exc.error_status_hint, f"malformed request: {exc}"))
                return
            except TooLarge as exc:
                await self._send_error(conn, stream, HTTPError(exc.status, str(exc)))
                return
            assert isinstance(request, h11.Request)
            method, target = request.method.decode("ascii", "replace"), request.target.decode("ascii", "replace")
            if method == "GET" and urlsplit(target).path == "/events" and not metrics_only:
                await self._stream_events(conn, stream, target, request.headers)
                return
            with self._answering():
                if metrics_only:
                    reply = self._app.public_metrics(method, target)
                else:
                    reply = await self._app.reply(method, target, request.headers, body)
                await self._send(conn, stream, reply)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    @contextmanager
    def _answering(self) -> Iterator[None]:
        """Count a request being answered, so that closing lets its reply out."""
        self._inflight += 1
        if self._idle.is_set():
            self._idle = anyio.Event()
        try:
            yield
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    async def _send(self, conn: h11.Connection, stream: anyio.abc.ByteStream, reply: Reply) -> None:
        data = json_body(reply.body) if reply.content is None else reply.content
        headers = [
            *([("content-type", "application/json")] if reply.content is None else []),
            ("content-length", str(len(data))),
            ("cache-control", "no-store"),
            *reply.headers,
        ]
        with anyio.fail_after(self._request_timeout):
            await send_message(conn, stream, h11.Response(status_code=reply.status, headers=headers), data)

    async def _send_error(self, conn: h11.Connection, stream: anyio.abc.ByteStream, error: HTTPError) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        reply = Reply(error.status, {"ok": False, "error": error.message}, (("connection", "close"), *error.headers))
        try:
            await self._send(conn, stream, reply)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError, TimeoutError):
            pass

    # -- server-sent events -------------------------------------------------------------

    async def _stream_events(
        self, conn: h11.Connection, stream: anyio.abc.ByteStream, target: str, headers: Headers
    ) -> None:
        try:
            name = self._app.events_of(target, headers)
        except HTTPError as exc:
            await self._send_error(conn, stream, exc)
            return
        await stream_events(conn, stream, self._directory.masters[name], name)

    # -- built-in commands --------------------------------------------------------------

    async def _bounded(
        self, what: str, operation: Callable[[], Awaitable[dict[str, JSON] | None]], timeout: float
    ) -> dict[str, JSON]:
        """Run ``operation`` in the server's task group; wait for it at most ``timeout`` s.

        The reply says whether it is done; the fields ``operation`` returns (a ``message``
        among them, if it has a better one than "WHAT done") come with it.
        """
        done = anyio.Event()
        failure: list[Exception] = []
        result: list[dict[str, JSON] | None] = []

        async def run() -> None:
            try:
                result.append(await operation())
            except Exception as exc:  # reported to the caller, or logged if it left
                failure.append(exc)
                self._log.warning("control operation failed", operation=what, error=str(exc))
            finally:
                done.set()

        self._tg.start_soon(run, name=f"drover-py control: {what}")
        with anyio.move_on_after(timeout):
            await done.wait()
        if not done.is_set():
            return {"done": False, "message": f"{what} still running after {timeout:g} s; it goes on, see 'workers'"}
        if failure:
            raise failure[0]
        return {"done": True, "message": f"{what} done", **(result[0] or {})}

    async def _start_master(self, script: str, count: int, name: str, like: Master) -> JSON:
        """Serve a new master of ``script`` with every option of ``like`` but what is its script's own.

        Its arguments, listening sockets, title and preload module list belong to
        ``like``'s script: the new master has none of them (it preloads the new script's
        imports when ``like`` preloads).
        """
        name = name or Path(script).stem
        if name in self._directory.masters:
            raise CommandError(f"a master named {name!r} is already served; give another NAME")
        config = like.config
        new = Master(
            attrs.evolve(
                config,
                script=script,
                count=count,
                args=(),
                bind=(),
                proctitle=bool(config.proctitle),
                preload=bool(config.preload),
            )
        )
        gone = self._directory.added[name] = anyio.Event()
        self._directory.track(name, new)
        ready = anyio.Event()
        failure: list[Exception] = []

        async def run() -> None:
            try:
                async with new:
                    try:
                        await new.start()
                    finally:
                        ready.set()
                    await new.supervise()
            except Exception as exc:
                failure.append(exc)
                self._log.warning("started master failed", master=name, error=str(exc))
            finally:
                ready.set()
                self._directory.forget(name)
                gone.set()

        self._tg.start_soon(run, name=f"drover-py master {name}")
        await ready.wait()
        if failure:
            raise failure[0]
        return {"done": True, "master": name, "count": count}

    async def _close(self) -> None:
        for name in list(self._directory.added):
            master = self._directory.masters.get(name)
            if master is not None:
                await master.graceful_shutdown()
        with anyio.move_on_after(self._request_timeout):
            await self._idle.wait()  # e.g. the reply to the 'shutdown all' that ended the master


def _http(address: tuple[str, int]) -> str:
    host, port = address
    return f"http://{BindSpec('tcp', host=host, port=port)}"


async def _unix_listener(path: Path, mode: int) -> anyio.abc.SocketListener:
    try:
        existing = path.lstat()
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(existing.st_mode):
            raise BindError(f"{path}: exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            path.unlink()  # left over by a process that died: take it over
        except OSError as exc:
            raise BindError(f"{path}: {exc}") from exc
        else:
            raise BindError(f"{path}: another process is serving this control socket")
        finally:
            probe.close()
    try:
        return await anyio.create_unix_listener(path, mode=mode)
    except OSError as exc:
        raise BindError(f"cannot listen on unix:{path}: {exc}") from exc


@asynccontextmanager
async def open_control_server(
    masters: Masters,
    *,
    unix: str | os.PathLike[str] | None = None,
    tcp: str | None = None,
    access_key: str | None = None,
    unix_mode: int = 0o600,
    max_body: int = 64 * 1024,
    request_timeout: float = 10.0,
    metrics_tcp: str | None = None,
) -> AsyncIterator[ControlServer]:
    """Serve the control API for ``masters`` while the block runs.

    ``masters`` is one master, a list (each named after its script's file name), or a
    mapping of names to masters; with several, requests name theirs with
    ``?master=NAME``. Listen on the Unix socket ``unix`` (created with ``unix_mode``,
    0600 by default; a stale file is replaced, a live one raises `BindError`) and/or on
    ``tcp`` ("127.0.0.1:0" picks a port: see ``server.url``). ``access_key`` is
    required with ``tcp`` and optional for the socket; clients send it as
    ``Authorization: Bearer KEY``. Each request must arrive within ``request_timeout``
    seconds and carry at most ``max_body`` bytes. Operations started by a command
    outlive a client that disconnects; they end with the block.

    ``GET /metrics`` answers in the Prometheus text format, with the key like the rest;
    ``metrics_tcp`` ("host:port") also serves it, and nothing else, without a key, for
    scrapers (its address: ``server.metrics_address``).
    """
    named = name_masters(masters)
    if unix is None and tcp is None:
        raise ConfigError("unix", "give a Unix socket path (unix=...) and/or a TCP address (tcp=...)")
    if access_key is not None and (not isinstance(access_key, str) or not access_key):
        raise ConfigError("access_key", "expected a non-empty string")
    if tcp is not None and access_key is None:
        raise ConfigError("access_key", "an access key is required to listen on TCP")
    bind = None if tcp is None else parse_bind(tcp)
    if bind is not None and bind.kind != "tcp":
        raise ConfigError("tcp", f"expected host:port, got {tcp!r}")
    metrics_bind = None if metrics_tcp is None else parse_bind(metrics_tcp)
    if metrics_bind is not None and metrics_bind.kind != "tcp":
        raise ConfigError("metrics_tcp", f"expected host:port, got {metrics_tcp!r}")
    metrics_listener: anyio.abc.Listener[anyio.abc.SocketStream] | None = None
    listeners: list[anyio.abc.Listener[anyio.abc.SocketStream]] = []
    path = None if unix is None else Path(os.fspath(unix)).absolute()
    try:
        if path is not None:
            listeners.append(await _unix_listener(path, unix_mode))
        if bind is not None:
            try:
                listeners.append(await anyio.create_tcp_listener(local_host=bind.host, local_port=bind.port))
            except OSError as exc:
                raise BindError(f"cannot listen on {tcp}: {exc}") from exc
        if metrics_bind is not None:
            try:
                metrics_listener = await anyio.create_tcp_listener(
                    local_host=metrics_bind.host, local_port=metrics_bind.port
                )
            except OSError as exc:
                raise BindError(f"cannot listen on {metrics_tcp} (metrics): {exc}") from exc
        tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            server = ControlServer(
                named, access_key=access_key, max_body=max_body, request_timeout=request_timeout, tg=tg
            )
            server.unix_path = path
            for listener in listeners:
                address = listener.extra(anyio.abc.SocketAttribute.local_address)
                if isinstance(address, tuple):
                    server.tcp_address = (str(address[0]), int(address[1]))
                tg.start_soon(listener.serve, server._serve_connection)
            if metrics_listener is not None:
                address = metrics_listener.extra(anyio.abc.SocketAttribute.local_address)
                assert isinstance(address, tuple)
                server.metrics_address = (str(address[0]), int(address[1]))
                tg.start_soon(metrics_listener.serve, server._serve_metrics_connection)
            try:
                yield server
            finally:
                with anyio.CancelScope(shield=True):
                    await server._close()
        except BaseException as exc:
            tg.cancel_scope.cancel()
            if not await exit_task_group(tg, type(exc), exc, exc.__traceback__):
                raise
        else:
            tg.cancel_scope.cancel()
            await exit_task_group(tg, None, None, None)
    finally:
        with anyio.CancelScope(shield=True):
            for listener in [*listeners, *([metrics_listener] if metrics_listener is not None else [])]:
                await listener.aclose()
        if path is not None and listeners:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
