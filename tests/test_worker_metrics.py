"""The workers' own metrics, end to end: real workers count, their master sums per slot."""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Callable

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from drover_py import Master, RecyclePolicy, RestartPolicy, WorkerStatus
from drover_py._control.metrics import exposition
from drover_py._supervise.appmetrics import Family, HistogramSample, Sample

from .conftest import APPS, MasterBuilder
from .helpers import EventLog

pytestmark = pytest.mark.anyio
WORKER = APPS / "metrics_worker.py"
#: The worker's bus: MessageBus on the master's backend, or SyncMessageBus (threads).
BUSES = pytest.mark.parametrize("bus", ["async", "sync"])


def flags(bus: str, anyio_backend: str, *more: str) -> str:
    base = ["sync"] if bus == "sync" else ["trio"] if anyio_backend == "trio" else []
    return ",".join([*base, *more])


def build(make_master: MasterBuilder, metrics: str, count: int = 2, **options: object) -> Master:
    env = {"METRICS": metrics, **options.pop("env", {})}  # type: ignore[dict-item]
    return make_master(script=WORKER, count=count, env=env, **options)


def family(master: Master, name: str) -> Family:
    [found] = [f for f in master._app_metrics.families() if f.name == name]
    return found


def values(master: Master, name: str, **labels: str) -> dict[str, float]:
    """Return slot -> value of the samples of ``name`` whose labels include ``labels`` (none yet: {})."""
    out: dict[str, float] = {}
    if name not in {f.name for f in master._app_metrics.families()}:
        return out
    for sample in family(master, name).samples:
        assert isinstance(sample, Sample)
        found = dict(sample.labels)
        if all(found.get(k) == v for k, v in labels.items()):
            out[found["slot"]] = sample.value
    return out


def histograms(master: Master, name: str) -> dict[str, HistogramSample]:
    out = {}
    for sample in family(master, name).samples:
        assert isinstance(sample, HistogramSample)
        out[dict(sample.labels)["slot"]] = sample
    return out


async def wait_until(done: Callable[[], bool], timeout: float = 10.0) -> None:
    """Check ``done()`` every 10 ms until it holds: a batch has no event of its own to wait on."""
    with anyio.fail_after(timeout):
        while not done():
            await anyio.sleep(0.01)  # sync-ok: a batch has no event to wait on; bounded by fail_after


def worker_id(master: Master, slot: int) -> int:
    [found] = [w.id for w in master.workers if w.slot == slot and w.status is WorkerStatus.STARTED]
    return found


@BUSES
async def test_counters_and_histograms_per_slot_and_summed(
    make_master: MasterBuilder, anyio_backend: str, bus: str
) -> None:
    master = build(make_master, flags(bus, anyio_backend))
    async with master:
        await master.start()
        await master.request(worker_id(master, 0), "inc", {"n": 5})
        await master.request(worker_id(master, 1), "inc", {"n": 7})
        assert values(master, "jobs_total", queue="boot") == {"0": 1, "1": 2, "all": 3}
        assert values(master, "jobs_total", queue="a") == {"0": 5, "1": 7, "all": 12}
        seconds = histograms(master, "job_seconds")
        assert seconds["0"].buckets == ((0.5, 1), (1.0, 1), (5.0, 2), (math.inf, 2))
        assert seconds["all"].buckets == ((0.5, 2), (1.0, 2), (5.0, 4), (math.inf, 4))
        assert seconds["all"].count == 4
        assert seconds["all"].total == pytest.approx(0.2 + 0.4 + 3 + 3)
        assert values(master, "depth") == {"0": 11, "1": 12, "all": 23}
        assert {f.name: (f.kind, f.help) for f in master._app_metrics.families()} == {
            "depth": ("gauge", "Jobs waiting"),
            "job_seconds": ("histogram", "Job duration"),
            "jobs_total": ("counter", "Jobs done"),
        }
        await master.graceful_shutdown()


@BUSES
async def test_changes_go_out_at_the_interval_without_a_flush(
    make_master: MasterBuilder, anyio_backend: str, bus: str
) -> None:
    master = build(make_master, flags(bus, anyio_backend), count=1, env={"DROVER_PY_METRICS_INTERVAL": "0.05"})
    async with master:
        await master.start()
        wid = worker_id(master, 0)
        await wait_until(lambda: values(master, "jobs_total", queue="boot") == {"0": 1, "all": 1})
        for n in range(1, 4):
            await master.request(wid, "add", {"n": 1})

            def counted(n: int = n) -> bool:
                return values(master, "jobs_total", queue="a").get("0") == n

            await wait_until(counted)
        await master.graceful_shutdown()


async def test_a_counter_continues_from_its_total_after_restart_worker_by_id(
    make_master: MasterBuilder, anyio_backend: str
) -> None:
    master = build(make_master, flags("async", anyio_backend))
    async with master:
        await master.start()
        old = worker_id(master, 1)
        await master.request(old, "inc", {"n": 5})
        new = await master.restart_worker_by_id(old)
        # the old worker's stop was counted and flushed before it said "stopped"
        assert values(master, "jobs_total", queue="stop") == {"1": 1, "all": 1}
        await master.request(new, "inc", {"n": 2})
        assert values(master, "jobs_total", queue="a") == {"1": 7, "all": 7}
        assert values(master, "jobs_total", queue="boot") == {"0": 1, "1": 4, "all": 5}  # 2 + 2: two boots in slot 1
        assert histograms(master, "job_seconds")["1"].count == 4  # two boots, two requests
        assert values(master, "depth") == {"0": 10, "1": 12, "all": 22}  # the new worker's own
        await master.graceful_shutdown()


