"""A worker that serves the master's inherited listeners: each connection gets one line,
"<pid> <slot> <NOTIFY_SOCKET in env> <LISTEN_FDS in env>", then is closed.

TEST_RECORD (optional) gets "<pid> <event> <slot>" lines like worker.py.
"""

from __future__ import annotations

import os

import anyio
from anyio.abc import SocketListener, SocketStream

from drover_py import MessageBus, inherited_sockets

RECORD = os.environ.get("TEST_RECORD")
SLOT = os.environ.get("DROVER_PY_SLOT")


def record(event: str) -> None:
    if RECORD:
        with open(RECORD, "a") as file:
            file.write(f"{os.getpid()} {event} {SLOT}\n")


async def handle(stream: SocketStream) -> None:
    async with stream:
        line = f"{os.getpid()} {SLOT} {'NOTIFY_SOCKET' in os.environ} {'LISTEN_FDS' in os.environ}\n"
        await stream.send(line.encode())


async def main() -> None:
    listeners = [await SocketListener.from_socket(sock) for sock in inherited_sockets()]
    assert listeners, "no inherited sockets"
    async with MessageBus() as mb:
        stop, done = anyio.Event(), anyio.Event()

        async def on_quit() -> None:
            await mb.send_shut_down()
            done.set()

        mb.on("stop", stop.set)
        mb.on("quit", on_quit)
        async with anyio.create_task_group() as tg:
            for listener in listeners:
                tg.start_soon(listener.serve, handle)
            record("started")
            await mb.send_started()
            await stop.wait()
            record("stop")
            tg.cancel_scope.cancel()  # stop accepting; the listener stays open in the master
        await mb.send_stopped()
        await done.wait()


anyio.run(main)
