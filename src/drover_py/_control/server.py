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
"""

from __future__ import annotations

import hmac
import json
import os
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import cast
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import anyio.abc
import attrs
import h11

from .._commands import JSON, Command, CommandError
from .._compat import exit_task_group
from .._config.binds import parse_bind
from .._exceptions import BindError, ConfigError, DroverError, StateError, UnknownWorkerError, WorkerStartError
from .._exit_reasons import ExitReason
from .._log import get_logger
from .._status import WorkerStatus
from .._supervise.master import EVENTS, EventName, Master
from .builtins import Builtins, all_slots_started
from .http import MAX_HEAD, Closed, TooLarge, json_body, receive_message, send_message
from .openapi import openapi_document

Masters = Master | Sequence[Master] | Mapping[str, Master]


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


@attrs.frozen
class _Reply:
    status: int
    body: JSON
    headers: tuple[tuple[str, str], ...] = ()


_STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (CommandError, 400),
    (ConfigError, 400),
    (UnknownWorkerError, 400),
    (StateError, 409),
)


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
        self._masters = masters
        self._added: dict[str, anyio.Event] = {}  # masters started by 'start SCRIPT', set once gone
        self._key = None if access_key is None else access_key.encode()
        self._max_body = max_body
        self._request_timeout = request_timeout
        self._tg = tg
        self._log = get_logger(component="control")
        self._exit = anyio.Event()
        self._starts: dict[str, dict[int, int]] = {name: {} for name in masters}
        self._builtins: dict[str, Builtins] = {}
        self._limiter = anyio.CapacityLimiter(64)
        self._inflight = 0
        self._idle = anyio.Event()
        self._idle.set()
        self.unix_path: Path | None = None
        self.tcp_address: tuple[str, int] | None = None
        for name, master in masters.items():
            self._track(name, master)

    # -- introspection ------------------------------------------------------------------

    @property
    def masters(self) -> dict[str, Master]:
        """Return the masters served, by name (a copy)."""
        return dict(self._masters)

    @property
    def url(self) -> str | None:
        """Return ``http://host:port`` of the TCP listener, or None without one."""
        if self.tcp_address is None:
            return None
        host, port = self.tcp_address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def wait_exit(self) -> None:
        """Wait until the ``exit`` command ran (every master was hard-shut down)."""
        await self._exit.wait()

    def _track(self, name: str, master: Master) -> None:
        starts = self._starts.setdefault(name, {})

        def started(worker_id: int) -> None:
            for worker in master.workers:
                if worker.id == worker_id:
                    starts[worker.slot] = starts.get(worker.slot, 0) + 1

        master.on("worker-started", started)

    # -- running commands ---------------------------------------------------------------

    def commands(self, master_name: str) -> dict[str, Command]:
        """Return the commands in effect for master ``master_name``."""
        master = self._masters[master_name]
        builtins = self._builtins.get(master_name)
        if builtins is None or builtins.master is not master:
            builtins = self._builtins[master_name] = Builtins(self, master_name, master)
        return master.commands.resolve(builtins.commands)

    async def run(self, command: str, args: object = None, *, master: str | None = None) -> object:
        """Run ``command`` with ``args`` (list or dict) for ``master``; return its result.

        Raise `CommandError` for an unknown command, master or bad arguments.
        """
        name = self._pick_master(master)
        commands = self.commands(name)
        if command not in commands:
            raise CommandError(f"unknown command {command!r}; try 'help'")
        cmd = commands[command]
        return await cmd.call(cmd.bind(args))

    def _pick_master(self, name: str | None) -> str:
        if name is None:
            if len(self._masters) == 1:
                return next(iter(self._masters))
            raise _HTTPError(400, f"several masters are served; name one with ?master= ({', '.join(self._masters)})")
        if name not in self._masters:
            raise _HTTPError(404, f"no master named {name!r}; masters: {', '.join(self._masters) or 'none'}")
        return name

    # -- HTTP ---------------------------------------------------------------------------

    async def _serve_connection(self, stream: anyio.abc.ByteStream) -> None:
        try:
            async with stream, self._limiter:
                await self._serve_requests(stream)
        except Exception:  # a connection's trouble never reaches the server's task group
            self._log.exception("control connection failed")

    async def _serve_requests(self, stream: anyio.abc.ByteStream) -> None:
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
                await self._send_error(conn, stream, _HTTPError(408, "request not received in time"))
                return
            except h11.RemoteProtocolError as exc:
                await self._send_error(conn, stream, _HTTPError(exc.error_status_hint, f"malformed request: {exc}"))
                return
            except TooLarge as exc:
                await self._send_error(conn, stream, _HTTPError(exc.status, str(exc)))
                return
            assert isinstance(request, h11.Request)
            if request.method == b"GET" and urlsplit(request.target.decode("ascii", "replace")).path == "/events":
                await self._stream_events(conn, stream, request)
                return
            with self._answering():
                reply = await self._reply(request, body)
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

    async def _send(self, conn: h11.Connection, stream: anyio.abc.ByteStream, reply: _Reply) -> None:
        data = json_body(reply.body)
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(data))),
            ("cache-control", "no-store"),
            *reply.headers,
        ]
        with anyio.fail_after(self._request_timeout):
            await send_message(conn, stream, h11.Response(status_code=reply.status, headers=headers), data)

    async def _send_error(self, conn: h11.Connection, stream: anyio.abc.ByteStream, error: _HTTPError) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        reply = _Reply(error.status, {"ok": False, "error": error.message}, (("connection", "close"), *error.headers))
        try:
            await self._send(conn, stream, reply)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError, TimeoutError):
            pass

    async def _reply(self, request: h11.Request, body: bytes) -> _Reply:
        method = request.method.decode("ascii", "replace")
        target = urlsplit(request.target.decode("ascii", "replace"))
        path = unquote(target.path)
        try:
            query = {key: values[-1] for key, values in parse_qs(target.query, keep_blank_values=True).items()}
            unknown = sorted(set(query) - {"master"})
            if unknown:
                raise _HTTPError(400, f"unknown query parameter(s): {', '.join(unknown)}")
            if path == "/openapi.json":
                self._allow(method, "GET")
                return _Reply(200, openapi_document())
            if path == "/healthz":  # for load balancers and Kubernetes probes: no key, no details
                self._allow(method, "GET")
                names = [self._pick_master(query["master"])] if "master" in query else list(self._masters)
                healthy = all(all_slots_started(self._masters[name]) for name in names)
                return _Reply(200 if healthy else 503, {"healthy": healthy})
            self._authorize(request)
            reply = await self._route(method, path, query, body)
        except _HTTPError as exc:
            reply = _Reply(exc.status, {"ok": False, "error": exc.message}, tuple(exc.headers))
        self._log.debug("control request", method=method, path=path, status=reply.status)
        return reply

    def _authorize(self, request: h11.Request) -> None:
        if self._key is None:
            return
        given = b""
        for name, value in request.headers:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                given = value[7:].strip()
        if not hmac.compare_digest(given, self._key):
            raise _HTTPError(401, "missing or wrong access key", [("www-authenticate", 'Bearer realm="drover-py"')])

    @staticmethod
    def _allow(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise _HTTPError(
                405, f"method {method} not allowed here; use {' or '.join(allowed)}", [("allow", ", ".join(allowed))]
            )

    async def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> _Reply:
        if path == "/masters":
            self._allow(method, "GET")
            return _Reply(200, {"ok": True, "result": [self._describe_master(n, m) for n, m in self._masters.items()]})
        if path == "/commands":
            self._allow(method, "GET")
            name = self._pick_master(query.get("master"))
            return _Reply(
                200, {"ok": True, "master": name, "result": [c.describe() for c in self.commands(name).values()]}
            )
        if path.startswith("/commands/"):
            command = path[len("/commands/") :]
            self._allow(method, "GET", "POST")
            name = self._pick_master(query.get("master"))
            commands = self.commands(name)
            if command not in commands:
                raise _HTTPError(404, f"unknown command {command!r}; GET /commands (or run 'help') lists them")
            if method == "GET":
                return _Reply(200, {"ok": True, "master": name, "result": commands[command].describe()})
            return await self._execute(name, commands[command], body)
        raise _HTTPError(404, f"no route {path!r}; see /openapi.json")

    async def _execute(self, master_name: str, command: Command, body: bytes) -> _Reply:
        try:
            args = json.loads(body) if body.strip() else []
        except (ValueError, UnicodeDecodeError) as exc:
            raise _HTTPError(400, f"body is not JSON: {exc}") from None
        if not isinstance(args, (list, dict)):
            raise _HTTPError(
                400, f"{command.name}: arguments must be a JSON array or object, got {json.dumps(args)[:40]}"
            )
        try:
            kwargs = command.bind(args)
            result = await command.call(kwargs)
            json.dumps(result)  # a result that is not JSON is the handler's error (500)
        except DroverError as exc:
            status = next((code for kind, code in _STATUS_OF if isinstance(exc, kind)), 500)
            failed: dict[str, JSON] = {"ok": False, "command": command.name, "error": str(exc)}
            if isinstance(exc, WorkerStartError) and exc.stderr_tail:
                failed["stderr_tail"] = exc.stderr_tail  # what the failed worker said last
            return _Reply(status, failed)
        except Exception as exc:
            self._log.exception("control command raised", command=command.name, master=master_name)
            return _Reply(500, {"ok": False, "command": command.name, "error": f"{type(exc).__name__}: {exc}"})
        return _Reply(200, {"ok": True, "command": command.name, "master": master_name, "result": cast(JSON, result)})

    def _describe_master(self, name: str, master: Master) -> dict[str, JSON]:
        return {
            "name": name,
            "script": str(master.config.script),
            "count": master.config.count,
            "started": master.started_count,
        }

    # -- server-sent events -------------------------------------------------------------

    async def _stream_events(self, conn: h11.Connection, stream: anyio.abc.ByteStream, request: h11.Request) -> None:
        try:
            self._authorize(request)
            query = {k: v[-1] for k, v in parse_qs(urlsplit(request.target.decode("ascii", "replace")).query).items()}
            name = self._pick_master(query.get("master"))
        except _HTTPError as exc:
            await self._send_error(conn, stream, exc)
            return
        master = self._masters[name]
        send, receive = anyio.create_memory_object_stream[bytes](256)
        handlers: list[tuple[EventName, Callable[..., None]]] = []

        def forward(event: str) -> Callable[..., None]:
            def handler(*args: object) -> None:
                fields: dict[str, JSON] = {"event": event, "master": name, "args": [_jsonable(a) for a in args]}
                tails = [a.stderr_tail for a in args if isinstance(a, ExitReason) and a.stderr_tail]
                if tails:
                    fields["stderr_tail"] = tails[0]  # the exit reason's: why the worker went
                data = json.dumps(fields)
                try:
                    send.send_nowait(f"event: {event}\ndata: {data}\n\n".encode())
                except anyio.WouldBlock:
                    pass  # a slow reader loses events rather than holding the master up

            return handler

        for event in EVENTS:
            handlers.append((event, forward(event)))
            master.on(event, handlers[-1][1])
        try:
            head = h11.Response(
                status_code=200, headers=[("content-type", "text/event-stream"), ("cache-control", "no-store")]
            )
            await stream.send(conn.send(head) or b"")
            await stream.send(conn.send(h11.Data(data=b": connected\n\n")) or b"")
            async with receive:
                while True:
                    with anyio.move_on_after(15):
                        chunk = await receive.receive()
                        await stream.send(conn.send(h11.Data(data=chunk)) or b"")
                        continue
                    await stream.send(conn.send(h11.Data(data=b": keep-alive\n\n")) or b"")
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
            pass  # the client went away
        finally:
            for event, handler in handlers:
                master.off(event, handler)
            send.close()

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
        if name in self._masters:
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
        self._masters[name] = new
        gone = self._added[name] = anyio.Event()
        self._track(name, new)
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
                self._masters.pop(name, None)
                self._added.pop(name, None)
                self._starts.pop(name, None)
                self._builtins.pop(name, None)
                gone.set()

        self._tg.start_soon(run, name=f"drover-py master {name}")
        await ready.wait()
        if failure:
            raise failure[0]
        return {"done": True, "master": name, "count": count}

    async def _close(self) -> None:
        for name in list(self._added):
            master = self._masters.get(name)
            if master is not None:
                await master.graceful_shutdown()
        with anyio.move_on_after(self._request_timeout):
            await self._idle.wait()  # e.g. the reply to the 'shutdown all' that ended the master


def _jsonable(value: object) -> JSON:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, WorkerStatus):
        return value.name
    return str(value)


