"""The worker of the custom-message benchmark (bench_talk.py), async or sync bus.

BENCH_WORKER_BACKEND is "asyncio", "trio" or "sync" (the `SyncMessageBus`). The master
drives it with requests:

- "echo": answer the payload (the master's round trip);
- "rtt" n: time n ``mb.request("echo", PAYLOAD)`` to the master, answer [p50, p99] in ns;
- "flood" n: ``mb.send(PAYLOAD)`` n times, then ``mb.request("flood_done")`` (which the
  master answers once it handled them all, as its messages are handled in order); answer
  the seconds from the first send to that answer;
- "count": answer how many messages arrived since the last "count" (messages and
  requests are handled in order, so every message sent before it is counted).
"""

from __future__ import annotations

import os
import time

PAYLOAD = {"n": 1}
backend = os.environ.get("BENCH_WORKER_BACKEND", "asyncio")
received = 0


def on_message(payload: object) -> None:
    global received
    received += 1


def count(payload: object) -> int:
    global received
    n, received = received, 0
    return n


def percentiles(rtts: list[int]) -> list[int]:
    rtts.sort()
    return [rtts[len(rtts) // 2], rtts[min(len(rtts) - 1, len(rtts) * 99 // 100)]]


if backend == "sync":
    from drover_py import SyncMessageBus

    def sync_rtt(n: object) -> list[int]:
        assert isinstance(n, int)
        rtts = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            sync_bus.request("echo", PAYLOAD)
            rtts.append(time.perf_counter_ns() - t0)
        return percentiles(rtts)

    def sync_flood(n: object) -> float:
        assert isinstance(n, int)
        t0 = time.perf_counter()
        for _ in range(n):
            sync_bus.send(PAYLOAD)
        sync_bus.request("flood_done", None)
        return time.perf_counter() - t0

    with SyncMessageBus() as sync_bus:
        sync_bus.on("message", on_message)
        sync_bus.handle("echo", lambda payload: payload)
        sync_bus.handle("count", count)
        sync_bus.handle("rtt", sync_rtt)
        sync_bus.handle("flood", sync_flood)
        sync_bus.send_started()
        sync_bus.wait_stop()
        sync_bus.send_stopped()
        sync_bus.wait_quit()
        sync_bus.send_shut_down()
else:
    import anyio

    from drover_py import MessageBus

    async def main() -> None:
        async with MessageBus() as mb:

            async def rtt(n: object) -> list[int]:
                assert isinstance(n, int)
                rtts = []
                for _ in range(n):
                    t0 = time.perf_counter_ns()
                    await mb.request("echo", PAYLOAD)
                    rtts.append(time.perf_counter_ns() - t0)
                return percentiles(rtts)

            async def flood(n: object) -> float:
                assert isinstance(n, int)
                t0 = time.perf_counter()
                for _ in range(n):
                    await mb.send(PAYLOAD)
                await mb.request("flood_done", None)
                return time.perf_counter() - t0

            mb.on("message", on_message)
            mb.handle("echo", lambda payload: payload)
            mb.handle("count", count)
            mb.handle("rtt", rtt)
            mb.handle("flood", flood)
            await mb.send_started()
            await mb.wait_stop()
            await mb.send_stopped()
            await mb.wait_quit()
            await mb.send_shut_down()

    anyio.run(main, backend=backend)
