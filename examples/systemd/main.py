"""A master for systemd: Type=notify readiness, watchdog, SIGHUP reload, SIGTERM stop.

Run by drover-app.service (beside this file). By hand:

    python examples/systemd/main.py --bind 127.0.0.1:8000 --workers 2

Without NOTIFY_SOCKET it runs the same, minus the sd_notify datagrams. The workers serve
app.py (beside this file) with uvicorn, as ``drover-py serve app:app`` does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio

from drover_py import open_signal_handlers
from drover_py.serve import ServeOptions, create_master

HERE = Path(__file__).resolve().parent


async def main(bind: list[str], workers: int) -> None:
    master = create_master(
        ServeOptions("app:app", app_dir=str(HERE)),  # app.py beside this file, whatever the working directory
        count=workers,
        bind=bind,  # "systemd" takes the sockets of drover-app.socket instead
        stop_timeout=20,  # keep stop_timeout + kill_timeout under TimeoutStopSec
        heartbeat_timeout=10,
    )
    async with master, open_signal_handlers(master):
        await master.start()  # READY=1 once every worker sent "started"
        await master.supervise()  # until SIGTERM (systemctl stop) shut it down: STOPPING=1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bind", action="append", default=None, help="address, repeatable (default systemd)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    anyio.run(main, args.bind or ["systemd"], args.workers)
