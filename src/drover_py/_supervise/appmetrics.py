"""The workers' own metrics as their master sums them: per slot, over slots, never reset.

Workers declare counters, gauges and histograms on their bus and send what changed in
"metrics" frames (`drover_py._wire.metrics`); `AppMetrics` (one per master) adds them up
and `AppMetrics.families` gives an exporter a neutral, frozen snapshot.

- A counter or a histogram keeps one total per (metric, label values, slot). A worker
  sends increases only, which add to its slot's total, so the total survives the
  worker: a replacement after a crash, a restart, a recycle or a reload continues from
  it. It never goes back to 0 while the master runs.
- A gauge belongs to the live worker of its slot (the newest one, while a reload
  overlaps two) and disappears when that worker exits.
- Every family also has the sum over slots, with ``slot="all"`` (gauges included).
- The first declaration of a name fixes its kind, label names and buckets for the
  master's lifetime; a worker that declares the name otherwise is refused (its series
  of that name are ignored) with one warning. A new help text replaces the old one.
- A worker may have `MAX_SERIES` series; a slot keeps at most as many counter and
  histogram series. Past that, new series are ignored, with one warning.

A series for a name the worker never declared, or that does not fit its declaration,
raises `ProtocolError`: the worker's channel reports it like any protocol violation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal

import attrs
from structlog.typing import FilteringBoundLogger

from .._exceptions import ProtocolError
from .._wire import metrics as wire

MAX_SERIES = wire.MAX_SERIES
#: The label a master adds to every sample: the worker's slot, or "all" for the sum over slots.
SLOT_LABEL = "slot"
ALL_SLOTS = "all"

Kind = Literal["counter", "gauge", "histogram"]
Labels = tuple[tuple[str, str], ...]
_Values = tuple[str, ...]


@attrs.frozen
class Sample:
    """The value of one series of a counter or a gauge."""

    #: The user's labels, then ``("slot", "0")`` (or ``"all"``).
    labels: Labels
    value: float


@attrs.frozen
class HistogramSample:
    """One series of a histogram."""

    #: The user's labels, then ``("slot", ...)``.
    labels: Labels
    #: (upper bound, cumulative count), in increasing order; the last bound is +Inf.
    buckets: tuple[tuple[float, float], ...]
    #: Observations counted (the +Inf bucket's count).
    count: float
    #: Sum of the observations.
    total: float


@attrs.frozen
class Family:
    """A metric and its samples: the series of each slot, then their sum (``slot="all"``)."""

    name: str
    kind: Kind
    help: str
    samples: tuple[Sample, ...] | tuple[HistogramSample, ...]


@attrs.define
class _WorkerView:
    """What a master knows of one worker's metrics."""

    slot: int
    #: name -> whether its declaration was accepted.
    declared: dict[str, bool] = attrs.Factory(dict)
    #: (name, label values) of the series it sent, for the series limit.
    series: set[tuple[str, _Values]] = attrs.Factory(set)


