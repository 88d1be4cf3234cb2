"""graceful_reload: two masters whose workers are all replaced, with zero downtime, again and again.

Run from the repository root:  python examples/graceful_reload/main.py [--reload-every 5]
then:                          curl -i http://127.0.0.1:2300/   (foo; bar is 2301)
foo has 1 worker and bar 4. Every --reload-every seconds (and at once on SIGHUP:
`kill -HUP <pid of main.py>`) both masters reload concurrently: slot by slot, a new worker
is started and ready before the old one is stopped, so the ports keep answering (the
x-worker header shows which worker did). Ctrl-C (or SIGTERM) shuts both down gracefully;
a second Ctrl-C kills every worker.
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
BASE_PORT = int(os.environ.get("BASE_PORT", "2300"))
#: Each app's worker count; the apps listen on BASE_PORT, BASE_PORT + 1 in this order.
APPS = {"foo": 1, "bar": 4}


async def reload(name: str, master: Master) -> None:
    """Reload one master and print which workers were replaced by which, and how fast."""
    before = master.workers
    began = anyio.current_time()
    try:
        await master.graceful_reload()
    except StateError:
        return  # a shutdown interrupted the reload
    except DroverError as exc:  # a ReloadError: rolled back, the old workers still serve
        print(f"{name}: reload failed: {exc}", flush=True)
        return
    elapsed = anyio.current_time() - began
    after = master.workers
    print(
        f"{name}: reloaded, workers {[w.id for w in before]} -> {[w.id for w in after]}"
        f" (pids {[w.pid for w in before]} -> {[w.pid for w in after]}) in {elapsed:.2f} s",
        flush=True,
    )


async def run(duration: float | None, reload_every: float) -> int:
    masters = {
        name: MasterFactory.create(
            script=HERE / f"app_{name}.py",
            count=count,
            bind=[f"127.0.0.1:{BASE_PORT + index}"],  # one listener, owned by the master, shared by its workers
            env={"PORT": BASE_PORT + index, "RESPONSE": f"Hello from {name}!\n"},
        )
        for index, (name, count) in enumerate(APPS.items())
    }
    stop = anyio.Event()
    # One pending "reload now" at most: SIGHUPs during a reload ask for one more, not many.
    reload_send, reload_receive = anyio.create_memory_object_stream[None](1)

    def on_sighup() -> None:
        print("SIGHUP: reloading now", flush=True)
        try:
            reload_send.send_nowait(None)
        except anyio.WouldBlock:
            pass  # a reload is already asked for

    async def reload_forever() -> None:
        """Once both masters started: reload both concurrently, every ``reload_every`` s and on SIGHUP."""
        every = f"every {reload_every:g} s and " if reload_every > 0 else ""
        print(f"reloading {every}on SIGHUP (kill -HUP {os.getpid()})", flush=True)
        while True:
            with anyio.move_on_after(reload_every if reload_every > 0 else None):
                await reload_receive.receive()
            async with anyio.create_task_group() as tg:
                for name, master in masters.items():
                    tg.start_soon(reload, name, master)
            if stop.is_set():
                return

    with reload_send, reload_receive:
        return await cli.run_masters(masters, duration, reload_forever, stop=stop, on_hangup=on_sighup)


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reload-every", type=float, default=5.0, help="seconds between reloads (5); 0: reload only on SIGHUP"
    )


def main() -> None:
    args = cli.parse_args(__doc__, extra=add_options)
    sys.exit(anyio.run(run, args.duration, args.reload_every, backend=args.backend))


if __name__ == "__main__":
    main()
