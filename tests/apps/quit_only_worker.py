"""A worker that waits for "quit" but handles no "stop" (TEST_SYNC=1: with SyncMessageBus)."""

from __future__ import annotations

import os

import anyio

from drover_py import MessageBus, SyncMessageBus


async def main() -> None:
    async with MessageBus() as mb:
        await mb.send_started()
        await mb.wait_quit()
        await mb.send_shut_down()


if os.environ.get("TEST_SYNC") == "1":
    with SyncMessageBus() as bus:
        bus.send_started()
        bus.wait_quit()
        bus.send_shut_down()
else:
    anyio.run(main)
