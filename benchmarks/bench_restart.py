"""2. Crash to replacement ready, with ``RestartPolicy(delay=0)``.

One master with one tiny worker; SIGKILL the worker and time until the "worker-started"
event of its replacement (also: until "worker-exit", the detection). Reference, in the
same run and interleaved: one cold ``start()`` of a single worker (a fresh master), and
the bare spawn floor of one child. Goal: crash -> ready <= cold start + 10 ms.

Also, for simultaneous crashes: a master of MANY tiny workers, all SIGKILLed at once,
timed until every replacement is ready, against a cold ``start()`` of as many workers in
the same run. The same goal: replacements are made concurrently, so the crashes cost
one start-up, not one per worker.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import anyio
from _common import Json, interleaved, log, parse_args, row, summary, write_result
from _spawn import drover_start, floor_start, tiny_master

from drover_py import RestartPolicy, WorkerStatus

GOAL_MS = 10.0
MANY = 8


async def measure(backend: str, reps: int, warmup: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"crash": [], "detect": [], "respawn": [], "cold": [], "floor": []}
    started: list[tuple[int, float]] = []
    exited: list[tuple[int, float]] = []
    spawned: list[tuple[int, float]] = []
    wake = anyio.Event()

    def on_started(worker_id: int) -> None:
        started.append((worker_id, time.perf_counter()))
        wake.set()

    def on_exit(_reason: object, worker_id: int) -> None:
        exited.append((worker_id, time.perf_counter()))

    def on_status(worker_id: int, status: WorkerStatus) -> None:
        if status is WorkerStatus.STARTING:
            spawned.append((worker_id, time.perf_counter()))

    master = tiny_master(1, restart=RestartPolicy(delay=0, max_restarts=10_000, within=60.0))
    master.on("worker-started", on_started)
    master.on("worker-exit", on_exit)
    master.on("status-changed", on_status)

    async def crash_once() -> tuple[float, float, float]:
        nonlocal wake
        [worker] = [w for w in master.workers if w.pid is not None and w.exit_reason is None]
        assert worker.pid is not None
        await anyio.sleep(0.1)  # let the worker settle (and the previous one be reaped)
        wake = anyio.Event()
        mark = len(started)
        start = time.perf_counter()
        os.kill(worker.pid, signal.SIGKILL)
        with anyio.fail_after(30):
            while not any(wid != worker.id for wid, _ in started[mark:]):
                await wake.wait()
                wake = anyio.Event()
        ready = next(t for wid, t in started[mark:] if wid != worker.id)
        detect = next(t for wid, t in exited if wid == worker.id)
        respawn = next(t for wid, t in spawned if wid > worker.id)
        return ready - start, detect - start, respawn - start

    async with master:
        await master.start()
        for _ in range(warmup):
            await crash_once()
            await drover_start(1)
            await floor_start(1)
        for _, case in interleaved(reps, ["crash", "cold", "floor"]):
            if case == "crash":
                total, detect, respawn = await crash_once()
                samples["crash"].append(total)
                samples["detect"].append(detect)
                samples["respawn"].append(respawn)
            elif case == "cold":
                samples["cold"].append(await drover_start(1))
            else:
                samples["floor"].append(await floor_start(1))
        await master.graceful_shutdown()
    return samples


async def measure_many(reps: int) -> dict[str, list[float]]:
    """SIGKILL all MANY workers at once; time until all replacements are ready, vs cold start()."""
    samples: dict[str, list[float]] = {"crash": [], "cold": []}
    ready: list[int] = []
    wake = anyio.Event()

    def on_started(worker_id: int) -> None:
        ready.append(worker_id)
        wake.set()

    master = tiny_master(MANY, restart=RestartPolicy(delay=0, max_restarts=10_000, within=60.0))
    master.on("worker-started", on_started)

    async def crash_all() -> float:
        nonlocal wake
        await anyio.sleep(0.2)  # let the previous replacements settle (and the dead be reaped)
        victims = {w.id: w.pid for w in master.workers if w.pid is not None and w.exit_reason is None}
        assert len(victims) == MANY
        wake = anyio.Event()
        mark = len(ready)
        start = time.perf_counter()
        for pid in victims.values():
            os.kill(pid, signal.SIGKILL)
        with anyio.fail_after(60):
            while len([wid for wid in ready[mark:] if wid not in victims]) < MANY:
                await wake.wait()
                wake = anyio.Event()
        return time.perf_counter() - start

    async with master:
        await master.start()
        await crash_all()  # warm-up
        await drover_start(MANY)
        for _, case in interleaved(reps, ["crash", "cold"]):
            samples[case].append(await crash_all() if case == "crash" else await drover_start(MANY))
        await master.graceful_shutdown()
    return samples


def main() -> None:
    args = parse_args(__doc__ or "")
    reps = 5 if args.quick else 25
    rows: list[Json] = []
    raw: dict[str, Any] = {}
    for backend in ["asyncio", "trio"]:
        samples = anyio.run(measure, backend, reps, 1, backend=backend)
        crash, cold = summary(samples["crash"], 1e3), summary(samples["cold"], 1e3)
        detect, floor = summary(samples["detect"], 1e3), summary(samples["floor"], 1e3)
        respawn = summary(samples["respawn"], 1e3)
        r = row(
            "restart",
            f"{backend} master",
            "SIGKILL to new ready",
            "ms",
            crash,
            cold,
            "cold start()",
            compare="diff",
            paired=[(a * 1e3, b * 1e3) for a, b in zip(samples["crash"], samples["cold"])],
            goal=f"<= cold + {GOAL_MS:.0f} ms",
            note=(
                f"difference of medians {crash['median'] - cold['median']:+.1f} ms; exit seen at {detect['median']:.1f} ms, respawned at {respawn['median']:.1f} ms; "
                f"spawn floor {floor['median']:.1f} ms"
            ),
        )
        r["ok"] = r["cmp"] is not None and r["cmp"] <= GOAL_MS
        rows.append(r)
        raw[backend] = {"samples_s": samples, "detect_ms": detect, "respawn_ms": respawn, "floor_ms": floor}
        log(
            f"{backend}: crash->ready {crash['median']:.1f} ms, cold start {cold['median']:.1f} ms, "
            f"detect {detect['median']:.2f} ms, respawn {respawn['median']:.2f} ms, floor {floor['median']:.1f} ms"
        )
    many = anyio.run(measure_many, 3 if args.quick else 10, backend="asyncio")
    crash, cold = summary(many["crash"], 1e3), summary(many["cold"], 1e3)
    r = row(
        "restart",
        f"{MANY} at once, asyncio master",
        "SIGKILL all to all new ready",
        "ms",
        crash,
        cold,
        f"cold start() of {MANY}",
        compare="diff",
        paired=[(a * 1e3, b * 1e3) for a, b in zip(many["crash"], many["cold"])],
        goal=f"<= cold + {GOAL_MS:.0f} ms",
        note=f"{MANY} workers SIGKILLed together; difference of medians {crash['median'] - cold['median']:+.1f} ms",
    )
    r["ok"] = r["cmp"] is not None and r["cmp"] <= GOAL_MS
    rows.append(r)
    raw["many"] = {"count": MANY, "samples_s": many}
    log(f"{MANY} at once: all ready {crash['median']:.1f} ms, cold start of {MANY} {cold['median']:.1f} ms")
    write_result(args.out, "restart", rows, raw)


if __name__ == "__main__":
    main()
