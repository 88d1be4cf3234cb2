"""A master run as its own process: prints its workers' pids as one JSON line once started.

usage: master.py BACKEND COUNT [BEHAVIOUR [SPAWN_MODE]]; SPAWN_MODE "preload" forks the
workers from a template. SIGTERM or SIGINT -> graceful shutdown, exit 0.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import anyio
import structlog

from drover_py import MasterFactory

structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout carries JSON


async def main(count: int, behaviour: str, spawn_mode: str) -> None:
    master = MasterFactory.create(
        script=Path(__file__).with_name("worker.py"),
        count=count,
        env={"TEST_BEHAVIOUR": behaviour},
        stop_timeout=10,
        kill_timeout=2,
        preload=spawn_mode == "preload",
    )
    async with master:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            await master.start()
            print(json.dumps([w.pid for w in master.workers]), flush=True)
            async for _ in signals:
                await master.graceful_shutdown()
                print(json.dumps({"shutdown": "done", "workers": len(master.workers)}), flush=True)
                return


anyio.run(
    main,
    int(sys.argv[2]),
    sys.argv[3] if len(sys.argv) > 3 else "",
    sys.argv[4] if len(sys.argv) > 4 else "exec",
    backend=sys.argv[1],
)
