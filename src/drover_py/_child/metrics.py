"""A worker's own metrics: counters, gauges and histograms that its master aggregates.

``mb.counter(...)``, ``mb.gauge(...)`` and ``mb.histogram(...)`` (both buses) declare
them in a `MetricRegistry`; the bus sends what changed to the master in "metrics"
frames (`drover_py._wire.metrics`), at most once per interval, and once more before
"stopped" and "shut_down". Imported on the first declaration only: a worker without
metrics does not load it. Standard library only, like the rest of the child side.

The hot path is one addition to a cell of the calling thread, with no lock: each thread
adds to a cell of its own (found through a `threading.local`), and the flusher alone
reads the cells and remembers what it sent of each. So increments from many threads
(`SyncMessageBus`, ``anyio.to_thread``) lose nothing, even without a GIL. The cell of
a thread that ended is read one last time, then dropped. Gauges, set more often than
summed, take a lock instead.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import TypeVar

from .._checks import check_seconds
from .._env import DEFAULT_METRICS_INTERVAL, METRICS_INTERVAL_ENV
from .._wire import metrics as wire
from .._wire import protocol as proto

#: The buckets of a histogram declared without any (prometheus_client's default).
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_INF = math.inf

S = TypeVar("S", bound="_Metric")


def interval_from_env() -> float:
    """Return the seconds between two batches: `METRICS_INTERVAL_ENV`, or the default."""
    text = os.environ.get(METRICS_INTERVAL_ENV)
    if text is None or not text.strip():
        return DEFAULT_METRICS_INTERVAL
    try:
        value: object = float(text)
    except ValueError:
        value = text
    return check_seconds(METRICS_INTERVAL_ENV, value)


class _Token:
    """Lives as long as its thread's `threading.local` storage: a weak reference to it tells a thread ended."""

    __slots__ = ("__weakref__",)


class _Metric:
    """What counters, gauges and histograms share: identity, labels, registration."""

    __slots__ = ("name", "_registry", "_labelnames", "_values", "_children", "_local", "_cells", "_new")
    _kind = ""
    _section = ""

    def __init__(
        self, registry: MetricRegistry, name: str, labelnames: tuple[str, ...], values: tuple[str, ...] | None
    ) -> None:
        #: The metric's name, as declared.
        self.name = name
        self._registry = registry
        self._labelnames = labelnames
        #: The label values of a series; None for a labelled metric itself (which only makes series).
        self._values = values
        self._children: dict[tuple[object, ...], _Metric] | None = None if values is not None else {}
        # A labelled metric has no storage of its own: its hot-path methods fail over to `_cell`, which says so.
        self._local: threading.local | None = None if values is None else threading.local()
        self._cells: list[tuple[weakref.ref[_Token], list[float]]] = []
        self._new = True  # sent once even if unchanged: a series shows up as soon as it exists

    def labels(self: S, *values: object, **named: object) -> S:
        """Return the series of these label values (``str()``-ed), by position or by name.

        Keep it rather than calling this on every increment: the lookup costs more than
        the increment. Raise ValueError if the values do not match the label names.
        """
        children = self._children
        if children is None or not self._labelnames:
            raise ValueError(f"metric {self.name!r} has no labels: call its methods directly")
        if not named:
            try:
                child = children.get(values)
            except TypeError:  # an unhashable value: str() makes it hashable below
                child = None
            if child is not None:
                return child  # type: ignore[return-value]
            key = tuple(map(str, values))
        elif values:
            raise ValueError(f"metric {self.name!r}: give label values by position or by name, not both")
        elif named.keys() != set(self._labelnames):
            raise ValueError(f"metric {self.name!r} has the labels {self._labelnames}, got {tuple(named)}")
        else:
            key = tuple(str(named[label]) for label in self._labelnames)
        if len(key) != len(self._labelnames):
            raise ValueError(f"metric {self.name!r} has the labels {self._labelnames}, got {len(key)} values")
        child = children.get(key)
        if child is None:
            child = self._registry._add_series(self, key)
            if child is None:
                return self._registry._discard  # type: ignore[return-value]  # over the series limit
            children[key] = child
        if not named and key != values:
            try:
                children[values] = child  # found at once the next time
            except TypeError:
                pass
        return child  # type: ignore[return-value]

    def _child(self, values: tuple[str, ...]) -> _Metric:
        return type(self)(self._registry, self.name, self._labelnames, values)

    def _labelled(self) -> None:
        raise ValueError(f"metric {self.name!r} has labels {self._labelnames}: use .labels(...) first")

    def _cell(self, size: int) -> list[float]:
        """Return a new cell for the calling thread (its first use of this series)."""
        if self._local is None:
            self._labelled()
        assert self._local is not None
        cell: list[float] = [0] * size
        token = _Token()
        self._local.cell = cell
        self._local.token = token
        with self._registry._lock:
            self._cells.append((weakref.ref(token), cell))
        return cell

    def _read_cells(self, width: int) -> list[float] | None:
        """Return what the cells gained since the last read (or None if nothing), and forget ended threads' cells."""
        gained: list[float] | None = None
        ended = []
        for ref, cell in list(self._cells):
            gone = ref() is None  # before the read: a thread that ended adds nothing more
            values = cell[:width]
            sent = cell[width:]
            if values != sent:
                cell[width:] = values
                if gained is None:
                    gained = [0] * width
                for i in range(width):
                    gained[i] += values[i] - sent[i]
            if gone:
                ended.append(cell)
        if ended:
            with self._registry._lock:
                self._cells = [entry for entry in self._cells if not any(entry[1] is cell for cell in ended)]
        return gained

    def _entry(self) -> list[object] | None:
        """Return the series' entry of the next frame, or None if it did not change."""
        raise NotImplementedError


