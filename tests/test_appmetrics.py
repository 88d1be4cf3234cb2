"""The master's sum of its workers' metrics (`AppMetrics`): pure, no event loop, no process."""

from __future__ import annotations

import math
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from drover_py import ProtocolError
from drover_py._log import get_logger
from drover_py._supervise.appmetrics import AppMetrics, Family, HistogramSample, Sample
from drover_py._wire.metrics import COUNTER, GAUGE, HISTOGRAM, Declaration, MetricsBatch

JOBS = Declaration("jobs_total", COUNTER, "Jobs done", ("queue",))
DEPTH = Declaration("depth", GAUGE, "Jobs waiting", ())
SECONDS = Declaration("seconds", HISTOGRAM, "Job duration", (), (1.0, 5.0))


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    try:
        with capture_logs() as captured:
            yield captured
    finally:
        structlog.reset_defaults()  # capture_logs leaves structlog "configured": the next masters would log unlike a user's


@pytest.fixture
def metrics(logs: list[MutableMapping[str, Any]]) -> AppMetrics:
    return AppMetrics(get_logger(), max_series=5)  # made inside capture_logs: its warnings are captured


def family(metrics: AppMetrics, name: str) -> Family:
    [found] = [f for f in metrics.families() if f.name == name]
    return found


def by_slot(metrics: AppMetrics, name: str, **labels: str) -> dict[str, float]:
    out = {}
    for sample in family(metrics, name).samples:
        assert isinstance(sample, Sample)
        found = dict(sample.labels)
        if all(found[k] == v for k, v in labels.items()):
            out[found["slot"]] = sample.value
    return out


def test_counters_per_slot_and_summed(metrics: AppMetrics) -> None:
    metrics.ingest(1, 0, MetricsBatch([JOBS], counters=[("jobs_total", ("a",), 2), ("jobs_total", ("b",), 1)]))
    metrics.ingest(2, 1, MetricsBatch([JOBS], counters=[("jobs_total", ("a",), 5)]))
    metrics.ingest(1, 0, MetricsBatch(counters=[("jobs_total", ("a",), 0.5)]))
    [jobs] = metrics.families()
    assert (jobs.name, jobs.kind, jobs.help) == ("jobs_total", "counter", "Jobs done")
    assert jobs.samples == (
        Sample(labels=(("queue", "a"), ("slot", "0")), value=2.5),
        Sample(labels=(("queue", "a"), ("slot", "1")), value=5),
        Sample(labels=(("queue", "a"), ("slot", "all")), value=7.5),
        Sample(labels=(("queue", "b"), ("slot", "0")), value=1),
        Sample(labels=(("queue", "b"), ("slot", "all")), value=1),
    )


def test_a_counter_survives_a_replaced_worker_in_the_same_slot(metrics: AppMetrics) -> None:
    metrics.ingest(1, 0, MetricsBatch([JOBS], counters=[("jobs_total", ("a",), 10)]))
    metrics.worker_gone(1)  # crashed, restarted, recycled or reloaded: the same for the slot
    assert by_slot(metrics, "jobs_total") == {"0": 10, "all": 10}
    metrics.ingest(3, 0, MetricsBatch([JOBS], counters=[("jobs_total", ("a",), 0)]))  # the new one starts at 0
    metrics.ingest(3, 0, MetricsBatch(counters=[("jobs_total", ("a",), 4)]))
    assert by_slot(metrics, "jobs_total") == {"0": 14, "all": 14}


def test_a_gauge_belongs_to_the_live_worker_of_its_slot(metrics: AppMetrics) -> None:
    metrics.ingest(1, 0, MetricsBatch([DEPTH], gauges=[("depth", (), 3)]))
    metrics.ingest(2, 1, MetricsBatch([DEPTH], gauges=[("depth", (), 4)]))
    assert by_slot(metrics, "depth") == {"0": 3, "1": 4, "all": 7}
    metrics.ingest(5, 1, MetricsBatch([DEPTH], gauges=[("depth", (), 9)]))  # a reload: slot 1's new worker
    assert by_slot(metrics, "depth") == {"0": 3, "1": 9, "all": 12}
    metrics.worker_gone(2)
    assert by_slot(metrics, "depth") == {"0": 3, "1": 9, "all": 12}
    metrics.worker_gone(1)
    assert by_slot(metrics, "depth") == {"1": 9, "all": 9}
    metrics.worker_gone(5)
    assert family(metrics, "depth").samples == ()  # declared still, with no series


