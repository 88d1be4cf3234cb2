"""A drover-py master of COUNT tiny workers, run as its own process for /proc sampling.

usage: idle_master.py BACKEND COUNT [HEARTBEAT_TIMEOUT]. Prints one JSON line
{"ready": true, "pid": ...} once start() returned, then idles; SIGTERM or SIGINT ->
graceful shutdown, exit 0. With HEARTBEAT_TIMEOUT (seconds), liveness checks are on:
every worker sends a heartbeat every third of it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import anyio

from drover_py import MasterFactory

WORKER = Path(__file__).with_name("tiny_worker.py")


async def main(count: int, heartbeat: float | None) -> None:
    master = MasterFactory.create(
        script=WORKER, count=count, start_timeout=60, stop_timeout=10, kill_timeout=2, heartbeat_timeout=heartbeat
    )
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with master:
            await master.start()
            print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
            async for _ in signals:
                break
            await master.graceful_shutdown()


anyio.run(main, int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else None, backend=sys.argv[1])
