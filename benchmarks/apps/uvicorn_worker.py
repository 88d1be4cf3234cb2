"""A drover-py worker serving `asgi_app:app` with uvicorn's server.

It serves the listening socket its master bound (``bind=[...]``) and every worker
inherited. It says "started" once uvicorn has started (listening, lifespan done), stops
serving on "stop" and exits after "quit". This is the same server stack as
``uvicorn --workers N``, on one shared socket as there; only the supervisor differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import uvicorn

from drover_py import MessageBus, inherited_sockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asgi_app import app  # noqa: E402


async def main() -> None:
    sockets = inherited_sockets()
    if not sockets:
        sys.exit("uvicorn_worker: no listening socket; run me from a master created with bind=[...]")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    async with MessageBus() as bus:
        stop = anyio.Event()
        bus.on("stop", stop.set)
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, sockets)
            with anyio.fail_after(30):
                while not server.started:
                    await anyio.sleep(0.002)
            await bus.send_started()
            await stop.wait()
            server.should_exit = True
        await bus.send_stopped()
        await bus.wait_quit()
        await bus.send_shut_down()


anyio.run(main)
