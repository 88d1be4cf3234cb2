"""runtime_scaling: two masters, scaled while they serve (foo 4 -> 2 workers, bar 2 -> 4).

Run from the repository root:  python examples/runtime_scaling/main.py [--scale-after 5]
then:                          curl http://127.0.0.1:2200/   (foo; bar is 2201)
foo starts with 4 workers and bar with 2; after --scale-after seconds both are scaled
concurrently (foo down to 2, bar up to 4), and the workers' status is printed before and
after. Ctrl-C (or SIGTERM) shuts both down gracefully; a second Ctrl-C kills every worker.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import anyio

from drover_py import DroverError, Master, MasterFactory, StateError

# The examples folder, so that `_shared` is found whatever the working directory.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _shared import cli  # noqa: E402

HERE = Path(__file__).resolve().parent
BASE_PORT = int(os.environ.get("BASE_PORT", "2200"))
#: Each app's worker count at start and after scaling; the apps listen on BASE_PORT,
#: BASE_PORT + 1 in this order.
APPS = {"foo": (4, 2), "bar": (2, 4)}


async def scale(name: str, master: Master, count: int) -> None:
    """Scale one master to ``count`` workers and say so."""
    old = master.config.count
    try:
        await master.scale(count)
    except StateError:
        return  # a shutdown interrupted the scaling
    except DroverError as exc:  # a new worker failed to start: the old ones still serve
        print(f"{name}: cannot scale {old} -> {count}: {exc}", flush=True)
        return
    print(f"{name}: scaled {old} -> {count}", flush=True)


async def run(duration: float | None, scale_after: float) -> int:
    masters = {
        name: MasterFactory.create(
            script=HERE / f"app_{name}.py",
            count=count,
            bind=[f"127.0.0.1:{BASE_PORT + index}"],  # one listener, owned by the master, shared by its workers
            env={"PORT": BASE_PORT + index, "RESPONSE": f"Hello from {name}!\n"},
        )
        for index, (name, (count, _)) in enumerate(APPS.items())
    }
    stop = anyio.Event()

    async def scale_then_show_statuses() -> None:
        """Once both masters started: statuses for ``scale_after`` s, scale both concurrently, statuses."""
        plan = ", ".join(f"{name} {before} -> {after}" for name, (before, after) in APPS.items())
        print(f"scaling in {scale_after:g} s: {plan}", flush=True)
        await cli.show_statuses(masters, scale_after)
        async with anyio.create_task_group() as tg:
            for name, master in masters.items():
                tg.start_soon(scale, name, master, APPS[name][1])
        if not stop.is_set():
            await cli.show_statuses(masters)

    return await cli.run_masters(masters, duration, scale_then_show_statuses, stop=stop)


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale-after", type=float, default=5.0, help="seconds between start and scaling (5)")


def main() -> None:
    args = cli.parse_args(__doc__, extra=add_options)
    sys.exit(anyio.run(run, args.duration, args.scale_after, backend=args.backend))


if __name__ == "__main__":
    main()