async def test_a_counter_continues_after_a_crash_and_the_restart_policy(
    make_master: MasterBuilder, anyio_backend: str
) -> None:
    master = build(make_master, flags("async", anyio_backend), count=1, restart=RestartPolicy(delay=0))
    log = EventLog(master)
    async with master:
        await master.start()
        old = worker_id(master, 0)
        await master.request(old, "inc", {"n": 5})
        with pytest.raises(Exception):  # noqa: B017  # the worker dies mid-request: PeerGoneError
            await master.request(old, "die")
        await log.wait_for("worker-started", count=2)
        new = worker_id(master, 0)
        assert new != old
        await master.request(new, "inc", {"n": 1})
        assert values(master, "jobs_total", queue="a") == {"0": 6, "all": 6}
        assert values(master, "jobs_total", queue="boot") == {"0": 2, "all": 2}
        await master.graceful_shutdown()


@BUSES
async def test_a_gauge_disappears_with_its_worker(make_master: MasterBuilder, anyio_backend: str, bus: str) -> None:
    master = build(make_master, flags(bus, anyio_backend))
    log = EventLog(master)
    async with master:
        await master.start()
        await master.request(worker_id(master, 0), "inc", {"n": 1})
        await master.request(worker_id(master, 1), "inc", {"n": 1})
        assert values(master, "depth") == {"0": 11, "1": 12, "all": 23}
        victim = [w for w in master.workers if w.slot == 1][0]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        await log.wait_for("worker-exit")
        assert values(master, "depth") == {"0": 11, "all": 11}
        assert values(master, "jobs_total", queue="a") == {"0": 1, "1": 1, "all": 2}  # counters stay
        await master.graceful_shutdown()
        assert values(master, "depth") == {}


@BUSES
async def test_a_graceful_stop_flushes_the_last_increments(
    make_master: MasterBuilder, anyio_backend: str, bus: str
) -> None:
    # a long interval: only the flush before "stopped" can bring the stop's increment in time
    master = build(make_master, flags(bus, anyio_backend), env={"DROVER_PY_METRICS_INTERVAL": "3600"})
    async with master:
        await master.start()
        for slot in (0, 1):
            await master.request(worker_id(master, slot), "add", {"n": 3})  # no flush: waits for the interval
        await master.graceful_shutdown()
    assert values(master, "jobs_total", queue="stop") == {"0": 1, "1": 1, "all": 2}
    assert values(master, "jobs_total", queue="a") == {"0": 3, "1": 3, "all": 6}


async def test_a_conflicting_declaration_is_refused_for_the_later_worker(
    make_master: MasterBuilder, anyio_backend: str
) -> None:
    master = build(make_master, flags("async", anyio_backend, "conflict@1"), count=1)
    async with master:
        await master.start()
        await master.request(worker_id(master, 0), "inc", {"n": 1})  # slot 0 declared a counter first
        await master.scale(2)
        await master.request(worker_id(master, 1), "inc", {"n": 1})
        assert family(master, "jobs_total").kind == "counter"
        assert values(master, "jobs_total", queue="a") == {"0": 1, "all": 1}
        assert values(master, "depth") == {"0": 11, "1": 12, "all": 23}  # its other metrics count
        await master.graceful_shutdown()


async def test_a_malformed_metrics_frame_is_a_protocol_error(make_master: MasterBuilder, anyio_backend: str) -> None:
    master = build(make_master, flags("async", anyio_backend, "badframe@1", "quiet"))
    log = EventLog(master)
    async with master:
        await master.start()  # slot 1 sends its bad frame right after "started"
        await log.wait_for("worker-exit")
        [(reason, failed)] = log.exits()
        assert failed == master.workers[1].id
        assert reason.detail is not None and "never declared" in reason.detail
        assert master.get_workers_statuses() == [WorkerStatus.STARTED, WorkerStatus.FAILED]
        await master.graceful_shutdown()


async def test_worker_counters_survive_a_recycle_and_reach_metrics(
    make_master: MasterBuilder, anyio_backend: str
) -> None:
    """A recycled worker's counts go on in its slot, and GET /metrics shows them with the master's name."""
    master = build(make_master, flags("async", anyio_backend), count=1, recycle=RecyclePolicy(max_age=1, jitter=0))
    log = EventLog(master)
    async with master:
        await master.start()
        old = worker_id(master, 0)
        await master.request(old, "inc", {"n": 5})
        with anyio.fail_after(30):
            await log.wait_for("worker-retired")  # recycled: older than max_age
            await master.restart_worker_by_id(old)  # waits for the recycle to have finished
        new = worker_id(master, 0)
        assert new != old
        await master.request(new, "inc", {"n": 2})
        text = exposition({"web": master}).decode()
        found = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
        }
        assert found["jobs_total", (("master", "web"), ("queue", "a"), ("slot", "0"))] == 7
        assert found["jobs_total", (("master", "web"), ("queue", "a"), ("slot", "all"))] == 7
        assert found["job_seconds_count", (("master", "web"), ("slot", "0"))] == 4  # two boots, two requests
        await master.graceful_shutdown()
