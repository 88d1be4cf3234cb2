"""11. Requests per second of 4 workers: ``drover-py serve`` against uvicorn, gunicorn and granian.

Every server serves the trivial app of ``apps/serve_app.py`` (a JSON answer with the
worker's pid) with 4 workers on 127.0.0.1, access log off; all are started first and
stay up (idle but the one measured). Then ``wrk -t2 -c32 -d5s`` (``-d3s`` with
``--quick``) runs against each in turn, one warm-up run each, then 3 rounds (2 with
``--quick``) with the order rotated every round; medians, and the median of the
per-round ratios.

- ASGI: ``drover-py serve serve_app:app -w 4`` (uvicorn on asyncio) against ``uvicorn
  --workers 4``: the same HTTP stack (uvicorn's protocol: httptools when installed,
  else h11), so the difference is drover-py's (its worker, its drain middleware).
  Goal >= 0.95x.
- WSGI: ``drover-py serve serve_app:wsgi -w 4`` (waitress) against
  ``gunicorn -w 4`` (sync workers, which answer every request with ``Connection:
  close``: wrk opens a connection per request). Goal >= 0.95x.
- References: ``granian --interface asgi --workers 4``; in full runs also
  ``drover-py serve --backend trio`` (hypercorn).

Skipped, with a note, when ``wrk`` is not installed (Debian package ``wrk``).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import statistics
import subprocess
import time
from typing import Any

import _servers
from _common import RESULTS, interleaved, log, parse_args, row, summary, write_result
from _servers import Running, Spec

WORKERS = 4
GOAL = 0.95
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def specs(quick: bool) -> list[Spec]:
    asgi, wsgi = "serve_app:app", "serve_app:wsgi"
    out = [
        _servers.drover("drover-asgi", "drover-py serve, ASGI", asgi, WORKERS),
        _servers.uvicorn("uvicorn", asgi, WORKERS),
        _servers.drover("drover-wsgi", "drover-py serve, WSGI", wsgi, WORKERS, interface="wsgi"),
        _servers.gunicorn("gunicorn", wsgi, WORKERS),
        _servers.granian("granian", asgi, WORKERS),
    ]
    if not quick:
        out.append(_servers.drover("drover-trio", "drover-py serve, ASGI, trio", asgi, WORKERS, backend="trio"))
    return out


def parse_wrk(text: str) -> dict[str, Any]:
    """Return requests/s, latency p50/p99 (ms), non-2xx answers and socket errors from wrk's output."""
    out: dict[str, Any] = {"rps": None, "p50_ms": None, "p99_ms": None, "non_2xx": 0, "socket_errors": 0}
    match = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if match:
        out["rps"] = float(match.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
        if match:
            out[key] = float(match.group(1)) * UNITS[match.group(2)]
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if match:
        out["non_2xx"] = int(match.group(1))
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if match:
        out["socket_errors"] = sum(int(x) for x in match.groups())
    return out


def connections_by_pid(port: int) -> list[int]:
    """Return how many established connections to ``port`` each process holds, most first (``ss``), or []."""
    try:
        out = subprocess.run(
            ["ss", "-tnpH", "state", "established", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    counts: dict[str, int] = {}
    for pid in re.findall(r"pid=(\d+)", out):
        counts[pid] = counts.get(pid, 0) + 1
    return sorted(counts.values(), reverse=True)


def run_wrk(wrk: str, port: int, seconds: int) -> dict[str, Any]:
    """Run wrk; also look, half-way, at how its 32 connections are spread over the workers."""
    argv = [wrk, "-t2", "-c32", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}/"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(seconds / 2)
        spread = connections_by_pid(port)
        stdout, stderr = proc.communicate(timeout=seconds + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = parse_wrk(stdout)
    if result["rps"] is None:
        raise RuntimeError(f"wrk said nothing usable (exit {proc.returncode}): {stdout[-300:]} {stderr[-300:]}")
    result["connections_by_worker"] = spread
    return result


def main() -> None:
    args = parse_args(__doc__ or "")
    wrk = shutil.which("wrk")
    if wrk is None:
        message = "skipped: wrk is not installed (Debian/Ubuntu: apt-get install wrk)"
        log(message)
        write_result(args.out, "serve_rps", [], {"skipped": message}, [message])
        return
    seconds, rounds = (3, 2) if args.quick else (5, 3)
    servers: dict[str, Running] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    (RESULTS / "logs").mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "logs" / "serve_rps-servers.log", "w") as log_file:
        try:
            for spec in specs(args.quick):
                servers[spec.key] = Running(spec, log_file)
                servers[spec.key].wait_ready()  # one at a time: no start-up competes with another
            for key, server in servers.items():  # warm-up
                run_wrk(wrk, server.port, 1 if args.quick else 2)
                runs[key] = []
            for _, key in interleaved(rounds, list(servers)):
                result = run_wrk(wrk, servers[key].port, seconds)
                runs[key].append(result)
                log(
                    f"{servers[key].spec.label}: {result['rps']:.0f} req/s, p50 {result['p50_ms']} ms, "
                    f"connections by worker {result['connections_by_worker']}"
                )
        finally:
            for server in servers.values():
                server.stop()

    rps = {key: [r["rps"] for r in values] for key, values in runs.items()}
    stats = {key: summary(values) for key, values in rps.items()}
    labels = {key: server.spec.label for key, server in servers.items()}

    def note_of(key: str) -> str:
        values = runs[key]
        p50 = statistics.median(r["p50_ms"] for r in values if r["p50_ms"] is not None)
        p99 = statistics.median(r["p99_ms"] for r in values if r["p99_ms"] is not None)
        errors = sum(r["socket_errors"] for r in values)
        non_2xx = sum(r["non_2xx"] for r in values)
        spread = " ".join("/".join(map(str, r["connections_by_worker"])) or "?" for r in values)
        return f"{labels[key]}: {stats[key]['median']:.0f} req/s, latency p50 {p50:.2f} ms, p99 {p99:.2f} ms, " + (
            f"{errors} socket errors, {non_2xx} non-2xx answers over {len(values)} runs; "
            f"wrk's connections by worker, each run: {spread}"
        )

    rows = []
    for mine, ref, case, goal in (
        ("drover-asgi", "uvicorn", "ASGI, 4 workers", True),
        ("drover-wsgi", "gunicorn", "WSGI, 4 workers", True),
        ("drover-asgi", "granian", "ASGI, 4 workers", False),
        ("drover-trio", "uvicorn", "ASGI on trio (hypercorn), 4 workers", False),
    ):
        if mine not in stats or ref not in stats:
            continue
        r = row(
            "serve_rps", case, "wrk -t2 -c32 requests/s", "req/s", stats[mine], stats[ref], labels[ref],
            paired=list(zip(rps[mine], rps[ref])), goal=f">= {GOAL:g}x" if goal else "",
        )  # fmt: skip
        if goal:
            r["ok"] = r["cmp"] is not None and r["cmp"] >= GOAL
        rows.append(r)
    notes = [note_of(key) for key in runs]
    notes.append(
        f"wrk -t2 -c{32} -d{seconds}s, {rounds} rounds interleaved; uvicorn's HTTP protocol here: "
        f"{_http_protocol()}; gunicorn sync closes every connection (no keep-alive), so wrk reconnects per request"
    )
    write_result(args.out, "serve_rps", rows, {"runs": runs, "rounds": rounds, "seconds": seconds}, notes)


def _http_protocol() -> str:
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11 (httptools is not installed)"


if __name__ == "__main__":
    main()