class Counter(_Metric):
    """A total that only goes up (requests served, bytes sent). Made by ``mb.counter(...)``."""

    __slots__ = ()
    _kind = wire.COUNTER
    _section = "counters"

    def inc(self, amount: float = 1) -> None:
        """Add ``amount`` (default 1, must be >= 0 and finite); thread-safe, no lock."""
        if not 0 <= amount < _INF:
            raise ValueError(f"counter {self.name!r} can only go up by a finite amount >= 0, got {amount!r}")
        try:
            self._local.cell[0] += amount  # type: ignore[union-attr]
        except AttributeError:
            self._cell(2)[0] += amount
        if not self._registry.dirty:
            self._registry.touch()

    def _entry(self) -> list[object] | None:
        gained = self._read_cells(1)
        if gained is None and not self._new:
            return None
        self._new = False
        return [self.name, list(self._values or ()), 0 if gained is None else gained[0]]


class Gauge(_Metric):
    """A value that goes up and down (queue depth, connections open). Made by ``mb.gauge(...)``.

    The master shows the value of the live worker of each slot; it disappears when that
    worker exits.
    """

    __slots__ = ("_value", "_sent", "_lock")
    _kind = wire.GAUGE
    _section = "gauges"

    def __init__(
        self, registry: MetricRegistry, name: str, labelnames: tuple[str, ...], values: tuple[str, ...] | None
    ) -> None:
        super().__init__(registry, name, labelnames, values)
        self._value: float = 0
        self._sent: float | None = None
        self._lock = threading.Lock()

    def set(self, value: float) -> None:
        """Make the gauge ``value`` (a finite number)."""
        if not -_INF < value < _INF:
            raise ValueError(f"gauge {self.name!r} takes finite numbers, got {value!r}")
        if self._values is None:
            self._labelled()
        lock = self._lock  # acquire/release rather than `with`: cheaper, as safe
        lock.acquire()
        try:
            self._value = value
        finally:
            lock.release()
        if not self._registry.dirty:
            self._registry.touch()

    def inc(self, amount: float = 1) -> None:
        """Add ``amount`` (default 1; finite, may be negative)."""
        if not -_INF < amount < _INF:
            raise ValueError(f"gauge {self.name!r} takes finite numbers, got {amount!r}")
        if self._values is None:
            self._labelled()
        lock = self._lock
        lock.acquire()
        try:
            self._value += amount
        finally:
            lock.release()
        if not self._registry.dirty:
            self._registry.touch()

    def dec(self, amount: float = 1) -> None:
        """Subtract ``amount`` (default 1)."""
        self.inc(-amount)

    def _entry(self) -> list[object] | None:
        with self._lock:
            value = self._value
        if value == self._sent and not self._new:
            return None
        self._new = False
        self._sent = value
        return [self.name, list(self._values or ()), value]


