"""A drover-py master of COUNT HTTP workers on 127.0.0.1:PORT.

usage: preload_serve.py PORT COUNT MODE [WORKER], MODE being "exec" or "preload" (forked
from a template that imported the worker's modules), WORKER "uvicorn" (default:
uvicorn_worker.py, asyncio) or "sync" (sync_worker.py, a synchronous worker serving
wsgi_app:app with wsgiref, the stack of gunicorn's sync workers and its app). Crashed workers are restarted at once
(``RestartPolicy(delay=0)``). Prints "ready" once start() returned; SIGTERM or SIGINT ->
graceful shutdown.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio

from drover_py import MasterFactory, RestartPolicy

HERE = Path(__file__).resolve().parent
WORKER = HERE / "uvicorn_worker.py"
SYNC_WORKER = HERE / "sync_worker.py"
#: What the sync worker imports: the bus, wsgiref's server, the app gunicorn serves too.
SYNC_PRELOAD = ["drover_py", "wsgiref.simple_server", "wsgi_app"]
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


async def main(port: int, count: int, mode: str, worker: str) -> None:
    sync = worker == "sync"
    preload = (SYNC_PRELOAD if sync else PRELOAD) if mode == "preload" else False
    master = MasterFactory.create(
        script=SYNC_WORKER if sync else WORKER,
        count=count,
        env={"WSGI_APP": "wsgi_app:app", "PYTHONPATH": str(HERE)} if sync else None,
        bind=[f"127.0.0.1:{port}"],
        start_timeout=60,
        stop_timeout=10,
        kill_timeout=2,
        restart=RestartPolicy(delay=0, max_restarts=100_000, within=60.0),
        preload=preload,
    )
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with master:
            await master.start()
            print("ready", flush=True)
            async for _ in signals:
                break
            await master.graceful_shutdown()


anyio.run(main, int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "uvicorn")