class AppMetrics:
    """Add up the metrics of one master's workers; see the module's docstring for the rules."""

    def __init__(self, log: FilteringBoundLogger, max_series: int = MAX_SERIES) -> None:
        self._log = log
        self._max_series = max_series
        self._meta: dict[str, wire.Declaration] = {}
        self._workers: dict[int, _WorkerView] = {}
        # name -> (label values, slot) -> total; for histograms [count per bucket..., sum]
        self._counters: dict[str, dict[tuple[_Values, int], float]] = {}
        self._histograms: dict[str, dict[tuple[_Values, int], list[float]]] = {}
        # name -> (label values, worker id) -> (slot, value)
        self._gauges: dict[str, dict[tuple[_Values, int], tuple[int, float]]] = {}
        self._slot_series: dict[int, int] = {}
        self._warned: set[object] = set()

    # -- from the workers -----------------------------------------------------------------

    def ingest(self, worker_id: int, slot: int, batch: wire.MetricsBatch) -> None:
        """Add a batch of worker ``worker_id`` (in ``slot``); raise `ProtocolError` if it is inconsistent."""
        view = self._workers.get(worker_id)
        if view is None:
            view = self._workers[worker_id] = _WorkerView(slot)
        for declaration in batch.declare:
            self._declare(worker_id, view, declaration)
        for name, values, increase in batch.counters:
            if self._accepts(worker_id, view, name, values, wire.COUNTER):
                totals = self._counters.setdefault(name, {})
                key = (values, slot)
                if key in totals:
                    totals[key] += increase
                elif self._keeps(slot, name, values):
                    totals[key] = increase
        for name, values, value in batch.gauges:
            if self._accepts(worker_id, view, name, values, wire.GAUGE):
                self._gauges.setdefault(name, {})[(values, worker_id)] = (slot, value)
        for name, values, counts, total in batch.histograms:
            if not self._accepts(worker_id, view, name, values, wire.HISTOGRAM):
                continue
            if len(counts) != len(self._meta[name].buckets) + 1:
                raise ProtocolError(f"metrics: series of histogram {name!r} with {len(counts)} buckets")
            series = self._histograms.setdefault(name, {})
            key = (values, slot)
            kept = series.get(key)
            if kept is None:
                if not self._keeps(slot, name, values):
                    continue
                kept = series[key] = [0.0] * (len(counts) + 1)
            for i, count in enumerate(counts):
                kept[i] += count
            kept[-1] += total

    def worker_gone(self, worker_id: int) -> None:
        """Forget an exited worker: its gauges go; its counters stay in its slot's totals."""
        if self._workers.pop(worker_id, None) is None:
            return
        for series in self._gauges.values():
            for key in [key for key in series if key[1] == worker_id]:
                del series[key]

    def _declare(self, worker_id: int, view: _WorkerView, declaration: wire.Declaration) -> None:
        name = declaration.name
        if name in view.declared:
            raise ProtocolError(f"metrics: metric {name!r} declared twice")
        known = self._meta.get(name)
        if known is None or known.shape() == declaration.shape():
            self._meta[name] = declaration  # the same, or a new help text
            view.declared[name] = True
            return
        view.declared[name] = False
        if (name, declaration.shape()) not in self._warned:
            self._warned.add((name, declaration.shape()))
            self._log.warning(
                "metric refused: declared before with another type, labels or buckets; rename it",
                metric=name,
                worker_id=worker_id,
                slot=view.slot,
                declared=_describe(declaration),
                kept=_describe(known),
            )

    def _accepts(self, worker_id: int, view: _WorkerView, name: str, values: _Values, kind: str) -> bool:
        accepted = view.declared.get(name)
        if accepted is None:
            raise ProtocolError(f"metrics: series of {name!r}, which the worker never declared")
        if not accepted:
            return False
        meta = self._meta[name]
        if meta.kind != kind or len(values) != len(meta.labels):
            raise ProtocolError(f"metrics: a {kind} series of {name!r} does not fit its declaration")
        key = (name, values)
        if key not in view.series:
            if len(view.series) >= self._max_series:
                self._warn_limit(("worker", worker_id), worker_id=worker_id, slot=view.slot, metric=name)
                return False
            view.series.add(key)
        return True

    def _keeps(self, slot: int, name: str, values: _Values) -> bool:
        """Count a new counter or histogram series of ``slot``; False past the limit."""
        count = self._slot_series.get(slot, 0)
        if count >= self._max_series:
            self._warn_limit(("slot", slot), slot=slot, metric=name)
            return False
        self._slot_series[slot] = count + 1
        return True

    def _warn_limit(self, key: object, **where: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._log.warning(f"metric series over the limit of {self._max_series}; new series are ignored", **where)

    # -- for an exporter ------------------------------------------------------------------

    def families(self) -> list[Family]:
        """Return every metric declared so far, by name, with its samples: each slot's, then ``slot="all"``."""
        families = []
        for name in sorted(self._meta):
            meta = self._meta[name]
            samples: tuple[Sample, ...] | tuple[HistogramSample, ...]
            if meta.kind == wire.COUNTER:
                samples = _samples(meta, self._counters.get(name, {}))
            elif meta.kind == wire.GAUGE:
                samples = _samples(meta, self._live_gauges(name))
            else:
                samples = _histogram_samples(meta, self._histograms.get(name, {}))
            kind: Kind = "counter" if meta.kind == wire.COUNTER else "gauge" if meta.kind == wire.GAUGE else "histogram"
            families.append(Family(name=name, kind=kind, help=meta.help, samples=samples))
        return families

    def _live_gauges(self, name: str) -> dict[tuple[_Values, int], float]:
        """Return (label values, slot) -> the value of the slot's newest worker."""
        newest: dict[tuple[_Values, int], tuple[int, float]] = {}
        for (values, worker_id), (slot, value) in self._gauges.get(name, {}).items():
            key = (values, slot)
            if key not in newest or newest[key][0] < worker_id:
                newest[key] = (worker_id, value)
        return {key: value for key, (_, value) in newest.items()}


def _labels(meta: wire.Declaration, values: _Values, slot: str) -> Labels:
    return (*zip(meta.labels, values), (SLOT_LABEL, slot))


def _by_values(series: Iterable[tuple[_Values, int]]) -> dict[_Values, list[int]]:
    """Return label values -> their slots, both sorted."""
    grouped: dict[_Values, list[int]] = {}
    for values, slot in sorted(series):
        grouped.setdefault(values, []).append(slot)
    return grouped


def _samples(meta: wire.Declaration, series: Mapping[tuple[_Values, int], float]) -> tuple[Sample, ...]:
    samples = []
    for values, slots in _by_values(series).items():
        for slot in slots:
            samples.append(Sample(labels=_labels(meta, values, str(slot)), value=series[(values, slot)]))
        samples.append(Sample(labels=_labels(meta, values, ALL_SLOTS), value=sum(series[(values, s)] for s in slots)))
    return tuple(samples)


def _histogram_samples(
    meta: wire.Declaration, series: Mapping[tuple[_Values, int], list[float]]
) -> tuple[HistogramSample, ...]:
    bounds = (*meta.buckets, math.inf)
    samples = []

    def sample(values: _Values, slot: str, kept: list[float]) -> HistogramSample:
        cumulative = []
        running = 0.0
        for count in kept[:-1]:
            running += count
            cumulative.append(running)
        return HistogramSample(
            labels=_labels(meta, values, slot),
            buckets=tuple(zip(bounds, cumulative)),
            count=running,
            total=kept[-1],
        )

    for values, slots in _by_values(series).items():
        summed = [0.0] * (len(bounds) + 1)
        for slot in slots:
            kept = series[(values, slot)]
            samples.append(sample(values, str(slot), kept))
            summed = [a + b for a, b in zip(summed, kept)]
        samples.append(sample(values, ALL_SLOTS, summed))
    return tuple(samples)


def _describe(declaration: wire.Declaration) -> str:
    text = f"{declaration.kind} with labels {list(declaration.labels)}"
    return text + (f" and buckets {list(declaration.buckets)}" if declaration.buckets else "")
