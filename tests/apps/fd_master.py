"""Start a master under a tiny RLIMIT_NOFILE; print what happened as one JSON line."""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

import anyio
import structlog

from drover_py import MasterFactory, SpawnError

structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def main() -> None:
    master = MasterFactory.create(script=Path(__file__).with_name("worker.py"), count=8)
    async with master:
        before = open_fds()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (before + 6, hard))
        try:
            await master.start()
            result: dict[str, object] = {"error": None}
        except SpawnError as exc:
            result = {"error": str(exc), "cause": type(exc.__cause__).__name__}
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        result.update(fds_before=before, fds_after=open_fds(), workers=len(master.workers))
        print(json.dumps(result), flush=True)


anyio.run(main, backend=sys.argv[1])
