"""uvicorn_app: asyncio workers served by uvicorn on the socket their master owns.

Run from the repository root:  python examples/uvicorn_app/main.py [--workers 2] [--duration 5] [--preload]
then:                          curl -i http://127.0.0.1:2400/
The x-worker header names the worker that answered. Ctrl-C (or SIGTERM) shuts the workers
down gracefully (each drains its open requests first); a second Ctrl-C kills them.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import anyio

from drover_py import MasterFactory

# The examples folder, so that `_shared` is found whatever the working directory.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _shared import cli  # noqa: E402

HERE = Path(__file__).resolve().parent
PORT = int(os.environ.get("PORT", "2400"))


async def run(duration: float | None, workers: int, preload: bool) -> int:
    master = MasterFactory.create(
        script=HERE / "app.py",
        count=workers,
        bind=[f"127.0.0.1:{PORT}"],  # one listener, owned by the master, served by uvicorn in every worker
        env={"PORT": PORT, "RESPONSE": "Hello from uvicorn_app!\n"},
        preload=preload,  # True: fork workers from a template that imported app.py's imports
    )
    # Start, print every worker's status every two seconds until Ctrl-C or --duration,
    # then shut down gracefully.
    masters = {"app": master}
    return await cli.run_masters(masters, duration, lambda: cli.show_statuses(masters))


def main() -> None:
    args = cli.parse_args(__doc__, extra=functools.partial(cli.add_worker_options, kind="uvicorn"))
    sys.exit(anyio.run(run, args.duration, args.workers, args.preload, backend=args.backend))


if __name__ == "__main__":
    main()
