"""A drover-py worker: `asgi_app:app` on uvicorn (asyncio), stopping without losing a connection.

The worker examples/uvicorn_app had before ``drover-py serve`` existed; the "uvicorn" row
of the reload-under-load benchmark (`reload_master.py`). Started by a master (run as
``python uvicorn_drain_worker.py``), never by hand: it serves on the
listening socket its master bound (``bind=[...]``) and handed down
(`drover_py.inherited_sockets`), and talks to the master through a `MessageBus`:

- "started" once the ASGI lifespan startup completed. The socket is already listening
  (in the master, since before this process existed), so a client that connects
  earlier waits in the accept queue rather than being refused. What can still fail is
  the application's own startup, so its completion is the honest readiness point.
- on "stop": stop accepting (`stop_accepting`), wait ``ACCEPTED_GRACE``, then
  ``server.should_exit = True``: uvicorn finishes the requests in flight, runs the
  lifespan shutdown, and ``serve()`` returns; then "stopped". uvicorn closes only this
  process's copy of the socket: the master keeps its own open, so the connections still
  queued are accepted by the other workers (or the replacement).
- on "quit": "shut_down", and the process ends.

Signals (checked by hand with uvicorn 0.54). ``uvicorn.Server.serve()`` installs its own
SIGINT/SIGTERM handlers while it runs and restores the previous ones when it returns. A
SIGTERM sent to this process directly (``kill <pid>``) therefore starts uvicorn's own
graceful drain (no new connections, in-flight requests finished, lifespan shutdown;
without the precautions of "stop" above); then uvicorn raises the signal again under
the restored default handler, so the process ends *killed by SIGTERM*, after draining
and without sending "stopped". The master reports that as ``ExitReasons.ExternalSignal``
(SIGTERM) in a ``worker-exit`` event, since it did not ask for it. When the master
itself sends SIGTERM (after a graceful stop overran ``stop_timeout``), a uvicorn still
draining just goes on draining, and the master's SIGKILL follows ``kill_timeout`` later.
A stop through the bus ends with exit code 0, reported as ``worker-retired``.

Each response names its worker in an ``x-worker-pid`` header (`asgi_app`).
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import uvicorn

from drover_py import MessageBus, inherited_sockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asgi_app import app  # noqa: E402

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Seconds between no longer accepting and uvicorn's shutdown, for the connections
#: accepted just before to deliver their requests (see ``on_stop`` in `main`).
ACCEPTED_GRACE = 0.1


def signal_ready(app: ASGIApp, ready: anyio.Event) -> ASGIApp:
    """Wrap ``app`` so that ``ready`` is set once it sent "lifespan.startup.complete"."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def lifespan_send(message: Message) -> None:
            await send(message)
            if message["type"] == "lifespan.startup.complete":
                ready.set()

        await app(scope, receive, lifespan_send)

    return wrapped


def stop_accepting(sockets: list[socket.socket]) -> None:
    """Stop accepting connections on ``sockets``, without closing anything yet.

    uvicorn's shutdown stops accepting by closing its asyncio servers, and on CPython's
    asyncio a connection accepted in the loop iteration just before such a close is
    dropped: its transport can no longer attach to the closed server, the error is
    swallowed, and the client gets a reset when the process exits
    (https://github.com/python/cpython/issues/109564). With a socket the master keeps
    open across a reload, that is a lost request now and then under load. Removing the
    listener from the event loop stops new accepts while the servers stay open, so the
    connections already accepted get their transports before uvicorn closes anything.
    """
    loop = asyncio.get_running_loop()
    for sock in sockets:
        loop.remove_reader(sock.fileno())


async def main() -> int:
    """Serve until the master says "quit"; return the exit code."""
    sockets = inherited_sockets()
    if not sockets:
        sys.exit("uvicorn_drain_worker: no listening socket: run me from a master created with bind=[...]")
    ready, stop_asked, quit_asked = anyio.Event(), anyio.Event(), anyio.Event()
    config = uvicorn.Config(signal_ready(app, ready), lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    exit_code = 0

    async with MessageBus() as mb:

        async def on_stop() -> None:
            stop_asked.set()
            stop_accepting(sockets)
            # uvicorn's shutdown closes every connection that has not delivered a request
            # yet, as if it were an idle keep-alive one; that would include a connection
            # accepted an instant ago, whose request is on its way. Give those a moment.
            await anyio.sleep(ACCEPTED_GRACE)
            server.should_exit = True  # uvicorn drains the requests in flight, and serve() returns

        # Handlers, registered before any message can arrive, rather than
        # `await mb.wait_quit()` after `send_stopped()`: a "quit" that came before this
        # task blocked in wait_quit() would get the bus's default answer instead, which
        # ends the process at once.
        mb.on("stop", on_stop)
        mb.on("quit", quit_asked.set)

        async with anyio.create_task_group() as tg:

            async def serve() -> None:
                nonlocal exit_code
                try:
                    await server.serve(sockets=sockets)
                except SystemExit as exc:  # uvicorn cannot boot: the lifespan startup failed (it logged why)
                    exit_code = exc.code if isinstance(exc.code, int) else 1
                if not ready.is_set():
                    tg.cancel_scope.cancel()  # it never will be: stop waiting for it

            tg.start_soon(serve)
            await ready.wait()
            await mb.send_started()
        # serve() returned: uvicorn no longer accepts, and its requests are done.
        if not stop_asked.is_set():
            # It ended without a "stop": it could not boot (exit code 3, which a
            # RestartPolicy's halt_codes take as final), or stopped on its own. The master
            # reports the exit.
            return exit_code
        await mb.send_stopped()
        await quit_asked.wait()
        await mb.send_shut_down()
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))  # asyncio: uvicorn runs on asyncio only
