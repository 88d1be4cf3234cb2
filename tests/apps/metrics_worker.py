"""A worker with metrics, for the tests of the workers' metrics.

METRICS is a comma-separated list of flags ("flag@N" applies only in slot N):
  sync        use SyncMessageBus (threads) instead of MessageBus
  trio        run on the trio backend (async bus only)
  conflict    declare "jobs_total" as a gauge (the others declare a counter)
  badframe    after "started", write a metrics frame for a metric never declared
  quiet       count nothing at boot
At boot (unless quiet): jobs_total{queue="boot"} += slot + 1, job_seconds observes
0.2 * (slot + 1), depth is set to 10 + slot; then "started". On "stop":
jobs_total{queue="stop"} += 1, then "stopped" (the bus sends the metrics first).
Requests answered:
  inc {"n"}   jobs_total{queue="a"} += n, job_seconds observes 3, depth += 1, then
              flush_metrics(); returns the pid
  add {"n"}   the same without flush_metrics() (the interval sends it)
  die         the process exits with code 9 at once (a crash)
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import anyio

from drover_py import MessageBus, SyncMessageBus
from drover_py._env import CHANNEL_ENV, parse_channel

SLOT = int(os.environ.get("DROVER_PY_SLOT", "0"))
FLAGS: dict[str, str] = {}
for flag in filter(None, os.environ.get("METRICS", "").split(",")):
    name, _, value = flag.partition("=")
    name, _, only = name.partition("@")
    if not only or only == str(SLOT):
        FLAGS[name] = value

BAD_FRAME = b'{"type":"metrics","counters":[["never_declared",[],1]]}\n'


def declare(mb: MessageBus | SyncMessageBus) -> tuple[Any, Any, Any]:
    if "conflict" in FLAGS:
        jobs: Any = mb.gauge("jobs_total", "Jobs done", labels=("queue",))
    else:
        jobs = mb.counter("jobs_total", "Jobs done", labels=("queue",))
    seconds = mb.histogram("job_seconds", "Job duration", buckets=(0.5, 1, 5))
    depth = mb.gauge("depth", "Jobs waiting")
    return jobs, seconds, depth


def boot(jobs: Any, seconds: Any, depth: Any) -> None:
    if "quiet" not in FLAGS:
        jobs.labels(queue="boot").inc(SLOT + 1)
        seconds.observe(0.2 * (SLOT + 1))
        depth.set(10 + SLOT)


def write_raw(frame: bytes) -> None:
    write_fd = parse_channel(os.environ[CHANNEL_ENV])[1]
    os.set_blocking(write_fd, True)
    os.write(write_fd, frame)


def die(payload: object) -> None:
    os._exit(9)


async def run_async() -> None:
    async with MessageBus() as mb:
        jobs, seconds, depth = declare(mb)
        boot(jobs, seconds, depth)

        def count(payload: dict[str, int]) -> int:
            jobs.labels(queue="a").inc(payload["n"])
            seconds.observe(3)
            depth.inc()
            return os.getpid()

        async def inc(payload: dict[str, int]) -> int:
            pid = count(payload)
            await mb.flush_metrics()
            return pid

        async def on_stop() -> None:
            jobs.labels(queue="stop").inc()
            await mb.send_stopped()

        mb.handle("inc", inc)
        mb.handle("add", count)
        mb.handle("die", die)
        mb.on("stop", on_stop)
        await mb.send_started()
        if "badframe" in FLAGS:
            write_raw(BAD_FRAME)
        await anyio.sleep_forever()  # the bus's default answers "quit" and exits


def run_sync() -> None:
    with SyncMessageBus() as mb:
        jobs, seconds, depth = declare(mb)
        boot(jobs, seconds, depth)

        def count(payload: dict[str, int]) -> int:
            # from a thread of its own, as a threaded server would
            thread = threading.Thread(target=jobs.labels(queue="a").inc, args=(payload["n"],))
            thread.start()
            thread.join()
            seconds.observe(3)
            depth.inc()
            return os.getpid()

        def inc(payload: dict[str, int]) -> int:
            pid = count(payload)
            mb.flush_metrics()
            return pid

        def on_stop() -> None:
            jobs.labels(queue="stop").inc()
            mb.send_stopped()

        mb.handle("inc", inc)
        mb.handle("add", count)
        mb.handle("die", die)
        mb.on("stop", on_stop)
        mb.send_started()
        if "badframe" in FLAGS:
            write_raw(BAD_FRAME)
        mb.wait_quit()
        mb.send_shut_down()


if __name__ == "__main__":
    if "sync" in FLAGS:
        run_sync()
        sys.exit(0)
    anyio.run(run_async, backend="trio" if "trio" in FLAGS else "asyncio")
