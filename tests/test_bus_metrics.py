"""The worker side of the metrics: declarations, series, thread-safe increments, batches."""

from __future__ import annotations

import gc
import math
import os
import re
import threading

import pytest

from drover_py import ConfigError, MessageBus, StateError, SyncMessageBus
from drover_py._child.metrics import Counter, MetricRegistry
from drover_py._env import CHANNEL_ENV, METRICS_INTERVAL_ENV
from drover_py._wire import metrics as wire
from drover_py._wire import protocol as proto


def batches(registry: MetricRegistry) -> list[wire.MetricsBatch]:
    """Collect what the registry would send, decoded as the master decodes it."""
    decoder = proto.Decoder(proto.FROM_WORKER)
    out = []
    for frame in registry.collect():
        [data] = decoder.feed(frame)
        assert isinstance(data, proto.Data) and isinstance(data.payload, wire.MetricsBatch)
        out.append(data.payload)
    return out


def counters(registry: MetricRegistry) -> dict[tuple[str, tuple[str, ...]], float]:
    return {(name, values): value for b in batches(registry) for name, values, value in b.counters}


@pytest.mark.parametrize(
    ("name", "labels", "fragment"),
    [
        ("9lives", (), "invalid metric name '9lives'"),
        ("a-b", (), "invalid metric name"),
        ("", (), "invalid metric name"),
        ("drover_jobs", (), "the prefix 'drover_' is drover-py's own"),
        ("jobs", ("slot",), "label name 'slot' is reserved"),
        ("jobs", ("master",), "label name 'master' is reserved"),
        ("jobs", ("__x",), "label name '__x' is reserved"),
        ("jobs", ("a:b",), "invalid label name 'a:b'"),
        ("jobs", ("q", "q"), "label names repeat"),
        ("jobs", "queue", "write labels=('queue',)"),
    ],
)
def test_invalid_declarations_are_refused_in_one_line(name: str, labels: tuple[str, ...], fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)) as info:
        MetricRegistry().counter(name, "help", labels)
    assert "\n" not in str(info.value)


def test_histogram_buckets_and_its_reserved_label() -> None:
    registry = MetricRegistry()
    with pytest.raises(ValueError, match="label name 'le' is reserved"):
        registry.histogram("h", "help", ("le",))
    with pytest.raises(ValueError, match="must increase"):
        registry.histogram("h", "help", buckets=(1, 1))
    with pytest.raises(ValueError, match="buckets must be 1 to 64"):
        registry.histogram("h", "help", buckets=())
    with pytest.raises(ValueError, match="buckets must be a sequence"):
        registry.histogram("h", "help", buckets="1,2")  # type: ignore[arg-type]
    assert registry.histogram("h", "help", buckets=(1, 2, math.inf))  # a trailing +Inf is implied anyway


def test_a_name_is_declared_once_per_type() -> None:
    registry = MetricRegistry()
    jobs = registry.counter("jobs_total", "Jobs", ("queue",))
    assert registry.counter("jobs_total", "Jobs", ["queue"]) is jobs  # the same declaration: the same counter
    with pytest.raises(ValueError, match="'jobs_total' is already declared as a counter with labels"):
        registry.gauge("jobs_total", "Jobs", ("queue",))
    with pytest.raises(ValueError, match="already declared"):
        registry.counter("jobs_total", "Jobs", ("kind",))
    with pytest.raises(ValueError, match="and help 'Jobs'"):
        registry.counter("jobs_total", "Other help", ("queue",))


def test_labels_by_position_or_by_name() -> None:
    registry = MetricRegistry()
    jobs = registry.counter("jobs_total", "Jobs", ("queue", "kind"))
    assert jobs.labels("a", "x") is jobs.labels(queue="a", kind="x") is jobs.labels(kind="x", queue="a")
    assert jobs.labels(1, 2) is jobs.labels("1", "2")  # str()-ed, as prometheus_client does
    with pytest.raises(ValueError, match=r"has the labels \('queue', 'kind'\), got 1 values"):
        jobs.labels("a")
    with pytest.raises(ValueError, match="has the labels"):
        jobs.labels(queue="a")
    with pytest.raises(ValueError, match="by position or by name, not both"):
        jobs.labels("a", kind="x")
    with pytest.raises(ValueError, match=r"has labels \('queue', 'kind'\): use .labels"):
        jobs.inc()
    plain = registry.counter("plain_total", "Plain")
    with pytest.raises(ValueError, match="has no labels"):
        plain.labels("a")


