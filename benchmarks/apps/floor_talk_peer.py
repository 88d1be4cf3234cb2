"""The answering side of the request floors in bench_talk.py (see benchmarks/_request_floor.py).

usage: floor_talk_peer.py BACKEND IMPL, with BENCH_CHANNEL="<read fd>,<write fd>".
Answers every request line ``{"type":"request","id":N,"name":...,"payload":P}`` with
``{"type":"response","id":N,"result":P}``, in the task that read it, until end of stream.

IMPL "anyio": the least an anyio program can do: ``os.read`` after `anyio.wait_readable`,
``json``, ``os.write``. IMPL "native" (asyncio only): the fd stays registered with
``loop.add_reader`` and requests are answered inside the selector's callback, which
only a program that talks to asyncio directly can do.
"""

from __future__ import annotations

import json
import os
import sys


def answer(data: bytes, pending: bytearray, write_fd: int) -> None:
    """Answer every whole line of ``pending + data``; keep the unterminated rest in ``pending``."""
    pending += data
    *lines, rest = bytes(pending).split(b"\n")
    del pending[:]
    pending += rest
    out = []
    for line in lines:
        request = json.loads(line)
        out.append(json.dumps({"type": "response", "id": request["id"], "result": request["payload"]}).encode() + b"\n")
    if out:
        os.write(write_fd, b"".join(out))  # small: a pipe takes it whole


async def serve_anyio(read_fd: int, write_fd: int) -> None:
    import anyio

    pending = bytearray()
    while True:
        try:
            data = os.read(read_fd, 65536)
        except BlockingIOError:
            await anyio.wait_readable(read_fd)
            continue
        if not data:
            return
        answer(data, pending, write_fd)


async def serve_native(read_fd: int, write_fd: int) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    done = loop.create_future()
    pending = bytearray()

    def on_readable() -> None:
        try:
            data = os.read(read_fd, 65536)
        except BlockingIOError:
            return
        if not data:
            loop.remove_reader(read_fd)
            done.set_result(None)
            return
        answer(data, pending, write_fd)

    loop.add_reader(read_fd, on_readable)
    await done


def main() -> None:
    backend, impl = sys.argv[1], sys.argv[2]
    read_fd, write_fd = (int(x) for x in os.environ["BENCH_CHANNEL"].split(","))
    os.set_blocking(read_fd, False)
    if impl == "native":
        import asyncio

        asyncio.run(serve_native(read_fd, write_fd))
    else:
        import anyio

        anyio.run(serve_anyio, read_fd, write_fd, backend=backend)


main()
