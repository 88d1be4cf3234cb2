"""5. Master idle CPU with 16 idle workers, vs ``uvicorn --workers 16``.

Four masters run side by side, each in its own process: drover-py on asyncio and on
trio (16 tiny workers each, `apps/idle_master.py`), drover-py on asyncio with liveness
checks on (``heartbeat_timeout=3``: every worker sends a heartbeat each second), and
uvicorn with 16 workers serving a trivial ASGI app (`apps/launch_uvicorn.py`). Once all workers are up and a settling
pause passed, each master's utime + stime (/proc/<pid>/stat, clock ticks) and on-CPU
time of all its threads (/proc/<pid>/task/*/schedstat, ns) are read before and after the
same idle window. Goal: a drover-py master uses <= 0.1% of one core.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

from _common import (
    APPS,
    CLK_TCK,
    PYTHON,
    child_env,
    cpu_ns,
    cpu_ns_delta,
    cpu_ticks,
    descendants_of,
    free_port,
    log,
    parse_args,
    row,
    stop_process,
    thread_count,
    thread_cpu_ns,
    write_result,
)

WORKERS = 16
GOAL_PCT = 0.1
HEARTBEAT_TIMEOUT = 3.0
DROVER_CASES = {  # name -> idle_master.py arguments after the worker count
    "asyncio": ["asyncio"],
    "trio": ["trio"],
    f"asyncio, heartbeat_timeout={HEARTBEAT_TIMEOUT:g}": ["asyncio", str(HEARTBEAT_TIMEOUT)],
}


class Launched:
    """One master process and a thread that watches its output for readiness."""

    def __init__(self, name: str, argv: list[str], ready_text: str, ready_count: int, stream: str) -> None:
        self.name = name
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            argv,
            env=child_env(),
            stdout=subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL,
            stderr=subprocess.PIPE if stream == "stderr" else None,
            text=True,
            start_new_session=True,
        )
        pipe = self.proc.stdout if stream == "stdout" else self.proc.stderr
        assert pipe is not None
        self._thread = threading.Thread(target=self._watch, args=(pipe, ready_text, ready_count), daemon=True)
        self._thread.start()

    def _watch(self, pipe: object, text: str, count: int) -> None:
        seen = 0
        for line in pipe:  # type: ignore[attr-defined]
            if text in line:
                seen += 1
                if seen >= count:
                    self.ready.set()
        # keep draining until the process ends (the loop above does)

    def cpu(self) -> tuple[int, dict[int, int], dict[int, int]]:
        """Return (master ticks, master {tid: ns}, workers {pid: ns})."""
        pid = self.proc.pid
        workers = {child: cpu_ns(child) for child in descendants_of(pid)}
        return cpu_ticks(pid), thread_cpu_ns(pid), workers


def main() -> None:
    args = parse_args(__doc__ or "")
    window = 10.0 if args.quick else 30.0
    settle = 2.0 if args.quick else 3.0
    launched: list[Launched] = []
    try:
        for case, extra in DROVER_CASES.items():
            launched.append(
                Launched(
                    f"drover-py ({case})",
                    [PYTHON, str(APPS / "idle_master.py"), extra[0], str(WORKERS), *extra[1:]],
                    '"ready": true',
                    1,
                    "stdout",
                )
            )
        launched.append(
            Launched(
                "uvicorn",
                [PYTHON, str(APPS / "launch_uvicorn.py"), str(free_port()), str(WORKERS)],
                "Application startup complete",
                WORKERS,
                "stderr",
            )
        )
        deadline = time.monotonic() + 90
        for item in launched:
            if not item.ready.wait(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"{item.name} did not get {WORKERS} workers up in time")
        log(f"all masters up; settling {settle:.0f} s, then measuring {window:.0f} s of idle")
        time.sleep(settle)
        before = {item.name: item.cpu() for item in launched}
        start = time.monotonic()
        time.sleep(window)
        wall = time.monotonic() - start
        after = {item.name: item.cpu() for item in launched}
        threads = {item.name: thread_count(item.proc.pid) for item in launched}
        workers_alive = {item.name: len(descendants_of(item.proc.pid)) for item in launched}
    finally:
        for item in launched:
            stop_process(item.proc)
    results = {}
    for name in before:
        ticks = after[name][0] - before[name][0]
        ns = cpu_ns_delta(before[name][1], after[name][1])
        wns = cpu_ns_delta(before[name][2], after[name][2])
        results[name] = {
            "ticks": ticks,
            "tick_ms": ticks * 1000 / CLK_TCK,
            "schedstat_ms": ns / 1e6,
            "pct_of_core_ticks": ticks / CLK_TCK / wall * 100,
            "pct_of_core": ns / 1e9 / wall * 100,
            "workers_pct_of_core": wns / 1e9 / wall * 100,
            "threads": threads[name],
            "workers": workers_alive[name],
        }
        log(
            f"{name}: {ticks} ticks ({results[name]['pct_of_core_ticks']:.3f}%), "
            f"schedstat {ns / 1e6:.1f} ms = {results[name]['pct_of_core']:.4f}% of a core; "
            f"workers {results[name]['workers_pct_of_core']:.3f}%; {threads[name]} threads"
        )
    uv = results["uvicorn"]
    rows = []
    for case in DROVER_CASES:
        mine = results[f"drover-py ({case})"]
        r = row(
            "idle",
            f"{WORKERS} idle workers, {case}",
            f"master CPU, {wall:.0f} s",
            "% core",
            {"median": mine["pct_of_core"], "min": mine["pct_of_core"], "max": mine["pct_of_core"], "n": 1},
            {"median": uv["pct_of_core"], "min": uv["pct_of_core"], "max": uv["pct_of_core"], "n": 1},
            "uvicorn master",
            goal=f"<= {GOAL_PCT}%",
            note=(
                f"{mine['ticks']} ticks ({mine['tick_ms']:.0f} ms) vs uvicorn {uv['ticks']} ticks; "
                f"workers {mine['workers_pct_of_core']:.3f}% vs {uv['workers_pct_of_core']:.3f}%"
            ),
        )
        r["ok"] = mine["pct_of_core"] <= GOAL_PCT
        if "heartbeat" in case:
            beats = WORKERS * wall / (HEARTBEAT_TIMEOUT / 3)
            per_beat_us = mine["schedstat_ms"] * 1e3 / beats
            mine["cpu_per_heartbeat_us"] = per_beat_us
            # At that cost, the heartbeat_timeout that keeps 16 workers within the goal:
            mine["timeout_for_goal_s"] = 3 * WORKERS * per_beat_us / 1e6 / (GOAL_PCT / 100)
            r["note"] += (
                f"; {per_beat_us:.0f} us of master CPU per heartbeat received "
                f"({beats / wall:.0f}/s): within the goal from heartbeat_timeout >= "
                f"{mine['timeout_for_goal_s']:.0f} s"
            )
        rows.append(r)
    notes = [
        f"CPU from schedstat (ns, all threads); /proc/<pid>/stat utime+stime is in ticks of 1/{CLK_TCK} s, "
        "charged whole to whatever runs when a tick fires, so a near-idle process shows 0 or 1 tick at random",
        "uvicorn's master wakes every 0.5 s and pings each worker over a pipe (its health check)",
        "schedstat counts threads alive at the end of the window; ticks include threads that ended",
    ]
    write_result(args.out, "idle", rows, {"window_s": wall, "masters": results}, notes)
    print(json.dumps({k: round(v["pct_of_core"], 4) for k, v in results.items()}))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
