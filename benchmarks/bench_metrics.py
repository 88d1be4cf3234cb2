"""4c. The workers' own metrics: the cost of an increment, and the channel traffic.

- Increment cost, in this process (a `MetricRegistry`, as a bus has one): ns per call of
  ``counter.inc()``, of a labelled series kept by the caller, of
  ``counter.labels("a").inc()`` (a lookup per increment), of ``histogram.observe(v)`` and
  ``gauge.set(v)``. References, interleaved with them: the floor, a function that adds
  to a dict entry (``d[k] += 1``: the least an ``inc()`` call costs), and
  prometheus_client's own metrics doing the same (when it is importable; the row is left
  out otherwise). Each value is the median of several ``timeit`` runs.
- Channel traffic: a real master (asyncio) with one worker (``apps/metrics_worker.py``)
  making 10k increments per second over four label values of a counter, each also
  observed by a histogram, for a few seconds; the master counts the "metrics" frames and
  their bytes as they arrive. Reference: one message frame per increment (what sending
  each increment would cost). Also the worker's CPU during that load against the same
  loop without metrics (a plain dict).

Goals: an increment <= 2.5x the dict update and cheaper than prometheus_client's;
at most 2 frames/s at the default interval of 1 s.
"""

from __future__ import annotations

import importlib
import statistics
import timeit
from typing import Any

import anyio
from _common import APPS, interleaved, log, parse_args, row, summary, write_result

from drover_py import MasterFactory
from drover_py._child.metrics import MetricRegistry
from drover_py._supervise.appmetrics import Sample
from drover_py._wire import protocol as proto
from drover_py._wire.metrics import MetricsBatch

WORKER = APPS / "metrics_worker.py"
RATE = 10_000
FLOOR_GOAL = 2.5
FRAMES_GOAL = 2.0
#: case -> (statement, what it measures)
CASES = {
    "inc": ("counter.inc()", "counter.inc()"),
    "child_inc": ("child.inc()", 'child.inc(), child = counter.labels("a") kept'),
    "labels_inc": ('labelled.labels("a").inc()', 'counter.labels("a").inc()'),
    "observe": ("histogram.observe(0.3)", "histogram.observe(0.3)"),
    "set": ("gauge.set(3.0)", "gauge.set(3.0)"),
}
FLOOR_KEY = ("a",)


def drover_namespace() -> dict[str, Any]:
    registry = MetricRegistry()
    labelled = registry.counter("jobs_labelled_total", "Jobs", ("queue",))
    return {
        "counter": registry.counter("jobs_total", "Jobs"),
        "labelled": labelled,
        "child": labelled.labels("a"),
        "histogram": registry.histogram("job_seconds", "Job duration"),
        "gauge": registry.gauge("depth", "Depth"),
    }


def prometheus_namespace() -> dict[str, Any] | None:
    try:  # the "metrics" extra; imported by name: without it, mypy has no module to check either
        prometheus_client = importlib.import_module("prometheus_client")
    except ImportError:
        return None
    labelled = prometheus_client.Counter("jobs_labelled", "Jobs", ("queue",), registry=None)
    return {
        "counter": prometheus_client.Counter("jobs", "Jobs", registry=None),
        "labelled": labelled,
        "child": labelled.labels("a"),
        "histogram": prometheus_client.Histogram("job_seconds", "Job duration", registry=None),
        "gauge": prometheus_client.Gauge("depth", "Depth", registry=None),
    }


def floor_namespace() -> dict[str, Any]:
    counts: dict[tuple[str, ...], float] = {FLOOR_KEY: 0}

    def inc(amount: float = 1) -> None:
        counts[FLOOR_KEY] += amount

    return {"floor": inc}


def per_call_ns(statement: str, namespace: dict[str, Any], number: int) -> float:
    return timeit.Timer(statement, globals=namespace).timeit(number) / number * 1e9