def _name_masters(masters: Masters) -> dict[str, Master]:
    if isinstance(masters, Master):
        masters = [masters]
    if isinstance(masters, Mapping):
        named = dict(masters)
    else:
        named = {}
        for master in masters:
            name = master.config.script.stem
            if name in named:
                raise ConfigError("masters", f"two masters run {name!r}: pass a mapping of names to masters")
            named[name] = master
    if not named:
        raise ConfigError("masters", "at least one master is needed")
    for name, master in named.items():
        if not isinstance(master, Master):
            raise ConfigError("masters", f"{name!r} is not a Master: {master!r}")
    return named


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
    """
    named = _name_masters(masters)
    if unix is None and tcp is None:
        raise ConfigError("unix", "give a Unix socket path (unix=...) and/or a TCP address (tcp=...)")
    if access_key is not None and (not isinstance(access_key, str) or not access_key):
        raise ConfigError("access_key", "expected a non-empty string")
    if tcp is not None and access_key is None:
        raise ConfigError("access_key", "an access key is required to listen on TCP")
    bind = None if tcp is None else parse_bind(tcp)
    if bind is not None and bind.kind != "tcp":
        raise ConfigError("tcp", f"expected host:port, got {tcp!r}")
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
            for listener in listeners:
                await listener.aclose()
        if path is not None and listeners:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
