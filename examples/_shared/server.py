"""The HTTP worker every example runs (simple_app, single_app_cluster, multi_app_cluster,
runtime_scaling, graceful_reload).

A worker script puts the examples folder on ``sys.path`` and calls ``server.run(name)``
from ``_shared``, which serves $RESPONSE over HTTP on trio, with hypercorn, on the
listening socket its master bound (``bind=[...]``) and every worker inherited
(`drover_py.inherited_sockets`): one accept queue for all workers, kept open by the
master across reloads, so a retiring worker loses no queued connection. A worker tells its master "started" only once it
listens, stops accepting on "stop" (answering "stopped" once open requests are done),
and exits after "quit". Each response names its worker in an ``x-worker`` header.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import cast

import anyio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import ASGIFramework

from drover_py import MessageBus, inherited_sockets

from .asgi import make_app


async def serve_app(name: str) -> None:
    response = os.environ.get("RESPONSE", f"Hello from {name}!\n").encode()
    sockets = inherited_sockets()
    if not sockets:
        sys.exit(f"{name}: no listening socket: run me from a master created with bind=[...]")
    config = Config()
    # The master owns the listener and keeps it open across reloads: hypercorn serves a
    # duplicate of its fd, and closing that on "stop" loses no queued connection.
    config.bind = [f"fd://{sock.fileno()}" for sock in sockets]
    config.loglevel = "WARNING"
    app = cast(ASGIFramework, make_app(name, response))  # hypercorn types ASGI as TypedDicts
    stop, done = anyio.Event(), anyio.Event()
    async with MessageBus() as bus:

        async def on_quit() -> None:
            await bus.send_shut_down()
            done.set()

        bus.on("stop", stop.set)
        bus.on("quit", on_quit)
        async with anyio.create_task_group() as tg:
            await tg.start(functools.partial(serve, app, config, shutdown_trigger=stop.wait))
            await bus.send_started()
        await bus.send_stopped()  # serve() returned: no longer listening, requests drained
        await done.wait()


def run(name: str) -> None:
    """Serve the app ``name`` until its master says "quit"."""
    anyio.run(serve_app, name, backend="trio")
