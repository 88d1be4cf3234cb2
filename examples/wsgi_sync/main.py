"""wsgi_sync: synchronous WSGI workers (no event loop) on the socket their master owns.

Run from the repository root:  python examples/wsgi_sync/main.py [--workers 2] [--duration 5] [--preload]
then:                          curl -i http://127.0.0.1:2500/
The x-worker header names the worker that answered. Ctrl-C (or SIGTERM) shuts the workers
down gracefully (each answers the request in hand first); a second Ctrl-C kills them.
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
PORT = int(os.environ.get("PORT", "2500"))
#: What a worker imports, loaded once by the template in preload mode: the bus, the
#: server, and the WSGI app itself (app.py imports it by name, which `preload=True`
#: could not see).
PRELOAD = ["drover_py", "wsgiref.simple_server", "wsgi"]


async def run(duration: float | None, workers: int, preload: bool) -> int:
    master = MasterFactory.create(
        script=HERE / "app.py",
        count=workers,
        bind=[f"127.0.0.1:{PORT}"],  # one listener, owned by the master, accepted from by every worker
        env={"PORT": PORT, "WSGI_APP": "wsgi:app", "RESPONSE": "Hello from wsgi_sync!\n"},
        preload=PRELOAD if preload else False,  # fork workers from a template that imported these
    )
    # Start, print every worker's status every two seconds until Ctrl-C or --duration,
    # then shut down gracefully.
    masters = {"app": master}
    return await cli.run_masters(masters, duration, lambda: cli.show_statuses(masters))


def main() -> None:
    args = cli.parse_args(__doc__, extra=functools.partial(cli.add_worker_options, kind="WSGI"))
    sys.exit(anyio.run(run, args.duration, args.workers, args.preload, backend=args.backend))


if __name__ == "__main__":
    main()
