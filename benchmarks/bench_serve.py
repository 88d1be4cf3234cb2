"""7. Time to serve: launch 4 HTTP workers until every one has answered; memory of 16 idle ones.

Part "launch": each server is launched as a subprocess, the clock starting just before
the launch:

- drover-py, 4 workers of examples/single_app_cluster/app.py (hypercorn on trio);
- drover-py, 4 workers of apps/uvicorn_worker.py (uvicorn's server, the ASGI app below);
- ``drover-py serve asgi_app:app -w 4`` (uvicorn on asyncio), exec and ``--preload``;
- ``drover-py serve wsgi_app:app -w 4 --preload`` (waitress), gunicorn's app;
- ``gunicorn -w 4`` (sync workers), a trivial WSGI app (``apps/wsgi_app.py``);
- ``uvicorn --workers 4``, a trivial ASGI app (``apps/asgi_app.py``).

For all of them the same poller (4 threads, a new connection per request) hits the port
from the launch on, until responses from 4 distinct worker pids (a response header)
were seen, bounded by a timeout. For drover-py the time at which ``start()`` returned
(its "ready" line, or ``drover-py serve``'s "serving" line) is reported too: by then all
workers listen. Goal: ``drover-py serve --preload`` at or below gunicorn with the same
WSGI app (the ASGI app's row is compared with both references too).

Part "memory": tree PSS (`_common.tree_pss_kb`: the server process and every
descendant) with 16 idle workers, each server once up (every worker answered, or said
its startup completed): ``drover-py serve --preload`` with the ASGI app
(``apps/asgi_app.py``, uvicorn on asyncio) and with the WSGI app (``apps/wsgi_app.py``,
waitress), ``uvicorn --workers 16`` (the ASGI app), ``gunicorn -w 16``
sync (the WSGI app). Goal: at or below the reference of the same interface.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from typing import IO

from _common import (
    APPS,
    DROVER_PY,
    PYTHON,
    RESULTS,
    Json,
    child_env,
    cmdline,
    descendants_of,
    fetch_head,
    free_port,
    interleaved,
    log,
    parse_args,
    row,
    stop_process,
    summary,
    tree_pss_kb,
    wait_all_answered,
    workers_of,
    write_result,
)

WORKERS = 4
MEMORY_WORKERS = 16
TIMEOUT = 60.0
PID_HEADER = re.compile(rb"(?:x-worker-pid: *|x-worker: [^\r\n]*pid=)(\d+)", re.IGNORECASE)
PARTS = ["launch", "memory"]


def drover_serve(app: str, port: int, workers: int, *options: str) -> list[str]:
    """``drover-py serve APP -w N`` on 127.0.0.1:PORT, apps/ as its app folder, quiet."""
    return [
        DROVER_PY, "serve", app, "-w", str(workers), "--bind", f"127.0.0.1:{port}", "--app-dir",
        str(APPS), "--no-control", "--no-access-log", "--log-level", "warning", *options,
    ]  # fmt: skip


CASES = {
    "drover-hypercorn": lambda port: [PYTHON, str(APPS / "serve_drover.py"), str(port), str(WORKERS), "hypercorn"],
    "drover-uvicorn": lambda port: [PYTHON, str(APPS / "serve_drover.py"), str(port), str(WORKERS), "uvicorn"],
    "serve": lambda port: drover_serve("asgi_app:app", port, WORKERS),
    "serve-preload": lambda port: drover_serve("asgi_app:app", port, WORKERS, "--preload"),
    "serve-preload-wsgi": lambda port: drover_serve("wsgi_app:app", port, WORKERS, "--preload"),
    "gunicorn": lambda port: [PYTHON, str(APPS / "launch_gunicorn.py"), str(port), str(WORKERS)],
    "uvicorn": lambda port: [PYTHON, str(APPS / "launch_uvicorn.py"), str(port), str(WORKERS)],
}
LABELS = {
    "drover-hypercorn": "drover-py + hypercorn/trio",
    "drover-uvicorn": "drover-py + uvicorn worker",
    "serve": "drover-py serve",
    "serve-preload": "drover-py serve --preload",
    "serve-preload-wsgi": "drover-py serve --preload, WSGI app",
    "gunicorn": "gunicorn -w 4",
    "uvicorn": "uvicorn --workers 4",
}
#: What says that a launched drover-py is ready: the example's "ready", serve's "serving" line.
READY_LINES = ("ready", "drover-py: serving")


class Poller:
    """Threads that request http://127.0.0.1:port/ until ``want`` distinct pids answered."""

    def __init__(self, port: int, want: int, start: float, proc: subprocess.Popen[str], threads: int = 4) -> None:
        self.port, self.want, self.start, self.proc = port, want, start, proc
        self.first_seen: dict[int, float] = {}
        self.requests = 0
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._deadline = start + TIMEOUT
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _fetch(self) -> int | None:
        match = PID_HEADER.search(fetch_head(self.port, timeout=5))
        return int(match.group(1)) if match else None

    def _loop(self) -> None:
        while not self.done.is_set() and time.perf_counter() < self._deadline:
            try:
                pid = self._fetch()
            except OSError:
                if self.proc.poll() is not None:  # the launcher died: give up at once
                    self.done.set()
                time.sleep(0.005)
                continue
            now = time.perf_counter()
            with self._lock:
                self.requests += 1
                if pid is not None and pid not in self.first_seen:
                    self.first_seen[pid] = now - self.start
                    if len(self.first_seen) >= self.want:
                        self.done.set()
            time.sleep(0.002)

    def wait(self) -> float | None:
        """Return the seconds until the last of ``want`` pids first answered, or None."""
        self.done.wait(max(0.0, self._deadline - time.perf_counter()))
        self.done.set()
        for thread in self._threads:
            thread.join(10)
        return max(self.first_seen.values()) if len(self.first_seen) >= self.want else None