def test_values_are_checked() -> None:
    registry = MetricRegistry()
    counter = registry.counter("c", "c")
    for bad in (-1, math.inf, math.nan):
        with pytest.raises(ValueError, match="can only go up"):
            counter.inc(bad)
    gauge, histogram = registry.gauge("g", "g"), registry.histogram("h", "h")
    for bad in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValueError, match="finite"):
            gauge.set(bad)
        with pytest.raises(ValueError, match="finite"):
            histogram.observe(bad)


def test_a_batch_carries_declarations_once_and_only_what_changed() -> None:
    registry = MetricRegistry()
    jobs = registry.counter("jobs_total", "Jobs", ("queue",))
    depth = registry.gauge("depth", "Depth")
    seconds = registry.histogram("seconds", "Seconds", buckets=(1, 10))
    assert registry.dirty
    a = jobs.labels("a")
    a.inc()
    a.inc(2.5)
    seconds.observe(1)  # bounds are inclusive (le)
    seconds.observe(20)
    [first] = batches(registry)
    assert [d.name for d in first.declare] == ["jobs_total", "depth", "seconds"]
    assert first.counters == (("jobs_total", ("a",), 3.5),)
    assert first.gauges == (("depth", (), 0),)  # new series go out once, even at 0
    assert first.histograms == (("seconds", (), (1, 0, 1), 21.0),)
    assert not registry.dirty and batches(registry) == []  # nothing changed: no frame
    depth.set(4)
    depth.dec()
    jobs.labels("b")  # a new series, still at 0
    [second] = batches(registry)
    assert (second.declare, second.counters, second.gauges, second.histograms) == (
        (),
        (("jobs_total", ("b",), 0),),
        (("depth", (), 3),),
        (),
    )


