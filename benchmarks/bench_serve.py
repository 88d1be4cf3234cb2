"""7. Time to serve: launch 4 HTTP workers until every one has answered a request.

Each server is launched as a subprocess (launchers in apps/), the clock starting just
before the launch:

- drover-py, 4 workers of examples/single_app_cluster/app.py (hypercorn on trio);
- drover-py, 4 workers of apps/uvicorn_worker.py (uvicorn's server, the ASGI app below);
- ``gunicorn -w 4`` (sync workers), a trivial WSGI app;
- ``uvicorn --workers 4``, a trivial ASGI app.

For all four the same poller (4 threads, a new connection per request) hits the port
from the launch on, until responses from 4 distinct worker pids (a response header)
were seen, bounded by a timeout. For drover-py the time at which ``start()`` returned
(its "ready" line) is reported too: by then all workers listen.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from typing import IO

from _common import APPS, PYTHON, RESULTS, child_env, free_port, interleaved, log, parse_args, row, stop_process
from _common import fetch_head, summary, write_result

WORKERS = 4
TIMEOUT = 60.0
PID_HEADER = re.compile(rb"(?:x-worker-pid: *|x-worker: [^\r\n]*pid=)(\d+)", re.IGNORECASE)
CASES = {
    "drover-hypercorn": lambda port: [PYTHON, str(APPS / "serve_drover.py"), str(port), str(WORKERS), "hypercorn"],
    "drover-uvicorn": lambda port: [PYTHON, str(APPS / "serve_drover.py"), str(port), str(WORKERS), "uvicorn"],
    "gunicorn": lambda port: [PYTHON, str(APPS / "launch_gunicorn.py"), str(port), str(WORKERS)],
    "uvicorn": lambda port: [PYTHON, str(APPS / "launch_uvicorn.py"), str(port), str(WORKERS)],
}
LABELS = {
    "drover-hypercorn": "drover-py + hypercorn/trio",
    "drover-uvicorn": "drover-py + uvicorn worker",
    "gunicorn": "gunicorn -w 4",
    "uvicorn": "uvicorn --workers 4",
}


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
            if line.strip() == "ready" and not ready_at:
                ready_at.append(time.perf_counter() - start)

    watcher = threading.Thread(target=watch_stdout, daemon=True)
    watcher.start()
    poller = Poller(port, WORKERS, start, proc)
    try:
        served = poller.wait()
        if case.startswith("drover"):
            deadline = time.monotonic() + 10
            while not ready_at and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.005)
    finally:
        stop_process(proc)
        watcher.join(5)
    return served, (ready_at[0] if ready_at else None), poller.requests


def main() -> None:
    args = parse_args(__doc__ or "")
    reps = 2 if args.quick else 5
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
    for mine in ("drover-hypercorn", "drover-uvicorn"):
        for ref in ("gunicorn", "uvicorn"):
            note = ""
            if mine in ready_stats:
                note = f"start() returned at {ready_stats[mine]['median']:.0f} ms"
            rows.append(
                row("serve", LABELS[mine], "launch to 4 pids served", "ms", stats[mine], stats[ref], LABELS[ref], note=note)
            )
    write_result(
        args.out,
        "serve",
        rows,
        {"served_ms": stats, "ready_ms": ready_stats, "samples_s": served, "failures": failures},
        [f"{LABELS[c]}: {stats[c]['median']:.0f} ms (median of {stats[c]['n']})" for c in CASES if stats[c]["n"]],
    )


if __name__ == "__main__":
    main()