class Histogram(_Metric):
    """Observations counted in buckets (request durations, sizes). Made by ``mb.histogram(...)``."""

    __slots__ = ("_bounds", "_width")
    _kind = wire.HISTOGRAM
    _section = "histograms"

    def __init__(
        self,
        registry: MetricRegistry,
        name: str,
        labelnames: tuple[str, ...],
        values: tuple[str, ...] | None,
        bounds: tuple[float, ...] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(registry, name, labelnames, values)
        self._bounds = bounds
        self._width = len(bounds) + 2  # a count per bucket, +Inf's, then the sum

    def _child(self, values: tuple[str, ...]) -> _Metric:
        return Histogram(self._registry, self.name, self._labelnames, values, self._bounds)

    def observe(self, value: float) -> None:
        """Count ``value`` (a finite number) in its bucket and add it to the sum; thread-safe, no lock."""
        if not -_INF < value < _INF:
            raise ValueError(f"histogram {self.name!r} observes finite numbers, got {value!r}")
        try:
            cell = self._local.cell  # type: ignore[union-attr]
        except AttributeError:
            cell = self._cell(2 * self._width)
        cell[bisect_left(self._bounds, value)] += 1  # bucket i holds bounds[i-1] < value <= bounds[i]
        cell[self._width - 1] += value
        if not self._registry.dirty:
            self._registry.touch()

    def _entry(self) -> list[object] | None:
        gained = self._read_cells(self._width)
        if gained is None and not self._new:
            return None
        self._new = False
        if gained is None:
            gained = [0] * self._width
        counts = [int(c) for c in gained[:-1]]
        return [self.name, list(self._values or ()), counts, gained[-1]]


class _Discard:
    """What ``labels()`` returns past the series limit: every call does nothing."""

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, value: float) -> None:
        pass

    def labels(self, *values: object, **named: object) -> _Discard:
        return self


