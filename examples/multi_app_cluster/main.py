"""multi_app_cluster: three masters (foo, bar, baz), each with its own workers and port.

Run from the repository root:  python examples/multi_app_cluster/main.py [--duration 10]
then:                          curl http://127.0.0.1:2100/   (foo; bar is 2101, baz 2102)
The masters start concurrently, and on Ctrl-C (or SIGTERM) shut down gracefully
concurrently; a second Ctrl-C kills every worker.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio

from drover_py import MasterFactory

# The examples folder, so that `_shared` is found whatever the working directory.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _shared import cli  # noqa: E402

HERE = Path(__file__).resolve().parent
BASE_PORT = int(os.environ.get("BASE_PORT", "2100"))
#: Each app's worker count; the apps listen on BASE_PORT, BASE_PORT + 1, ... in this order.
APPS = {"foo": 2, "bar": 2, "baz": 4}


async def run(duration: float | None) -> int:
    # Several masters in one process are independent: one per app, each with its own script and port.
    masters = {
        name: MasterFactory.create(
            script=HERE / f"app_{name}.py",
            count=count,
            bind=[f"127.0.0.1:{BASE_PORT + index}"],  # one listener, owned by the master, shared by its workers
            env={"PORT": BASE_PORT + index, "RESPONSE": f"Hello from {name}!\n"},
        )
        for index, (name, count) in enumerate(APPS.items())
    }
    # Start them all concurrently, print every worker's status every two seconds (as
    # drover's example does) until Ctrl-C or --duration, then shut them all down gracefully.
    return await cli.run_masters(masters, duration, lambda: cli.show_statuses(masters))


def main() -> None:
    args = cli.parse_args(__doc__)
    sys.exit(anyio.run(run, args.duration, backend=args.backend))


if __name__ == "__main__":
    main()
