"""Recycling: replace workers past their ``max_age`` or ``max_rss`` (`RecyclePolicy`)."""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable

import anyio
from structlog.typing import FilteringBoundLogger

from .._config.policies import RecyclePolicy
from .._exceptions import DroverError
from .._status import WorkerStatus
from .table import WorkerTable
from .worker import Worker


def read_rss(pid: int) -> int | None:
    """Return the resident set size of ``pid`` in bytes, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as file:
            for line in file:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class Recycler:
    """Watch the workers serving the slots and replace those due, one at a time."""

    def __init__(
        self, log: FilteringBoundLogger, table: WorkerTable, replace: Callable[[int], Awaitable[object]]
    ) -> None:
        self._log = log
        self._table = table
        self._replace = replace
        self._worker_started = anyio.Event()

    def worker_started(self) -> None:
        """Wake the recycler: a new worker brings a new deadline."""
        self._worker_started.set()

    async def run(self, policy: RecyclePolicy) -> None:
        """Replace workers past ``max_age`` or ``max_rss``, forever.

        Wakes at the next age deadline, when a worker starts, and every check_interval.
        """
        due: dict[int, float] = {}
        while True:
            now = anyio.current_time()
            current = [w for w in self._table.current().values() if w.status is WorkerStatus.STARTED]
            due = {w.id: due.get(w.id) or self._age_limit(w, policy) for w in current}
            for worker in current:
                why = None
                if now >= due[worker.id]:
                    why = f"older than {policy.max_age:g} s"
                elif policy.max_rss is not None:
                    rss = None if worker.pid is None else read_rss(worker.pid)
                    if rss is not None and rss > policy.max_rss:
                        why = f"resident memory {rss} > {policy.max_rss} bytes"
                if why is not None:
                    self._log.info("recycling worker", worker_id=worker.id, slot=worker.slot, why=why)
                    try:
                        await self._replace(worker.id)
                    except DroverError as exc:
                        self._log.warning("recycling failed", worker_id=worker.id, error=str(exc))
            wake = min([*due.values(), anyio.current_time() + policy.check_interval])
            with anyio.move_on_after(max(0.0, wake - anyio.current_time())):
                await self._worker_started.wait()
            self._worker_started = anyio.Event()

    @staticmethod
    def _age_limit(worker: Worker, policy: RecyclePolicy) -> float:
        if policy.max_age is None:
            return math.inf
        spread = 1 + random.uniform(-policy.jitter, policy.jitter)
        return anyio.current_time() - worker.uptime() + policy.max_age * spread
