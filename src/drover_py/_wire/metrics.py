"""The "metrics" frame: what a worker's metrics did since its last batch. Pure: no I/O.

A worker sends it to its master only (never the other way), at most once per interval
and only when something changed::

    {"type": "metrics",
     "declare": [[name, kind, help, [label names]],                    # "counter", "gauge"
                 [name, "histogram", help, [label names], [bounds]]],  # bounds without +Inf
     "counters": [[name, [label values], increase]],
     "gauges": [[name, [label values], value]],
     "histograms": [[name, [label values], [increase per bucket, +Inf last], sum increase]]}

Every key but "type" is optional. A metric is declared once per worker, in the frame
that carries its first series or in an earlier one. Counters and histograms carry what
was added since the last batch (so a batch that arrives twice, or a worker that is
replaced, never makes a total go back); a gauge carries its current value. A worker
splits a big batch into several frames (`FRAME_TARGET` bytes each, at most), in order.

`parse` is the master's strict check of a decoded frame (`ProtocolError` for anything
else); `encode_frames` is the worker's encoder. The name rules are shared by both sides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from .._exceptions import ProtocolError
from . import protocol as proto

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"
KINDS = (COUNTER, GAUGE, HISTOGRAM)
#: The frame's sections of series, in the order a frame lists them: key -> kind.
SECTIONS = {"counters": COUNTER, "gauges": GAUGE, "histograms": HISTOGRAM}
_KEYS = frozenset({"type", "declare", *SECTIONS})

#: Metric names that start with this belong to drover-py itself.
RESERVED_PREFIX = "drover_"
#: Label names the master adds itself (and Prometheus reserves ``__*``; histograms ``le``).
RESERVED_LABELS = frozenset({"slot", "master"})
MAX_NAME_LENGTH = 200
MAX_HELP_LENGTH = 1000
MAX_LABELS = 16
MAX_BUCKETS = 64
#: Series one worker may have; the master keeps at most as many per slot.
MAX_SERIES = 1000
#: Largest encoded series (its label values, mostly): a frame always has room for one.
MAX_ENTRY_SIZE = 8 * 1024
#: A worker's frames stay under this size, so that a lifecycle frame never waits long behind one.
FRAME_TARGET = 16 * 1024
assert FRAME_TARGET + MAX_ENTRY_SIZE < proto.MAX_FRAME_SIZE

_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:")
_NAME_REST = _NAME_FIRST | frozenset("0123456789")
_LABEL_FIRST = _NAME_FIRST - {":"}
_LABEL_REST = _NAME_REST - {":"}


def metric_name_error(name: object) -> str | None:
    """Return why ``name`` cannot name a metric, or None if it can."""
    if not isinstance(name, str):
        return f"a metric name must be a str, got {type(name).__name__}"
    if not name or len(name) > MAX_NAME_LENGTH or name[0] not in _NAME_FIRST or not _NAME_REST.issuperset(name):
        return (
            f"invalid metric name {name!r}: use letters, digits, '_' and ':' "
            f"(not a digit first), at most {MAX_NAME_LENGTH} characters"
        )
    if name.startswith(RESERVED_PREFIX):
        return f"invalid metric name {name!r}: the prefix {RESERVED_PREFIX!r} is drover-py's own"
    return None


def label_names_error(labels: object, kind: str) -> str | None:
    """Return why ``labels`` cannot be the label names of a ``kind`` metric, or None."""
    if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
        return f"label names must be a tuple of str, got {labels!r}"
    if len(labels) > MAX_LABELS:
        return f"at most {MAX_LABELS} label names, got {len(labels)}"
    for label in labels:
        if (
            not isinstance(label, str)
            or not label
            or len(label) > MAX_NAME_LENGTH
            or label[0] not in _LABEL_FIRST
            or not _LABEL_REST.issuperset(label)
        ):
            return f"invalid label name {label!r}: use letters, digits and '_' (not a digit first)"
        if label.startswith("__") or label in RESERVED_LABELS or (label == "le" and kind == HISTOGRAM):
            return f"label name {label!r} is reserved"
    if len(set(labels)) != len(labels):
        return f"label names repeat: {list(labels)!r}"
    return None


def buckets_error(buckets: object) -> str | None:
    """Return why ``buckets`` (finite upper bounds, +Inf left out) are not valid, or None."""
    if not isinstance(buckets, (list, tuple)) or not 1 <= len(buckets) <= MAX_BUCKETS:
        return f"buckets must be 1 to {MAX_BUCKETS} upper bounds, got {buckets!r}"
    if not all(_is_finite(b) for b in buckets):
        return f"bucket bounds must be finite numbers (+Inf is implicit), got {list(buckets)!r}"
    if any(a >= b for a, b in zip(buckets, buckets[1:])):
        return f"bucket bounds must increase, got {list(buckets)!r}"
    return None


def _is_finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


class Declaration:
    """A metric as a worker declared it."""

    __slots__ = ("name", "kind", "help", "labels", "buckets")

    def __init__(
        self, name: str, kind: str, help: str, labels: tuple[str, ...], buckets: tuple[float, ...] = ()
    ) -> None:
        self.name = name
        self.kind = kind
        self.help = help
        self.labels = labels
        #: Upper bounds of a histogram's buckets, +Inf left out (empty for the others).
        self.buckets = buckets

    def entry(self) -> list[object]:
        """Return the declaration as the frame lists it."""
        head: list[object] = [self.name, self.kind, self.help, list(self.labels)]
        return head + [list(self.buckets)] if self.kind == HISTOGRAM else head

    def shape(self) -> tuple[str, tuple[str, ...], tuple[float, ...]]:
        """Return what series of the same name must share to add up: kind, label names, buckets."""
        return (self.kind, self.labels, self.buckets)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Declaration):
            return NotImplemented
        return (self.name, self.help, *self.shape()) == (other.name, other.help, *other.shape())

    def __hash__(self) -> int:
        return hash((self.name, self.help, *self.shape()))

    def __repr__(self) -> str:
        return f"Declaration({self.name!r}, {self.kind!r}, labels={self.labels!r}, buckets={self.buckets!r})"


#: (metric name, label values, increase) of a counter; (name, values, value) of a gauge.
Point = tuple[str, tuple[str, ...], float]
#: (metric name, label values, increase per bucket with +Inf last, increase of the sum).
HistogramPoint = tuple[str, tuple[str, ...], tuple[int, ...], float]


class MetricsBatch:
    """A decoded "metrics" frame, checked: what `parse` returns (`Data.payload`)."""

    __slots__ = ("declare", "counters", "gauges", "histograms", "size")

    def __init__(
        self,
        declare: Sequence[Declaration] = (),
        counters: Sequence[Point] = (),
        gauges: Sequence[Point] = (),
        histograms: Sequence[HistogramPoint] = (),
        size: int = 0,
    ) -> None:
        self.declare = tuple(declare)
        self.counters = tuple(counters)
        self.gauges = tuple(gauges)
        self.histograms = tuple(histograms)
        #: Length of the frame, newline included.
        self.size = size

    def __repr__(self) -> str:
        return (
            f"MetricsBatch(declare={self.declare!r}, counters={self.counters!r}, "
            f"gauges={self.gauges!r}, histograms={self.histograms!r})"
        )


# -- the worker's side: encoding ------------------------------------------------------


def encode_frames(
    declare: Sequence[Declaration],
    sections: dict[str, list[list[object]]],
    limit: int = FRAME_TARGET,
) -> tuple[list[bytes], int]:
    """Return the frames of one batch, each under ``limit`` bytes if it can be, and the entries dropped.

    ``sections`` maps "counters", "gauges" and "histograms" to their entries (as the
    frame lists them). Declarations go first, so each precedes its series. An entry that
    cannot be encoded (a sum that overflowed to infinity) or that no frame can hold is
    dropped and counted.
    """
    encode = proto._Json.encode or proto._encoder()
    frames: list[bytes] = []
    parts: dict[str, list[str]] = {}
    size = 0
    base = len('{"type":"metrics"}\n')
    dropped = 0

    def flush() -> None:
        nonlocal size
        if parts:
            body = "".join(f',"{key}":[{",".join(texts)}]' for key, texts in parts.items())
            frames.append(f'{{"type":"metrics"{body}}}\n'.encode())
            parts.clear()
        size = base

    flush()
    todo: list[tuple[str, list[object]]] = [("declare", d.entry()) for d in declare]
    todo += [(key, entry) for key in SECTIONS for entry in sections.get(key, ())]
    for key, entry in todo:
        try:
            text = encode(entry)
        except ValueError:  # a number that overflowed to inf
            dropped += 1
            continue
        cost = len(text) + (1 if key in parts else len(key) + 6)  # ,"key":[ ... ] or the comma
        if size + cost > limit and parts:
            flush()
            cost = len(text) + len(key) + 6
        if size + cost > proto.MAX_FRAME_SIZE:
            dropped += 1
            continue
        parts.setdefault(key, []).append(text)
        size += cost
    flush()
    return frames, dropped


# -- the master's side: checking --------------------------------------------------------


def parse(obj: dict[str, object], line: bytes) -> MetricsBatch:
    """Check a decoded "metrics" frame (``line`` is its text, for errors); return its batch.

    Raise `ProtocolError` for anything but the documented form: unknown keys, invalid
    names, a counter that decreases, a number that is not finite, a series whose label
    values or buckets do not fit the declaration made in the same frame.
    """

    def fail(what: str) -> ProtocolError:
        return ProtocolError(f"metrics frame {proto._preview(line)}: {what}")

    if not _KEYS.issuperset(obj):
        raise fail(f"unknown keys {sorted(set(obj) - _KEYS)}")
    declared: dict[str, Declaration] = {}
    for entry in _entries(obj, "declare", fail):
        if len(entry) not in (4, 5):
            raise fail(f"a declaration is [name, kind, help, labels(, buckets)], got {entry!r}")
        name, kind, help_text, labels = entry[:4]
        error = metric_name_error(name)
        if error is None and kind not in KINDS:
            error = f"unknown metric kind {kind!r}"
        if error is None and (not isinstance(help_text, str) or len(help_text) > MAX_HELP_LENGTH):
            error = f"help must be a str of at most {MAX_HELP_LENGTH} characters"
        if error is None:
            error = label_names_error(labels, str(kind))
        buckets: tuple[float, ...] = ()
        if error is None and (len(entry) == 5) != (kind == HISTOGRAM):
            error = "a histogram's declaration has buckets, another metric's has none"
        if error is None and kind == HISTOGRAM:
            bounds = entry[4]
            error = buckets_error(bounds)
            if error is None and isinstance(bounds, list):
                buckets = tuple(float(b) for b in bounds)
        if error is None and name in declared:
            error = f"metric {name!r} declared twice"
        if error is not None:
            raise fail(error)
        assert isinstance(name, str) and isinstance(help_text, str) and isinstance(labels, list)
        declared[name] = Declaration(name, str(kind), help_text, tuple(labels), buckets)
    points: dict[str, list[Point]] = {"counters": [], "gauges": []}
    histograms: list[HistogramPoint] = []
    for key, kind in SECTIONS.items():
        width = 4 if kind == HISTOGRAM else 3
        for entry in _entries(obj, key, fail):
            if len(entry) != width:
                raise fail(f"a {kind} series has {width} fields, got {entry!r}")
            name, values = entry[0], entry[1]
            if not isinstance(name, str) or metric_name_error(name) is not None:
                raise fail(f"invalid metric name {name!r}")
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise fail(f"label values must be a list of str, got {values!r}")
            declaration = declared.get(name)
            if declaration is not None and (declaration.kind != kind or len(declaration.labels) != len(values)):
                raise fail(f"series of {name!r} does not fit its declaration")
            if kind == HISTOGRAM:
                counts, total = entry[2], entry[3]
                if not isinstance(counts, list) or not 1 <= len(counts) <= MAX_BUCKETS + 1:
                    raise fail(f"bucket counts must be a list of 1 to {MAX_BUCKETS + 1} ints, got {counts!r}")
                if not all(_is_count(c) for c in counts) or not _is_finite(total):
                    raise fail(f"bucket counts must be ints >= 0 and the sum finite, got {entry!r}")
                if declaration is not None and len(counts) != len(declaration.buckets) + 1:
                    raise fail(f"series of {name!r} has {len(counts)} buckets, declared {len(declaration.buckets) + 1}")
                histograms.append((name, tuple(values), tuple(counts), float(total)))  # type: ignore[arg-type]
            else:
                value = entry[2]
                if not _is_finite(value) or (kind == COUNTER and value < 0):  # type: ignore[operator]
                    what = "a finite number >= 0" if kind == COUNTER else "a finite number"
                    raise fail(f"the value of a {kind} must be {what}, got {value!r}")
                points[key].append((name, tuple(values), value))  # type: ignore[arg-type]
    return MetricsBatch(tuple(declared.values()), points["counters"], points["gauges"], histograms, len(line) + 1)


def _entries(obj: dict[str, object], key: str, fail: Callable[[str], ProtocolError]) -> list[list[object]]:
    entries = obj.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, list) for e in entries):
        raise fail(f"{key!r} must be a list of lists")
    return entries
