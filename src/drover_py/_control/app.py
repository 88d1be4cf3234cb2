"""The control API without its transport: routing, access, status codes, JSON replies."""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from typing import cast
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
from structlog.typing import FilteringBoundLogger

from .._commands import JSON, Command, CommandError
from .._exceptions import ConfigError, DroverError, ReloadError, StateError, UnknownWorkerError, WorkerStartError
from .._supervise.checks import CheckFailed
from .builtins import all_slots_started, reload_fields
from .directory import Directory, UnknownMaster
from .openapi import openapi_document
from .page import is_page_path, page_file
from .sessions import SAFE_METHODS, BadLogin, Sessions, has_csrf_header, login_key, set_cookie

#: The status of a command's failure, by the error's kind (else 500).
_STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (CheckFailed, 422),
    (CommandError, 400),
    (ConfigError, 400),
    (UnknownWorkerError, 400),
    (StateError, 409),
)

Headers = Sequence[tuple[bytes, bytes]]


class HTTPError(Exception):
    """An error reply: ``status``, a one-line ``message`` and extra headers."""

    def __init__(self, status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)

    def reply(self) -> Reply:
        return Reply(self.status, {"ok": False, "error": self.message}, tuple(self.headers))


@attrs.frozen
class Reply:
    """A JSON reply: status, body and extra headers (or ``content`` sent as is, typed by a header)."""

    status: int
    body: JSON
    headers: tuple[tuple[str, str], ...] = ()
    content: bytes | None = None


def _query(target: str) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(urlsplit(target).query, keep_blank_values=True).items()}


