"""What the examples' master scripts (their main.py) share.

A main.py puts the examples folder on ``sys.path``, does ``from _shared import cli``, creates
its masters and hands them to ``run_masters``, which does for every example:

    async with master: ...                  # every master, so no worker outlives main.py
        start_all(masters)                  # concurrently; "serving ..." or "cannot start ..."
        await then()                        # the example's own part: statuses, scaling, reloads
        ... until --duration has passed, the first SIGINT/SIGTERM, or ``stop`` is set
        master.graceful_shutdown()          # every master, concurrently
                                            # (a second SIGINT/SIGTERM: master.hard_shutdown())
    print("shut down")                      # exit code 0, or 1 if a master could not start

``drover_py.open_signal_handlers(*masters)`` wires SIGINT/SIGTERM/SIGHUP to the masters in
one call; the examples watch the signals themselves so that they can say what each one does.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack

import anyio
from anyio.abc import TaskStatus

from drover_py import BindError, DroverError, Master, StateError

#: The masters of an example by app name; the name labels their output ("[foo-0]: STARTED").
Masters = Mapping[str, Master]


def parse_args(
    description: str | None, *, extra: Callable[[argparse.ArgumentParser], object] | None = None
) -> argparse.Namespace:
    """Parse ``--duration`` and ``--backend``, plus the options ``extra`` adds to the parser."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, help="shut down gracefully after this many seconds")
    if extra is not None:
        extra(parser)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="event loop of the masters")
    return parser.parse_args()


def worker_count(text: str) -> int:
    """Parse a number of workers (at least 1) for argparse."""
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {count}")
    return count


def add_worker_options(parser: argparse.ArgumentParser, kind: str) -> None:
    """Add ``--workers`` (default: env WORKERS, else 2) and ``--preload``."""
    parser.add_argument(
        "--workers",
        type=worker_count,
        default=os.environ.get("WORKERS", "2"),  # a string default goes through `type` too
        help=f"number of {kind} workers (default: env WORKERS, else 2)",
    )
    parser.add_argument("--preload", action="store_true", help="fork the workers from a warm template (preload mode)")


def print_statuses(masters: Masters) -> None:
    """Print every worker's status as drover's examples do: ``[foo-0]: STARTED`` lines, then ``---``."""
    for name, master in masters.items():
        for worker in master.workers:
            print(f"[{name}-{worker.slot}]: {worker.status.name}")
    print("---", flush=True)


async def show_statuses(masters: Masters, seconds: float | None = None) -> None:
    """Print the statuses now and every two seconds after, for ``seconds`` (None: forever)."""
    with anyio.move_on_after(seconds):
        while True:
            print_statuses(masters)
            await anyio.sleep(2)


async def watch_signals(
    masters: Masters,
    stop: anyio.Event,
    *,
    on_hangup: Callable[[], object] | None = None,
    fresh_line: bool = False,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """First SIGINT/SIGTERM: set ``stop`` (a graceful shutdown). Second one: hard shutdown.

    SIGHUP calls ``on_hangup``, and is caught only if one is given. With ``fresh_line``
    each message starts on a new line (for a status line drawn in place).
    """
    handled = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if on_hangup is not None else [])
    newline = "\n" if fresh_line else ""
    with anyio.open_signal_receiver(*handled) as signals:
        task_status.started()
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP and on_hangup is not None:
                on_hangup()
            elif stop.is_set():
                print(f"{newline}{name} again: killing the workers", flush=True)
                for master in masters.values():
                    await master.hard_shutdown()
            else:
                print(f"{newline}{name}: shutting down gracefully (again to force)", flush=True)
                stop.set()


async def start_all(masters: Masters, stop: anyio.Event) -> bool:
    """Start every master concurrently and say where each serves.

    If one cannot start, say why, set ``stop`` and return False. A start interrupted by a
    shutdown is no failure. A lone master needs no name in these lines.
    """
    failed = False

    async def start(name: str, master: Master) -> None:
        nonlocal failed
        try:
            await master.start()  # returns once every worker sent "started"
        except StateError:
            return  # a shutdown interrupted the start
        except DroverError as exc:
            print(f"cannot start {name}: {exc}" if len(masters) > 1 else f"cannot start: {exc}", file=sys.stderr)
            failed = True
            stop.set()
            return
        url = f"http://127.0.0.1:{master.config.env['PORT']}/"
        print(f"{name}: serving {url}" if len(masters) > 1 else f"serving {url} (Ctrl-C to stop)", flush=True)

    async with anyio.create_task_group() as tg:
        for name, master in masters.items():
            tg.start_soon(start, name, master)
    return not failed


async def run_masters(
    masters: Masters,
    duration: float | None,
    then: Callable[[], Awaitable[object]],
    *,
    stop: anyio.Event | None = None,
    on_hangup: Callable[[], object] | None = None,
    fresh_line: bool = False,
) -> int:
    """Start ``masters``, run ``then`` while they serve, shut them down gracefully; return the exit code.

    The shutdown comes after ``duration`` seconds (None: no limit), on the first SIGINT or
    SIGTERM, or when the example sets ``stop``. ``on_hangup`` and ``fresh_line`` go to
    `watch_signals`. Prints "shut down" at the end; returns 1 if a master could not start.
    """
    stop = anyio.Event() if stop is None else stop
    exit_code = 0

    async def start_then() -> None:
        nonlocal exit_code
        if not await start_all(masters, stop):
            exit_code = 1
        elif not stop.is_set():
            await then()

    async with AsyncExitStack() as stack:
        try:
            for master in masters.values():
                await stack.enter_async_context(master)  # binds the master's listening sockets
        except BindError as exc:
            print(f"cannot start: {exc}", file=sys.stderr)
            return 1
        async with anyio.create_task_group() as tg:
            await tg.start(functools.partial(watch_signals, masters, stop, on_hangup=on_hangup, fresh_line=fresh_line))
            tg.start_soon(start_then)
            with anyio.move_on_after(duration):
                await stop.wait()
            stop.set()
            async with anyio.create_task_group() as shutdowns:
                for master in masters.values():
                    shutdowns.start_soon(master.graceful_shutdown)
            tg.cancel_scope.cancel()
    print("shut down", flush=True)
    return exit_code
