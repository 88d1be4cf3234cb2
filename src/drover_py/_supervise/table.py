"""The workers of one master: ids (never reused), slots, and which worker replaced which."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from .._exceptions import UnknownWorkerError
from .._status import WorkerStatus
from .worker import Worker


class WorkerTable:
    """Every worker a master knows, by id: running ones, those retiring, FAILED ones."""

    def __init__(self) -> None:
        self._workers: dict[int, Worker] = {}
        self._ids = itertools.count(1)
        #: The replacement made for each replaced worker id (one replacement per worker).
        self.replaced: dict[int, int] = {}

    def next_id(self) -> int:
        """Return an id no worker of this master had."""
        return next(self._ids)

    def add(self, worker: Worker) -> None:
        self._workers[worker.id] = worker

    def discard(self, worker: Worker) -> None:
        self._workers.pop(worker.id, None)

    def clear(self) -> None:
        self._workers.clear()

    def get(self, worker_id: int) -> Worker | None:
        return self._workers.get(worker_id)

    def find(self, worker_id: int) -> Worker:
        """Return worker ``worker_id``; raise `UnknownWorkerError` if there is none."""
        worker = self._workers.get(worker_id)
        if worker is None:
            raise UnknownWorkerError(worker_id)
        return worker

    def __iter__(self) -> Iterator[Worker]:
        return iter(list(self._workers.values()))

    def ordered(self) -> list[Worker]:
        """Return every worker, ordered by slot, then id."""
        return sorted(self._workers.values(), key=lambda w: (w.slot, w.id))

    def current(self) -> dict[int, Worker]:
        """Return the worker each slot is served by (the newest not being retired)."""
        current: dict[int, Worker] = {}
        for worker in sorted(self._workers.values(), key=lambda w: w.id):
            if not worker.requested:
                current[worker.slot] = worker
        return current

    def started(self) -> list[Worker]:
        """Return the STARTED workers, in `ordered` order."""
        return [w for w in self.ordered() if w.status is WorkerStatus.STARTED]

    def started_count(self) -> int:
        """Return how many workers are STARTED (during a reload a slot may have two)."""
        return sum(w.status is WorkerStatus.STARTED for w in self._workers.values())
