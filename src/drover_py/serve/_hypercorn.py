"""trio: serve an ASGI app with hypercorn on the inherited sockets, with the same drain as uvicorn's.

hypercorn's graceful shutdown stops accepting (on trio that cannot lose a connection:
an accept either completes or is cancelled) and then marks its worker context
"terminated", which closes every idle keep-alive connection at once: a request the
client is sending on one at that moment is lost. Here the context's "terminated" is
never set: after the stop, a connection closes once its next response went out with
``Connection: close`` (`Drain`) or when idle for ``keep_alive_timeout``, as at any other
time; hypercorn's ``graceful_timeout`` (our ``drain_timeout``) bounds the whole drain.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import socket
import sys
from typing import Any

import hypercorn.trio.run
import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.worker_context import EventWrapper, WorkerContext
from hypercorn.utils import wrap_app

from ._drain import ASGIApp
from ._options import ServeOptions

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup


#: What anyio and hypercorn import on a server's first start (see `_uvicorn`).
_IMPORTED_AHEAD = (
    "anyio._backends._trio",
    "hypercorn.protocol",
    "hypercorn.protocol.h11",
    "hypercorn.trio.lifespan",
    "hypercorn.trio.tcp_server",
)

for _name in _IMPORTED_AHEAD:
    with contextlib.suppress(ImportError):
        importlib.import_module(_name)


class _NeverSet(EventWrapper):
    """An event hypercorn may "set" without effect (see the module's docstring)."""

    async def set(self) -> None:
        pass


class _DrainingContext(WorkerContext):
    def __init__(self, max_requests: int | None) -> None:
        super().__init__(max_requests)
        self.terminated = _NeverSet()


hypercorn.trio.run.WorkerContext = _DrainingContext  # type: ignore[attr-defined]  # this process serves one app


class _LifespanOutcome:
    """Wrap the app: keep the message of a failed lifespan startup.

    hypercorn reports itself started even when the app's lifespan startup failed (and
    fails moments later), so readiness looks here first.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.startup_failure: str | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def watching(message: Any) -> None:
            if message["type"] == "lifespan.startup.failed":
                self.startup_failure = str(message.get("message") or "")
            await send(message)

        await self.app(scope, receive, watching)


class HypercornServer:
    """hypercorn over inherited sockets, with a readiness event and a stop."""

    def __init__(self, app: ASGIApp, options: ServeOptions, sockets: list[socket.socket]) -> None:
        config = Config()
        config.keep_alive_timeout = options.timeout_keep_alive
        config.graceful_timeout = options.drain_timeout
        config.root_path = options.root_path
        config.loglevel = options.log_level.upper() if options.log_level != "trace" else "DEBUG"
        config.accesslog = "-" if options.access_log else None
        config.errorlog = "-"
        self._config = config
        self._app = app
        self._sockets = Sockets(secure_sockets=[], insecure_sockets=sockets, quic_sockets=[])
        self._stop = trio.Event()
        self.ready = trio.Event()

    async def run_until_stopped(self) -> int:
        """Serve until `stop`; return 0, or 3 when the app could not start (after saying why)."""
        lifespan = _LifespanOutcome(self._app)
        app: Any = wrap_app(lifespan, self._config.wsgi_max_body_size, "asgi")
        serve = functools.partial(
            hypercorn.trio.run.worker_serve, app, self._config, sockets=self._sockets, shutdown_trigger=self._stop.wait
        )
        error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(serve)
                if lifespan.startup_failure is None:
                    self.ready.set()
                else:
                    nursery.cancel_scope.cancel()
        except Exception as exc:
            if self.ready.is_set():
                raise
            error = exc
        if self.ready.is_set():
            return 0
        # The lifespan startup failed: say why, the way uvicorn does (hypercorn said nothing).
        if lifespan.startup_failure:
            print(lifespan.startup_failure.rstrip(), file=sys.stderr)
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        why = f": {type(error).__name__}: {error}" if error is not None and not lifespan.startup_failure else ""
        print(f"drover-py serve: the app's lifespan startup failed{why}", file=sys.stderr, flush=True)
        return 3

    async def wait_ready(self) -> None:
        """Return once the startup (the app's lifespan startup included) completed."""
        await self.ready.wait()

    async def stop(self) -> None:
        """Stop accepting; the requests in flight finish and `run_until_stopped` returns."""
        self._stop.set()
