"""Run a master as systemd socket activation would: a listener on fd 3, LISTEN_FDS=1,
LISTEN_PID=<own pid>. Prints one JSON line: the bound port and a worker's answer.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import anyio
import structlog

from drover_py import MasterFactory

structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


def activate() -> None:
    """Put a listener on fd 3 before any event loop exists (it could own fd 3)."""
    listener = socket.create_server(("127.0.0.1", 0))
    if listener.fileno() != 3:
        os.dup2(listener.fileno(), 3, inheritable=False)
        listener.close()
    else:
        listener.detach()
    os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="http")


async def main() -> None:
    master = MasterFactory.create(script=Path(__file__).with_name("echo_worker.py"), count=1, bind=["systemd"])
    async with master:
        await master.start()
        port = master.sockets[0].getsockname()[1]
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            answer = (await stream.receive()).decode().split()
        await master.graceful_shutdown()
    print(json.dumps({"port": port, "answer": answer}), flush=True)


activate()
anyio.run(main, backend=sys.argv[1])
