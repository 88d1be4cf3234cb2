"""One scale run: start COUNT tiny workers, reload them all, shut down; print JSON timings.

usage: scale_master.py BACKEND COUNT BATCH. The master's RSS (VmRSS of /proc/self/status)
is read before start(), after it, and after the reload.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import anyio

from drover_py import MasterFactory

WORKER = Path(__file__).with_name("tiny_worker.py")


def status_kb(field: str) -> int:
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


async def main(count: int, batch: int) -> None:
    master = MasterFactory.create(script=WORKER, count=count, start_timeout=120, stop_timeout=30, kill_timeout=5)
    out: dict[str, float] = {"count": count, "batch": batch}
    async with master:
        out["rss_before_kb"] = status_kb("VmRSS")
        start = time.perf_counter()
        await master.start()
        out["start_s"] = time.perf_counter() - start
        out["rss_started_kb"] = status_kb("VmRSS")
        out["threads_started"] = len(os.listdir("/proc/self/task"))
        await anyio.sleep(0.2)
        start = time.perf_counter()
        await master.graceful_reload(batch_size=batch)
        out["reload_s"] = time.perf_counter() - start
        out["rss_reloaded_kb"] = status_kb("VmRSS")
        start = time.perf_counter()
        await master.graceful_shutdown()
        out["shutdown_s"] = time.perf_counter() - start
        out["rss_after_shutdown_kb"] = status_kb("VmRSS")
    out["hwm_kb"] = status_kb("VmHWM")
    print(json.dumps(out), flush=True)


anyio.run(main, int(sys.argv[2]), int(sys.argv[3]), backend=sys.argv[1])
