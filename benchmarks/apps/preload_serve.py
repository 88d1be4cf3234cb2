"""A drover-py master of COUNT uvicorn workers (uvicorn_worker.py) on 127.0.0.1:PORT.

usage: preload_serve.py PORT COUNT MODE, MODE being "exec" or "preload" (forked from a
template that imported the worker's modules). Crashed workers are restarted at once
(``RestartPolicy(delay=0)``). Prints "ready" once start() returned; SIGTERM or SIGINT ->
graceful shutdown.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio

from drover_py import MasterFactory, RestartPolicy

WORKER = Path(__file__).resolve().parent / "uvicorn_worker.py"
#: What uvicorn_worker.py imports, including what uvicorn and anyio import lazily.
PRELOAD = [
    "anyio",
    "anyio._backends._asyncio",
    "drover_py",
    "uvicorn",
    "uvicorn.protocols.http.auto",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.lifespan.on",
    "uvicorn.loops.auto",
    "asgi_app",
]


async def main(port: int, count: int, mode: str) -> None:
    master = MasterFactory.create(
        script=WORKER,
        count=count,
        bind=[f"127.0.0.1:{port}"],
        start_timeout=60,
        stop_timeout=10,
        kill_timeout=2,
        restart=RestartPolicy(delay=0, max_restarts=100_000, within=60.0),
        preload=PRELOAD if mode == "preload" else False,
    )
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with master:
            await master.start()
            print("ready", flush=True)
            async for _ in signals:
                break
            await master.graceful_shutdown()


anyio.run(main, int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
