"""A worker in the linear style: no handlers, wait_stop() / wait_quit() instead."""

from __future__ import annotations

import os

import anyio

from drover_py import MessageBus

RECORD = os.environ.get("TEST_RECORD")


def record(event: str) -> None:
    if RECORD:
        with open(RECORD, "a") as file:
            file.write(f"{os.getpid()} {event} {os.environ.get('DROVER_PY_SLOT')}\n")


async def main() -> None:
    async with MessageBus() as mb:
        await mb.send_started()
        await mb.wait_stop()
        record("drained")  # the default would have answered already; this worker answers itself
        await mb.send_stopped()
        await mb.wait_quit()
        record("quit")
        await mb.send_shut_down()
    record("exit")


anyio.run(main)
