"""asyncio only: serve an ASGI app with uvicorn on the inherited sockets (the exception to style rule 1 of docs/design.md).

`UvicornServer` is uvicorn's own `Server`, with three changes:

- readiness: ``ready`` is set once uvicorn's startup (the ASGI lifespan startup
  included) completed and its servers exist;
- stop accepting without losing a connection: the listeners are taken off the event
  loop first (`asyncio.AbstractEventLoop.remove_reader`), and uvicorn closes its servers
  only after the connections accepted just before have their transports. Closing an
  asyncio server right after an accept drops that connection (CPython issue 109564);
- idle keep-alive connections are not closed at the stop: they get their next request
  answered with ``Connection: close`` (`Drain`), or close when their keep-alive timeout
  expires, as at any other time.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from ._drain import ASGIApp
from ._options import ServeOptions

#: What uvicorn and anyio import on a server's first start, imported with this module
#: instead, so that a preload template holds them and a forked worker starts at once.
_IMPORTED_AHEAD = (
    "anyio._backends._asyncio",
    "uvicorn.lifespan.on",
    "uvicorn.loops.auto",
    "uvicorn.protocols.websockets.auto",
)

for _name in _IMPORTED_AHEAD:
    with contextlib.suppress(ImportError):  # a later version may have moved it: then the worker imports it
        importlib.import_module(_name)

#: Loop iterations between taking the listeners off the loop and closing uvicorn's
#: servers: an accepted connection gets its transport in the iteration after its accept.
_SETTLE_ITERATIONS = 3


class _KeepIdleConnections:
    """Mixin for uvicorn's HTTP protocols: a graceful stop leaves idle connections open.

    uvicorn's ``shutdown()`` closes a connection at once when no request is in flight on
    it, which loses a request the client is sending at that moment. Here it only makes
    sure the keep-alive timer runs, so the connection closes when idle for
    ``timeout_keep_alive``; a request that arrives first is answered with
    ``Connection: close`` (see `Drain`).
    """

    def shutdown(self) -> None:
        protocol: Any = self  # an instance of uvicorn's protocol too (see _protocol_class)
        cycle = protocol.cycle
        idle = cycle is None or cycle.response_complete
        if idle and protocol.timeout_keep_alive_task is None and not protocol.transport.is_closing():
            protocol.timeout_keep_alive_task = protocol.loop.call_later(
                protocol.timeout_keep_alive, protocol.timeout_keep_alive_handler
            )

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)  # type: ignore[misc]  # uvicorn's, by the MRO of _protocol_class
        protocol: Any = self
        closed: asyncio.Event | None = getattr(protocol.server_state, "drover_py_connection_lost", None)
        if closed is not None:
            closed.set()


def _protocol_class() -> type[asyncio.Protocol]:
    """Return uvicorn's HTTP protocol (httptools if installed, else h11) with `_KeepIdleConnections`."""
    base: type[asyncio.Protocol] = AutoHTTPProtocol
    return type(f"Draining{base.__name__}", (_KeepIdleConnections, base), {})


class UvicornServer(uvicorn.Server):
    """uvicorn's server over inherited sockets, with a readiness event and a safe stop."""

    def __init__(self, app: ASGIApp, options: ServeOptions, sockets: list[socket.socket]) -> None:
        config = uvicorn.Config(
            app,
            http=_protocol_class(),
            interface="asgi3",
            lifespan="auto",
            root_path=options.root_path,
            proxy_headers=options.proxy_headers,
            forwarded_allow_ips=options.forwarded_allow_ips,
            timeout_keep_alive=options.timeout_keep_alive,  # type: ignore[arg-type]  # a float works: call_later
            limit_concurrency=options.limit_concurrency,
            access_log=options.access_log,
            log_level=options.log_level,
            timeout_graceful_shutdown=max(1, int(options.drain_timeout)),
        )
        super().__init__(config)
        self.sockets = sockets
        self.ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._connection_lost = asyncio.Event()
        self.server_state.drover_py_connection_lost = self._connection_lost  # type: ignore[attr-defined]

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self.ready.set()

    async def main_loop(self) -> None:
        """uvicorn's loop (a tick every 0.1 s keeps its date header fresh), woken at once by `stop`."""
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's graceful shutdown, waiting on the connections' ends instead of polling them."""
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # see _KeepIdleConnections
        try:
            await asyncio.wait_for(self._wait_drained(), self.config.timeout_graceful_shutdown)
        except asyncio.TimeoutError:
            for task in self.server_state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _wait_drained(self) -> None:
        while self.server_state.connections and not self.force_exit:
            self._connection_lost.clear()
            await self._connection_lost.wait()
        if self.server_state.tasks and not self.force_exit:
            await asyncio.wait(list(self.server_state.tasks))

    async def run_until_stopped(self) -> int:
        """Serve until `stop`; return 0, or 3 when the app could not start (uvicorn said why)."""
        try:
            await self.serve(sockets=self.sockets)
        except SystemExit as exc:  # uvicorn gives up this way on a failed lifespan startup
            return exc.code if isinstance(exc.code, int) else 3
        return 0 if self.ready.is_set() else 3

    async def wait_ready(self) -> None:
        """Return once the startup (the app's lifespan startup included) completed."""
        await self.ready.wait()

    async def stop(self) -> None:
        """Stop accepting, then let uvicorn finish the requests in flight and return from `run_until_stopped`."""
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            loop.remove_reader(sock.fileno())
        for _ in range(_SETTLE_ITERATIONS):
            await asyncio.sleep(0)
        self.should_exit = True
        self._stopping.set()