def increment_costs(reps: int, number: int) -> dict[str, dict[str, list[float]]]:
    """Return impl -> case -> ns per call, one value per repetition."""
    impls: dict[str, dict[str, Any]] = {"drover": drover_namespace(), "floor": floor_namespace()}
    prometheus = prometheus_namespace()
    if prometheus is not None:
        impls["prometheus_client"] = prometheus
    results: dict[str, dict[str, list[float]]] = {impl: {} for impl in impls}
    jobs = [(impl, case) for impl in impls for case in CASES if impl != "floor"] + [("floor", "inc")]
    for impl, case in jobs:  # warm-up
        per_call_ns(CASES[case][0] if impl != "floor" else "floor()", impls[impl], number // 10)
    for _, (impl, case) in interleaved(reps, jobs):
        statement = "floor()" if impl == "floor" else CASES[case][0]
        results[impl].setdefault(case, []).append(per_call_ns(statement, impls[impl], number))
    return results


async def traffic(seconds: float, reps: int) -> dict[str, list[float]]:
    """Run the paced load in a real worker; return measure -> values (one per repetition)."""
    master = MasterFactory.create(script=WORKER, count=1, start_timeout=60)
    frames = 0
    sizes = 0
    ingest = master._app_metrics.ingest

    def counting(worker_id: int, slot: int, batch: MetricsBatch) -> None:
        nonlocal frames, sizes
        frames += 1
        sizes += batch.size
        ingest(worker_id, slot, batch)

    master._app_metrics.ingest = counting  # type: ignore[method-assign]
    out: dict[str, list[float]] = {}
    async with master:
        await master.start()
        [wid] = [w.id for w in master.workers]
        await master.request(wid, "load", {"rate": RATE, "seconds": 0.5, "mode": "drover"}, timeout=60)  # warm-up
        for _, mode in interleaved(reps, ["drover", "floor"]):
            frames = sizes = 0
            start = anyio.current_time()
            result = await master.request(wid, "load", {"rate": RATE, "seconds": seconds, "mode": mode}, timeout=120)
            elapsed = anyio.current_time() - start
            assert isinstance(result, list)
            made, cpu = result
            out.setdefault(f"{mode}_cpu_pct", []).append(100 * cpu / elapsed)
            if mode == "drover":
                out.setdefault("frames_per_s", []).append(frames / elapsed)
                out.setdefault("bytes_per_s", []).append(sizes / elapsed)
                out.setdefault("increments_per_s", []).append(made / elapsed)
        [jobs] = [f for f in master._app_metrics.families() if f.name == "jobs_total"]
        out["counted_at_master"] = [
            sum(s.value for s in jobs.samples if isinstance(s, Sample) and ("slot", "all") in s.labels)
        ]
        await master.graceful_shutdown()
    return out


def main() -> None:
    args = parse_args(__doc__ or "")
    reps = 5 if args.quick else 9
    number = 200_000 if args.quick else 500_000
    seconds = 2.0 if args.quick else 5.0
    costs = increment_costs(reps, number)
    rows: list[dict[str, Any]] = []
    floor = summary(costs["floor"]["inc"])
    for case, (_, label) in CASES.items():
        value = summary(costs["drover"][case])
        if case == "inc":
            r = row("metrics", label, "ns per call", "ns", value, floor, "dict update", goal=f"<= {FLOOR_GOAL}x")
            r["ok"] = r["cmp"] is not None and r["cmp"] <= FLOOR_GOAL
            rows.append(r)
            log(f"{label}: {value['median']:.0f} ns, dict update {floor['median']:.0f} ns")
        if "prometheus_client" in costs:
            reference = summary(costs["prometheus_client"][case])
            r = row("metrics", label, "ns per call", "ns", value, reference, "prometheus_client", goal="< 1.0x")
            r["ok"] = r["cmp"] is not None and r["cmp"] < 1.0
            rows.append(r)
            log(f"{label}: {value['median']:.0f} ns, prometheus_client {reference['median']:.0f} ns")
    measured = anyio.run(traffic, seconds, max(2, reps // 3))
    rate = statistics.median(measured["increments_per_s"])
    naive_frame = len(proto.encode_message({"metric": "jobs_total", "labels": ["a"], "inc": 1}))
    naive = {"frames": summary([rate]), "bytes": summary([rate * naive_frame])}
    frames = summary(measured["frames_per_s"])
    r = row("metrics", f"{rate / 1000:.0f}k incr/s, 4 series + histogram", "frames/s", "frames/s", frames)
    r.update(reference=naive["frames"], ref_label="a frame per incr", cmp=None, compare="", goal=f"<= {FRAMES_GOAL:g}")
    r["ok"] = frames["median"] <= FRAMES_GOAL
    rows.append(r)
    traffic_bytes = summary(measured["bytes_per_s"])
    r = row(
        "metrics",
        f"{rate / 1000:.0f}k incr/s, 4 series + histogram",
        "channel bytes/s",
        "B/s",
        traffic_bytes,
        naive["bytes"],
        "a frame per incr",
        compare="",
        note=f"{naive['bytes']['median'] / traffic_bytes['median']:,.0f}x less than a frame per increment",
    )
    rows.append(r)
    cpu = summary(measured["drover_cpu_pct"])
    rows.append(
        row(
            "metrics",
            f"{rate / 1000:.0f}k incr/s, 4 series + histogram",
            "worker CPU",
            "%",
            cpu,
            summary(measured["floor_cpu_pct"]),
            "same loop, dict",
            compare="diff",
        )
    )
    log(
        f"traffic: {frames['median']:.2f} frames/s, {summary(measured['bytes_per_s'])['median']:.0f} B/s; "
        f"worker CPU {cpu['median']:.1f}% vs {summary(measured['floor_cpu_pct'])['median']:.1f}% without metrics"
    )
    notes = [
        f"increment costs: {reps} timeit runs of {number} calls each, drover-py, the dict update and "
        "prometheus_client interleaved"
        + ("" if "prometheus_client" in costs else "; prometheus_client not importable: its rows are left out"),
        f"traffic: one asyncio worker, {RATE} increments/s in 10 ms ticks for {seconds:g} s per run; "
        f"the master counted {measured['counted_at_master'][0]:.0f} increments in all; "
        f"reference frame: {naive_frame} bytes per increment",
    ]
    raw = {"costs_ns": costs, "traffic": measured}
    write_result(args.out, "metrics", rows, raw, notes)


if __name__ == "__main__":
    main()
