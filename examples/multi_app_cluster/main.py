"""multi_app_cluster: three masters (foo, bar, baz), each with its own workers and port.

Run from the repository root:  python examples/multi_app_cluster/main.py [--duration 10]
then:                          curl http://127.0.0.1:2100/   (foo; bar is 2101, baz 2102)
The masters start concurrently, and on Ctrl-C (or SIGTERM) shut down gracefully
concurrently; a second Ctrl-C kills every worker.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from drover_py import DroverError, Master, MasterFactory, StateError

HERE = Path(__file__).resolve().parent
BASE_PORT = int(os.environ.get("BASE_PORT", "2100"))
#: Each app's worker count; the apps listen on BASE_PORT, BASE_PORT + 1, ... in this order.
APPS = {"foo": 2, "bar": 2, "baz": 4}


async def show_status(masters: dict[str, Master]) -> None:
    """Print every worker's status every two seconds, as drover's example does."""
    while True:
        for name, master in masters.items():
            for worker in master.workers:
                print(f"[{name}-{worker.slot}]: {worker.status.name}")
        print("---", flush=True)
        await anyio.sleep(2)


async def watch_signals(
    masters: dict[str, Master], stop: anyio.Event, *, task_status: TaskStatus[None]
) -> None:
    """First SIGINT/SIGTERM: ask for a graceful shutdown. Second one: hard shutdown."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            if stop.is_set():
                print(f"{signal.Signals(signum).name} again: killing the workers", flush=True)
                for master in masters.values():
                    await master.hard_shutdown()
            else:
                print(f"{signal.Signals(signum).name}: shutting down gracefully (again to force)", flush=True)
                stop.set()


async def run(duration: float | None) -> int:
    masters = {
        name: MasterFactory.create(
            script=HERE / f"app_{name}.py",
            count=count,
            env={"PORT": BASE_PORT + index, "RESPONSE": f"Hello from {name}!\n"},
        )
        for index, (name, count) in enumerate(APPS.items())
    }
    stop = anyio.Event()
    exit_code = 0

    async def start(name: str, master: Master) -> None:
        nonlocal exit_code
        try:
            await master.start()
        except StateError:
            return  # a shutdown interrupted the start
        except DroverError as exc:
            print(f"cannot start {name}: {exc}", file=sys.stderr)
            exit_code = 1
            stop.set()
            return
        print(f"{name}: serving http://127.0.0.1:{master.config.env['PORT']}/", flush=True)

    async def start_all_then_show_status() -> None:
        async with anyio.create_task_group() as tg:
            for name, master in masters.items():
                tg.start_soon(start, name, master)
        if not stop.is_set():
            await show_status(masters)

    async with AsyncExitStack() as stack:
        for master in masters.values():
            await stack.enter_async_context(master)
        async with anyio.create_task_group() as tg:
            await tg.start(watch_signals, masters, stop)
            tg.start_soon(start_all_then_show_status)
            with anyio.move_on_after(duration):
                await stop.wait()
            stop.set()
            async with anyio.create_task_group() as shutdowns:
                for master in masters.values():
                    shutdowns.start_soon(master.graceful_shutdown)
            tg.cancel_scope.cancel()
    print("shut down", flush=True)
    return exit_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, help="shut down gracefully after this many seconds")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="event loop of the masters")
    args = parser.parse_args()
    sys.exit(anyio.run(run, args.duration, backend=args.backend))


if __name__ == "__main__":
    main()
