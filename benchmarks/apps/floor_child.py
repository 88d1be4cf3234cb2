"""The floor of a worker start: a drover worker's imports and event loop, no bus.

It imports exactly what `tiny_worker.py` imports (the bus is not opened), starts the
same event loop through `anyio.run`, writes one byte on the inherited fd named by
BENCH_READY_FD, and waits to be killed.
"""

from __future__ import annotations

import os

import anyio

from drover_py import MessageBus  # noqa: F401  (imported for its cost only)


async def main() -> None:
    os.write(int(os.environ["BENCH_READY_FD"]), b"!")
    await anyio.sleep_forever()


anyio.run(main, backend=os.environ.get("BENCH_WORKER_BACKEND", "asyncio"))
