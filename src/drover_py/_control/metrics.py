"""``GET /metrics``: the masters served, in the Prometheus text format (prometheus_client).

Everything is read when scraped: the workers' snapshots, the master's counts
(`drover_py._supervise.stats`) and, on Linux, the accept queue of each TCP listener.
prometheus_client is imported here only, on the first scrape.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .._config.binds import BindSpec
from .._status import WorkerStatus
from .._supervise.appmetrics import HistogramSample
from .._supervise.master import Master
from .._supervise.recycler import read_rss
from .._supervise.stats import Histogram

#: The content type of a scrape's reply.
CONTENT_TYPE = CONTENT_TYPE_LATEST
# struct tcp_info (linux/tcp.h): eight u8 fields, then u32 rto, ato, snd_mss, rcv_mss,
# unacked, sacked. On a listening socket, unacked is the accept queue's length and sacked
# its limit (the backlog).
_TCP_INFO_QUEUE = struct.Struct("=8x16xII")


def accept_queue(sock: socket.socket) -> tuple[int, int] | None:
    """Return (connections waiting to be accepted, the queue's limit) of a TCP listener, or None."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        unacked, sacked = _TCP_INFO_QUEUE.unpack_from(info)
    except (OSError, struct.error):
        return None
    return unacked, sacked


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return str(BindSpec("tcp", host=host, port=port))


def _histogram(name: str, doc: str, histograms: Mapping[str, Histogram]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["master"])
    for master, histogram in histograms.items():
        buckets = [(_bound(bound), count) for bound, count in histogram.cumulative()]
        family.add_metric([master], buckets, histogram.total)
    return family


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class _Masters(Collector):
    """The metrics of ``masters``, read at each scrape."""

    def __init__(self, masters: Mapping[str, Master]) -> None:
        self._masters = masters

    def collect(self) -> Iterator[Metric]:
        masters = dict(self._masters)
        workers = GaugeMetricFamily("drover_workers", "Workers by status", labels=["master", "status"])
        rss = GaugeMetricFamily(
            "drover_worker_rss_bytes", "Resident memory of the worker of each slot", labels=["master", "slot"]
        )
        uptime = GaugeMetricFamily(
            "drover_worker_uptime_seconds", "Seconds since the worker of each slot started", labels=["master", "slot"]
        )
        exits = CounterMetricFamily(
            "drover_worker_exits",
            "Worker exits by reason and whether the master asked",
            labels=["master", "reason", "requested"],
        )
        restarts = CounterMetricFamily("drover_restarts", "Workers replaced by a restart", labels=["master"])
        reloads = CounterMetricFamily("drover_reloads", "Graceful reloads by outcome", labels=["master", "outcome"])
        dropped = CounterMetricFamily(
            "drover_output_dropped_lines",
            "Lines of worker output dropped (the master could not keep up)",
            labels=["master"],
        )
        queue = GaugeMetricFamily(
            "drover_listen_queue_length",
            "Connections waiting to be accepted on a listening socket",
            labels=["master", "address"],
        )
        queue_limit = GaugeMetricFamily(
            "drover_listen_queue_limit",
            "Accept queue limit (backlog) of a listening socket",
            labels=["master", "address"],
        )
        now = time.time()
        for name, master in masters.items():
            snapshots = master.workers
            for status in WorkerStatus:
                workers.add_metric([name, status.name], sum(w.status is status for w in snapshots))
            serving: dict[int, tuple[int, int | None, float | None]] = {}
            for w in snapshots:
                if w.exit_reason is None and w.id >= serving.get(w.slot, (0, None, None))[0]:
                    serving[w.slot] = (w.id, w.pid, w.started_at)
            for slot, (_, pid, started_at) in sorted(serving.items()):
                resident = None if pid is None else read_rss(pid)
                if resident is not None:
                    rss.add_metric([name, str(slot)], resident)
                if started_at is not None:
                    uptime.add_metric([name, str(slot)], max(0.0, now - started_at))
            stats = master.stats
            for (reason, requested), count in sorted(stats.exits.items()):
                exits.add_metric([name, reason, str(requested).lower()], count)
            restarts.add_metric([name], stats.restarts)
            for outcome in ("success", "rolled_back", "interrupted"):
                reloads.add_metric([name, outcome], stats.reloads[outcome])
            dropped.add_metric([name], stats.dropped_lines)
            for sock in master.sockets:
                found = accept_queue(sock)
                if found is not None:
                    queue.add_metric([name, _address(sock)], found[0])
                    queue_limit.add_metric([name, _address(sock)], found[1])
        yield from (workers, rss, uptime, exits, restarts, reloads, dropped, queue, queue_limit)
        yield _histogram(
            "drover_worker_start_seconds",
            "Seconds from a worker's spawn to its 'started'",
            {name: m.stats.start_seconds for name, m in masters.items()},
        )
        yield _histogram(
            "drover_reload_seconds",
            "Seconds a whole graceful reload took",
            {name: m.stats.reload_seconds for name, m in masters.items()},
        )
        yield from _app_families(masters)


def _app_families(masters: Mapping[str, Master]) -> Iterator[Metric]:
    """Yield the workers' own metrics (``mb.counter(...)``) of every master, ``master`` label first.

    Two masters that declare one name with different types or labels: the first one's wins.
    """
    merged: dict[str, Metric] = {}
    shapes: dict[str, tuple[str, tuple[str, ...]]] = {}
    for name, master in masters.items():
        for family in master._app_metrics.families():
            if not family.samples:
                continue
            label_names = ("master", *(key for key, _ in family.samples[0].labels))
            if shapes.setdefault(family.name, (family.kind, label_names)) != (family.kind, label_names):
                continue
            metric = merged.get(family.name)
            if metric is None:
                metric = merged[family.name] = _app_family(family.kind, family.name, family.help, list(label_names))
            for sample in family.samples:
                values = [name, *(value for _, value in sample.labels)]
                if isinstance(sample, HistogramSample):
                    assert isinstance(metric, HistogramMetricFamily)
                    buckets = [(_bound(bound), count) for bound, count in sample.buckets]
                    metric.add_metric(values, buckets, sample.total)
                else:
                    assert isinstance(metric, (CounterMetricFamily, GaugeMetricFamily))
                    metric.add_metric(values, sample.value)
    yield from merged.values()


def _app_family(kind: str, name: str, doc: str, labels: list[str]) -> Metric:
    if kind == "counter":
        return CounterMetricFamily(name, doc, labels=labels)
    if kind == "gauge":
        return GaugeMetricFamily(name, doc, labels=labels)
    return HistogramMetricFamily(name, doc, labels=labels)


def exposition(masters: Mapping[str, Master]) -> bytes:
    """Return the metrics of ``masters`` in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Masters(masters))
    return generate_latest(registry)
