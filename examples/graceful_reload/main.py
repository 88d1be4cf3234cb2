"""graceful_reload: two masters whose workers are all replaced, with zero downtime, again and again.

Run:   python examples/graceful_reload/main.py [--reload-every 5] [--duration 20] [--backend asyncio|trio]
then:  curl -i http://127.0.0.1:2300/     (foo; bar is 2301; env BASE_PORT moves both)
foo has 1 worker and bar 4. Every --reload-every seconds (and at once on SIGHUP:
`kill -HUP <pid of main.py>`) both masters reload concurrently: slot by slot, a new worker
is started and ready before the old one is stopped, so the ports keep answering (the
x-worker header shows which worker did). Ctrl-C (or SIGTERM) shuts both down gracefully;
a second Ctrl-C kills every worker.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import anyio

from drover_py import DroverError, Master, MasterFactory, StateError

HERE = Path(__file__).resolve().parent
BASE_PORT = int(os.environ.get("BASE_PORT", "2300"))
#: Each app's worker count; the apps listen on BASE_PORT, BASE_PORT + 1 in this order.
APPS = {"foo": 1, "bar": 4}


async def reload(name: str, master: Master) -> None:
    """Reload one master and print which workers were replaced by which, and how fast."""
    before = master.workers
    try:
        report = await master.graceful_reload()
    except StateError:
        return  # a shutdown interrupted the reload
    except DroverError as exc:  # a ReloadError: rolled back, the old workers still serve
        print(f"{name}: reload failed: {exc}", flush=True)
        return
    after = master.workers
    print(
        f"{name}: reloaded, workers {[w.id for w in before]} -> {[w.id for w in after]}"
        f" (pids {[w.pid for w in before]} -> {[w.pid for w in after]}) in {report.seconds:.2f} s",
        flush=True,
    )


async def run(duration: float | None, reload_every: float) -> int:
    masters = {
        name: MasterFactory.create(
            script=HERE / "app.py",  # beside this file, whatever the working directory
            args=[name],  # the app's name, which its answers say
            count=count,
            bind=[f"127.0.0.1:{BASE_PORT + index}"],  # one listener, owned by the master, shared by its workers
        )
        for index, (name, count) in enumerate(APPS.items())
    }
    stop = anyio.Event()  # set on the first SIGINT/SIGTERM, or when a master cannot start
    failed = False
    # One pending "reload now" at most: SIGHUPs during a reload ask for one more, not many.
    reload_now, reload_requests = anyio.create_memory_object_stream[None](1)

    async def start(name: str, master: Master) -> None:
        nonlocal failed
        try:
            await master.start()  # returns once every worker of the app sent "started"
        except DroverError as exc:
            print(f"cannot start {name}: {exc}", file=sys.stderr)
            failed = True
            stop.set()
        else:
            print(f"{name}: serving http://127.0.0.1:{master.sockets[0].getsockname()[1]}/", flush=True)

    async def start_then_reload() -> None:
        """Start both masters concurrently; then reload both, every ``reload_every`` s and on SIGHUP."""
        async with anyio.create_task_group() as tg:
            for name, master in masters.items():
                tg.start_soon(start, name, master)
        if stop.is_set():
            return
        every = f"every {reload_every:g} s and " if reload_every > 0 else ""
        print(f"reloading {every}on SIGHUP (kill -HUP {os.getpid()})", flush=True)
        while True:
            with anyio.move_on_after(reload_every if reload_every > 0 else None):
                await reload_requests.receive()
            async with anyio.create_task_group() as tg:
                for name, master in masters.items():
                    tg.start_soon(reload, name, master)

    async def handle_signals(signals: AsyncIterator[int]) -> None:
        """SIGHUP: reload now. First SIGINT/SIGTERM: set ``stop``; a second one: kill every worker.

        (`drover_py.open_signal_handlers` does all this in one call, but reloads silently.)
        """
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                print("SIGHUP: reloading now", flush=True)
                with contextlib.suppress(anyio.WouldBlock):  # a reload is already asked for
                    reload_now.send_nowait(None)
            elif not stop.is_set():
                print(f"{name}: shutting down gracefully (again to force)", flush=True)
                stop.set()
            else:
                print(f"{name} again: killing the workers", flush=True)
                for master in masters.values():
                    await master.hard_shutdown()

    try:
        async with AsyncExitStack() as stack:
            for master in masters.values():
                await stack.enter_async_context(master)  # binds the master's port
            stack.enter_context(reload_now)
            stack.enter_context(reload_requests)
            signals = stack.enter_context(anyio.open_signal_receiver(signal.SIGHUP, signal.SIGINT, signal.SIGTERM))
            async with anyio.create_task_group() as tg:
                tg.start_soon(handle_signals, signals)
                tg.start_soon(start_then_reload)
                with anyio.move_on_after(duration):
                    await stop.wait()
                async with anyio.create_task_group() as shutdowns:  # every master concurrently
                    for master in masters.values():
                        shutdowns.start_soon(master.graceful_shutdown)  # interrupts a start or a reload
                tg.cancel_scope.cancel()
    except DroverError as exc:  # a port is taken
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
    print("shut down", flush=True)
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reload-every", type=float, default=5.0, help="seconds between reloads (0: on SIGHUP only)")
    parser.add_argument("--duration", type=float, help="shut down gracefully after this many seconds")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="the masters' event loop")
    args = parser.parse_args()
    sys.exit(anyio.run(run, args.duration, args.reload_every, backend=args.backend))


if __name__ == "__main__":
    main()
