"""The worker of the single_app_cluster example: serve $RESPONSE over HTTP on 127.0.0.1:$PORT.

It runs on trio, with hypercorn. Every worker of a master binds the same port with
SO_REUSEPORT, so the kernel spreads connections over them. The worker tells the master
"started" only once it listens, stops accepting on "stop" (answering "stopped" once open
requests are done), and exits after "quit".
"""

from __future__ import annotations

import functools
import os
import socket
import sys

import anyio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from drover_py import MessageBus

PORT = int(os.environ.get("PORT", "1934"))
RESPONSE = os.environ.get("RESPONSE", "Hello from drover-py!\n").encode()
SLOT = os.environ.get("DROVER_PY_SLOT", "?")


async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """Answer every HTTP request with RESPONSE, naming the worker in a header."""
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
            (b"content-length", str(len(RESPONSE)).encode()),
            (b"x-worker", f"slot={SLOT} pid={os.getpid()}".encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": False})
        await send({"type": "http.response.body", "body": RESPONSE, "more_body": False})


def listen(port: int) -> socket.socket:
    """Return a listening socket on 127.0.0.1:port that other workers may bind too."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


async def main() -> None:
    try:
        sock = listen(PORT)
    except OSError as exc:
        sys.exit(f"cannot listen on 127.0.0.1:{PORT}: {exc}")
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn now owns (and closes) the socket
    config.loglevel = "WARNING"
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


if __name__ == "__main__":
    anyio.run(main, backend="trio")