class MetricRegistry:
    """The metrics of one bus, and what of them the master has not been told yet."""

    def __init__(self) -> None:
        #: Seconds between two batches (`METRICS_INTERVAL_ENV`); `ConfigError` if that is invalid.
        self.interval = interval_from_env()
        #: Something changed since the last `collect`. Read on the hot path, so a plain attribute.
        self.dirty = False
        self._wake: Callable[[], None] | None = None
        self._lock = threading.Lock()  # declarations, new series and cells; never the hot path
        self._metrics: dict[str, tuple[_Metric, wire.Declaration]] = {}
        self._series: list[_Metric] = []
        self._announced: set[str] = set()
        self._discard = _Discard()
        self._warned: set[str] = set()

    def attach(self, wake: Callable[[], None]) -> None:
        """Call ``wake()`` (from any thread) whenever something changes after a `collect`."""
        self._wake = wake
        if self.dirty:
            wake()

    def touch(self) -> None:
        """Note a change and wake the flusher (once per batch: the hot path tests `dirty` first)."""
        self.dirty = True
        wake = self._wake
        if wake is not None:
            wake()

    # -- declarations -------------------------------------------------------------------

    def counter(self, name: str, help: str, labels: Iterable[str] = ()) -> Counter:
        """Declare a counter (see `MessageBus.counter`)."""
        metric = self._declare(wire.COUNTER, name, help, labels, ())
        assert isinstance(metric, Counter)
        return metric

    def gauge(self, name: str, help: str, labels: Iterable[str] = ()) -> Gauge:
        """Declare a gauge (see `MessageBus.gauge`)."""
        metric = self._declare(wire.GAUGE, name, help, labels, ())
        assert isinstance(metric, Gauge)
        return metric

    def histogram(
        self, name: str, help: str, labels: Iterable[str] = (), buckets: Iterable[float] = DEFAULT_BUCKETS
    ) -> Histogram:
        """Declare a histogram (see `MessageBus.histogram`)."""
        if isinstance(buckets, (str, bytes)) or not isinstance(buckets, Iterable):
            raise ValueError(f"histogram {name!r}: buckets must be a sequence of numbers, got {buckets!r}")
        bounds = tuple(buckets)
        if bounds and bounds[-1] == _INF:
            bounds = bounds[:-1]  # +Inf is always there
        error = wire.buckets_error(bounds)
        if error is not None:
            raise ValueError(f"histogram {name!r}: {error}")
        metric = self._declare(wire.HISTOGRAM, name, help, labels, tuple(float(b) for b in bounds))
        assert isinstance(metric, Histogram)
        return metric

    def _declare(self, kind: str, name: str, help: str, labels: Iterable[str], buckets: tuple[float, ...]) -> _Metric:
        error = wire.metric_name_error(name)
        if error is not None:
            raise ValueError(error)
        if not isinstance(help, str) or len(help) > wire.MAX_HELP_LENGTH:
            raise ValueError(f"metric {name!r}: help must be a str of at most {wire.MAX_HELP_LENGTH} characters")
        names = tuple(labels) if not isinstance(labels, str) else labels
        error = wire.label_names_error(names, kind)
        if error is not None:
            raise ValueError(
                f"metric {name!r}: {error}" + (f"; write labels=({labels!r},)" if isinstance(labels, str) else "")
            )
        assert isinstance(names, tuple)
        declaration = wire.Declaration(name, kind, help, names, buckets)
        with self._lock:
            known = self._metrics.get(name)
            if known is not None:
                if known[1] != declaration:
                    old = known[1]
                    raise ValueError(
                        f"metric {name!r} is already declared as a {old.kind} with labels {old.labels}"
                        + (f" and buckets {old.buckets}" if old.buckets else "")
                        + (f" and help {old.help!r}" if old.shape() == declaration.shape() else "")
                    )
                return known[0]
            metric: _Metric
            if kind == wire.HISTOGRAM:
                metric = Histogram(self, name, names, None if names else (), buckets)
            else:
                metric = (Counter if kind == wire.COUNTER else Gauge)(self, name, names, None if names else ())
            if not names:
                if len(self._series) >= wire.MAX_SERIES:
                    raise ValueError(f"metric {name!r}: this worker already has {wire.MAX_SERIES} series")
                self._series.append(metric)
            self._metrics[name] = (metric, declaration)
        self.touch()
        return metric

    def _add_series(self, metric: _Metric, values: tuple[str, ...]) -> _Metric | None:
        """Make and register a series of a labelled metric; None past `MAX_SERIES` (with one warning)."""
        encoded = len((proto._Json.encode or proto._encoder())([metric.name, list(values)]))
        if encoded > wire.MAX_ENTRY_SIZE - 1000:
            raise ValueError(f"metric {metric.name!r}: label values too long ({encoded} bytes encoded)")
        with self._lock:
            if len(self._series) >= wire.MAX_SERIES:
                self._warn_once(
                    "series",
                    f"drover-py: this worker has {wire.MAX_SERIES} metric series, the most it may have: "
                    f"a new series of {metric.name!r} {values} and those after it are not counted",
                )
                return None
            child = metric._child(values)
            self._series.append(child)
        self.touch()
        return child

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=4)

    # -- the flusher's side -------------------------------------------------------------

    def collect(self) -> list[bytes]:
        """Return the frames that tell the master what changed since the last call (maybe none).

        Called by one flusher at a time (the bus holds a lock around it and the send).
        """
        self.dirty = False  # before reading: a change from now on is in the next batch
        with self._lock:
            declare = [d for _, d in self._metrics.values() if d.name not in self._announced]
            series = list(self._series)
        sections: dict[str, list[list[object]]] = {"counters": [], "gauges": [], "histograms": []}
        for metric in series:
            entry = metric._entry()
            if entry is not None:
                sections[metric._section].append(entry)
        if not declare and not any(sections.values()):
            return []
        self._announced.update(d.name for d in declare)
        frames, dropped = wire.encode_frames(declare, sections)
        if dropped:
            self._warn_once("dropped", f"drover-py: {dropped} metric series could not be sent (a value overflowed)")
        return frames
