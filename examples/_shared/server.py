"""The HTTP worker every example runs (simple_app, single_app_cluster, multi_app_cluster,
runtime_scaling, graceful_reload).

A worker script puts the examples folder on ``sys.path`` and calls ``server.run(name)``
from ``_shared``, which serves $RESPONSE over HTTP on 127.0.0.1:$PORT on trio, with
hypercorn. The workers of one app bind the same port with SO_REUSEPORT, so the kernel
spreads connections over them. A worker tells its master "started" only once it
listens, stops accepting on "stop" (answering "stopped" once open requests are done),
and exits after "quit". Each response names its worker in an ``x-worker`` header.
"""

from __future__ import annotations

import functools
import os
import socket
import sys

import anyio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

from drover_py import MessageBus


def make_app(name: str, response: bytes) -> ASGIFramework:
    """Return an ASGI app answering every HTTP request with ``response``."""
    slot, worker_id = os.environ.get("DROVER_PY_SLOT", "?"), os.environ.get("DROVER_PY_WORKER_ID", "?")
    worker = f"{name} id={worker_id} slot={slot} pid={os.getpid()}".encode()

    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "http":
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(response)).encode()),
                (b"x-worker", worker),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": False})
            await send({"type": "http.response.body", "body": response, "more_body": False})

    return app


def listen(port: int) -> socket.socket:
    """Return a listening socket on 127.0.0.1:port that other workers may bind too."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


async def serve_app(name: str) -> None:
    port = int(os.environ["PORT"])
    response = os.environ.get("RESPONSE", f"Hello from {name}!\n").encode()
    try:
        sock = listen(port)
    except OSError as exc:
        sys.exit(f"{name}: cannot listen on 127.0.0.1:{port}: {exc}")
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn now owns (and closes) the socket
    config.loglevel = "WARNING"
    app = make_app(name, response)
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
