"""A worker that serves the master's inherited listeners: each connection gets one line,
"<pid> <slot> <NOTIFY_SOCKET in env> <LISTEN_FDS in env>", then is closed.

TEST_RECORD (optional) gets "<pid> <event> <slot>" lines like worker.py.
"""

from __future__ import annotations

import os
import socket

import anyio
from anyio.abc import SocketStream, TaskGroup

from drover_py import MessageBus, inherited_sockets

RECORD = os.environ.get("TEST_RECORD")
SLOT = os.environ.get("DROVER_PY_SLOT")


def record(event: str) -> None:
    if RECORD:
        with open(RECORD, "a") as file:
            file.write(f"{os.getpid()} {event} {SLOT}\n")


async def handle(conn: socket.socket) -> None:
    stream = await SocketStream.from_socket(conn)
    async with stream:
        line = f"{os.getpid()} {SLOT} {'NOTIFY_SOCKET' in os.environ} {'LISTEN_FDS' in os.environ}\n"
        await stream.send(line.encode())


async def accept_loop(sock: socket.socket, in_flight: TaskGroup) -> None:
    """Accept until cancelled. Cancellation can only land before a connection is taken
    (in wait_readable), never between the kernel's accept and the handler, so stopping
    this loop never drops an accepted connection."""
    sock.setblocking(False)
    while True:
        await anyio.wait_readable(sock)
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            continue  # another worker took it
        in_flight.start_soon(handle, conn)


async def main() -> None:
    listeners = inherited_sockets()
    assert listeners, "no inherited sockets"
    async with MessageBus() as mb:
        stop, done = anyio.Event(), anyio.Event()

        async def on_quit() -> None:
            await mb.send_shut_down()
            done.set()

        mb.on("stop", stop.set)
        mb.on("quit", on_quit)
        async with anyio.create_task_group() as in_flight:
            async with anyio.create_task_group() as accepting:
                for listener in listeners:
                    accepting.start_soon(accept_loop, listener, in_flight)
                record("started")
                await mb.send_started()
                await stop.wait()
                record("stop")
                accepting.cancel_scope.cancel()  # stop accepting; the master keeps the listener
        await mb.send_stopped()  # every accepted connection was answered (drained)
        await done.wait()


anyio.run(main)
