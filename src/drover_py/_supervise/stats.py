"""A master's running counts: exits by reason, restarts, reloads, start and reload times.

Plain numbers, kept as things happen; ``/metrics`` turns them into Prometheus metrics when
scraped (`drover_py._control.metrics`), so nothing here depends on a metrics library.
"""

from __future__ import annotations

import bisect
import collections

from .._exit_reasons import AbnormalExit, ExternalSignal, NormalExit
from .oom import OOM_DETAIL
from .output import OutputSink
from .worker import Worker

#: Bucket upper bounds (seconds) of the start and reload time histograms.
START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RELOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Histogram:
    """Observations counted in fixed buckets, with their count and sum."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """Return (upper bound, observations <= it) per bucket, ending with +inf."""
        result, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            running += count
            result.append((bound, running))
        return result


def exit_kind(worker: Worker) -> str:
    """Return the ``reason`` label of a worker's exit: oom, heartbeat, protocol, channel, normal, abnormal, signal."""
    reason = worker.exit_reason
    if reason is None:
        return "unknown"
    if reason.detail == OOM_DETAIL:
        return "oom"
    if worker.fault_kind is not None:
        return worker.fault_kind
    if isinstance(reason, NormalExit):
        return "normal"
    if isinstance(reason, AbnormalExit):
        return "abnormal"
    assert isinstance(reason, ExternalSignal)
    return "signal"


class MasterStats:
    """Counts of one master since it was made."""

    def __init__(self) -> None:
        #: Exits by (reason label, whether the master asked for them).
        self.exits: collections.Counter[tuple[str, bool]] = collections.Counter()
        #: Workers replaced in their slot by a restart (by hand, the policy or recycling).
        self.restarts = 0
        #: Reloads by outcome: "success", "rolled_back", "interrupted".
        self.reloads: collections.Counter[str] = collections.Counter()
        self.start_seconds = Histogram(START_BUCKETS)
        self.reload_seconds = Histogram(RELOAD_BUCKETS)
        #: The master's output sink, once open (it counts the lines it drops).
        self.sink: OutputSink | None = None

    @property
    def dropped_lines(self) -> int:
        """Return how many lines of worker output the master dropped."""
        return 0 if self.sink is None else self.sink.dropped_lines

    def exited(self, worker: Worker) -> None:
        if worker.exit_reason is not None:
            self.exits[exit_kind(worker), worker.requested] += 1

    def started(self, worker: Worker) -> None:
        if worker.start_seconds is not None:
            self.start_seconds.observe(worker.start_seconds)

    def reloaded(self, outcome: str, seconds: float) -> None:
        self.reloads[outcome] += 1
        self.reload_seconds.observe(seconds)
