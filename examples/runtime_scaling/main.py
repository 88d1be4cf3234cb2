"""runtime_scaling: two masters, scaled while they serve (foo 4 -> 2 workers, bar 2 -> 4).

Run:   python examples/runtime_scaling/main.py [--scale-after 5] [--duration 20] [--backend asyncio|trio]
then:  curl -i http://127.0.0.1:2200/     (foo; bar is 2201; env BASE_PORT moves both)
foo starts with 4 workers and bar with 2; after --scale-after seconds both are scaled
concurrently (foo down to 2, bar up to 4), and the workers' status is printed before and
after. kill -TTIN / -TTOU <pid of main.py> adds / removes a worker of each master.
Ctrl-C (or SIGTERM) shuts both down gracefully; a second Ctrl-C kills every worker.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import anyio

from drover_py import DroverError, Master, MasterFactory, StateError, open_signal_handlers

HERE = Path(__file__).resolve().parent
BASE_PORT = int(os.environ.get("BASE_PORT", "2200"))
#: Each app's worker count at start and after scaling; the apps listen on BASE_PORT,
#: BASE_PORT + 1 in this order.
APPS = {"foo": (4, 2), "bar": (2, 4)}


async def show_statuses(masters: dict[str, Master]) -> None:
    """Print every worker's status every two seconds, as drover does: ``[foo-0]: STARTED`` lines, then ``---``."""
    while True:
        for name, master in masters.items():
            for worker in master.workers:
                print(f"[{name}-{worker.slot}]: {worker.status.name}")
        print("---", flush=True)
        await anyio.sleep(2)


async def scale(name: str, master: Master, count: int) -> None:
    """Scale one master to ``count`` workers and say so."""
    old = master.config.count
    try:
        await master.scale(count)  # returns once the new workers started, or the surplus ones stopped
    except StateError:
        return  # a shutdown interrupted the scaling
    except DroverError as exc:  # a new worker failed to start: the old ones still serve
        print(f"{name}: cannot scale {old} -> {count}: {exc}", flush=True)
        return
    print(f"{name}: scaled {old} -> {count}", flush=True)


async def scale_later(masters: dict[str, Master], after: float) -> None:
    """Print the statuses for ``after`` seconds, scale every master concurrently, print the statuses."""
    plan = ", ".join(f"{name} {before} -> {later}" for name, (before, later) in APPS.items())
    print(f"scaling in {after:g} s: {plan}", flush=True)
    with anyio.move_on_after(after):
        await show_statuses(masters)
    async with anyio.create_task_group() as tg:
        for name, master in masters.items():
            tg.start_soon(scale, name, master, APPS[name][1])
    await show_statuses(masters)


async def run(duration: float | None, scale_after: float) -> int:
    masters = {
        name: MasterFactory.create(
            script=HERE / "app.py",  # beside this file, whatever the working directory
            args=[name],  # the app's name, which its answers say
            count=count,
            bind=[f"127.0.0.1:{BASE_PORT + index}"],  # one listener, owned by the master, shared by its workers
        )
        for index, (name, (count, _)) in enumerate(APPS.items())
    }
    failed = False

    async def start(name: str, master: Master) -> None:
        nonlocal failed
        try:
            await master.start()  # returns once every worker of the app sent "started"
        except DroverError as exc:
            print(f"cannot start {name}: {exc}", file=sys.stderr)
            failed = True
        else:
            print(f"{name}: serving http://127.0.0.1:{master.sockets[0].getsockname()[1]}/", flush=True)

    try:
        async with AsyncExitStack() as stack:
            for master in masters.values():
                await stack.enter_async_context(master)  # binds the master's port
            # SIGINT/SIGTERM: graceful shutdown of every master (a second SIGINT kills); SIGHUP:
            # reload; SIGTTIN / SIGTTOU: one worker more / less for each master.
            await stack.enter_async_context(open_signal_handlers(*masters.values()))
            async with anyio.create_task_group() as tg:
                for name, master in masters.items():
                    tg.start_soon(start, name, master)  # all concurrently
            if not failed:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(scale_later, masters, scale_after)
                    with anyio.move_on_after(duration):
                        for master in masters.values():
                            await master.supervise()  # returns once a signal shut the master down
                    tg.cancel_scope.cancel()
            async with anyio.create_task_group() as tg:  # after --duration or a failed start (otherwise already done)
                for master in masters.values():
                    tg.start_soon(master.graceful_shutdown)
    except DroverError as exc:  # a port is taken
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
    print("shut down", flush=True)
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, help="shut down gracefully after this many seconds")
    parser.add_argument("--scale-after", type=float, default=5.0, help="seconds between start and scaling (5)")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="the masters' event loop")
    args = parser.parse_args()
    sys.exit(anyio.run(run, args.duration, args.scale_after, backend=args.backend))


if __name__ == "__main__":
    main()
