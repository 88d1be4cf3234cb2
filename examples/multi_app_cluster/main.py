"""multi_app_cluster: three masters (foo, bar, baz), each with its own workers and port.

Run:   python examples/multi_app_cluster/main.py [--duration 10] [--backend asyncio|trio]
then:  curl http://127.0.0.1:2100/     (foo; bar is 2101, baz 2102; env BASE_PORT moves them)
The masters start concurrently, and on Ctrl-C (or SIGTERM) shut down gracefully
concurrently; a second Ctrl-C kills every worker.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import anyio

from drover_py import DroverError, Master, MasterFactory, open_signal_handlers

HERE = Path(__file__).resolve().parent
BASE_PORT = int(os.environ.get("BASE_PORT", "2100"))
#: Each app's worker count; the apps listen on BASE_PORT, BASE_PORT + 1, ... in this order.
APPS = {"foo": 2, "bar": 2, "baz": 4}


async def show_statuses(masters: dict[str, Master]) -> None:
    """Print every worker's status every two seconds, as drover does: ``[foo-0]: STARTED`` lines, then ``---``."""
    while True:
        for name, master in masters.items():
            for worker in master.workers:
                print(f"[{name}-{worker.slot}]: {worker.status.name}")
        print("---", flush=True)
        await anyio.sleep(2)


async def run(duration: float | None) -> int:
    # Several masters in one process are independent: one per app, each with its own workers and port.
    masters = {
        name: MasterFactory.create(
            script=HERE / "app.py",  # beside this file, whatever the working directory
            args=[name],  # the app's name, which its answers say
            count=count,
            bind=[f"127.0.0.1:{BASE_PORT + index}"],  # one listener, owned by the master, shared by its workers
        )
        for index, (name, count) in enumerate(APPS.items())
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
            # SIGINT/SIGTERM: graceful shutdown of every master (a second SIGINT kills); SIGHUP: reload.
            await stack.enter_async_context(open_signal_handlers(*masters.values()))
            async with anyio.create_task_group() as tg:
                for name, master in masters.items():
                    tg.start_soon(start, name, master)  # all concurrently
            if not failed:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(show_statuses, masters)
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
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="the masters' event loop")
    args = parser.parse_args()
    sys.exit(anyio.run(run, args.duration, backend=args.backend))


if __name__ == "__main__":
    main()