class ControlApp:
    """Answer control requests for the masters of ``directory``, guarded by ``access_key``."""

    def __init__(self, directory: Directory, access_key: bytes | None, log: FilteringBoundLogger) -> None:
        self._directory = directory
        self._key = access_key
        self._log = log
        #: The status page's browser sessions (see `sessions`).
        self.sessions = Sessions()

    def pick(self, name: str | None) -> str:
        """Return the master meant by ``?master=`` (`Directory.pick`), as an HTTP error if none."""
        try:
            return self._directory.pick(name)
        except UnknownMaster as exc:
            raise HTTPError(exc.status, str(exc)) from None

    def events_of(self, target: str, headers: Headers) -> str:
        """Authorize a ``GET /events`` request; return the name of the master to stream."""
        self._authorize(headers)
        return self.pick(_query(target).get("master"))

    async def reply(self, method: str, target: str, headers: Headers, body: bytes) -> Reply:
        """Answer one request (every route but ``/events``)."""
        path = unquote(urlsplit(target).path)
        try:
            query = _query(target)
            unknown = sorted(set(query) - {"master"})
            if unknown:
                raise HTTPError(400, f"unknown query parameter(s): {', '.join(unknown)}")
            if path == "/openapi.json":
                self._allow(method, "GET")
                return Reply(200, openapi_document())
            if path == "/healthz":  # for load balancers and Kubernetes probes: no key, no details
                self._allow(method, "GET")
                names = [self.pick(query["master"])] if "master" in query else list(self._directory.masters)
                healthy = all(all_slots_started(self._directory.masters[name]) for name in names)
                return Reply(200 if healthy else 503, {"healthy": healthy})
            if is_page_path(path):  # the status page: no data in it, no key needed
                self._allow(method, "GET")
                found = page_file(path)
                if found is None:
                    raise HTTPError(404, f"no file {path!r} in the status page")
                return Reply(200, None, found[1], content=found[0])
            if path in ("/login", "/logout"):
                self._allow(method, "POST")
                return self._login(headers, body) if path == "/login" else self._logout(headers)
            self._authorize(headers, method)
            reply = await self._route(method, path, query, body)
        except HTTPError as exc:
            reply = exc.reply()
        self._log.debug("control request", method=method, path=path, status=reply.status)
        return reply

    def metrics(self, method: str, query: dict[str, str]) -> Reply:
        """Answer ``GET /metrics[?master=M]``: the Prometheus text format."""
        self._allow(method, "GET")
        from .metrics import CONTENT_TYPE, exposition  # here: prometheus_client only when scraped

        masters = self._directory.masters
        if "master" in query:
            name = self.pick(query["master"])
            masters = {name: masters[name]}
        return Reply(200, None, (("content-type", CONTENT_TYPE),), content=exposition(masters))

    def public_metrics(self, method: str, target: str) -> Reply:
        """Answer a request to the key-less metrics address: ``GET /metrics``, nothing else."""
        path = unquote(urlsplit(target).path)
        try:
            if path != "/metrics":
                raise HTTPError(404, f"no route {path!r}; this address serves /metrics only")
            return self.metrics(method, _query(target))
        except HTTPError as exc:
            return exc.reply()

    def _authorize(self, headers: Headers, method: str = "GET") -> None:
        """Accept the key as a bearer token, or a session cookie (with the CSRF header if ``method`` changes state)."""
        if self._key is None:
            return
        given = b""
        for name, value in headers:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                given = value[7:].strip()
        if hmac.compare_digest(given, self._key):
            return
        if self.sessions.find(headers) is not None:
            if method in SAFE_METHODS or has_csrf_header(headers):
                return
            raise HTTPError(403, "a request signed in by cookie that changes state needs the X-Drover-CSRF header")
        raise HTTPError(401, "missing or wrong access key", [("www-authenticate", 'Bearer realm="drover-py"')])

    def _login(self, headers: Headers, body: bytes) -> Reply:
        """Check the key of ``POST /login``; on success set a session cookie."""
        try:
            given = login_key(headers, body)
        except BadLogin as exc:
            raise HTTPError(400, f"login: {exc}") from None
        if self._key is None:
            return Reply(200, {"ok": True, "message": "this server needs no key"})
        if not hmac.compare_digest(given.encode(), self._key):
            raise HTTPError(401, "wrong access key")
        cookie = set_cookie(headers, self.sessions.create(), self.sessions.ttl)
        return Reply(200, {"ok": True, "expires_in": self.sessions.ttl}, (cookie,))

    def _logout(self, headers: Headers) -> Reply:
        """End the session of ``POST /logout`` (it needs the CSRF header) and delete its cookie."""
        if not has_csrf_header(headers):
            raise HTTPError(403, "logout needs the X-Drover-CSRF header")
        token = self.sessions.find(headers)
        if token is not None:
            self.sessions.drop(token)
        return Reply(200, {"ok": True}, (set_cookie(headers, "", 0),))

    @staticmethod
    def _allow(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise HTTPError(
                405, f"method {method} not allowed here; use {' or '.join(allowed)}", [("allow", ", ".join(allowed))]
            )

    async def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> Reply:
        if path == "/metrics":
            return self.metrics(method, query)
        if path == "/masters":
            self._allow(method, "GET")
            return Reply(200, {"ok": True, "result": self._directory.describe()})
        if path == "/commands":
            self._allow(method, "GET")
            name = self.pick(query.get("master"))
            described = [c.describe() for c in self._directory.commands(name).values()]
            return Reply(200, {"ok": True, "master": name, "result": described})
        if path.startswith("/commands/"):
            command = path[len("/commands/") :]
            self._allow(method, "GET", "POST")
            if method == "POST" and "master" not in query and command in self._directory.shared:
                return await self._execute(None, self._directory.shared[command], body)  # the process's own
            name = self.pick(query.get("master"))
            commands = self._directory.commands(name)
            if command not in commands:
                raise HTTPError(404, f"unknown command {command!r}; GET /commands (or run 'help') lists them")
            if method == "GET":
                return Reply(200, {"ok": True, "master": name, "result": commands[command].describe()})
            return await self._execute(name, commands[command], body)
        raise HTTPError(404, f"no route {path!r}; see /openapi.json")

    async def _execute(self, master_name: str | None, command: Command, body: bytes) -> Reply:
        try:
            args = json.loads(body) if body.strip() else []
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPError(400, f"body is not JSON: {exc}") from None
        if not isinstance(args, (list, dict)):
            raise HTTPError(
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
            if isinstance(exc, CheckFailed):
                failed["output"] = exc.result.output  # what the check printed last
            if isinstance(exc, ReloadError) and exc.report is not None:
                failed["report"] = reload_fields(exc.report)
            return Reply(status, failed)
        except Exception as exc:
            self._log.exception("control command raised", command=command.name, master=master_name)
            return Reply(500, {"ok": False, "command": command.name, "error": f"{type(exc).__name__}: {exc}"})
        return Reply(200, {"ok": True, "command": command.name, "master": master_name, "result": cast(JSON, result)})
