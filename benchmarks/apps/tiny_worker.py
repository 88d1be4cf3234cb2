"""The smallest useful drover-py worker: open the bus, say "started", wait.

With no handlers registered the bus answers "stop" and "quit" itself (and exits the
process after "quit"), so this is the least a worker can do. BENCH_WORKER_BACKEND picks
the event loop (asyncio by default).
"""

from __future__ import annotations

import os

import anyio

from drover_py import MessageBus


async def main() -> None:
    async with MessageBus() as mb:
        await mb.send_started()
        await anyio.sleep_forever()


anyio.run(main, backend=os.environ.get("BENCH_WORKER_BACKEND", "asyncio"))
