"""A drover-py master for the reload-under-load benchmark, run as its own process.

usage: reload_master.py WORKER COUNT, WORKER being "hypercorn" (examples/simple_app:
hypercorn on trio) or "uvicorn" (uvicorn_drain_worker.py: uvicorn on asyncio).

The master binds 127.0.0.1:0 (the listener it owns and every worker inherits), starts
COUNT workers and prints ``port N``. Each SIGHUP runs one ``graceful_reload()`` and
prints ``reloaded K`` when it returned (or ``reload-error ...`` if it raised); SIGHUPs
arriving meanwhile are handled after it, in order. SIGTERM or SIGINT -> graceful shutdown.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio

from drover_py import MasterFactory

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
SCRIPTS = {
    "hypercorn": EXAMPLES / "simple_app" / "app.py",
    "uvicorn": Path(__file__).resolve().parent / "uvicorn_drain_worker.py",
}


async def main(worker: str, count: int) -> None:
    master = MasterFactory.create(
        script=SCRIPTS[worker],
        count=count,
        bind=["127.0.0.1:0"],
        env={"RESPONSE": "ok\n"},
        start_timeout=30,
        stop_timeout=10,
        kill_timeout=2,
    )
    with anyio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
        async with master:
            await master.start()
            print(f"port {master.sockets[0].getsockname()[1]}", flush=True)
            reloads = 0
            async for signum in signals:
                if signum != signal.SIGHUP:
                    break
                try:
                    await master.graceful_reload()
                except Exception as exc:  # reported to the benchmark, which counts it
                    print(f"reload-error {type(exc).__name__}: {exc}", flush=True)
                    continue
                reloads += 1
                print(f"reloaded {reloads}", flush=True)
            await master.graceful_shutdown()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]))
