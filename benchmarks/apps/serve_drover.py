"""A drover-py master of COUNT HTTP workers on 127.0.0.1:PORT, run as its own process.

usage: serve_drover.py PORT COUNT WORKER, WORKER being "hypercorn" (the
examples/single_app_cluster worker: hypercorn on trio) or "uvicorn" (uvicorn_worker.py).
The master owns the listening socket (``bind``) and every worker inherits it, as with
gunicorn and uvicorn. Prints "ready" once start() returned; SIGTERM or SIGINT -> graceful
shutdown.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio

from drover_py import MasterFactory

HERE = Path(__file__).resolve().parent
SCRIPTS = {
    "hypercorn": HERE.parent.parent / "examples" / "single_app_cluster" / "app.py",
    "uvicorn": HERE / "uvicorn_worker.py",
}


async def main(port: int, count: int, worker: str) -> None:
    master = MasterFactory.create(
        script=SCRIPTS[worker],
        count=count,
        bind=[f"127.0.0.1:{port}"],
        start_timeout=60,
        stop_timeout=10,
        kill_timeout=2,
    )
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with master:
            await master.start()
            print("ready", flush=True)
            async for _ in signals:
                break
            await master.graceful_shutdown()


anyio.run(main, int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
