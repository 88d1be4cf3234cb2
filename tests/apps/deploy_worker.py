"""A worker of the deployment tests: it appends "<event> <app> <slot> <pid>" lines to $TEST_RECORD.

Events: "spawned" as soon as it runs, "started" just before it sends "started" (with
":$VERSION" when VERSION is set), "stopping" when asked to stop. $APP names its app.
With $CRASH set, it records "crashed" and exits with code 3 instead of starting.
"""

from __future__ import annotations

import os
import sys

import anyio

from drover_py import MessageBus

APP = os.environ.get("APP", "?")


def record(event: str) -> None:
    with open(os.environ["TEST_RECORD"], "a") as file:
        file.write(f"{event} {APP} {os.environ.get('DROVER_PY_SLOT')} {os.getpid()}\n")


async def main() -> None:
    record("spawned")
    if os.environ.get("CRASH"):
        record("crashed")
        sys.exit(3)
    async with MessageBus() as mb:
        done = anyio.Event()

        async def on_stop() -> None:
            record("stopping")
            await mb.send_stopped()

        async def on_quit() -> None:
            await mb.send_shut_down()
            done.set()

        mb.on("stop", on_stop)
        mb.on("quit", on_quit)
        version = os.environ.get("VERSION")
        record("started" if version is None else f"started:{version}")
        await mb.send_started()
        await done.wait()


anyio.run(main)
