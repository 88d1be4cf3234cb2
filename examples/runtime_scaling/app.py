"""The worker of every app of the runtime_scaling example: a plain ASGI app, served by hypercorn on trio.

main.py starts it with ``bind=[...]``: the master owns the listening socket and every
worker inherits it (`drover_py.inherited_sockets`), so all workers accept from one queue,
which the master keeps open across reloads. The worker tells its master "started" once
it listens; on "stop" it stops accepting and answers "stopped" once its open requests
are done; on "quit" it answers "shut_down" and exits. Its argument is the app's name.
"""

from __future__ import annotations

import functools
import os
import sys

import anyio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from drover_py import MessageBus, inherited_sockets

NAME = sys.argv[1] if len(sys.argv) > 1 else "app"  # main.py runs "app.py foo" for the app foo
BODY = f"Hello from {NAME}!\n".encode()
# Which worker answered (its id and slot come from the master), for the x-worker header.
WORKER = f"{NAME} id={os.environ.get('DROVER_PY_WORKER_ID')} slot={os.environ.get('DROVER_PY_SLOT')} pid={os.getpid()}"


async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Open connection pools, load models ... here.
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(BODY)).encode()),
            (b"x-worker", WORKER.encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": BODY, "more_body": False})


async def main() -> None:
    sockets = inherited_sockets()
    if not sockets:
        sys.exit(f"{NAME}: no listening socket: run me from a master created with bind=[...] (main.py)")
    config = Config()
    # hypercorn serves a duplicate of each inherited socket: closing it on "stop" leaves the
    # master's listener, and the connections queued on it, to the other workers.
    config.bind = [f"fd://{sock.fileno()}" for sock in sockets]
    config.loglevel = "WARNING"
    async with MessageBus() as bus:
        async with anyio.create_task_group() as tg:
            # start() returns once hypercorn listens; serve() returns once "stop" came and
            # the open requests are done.
            await tg.start(functools.partial(serve, app, config, shutdown_trigger=bus.wait_stop))
            await bus.send_started()
        await bus.send_stopped()
        await bus.wait_quit()
        await bus.send_shut_down()


if __name__ == "__main__":
    anyio.run(main, backend="trio")
