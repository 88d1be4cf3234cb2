"""A master driven by open_signal_handlers; prints its worker pids as JSON on every change.

usage: signal_master.py BACKEND COUNT. Exits 0 after a signal-driven shutdown.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import structlog

from drover_py import MasterFactory, WorkerStatus, open_signal_handlers

structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout carries JSON


async def main(count: int) -> None:
    master = MasterFactory.create(script=Path(__file__).with_name("worker.py"), count=count, stop_timeout=10)

    def report(*_: object) -> None:
        started = [w.pid for w in master.workers if w.status is WorkerStatus.STARTED]
        print(json.dumps({"started": started, "count": master.config.count, "total": len(master.workers)}), flush=True)

    master.on("worker-started", report)
    master.on("worker-retired", report)
    async with master, open_signal_handlers(master):
        await master.start()
        print(json.dumps({"ready": [w.pid for w in master.workers]}), flush=True)
        await master.supervise()
    print(json.dumps({"exited": True}), flush=True)


anyio.run(main, int(sys.argv[2]), backend=sys.argv[1])