def launch_once(case: str, log_file: IO[str]) -> tuple[float | None, float | None, int]:
    """Return (seconds to all workers answering, seconds to the "ready" line, requests)."""
    port = free_port()
    ready_at: list[float] = []
    start = time.perf_counter()
    proc = subprocess.Popen(
        CASES[case](port),
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=log_file,
        text=True,
        start_new_session=True,
    )

    def watch_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip().startswith(READY_LINES) and not ready_at:
                ready_at.append(time.perf_counter() - start)

    watcher = threading.Thread(target=watch_stdout, daemon=True)
    watcher.start()
    poller = Poller(port, WORKERS, start, proc)
    try:
        served = poller.wait()
        if case.startswith(("drover", "serve")):
            deadline = time.monotonic() + 10
            while not ready_at and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.005)
    finally:
        stop_process(proc)
        watcher.join(5)
    return served, (ready_at[0] if ready_at else None), poller.requests


def launch_part(quick: bool) -> tuple[list[Json], Json, list[str]]:
    reps = 2 if quick else 5
    served: dict[str, list[float]] = {case: [] for case in CASES}
    ready: dict[str, list[float]] = {case: [] for case in CASES}
    failures: dict[str, int] = {case: 0 for case in CASES}
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "serve-servers.log", "w") as log_file:
        for case in CASES:  # warm-up
            launch_once(case, log_file)
        for _, case in interleaved(reps, list(CASES)):
            t_served, t_ready, requests = launch_once(case, log_file)
            if t_served is None:
                failures[case] += 1
                log(f"{case}: not all {WORKERS} workers answered (launcher died, or {TIMEOUT:.0f} s passed)")
                continue
            served[case].append(t_served)
            if t_ready is not None:
                ready[case].append(t_ready)
            extra = f", start() returned at {t_ready * 1e3:.0f} ms" if t_ready is not None else ""
            log(f"{case}: all {WORKERS} answered at {t_served * 1e3:.0f} ms{extra} ({requests} requests)")
    stats = {case: summary(values, 1e3) for case, values in served.items()}
    ready_stats = {case: summary(values, 1e3) for case, values in ready.items() if values}
    rows = []
    for mine in ("drover-hypercorn", "drover-uvicorn", "serve", "serve-preload", "serve-preload-wsgi"):
        for ref in ("gunicorn", "uvicorn"):
            note = ""
            if mine in ready_stats:
                said = "its 'serving' line came" if mine.startswith("serve") else "start() returned"
                note = f"{said} at {ready_stats[mine]['median']:.0f} ms"
            r = row(
                "serve", LABELS[mine], "launch to 4 pids served", "ms", stats[mine], stats[ref], LABELS[ref], note=note,
                goal="<= gunicorn" if (mine, ref) == ("serve-preload-wsgi", "gunicorn") else "",
            )  # fmt: skip
            if r["goal"] and r["cmp"] is not None:
                r["ok"] = r["cmp"] <= 1.0
            rows.append(r)
    raw = {"served_ms": stats, "ready_ms": ready_stats, "samples_s": served, "failures": failures}
    notes = [f"{LABELS[c]}: {stats[c]['median']:.0f} ms (median of {stats[c]['n']})" for c in CASES if stats[c]["n"]]
    return rows, raw, notes


# -- memory of 16 idle workers ---------------------------------------------------------------

MEMORY = {
    "serve-preload-asgi": ("drover-py serve --preload, ASGI", "uvicorn"),
    "serve-preload-wsgi": ("drover-py serve --preload, WSGI", "gunicorn"),
    "uvicorn": ("uvicorn --workers 16", ""),
    "gunicorn": ("gunicorn -w 16 sync", ""),
}