def test_histograms_are_cumulative_per_slot_and_summed(metrics: AppMetrics) -> None:
    metrics.ingest(1, 0, MetricsBatch([SECONDS], histograms=[("seconds", (), (1, 2, 0), 6.5)]))
    metrics.ingest(2, 1, MetricsBatch([SECONDS], histograms=[("seconds", (), (0, 0, 1), 9.0)]))
    metrics.worker_gone(2)
    metrics.ingest(3, 1, MetricsBatch([SECONDS], histograms=[("seconds", (), (1, 0, 0), 0.5)]))
    [seconds] = metrics.families()
    assert seconds.kind == "histogram"
    assert seconds.samples == (
        HistogramSample(labels=(("slot", "0"),), buckets=((1.0, 1), (5.0, 3), (math.inf, 3)), count=3, total=6.5),
        HistogramSample(labels=(("slot", "1"),), buckets=((1.0, 1), (5.0, 1), (math.inf, 2)), count=2, total=9.5),
        HistogramSample(labels=(("slot", "all"),), buckets=((1.0, 2), (5.0, 4), (math.inf, 5)), count=5, total=16),
    )


def test_a_conflicting_declaration_is_refused_with_one_warning(
    metrics: AppMetrics, logs: list[MutableMapping[str, Any]]
) -> None:
    metrics.ingest(1, 0, MetricsBatch([JOBS], counters=[("jobs_total", ("a",), 1)]))
    other = Declaration("jobs_total", GAUGE, "Jobs done", ("queue",))
    for worker_id in (2, 3):  # a second worker of the same release: no second warning
        metrics.ingest(worker_id, 1, MetricsBatch([other], gauges=[("jobs_total", ("a",), 7)]))
    assert family(metrics, "jobs_total").kind == "counter"
    assert by_slot(metrics, "jobs_total") == {"0": 1, "all": 1}
    [warning] = [entry for entry in logs if entry["log_level"] == "warning"]
    assert warning["metric"] == "jobs_total" and warning["worker_id"] == 2
    assert "declared before with another type" in str(warning["event"])
    assert warning["kept"] == "counter with labels ['queue']"
    new_help = Declaration("jobs_total", COUNTER, "Jobs finished", ("queue",))
    metrics.ingest(4, 1, MetricsBatch([new_help], counters=[("jobs_total", ("a",), 1)]))
    assert family(metrics, "jobs_total").help == "Jobs finished"  # only the help changed: the newest wins
    assert by_slot(metrics, "jobs_total") == {"0": 1, "1": 1, "all": 2}


def test_the_buckets_are_part_of_a_histogram(metrics: AppMetrics, logs: list[MutableMapping[str, Any]]) -> None:
    metrics.ingest(1, 0, MetricsBatch([SECONDS]))
    rebucketed = Declaration("seconds", HISTOGRAM, "Job duration", (), (1.0, 2.0, 5.0))
    metrics.ingest(2, 1, MetricsBatch([rebucketed], histograms=[("seconds", (), (1, 0, 0, 0), 0.5)]))
    assert [dict(s.labels)["slot"] for s in family(metrics, "seconds").samples] == []
    assert len([entry for entry in logs if entry["log_level"] == "warning"]) == 1


@pytest.mark.parametrize(
    ("batches", "fragment"),
    [
        ([MetricsBatch(counters=[("jobs_total", ("a",), 1)])], "never declared"),
        ([MetricsBatch([JOBS]), MetricsBatch([JOBS])], "declared twice"),
        ([MetricsBatch([JOBS]), MetricsBatch(gauges=[("jobs_total", ("a",), 1)])], "does not fit"),
        ([MetricsBatch([JOBS]), MetricsBatch(counters=[("jobs_total", (), 1)])], "does not fit"),
        ([MetricsBatch([SECONDS]), MetricsBatch(histograms=[("seconds", (), (1, 1), 1.0)])], "with 2 buckets"),
    ],
)
def test_an_inconsistent_batch_is_a_protocol_error(
    metrics: AppMetrics, batches: list[MetricsBatch], fragment: str
) -> None:
    with pytest.raises(ProtocolError, match=fragment):
        for batch in batches:
            metrics.ingest(1, 0, batch)


def test_series_past_the_limit_are_ignored_with_one_warning(
    metrics: AppMetrics, logs: list[MutableMapping[str, Any]]
) -> None:
    batch = MetricsBatch([JOBS], counters=[("jobs_total", (str(n),), 1) for n in range(7)])
    metrics.ingest(1, 0, batch)  # limit 5 in this fixture
    assert len(by_slot(metrics, "jobs_total", slot="0")) == 1
    assert len(family(metrics, "jobs_total").samples) == 10  # 5 series, each with its slot="all"
    metrics.worker_gone(1)
    # a slot keeps at most as many counter series, whatever its workers send
    metrics.ingest(2, 0, MetricsBatch([JOBS], counters=[("jobs_total", (str(n),), 1) for n in range(5, 9)]))
    assert len(family(metrics, "jobs_total").samples) == 10
    assert len([entry for entry in logs if entry["log_level"] == "warning"]) == 2  # one per worker, one per slot
