"""wsgi_sync: serve the WSGI app in wsgi.py from Python, as `drover-py serve` does.

Run:   python main.py [--workers 2] [--duration 5] [--preload] [--backend asyncio|trio]
then:  curl -i http://127.0.0.1:2500/     (env PORT changes the port)
Each worker serves the app with waitress (threads), so a WSGI app gets the same
graceful drain as an ASGI one. The x-worker header names the worker that
answered. kill -HUP reloads with zero downtime; Ctrl-C (or SIGTERM) shuts down
gracefully, a second Ctrl-C kills the workers.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import anyio

from drover_py import DroverError, RestartLimitError, RestartPolicy, open_signal_handlers
from drover_py.serve import ServeOptions, create_master

HERE = Path(__file__).resolve().parent
PORT = int(os.environ.get("PORT", "2500"))


async def serve(workers: int, preload: bool, duration: float | None) -> int:
    master = create_master(
        ServeOptions("wsgi:app", app_dir=str(HERE)),  # wsgi.py beside this file, from any directory
        count=workers,
        bind=[f"127.0.0.1:{PORT}"],  # one listener, owned by the master, shared by every worker
        preload=preload,  # True: fork the workers from a template that imported uvicorn and wsgi.py
        restart=RestartPolicy(),  # replace a crashed worker
    )
    code = 0
    try:
        async with master:
            await master.start()  # returns once every worker is ready to answer
            async with open_signal_handlers(master):  # SIGHUP reloads, SIGINT/SIGTERM shut down
                print(f"serving http://127.0.0.1:{PORT}/ (Ctrl-C to stop)", flush=True)
                with anyio.move_on_after(duration):
                    try:
                        await master.supervise()  # returns once a signal shut the master down
                    except RestartLimitError as exc:  # the workers kept crashing
                        print(f"wsgi_sync: {exc}", file=sys.stderr)
                        code = 1
            await master.graceful_shutdown()  # after --duration (no-op after a signal's shutdown)
    except DroverError as exc:  # the port is taken, or a worker could not start
        print(f"wsgi_sync: {exc}", file=sys.stderr)
        return 1
    print("shut down", flush=True)
    return code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--workers", type=int, default=int(os.environ.get("WORKERS", "2")), help="default: env WORKERS, else 2")
    add("--duration", type=float, help="shut down gracefully after this many seconds")
    add("--preload", action="store_true", help="fork the workers from a template (fast start and reload)")
    add("--backend", choices=["asyncio", "trio"], default="asyncio", help="the master's event loop")
    args = parser.parse_args()
    sys.exit(anyio.run(serve, args.workers, args.preload, args.duration, backend=args.backend))


if __name__ == "__main__":
    main()