def memory_once(kind: str, log_file: IO[str]) -> tuple[float, float, int]:
    """Launch ``kind`` with 16 workers, wait until all are up and 1 s idle; return (tree PSS MB, one worker's median MB, processes)."""
    port = free_port()
    workers = MEMORY_WORKERS
    argv = {
        "serve-preload-asgi": drover_serve("asgi_app:app", port, workers, "--preload"),
        "serve-preload-wsgi": drover_serve("wsgi_app:app", port, workers, "--preload"),
        "uvicorn": [PYTHON, str(APPS / "launch_uvicorn.py"), str(port), str(workers)],  # logs at info level
        "gunicorn": [PYTHON, str(APPS / "launch_gunicorn.py"), str(port), str(workers)],
    }[kind]
    log_file.write(f"=== memory {kind}: {' '.join(argv)}\n")
    log_file.flush()
    proc = subprocess.Popen(
        argv, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    lines: list[str] = []
    done = threading.Event()

    def read(stream: IO[str]) -> None:
        for line in stream:
            lines.append(line)
            log_file.write(f"[{kind}] {line}")
        done.set()

    readers = [threading.Thread(target=read, args=(stream,), daemon=True) for stream in (proc.stdout, proc.stderr)]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 120
    try:
        if kind == "gunicorn":  # sync workers: every one answers a round of 16 connections
            worker_pids = wait_all_answered(port, workers, 120, lambda: proc.poll() is None, kind)
        else:  # drover-py says when all are ready; uvicorn's workers each log their startup
            needle, count = (
                ("drover-py: serving", 1) if kind.startswith("serve") else ("Application startup complete", workers)
            )
            while sum(needle in line for line in list(lines)) < count:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{kind}: not up in 120 s (exit {proc.poll()})")
                time.sleep(0.05)
            if kind == "uvicorn":
                worker_pids = workers_of(proc.pid)
            else:
                worker_pids = {pid for pid in descendants_of(proc.pid) if cmdline(pid).startswith("drover-py worker")}
        time.sleep(1.0)  # idle
        pss = tree_pss_kb(proc.pid)
        of_workers = sorted(pss[pid] for pid in worker_pids if pid in pss)
        if len(of_workers) != workers:
            raise RuntimeError(f"{kind}: {len(of_workers)} worker processes found, {workers} expected")
        return sum(pss.values()) / 1024, of_workers[len(of_workers) // 2] / 1024, len(pss)
    finally:
        stop_process(proc)
        for reader in readers:
            reader.join(5)


def memory_part(quick: bool) -> tuple[list[Json], Json, list[str]]:
    reps = 1 if quick else 3
    samples: dict[str, list[float]] = {kind: [] for kind in MEMORY}
    per_worker: dict[str, list[float]] = {kind: [] for kind in MEMORY}
    processes: dict[str, int] = {}
    with open(RESULTS / "logs" / "serve-memory.log", "w") as log_file:
        for _, kind in interleaved(reps, list(MEMORY)):
            total, worker_mb, count = memory_once(kind, log_file)
            samples[kind].append(total)
            per_worker[kind].append(worker_mb)
            processes[kind] = count
            log(f"memory {kind}: {total:.1f} MB in {count} processes, one worker {worker_mb:.2f} MB")
    stats = {kind: summary(values) for kind, values in samples.items()}
    one = {kind: summary(values) for kind, values in per_worker.items()}
    rows = []
    for mine in ("serve-preload-asgi", "serve-preload-wsgi"):
        label, same = MEMORY[mine]
        for ref in ("uvicorn", "gunicorn"):
            note = (
                f"one worker {one[mine]['median']:.2f} MB ({MEMORY[ref][0]}'s {one[ref]['median']:.2f}); the rest "
                f"(master, template; {MEMORY[ref][0].split()[0]}'s master) "
                f"{stats[mine]['median'] - MEMORY_WORKERS * one[mine]['median']:.1f} MB "
                f"({stats[ref]['median'] - MEMORY_WORKERS * one[ref]['median']:.1f}); {processes[mine]} processes"
            )
            r = row(
                "serve", f"memory, 16 idle, {label}", "tree PSS", "MB", stats[mine], stats[ref], MEMORY[ref][0],
                paired=list(zip(samples[mine], samples[ref])), goal="<= ref" if ref == same else "", note=note,
            )  # fmt: skip
            if ref == same and r["cmp"] is not None:
                r["ok"] = r["cmp"] <= 1.0
            rows.append(r)
    notes = [
        f"memory: {MEMORY[k][0]}: {stats[k]['median']:.1f} MB, one worker {one[k]['median']:.2f} MB" for k in MEMORY
    ]
    return rows, {"memory_mb": samples, "memory_per_worker_mb": per_worker, "processes": processes}, notes


def main() -> None:
    args = parse_args(__doc__ or "", parts=PARTS)
    (RESULTS / "logs").mkdir(parents=True, exist_ok=True)
    rows: list[Json] = []
    raw: Json = {}
    notes: list[str] = []
    if "launch" in args.part:
        part_rows, part_raw, part_notes = launch_part(args.quick)
        rows += part_rows
        raw.update(part_raw)
        notes += part_notes
    if "memory" in args.part:
        part_rows, part_raw, part_notes = memory_part(args.quick)
        rows += part_rows
        raw.update(part_raw)
        notes += part_notes
    write_result(args.out, "serve", rows, raw, notes)


if __name__ == "__main__":
    main()