def test_increments_from_many_threads_are_all_counted_while_batches_go_out() -> None:
    registry = MetricRegistry()
    jobs = registry.counter("jobs_total", "Jobs")
    seconds = registry.histogram("seconds", "Seconds", buckets=(0.5,))
    threads_count, per_thread = 8, 20_000
    start = threading.Barrier(threads_count + 1)
    total = 0.0
    observed = 0

    def work() -> None:
        start.wait()
        for i in range(per_thread):
            jobs.inc()
            seconds.observe(i % 2)

    threads = [threading.Thread(target=work) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    start.wait()
    while any(thread.is_alive() for thread in threads):  # collect while they count
        for batch in batches(registry):
            total += sum(value for _, _, value in batch.counters)
            observed += sum(sum(counts) for _, _, counts, _ in batch.histograms)
    for thread in threads:
        thread.join()
    for batch in batches(registry):
        total += sum(value for _, _, value in batch.counters)
        observed += sum(sum(counts) for _, _, counts, _ in batch.histograms)
    assert total == observed == threads_count * per_thread


def test_the_cell_of_a_thread_that_ended_is_read_once_more_then_dropped() -> None:
    registry = MetricRegistry()
    jobs = registry.counter("jobs_total", "Jobs")
    assert isinstance(jobs, Counter)
    for _ in range(5):
        thread = threading.Thread(target=jobs.inc, args=(2,))
        thread.start()
        thread.join()
    gc.collect()
    assert counters(registry) == {("jobs_total", ()): 10}
    assert jobs._cells == []
    jobs.inc()  # this thread's own cell
    assert counters(registry) == {("jobs_total", ()): 1}
    assert len(jobs._cells) == 1


def test_series_past_the_limit_are_discarded_with_one_warning() -> None:
    registry = MetricRegistry()
    jobs = registry.counter("jobs_total", "Jobs", ("n",))
    for n in range(wire.MAX_SERIES):
        jobs.labels(n).inc()
    with pytest.warns(RuntimeWarning, match="has 1000 metric series, the most it may have"):
        extra = jobs.labels("one more")
    extra.inc()  # does nothing
    jobs.labels("and another").inc()  # no second warning (filterwarnings = error would raise)
    sent = counters(registry)
    assert len(sent) == wire.MAX_SERIES and ("jobs_total", ("one more",)) not in sent
    with pytest.raises(ValueError, match="label values too long"):
        registry.counter("other", "o", ("x",)).labels("x" * wire.MAX_ENTRY_SIZE)


def test_many_series_are_split_into_frames() -> None:
    registry = MetricRegistry()
    jobs = registry.counter("jobs_total", "Jobs", ("n",))
    for n in range(wire.MAX_SERIES):
        jobs.labels(f"{n:04d}" + "x" * 200).inc(n)
    frames = registry.collect()
    assert len(frames) > 10 and all(len(frame) <= wire.FRAME_TARGET for frame in frames)


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan"])
def test_an_invalid_interval_names_its_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(METRICS_INTERVAL_ENV, value)
    with pytest.raises(ConfigError, match=METRICS_INTERVAL_ENV):
        MetricRegistry()


def test_the_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(METRICS_INTERVAL_ENV, raising=False)
    assert MetricRegistry().interval == 1.0
    monkeypatch.setenv(METRICS_INTERVAL_ENV, "0.25")
    assert MetricRegistry().interval == 0.25


def test_both_buses_declare_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    fds = os.pipe() + os.pipe()
    monkeypatch.setenv(CHANNEL_ENV, f"{fds[0]},{fds[3]}")
    try:
        for bus in (MessageBus(), SyncMessageBus()):
            jobs = bus.counter("jobs_total", "Jobs", labels=("queue",))
            assert bus.counter("jobs_total", "Jobs", labels=("queue",)) is jobs
            assert bus.gauge("depth", "Depth").name == "depth"
            assert bus.histogram("seconds", "Seconds").name == "seconds"
            jobs.labels("a").inc()  # before the bus is open: sent once it is
        with pytest.raises(StateError, match="inside 'with SyncMessageBus"):
            SyncMessageBus().flush_metrics()
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.anyio
async def test_a_congested_channel_merges_changes_into_the_next_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    to_child, from_child = os.pipe(), os.pipe()
    monkeypatch.setenv(CHANNEL_ENV, f"{to_child[0]},{from_child[1]}")
    monkeypatch.setenv(METRICS_INTERVAL_ENV, "3600")  # no batch but the ones this test asks for
    bus = MessageBus()
    jobs = bus.counter("jobs_total", "Jobs")
    decoder = proto.Decoder(proto.FROM_WORKER)

    def received() -> list[wire.MetricsBatch]:
        out = []
        for data in decoder.feed(os.read(from_child[0], 1 << 20)):
            assert isinstance(data, proto.Data) and isinstance(data.payload, wire.MetricsBatch)
            out.append(data.payload)
        return out

    try:
        async with bus:
            filled = 0  # the master is not reading: the pipe fills up
            while True:
                try:
                    filled += os.write(from_child[1], b"x" * 65536)
                except BlockingIOError:
                    break
            jobs.inc()
            assert not await bus._flush_metrics(force=False)  # nothing collected, nothing queued
            jobs.inc(2)
            while filled:  # the master catches up
                filled -= len(os.read(from_child[0], filled))
            assert await bus._flush_metrics(force=False)
            [batch] = received()
            assert [d.name for d in batch.declare] == ["jobs_total"]
            assert batch.counters == (("jobs_total", (), 3),)  # both changes, in one batch
            jobs.inc(4)
        [last] = received()  # sent as the bus closed
        assert last.counters == (("jobs_total", (), 4),)
    finally:
        os.close(to_child[1])
        os.close(from_child[0])
