"""10. Reloads under load: failed requests over graceful reloads of 4 workers, two load shapes.

Every server serves the same trivial app (``apps/serve_app.py``: ``{"pid": N}`` and an
``x-worker-pid`` header) with 4 workers on 127.0.0.1. Two loads run at once, from the
first second on until the last reload finished and 0.5 s more:

- keep-alive: 16 threads of ``http.client``, each on one persistent connection
  (`_common.KeepAliveLoad`). No retry: a failed request is counted, the next one goes on
  a new connection. An answer with ``Connection: close`` ends its connection, and the
  next request opens a new one (correct client behaviour, counted as "reconnects");
- new connection per request: 16 asyncio clients, ``Connection: close``
  (`_common.run_load`, as `bench_reload_load.py`).

Meanwhile the server is reloaded by SIGHUP, 5 times (2 with ``--quick``), each reload
starting 0.3 s after the previous one finished. The time of each reload is measured
from the signal to its end (see `_servers`); one reload before the loads start is timed
too ("without load"). For a ``--preload`` row, the floor of its reload is timed in each
pause too, under the same load: a new interpreter importing what its template imports
(the app's module, the worker program, the server); a reload that runs the code on disk
cannot take less.

Servers (`_servers`): ``drover-py serve`` ASGI on asyncio (uvicorn) and on trio
(hypercorn), the WSGI app (waitress), each exec and ``--preload``;
``uvicorn --workers 4`` (``--timeout-worker-healthcheck 30``); ``gunicorn -k
<UvicornWorker> -w 4`` (left out, with a note, when no UvicornWorker is importable);
``granian --interface asgi --workers 4`` (``--respawn-interval 1``); ``gunicorn -w 4``
sync for the WSGI app. With ``--quick``: drover-py's asyncio and WSGI ``--preload`` rows,
uvicorn and gunicorn sync only; ``--part KEY`` (repeatable) picks servers by key.

Goal: 0 failed requests for every drover-py row; with ``--preload``, a reload of 4
workers < 1 s (under this load: the machine's two cores are saturated).
"""

from __future__ import annotations

import bisect
import statistics
import subprocess
import time
from typing import Any

import _servers
from _common import (
    APPS,
    PYTHON,
    RESULTS,
    ConnectionLoad,
    KeepAliveLoad,
    LoadStats,
    log,
    parse_args,
    row,
    summary,
    write_result,
)
from _servers import Running, Spec

WORKERS = 4
THREADS = 16  # keep-alive clients
CONCURRENCY = 16  # new-connection clients
PAUSE = 0.3  # seconds between a reload's end and the next SIGHUP
LEAD, TAIL = 1.0, 0.5  # seconds of load before the first reload and after the last
RELOAD_GOAL_S = 1.0
SHAPES = {"keepalive": "keep-alive, no retry", "connection": "new connection per request"}


KEYS = ["asyncio-exec", "asyncio-preload", "trio-exec", "trio-preload", "wsgi-exec", "wsgi-preload", "uvicorn",
        "gunicorn-uvicorn", "granian", "gunicorn"]  # fmt: skip
QUICK_KEYS = ["asyncio-preload", "wsgi-preload", "uvicorn", "gunicorn"]


def targets(keys: list[str]) -> tuple[list[Spec], list[str]]:
    """Return the servers named by ``keys`` (drover-py's first) and notes on those left out."""
    asgi, wsgi = "serve_app:app", "serve_app:wsgi"
    drover = [
        _servers.drover("asyncio-exec", "drover-py serve, asyncio", asgi, WORKERS),
        _servers.drover("asyncio-preload", "drover-py serve --preload, asyncio", asgi, WORKERS, preload=True),
        _servers.drover("trio-exec", "drover-py serve, trio", asgi, WORKERS, backend="trio"),
        _servers.drover("trio-preload", "drover-py serve --preload, trio", asgi, WORKERS, backend="trio", preload=True),
        _servers.drover("wsgi-exec", "drover-py serve, WSGI app", wsgi, WORKERS, interface="wsgi"),
        _servers.drover(
            "wsgi-preload", "drover-py serve --preload, WSGI app", wsgi, WORKERS, preload=True, interface="wsgi"
        ),
    ]
    refs = [_servers.uvicorn("uvicorn", asgi, WORKERS)]
    notes = []
    worker_class, origin = _servers.uvicorn_worker_class()
    if worker_class is None:
        notes.append(f"gunicorn + UvicornWorker left out: {origin}")
    else:
        refs.append(_servers.gunicorn("gunicorn-uvicorn", asgi, WORKERS, worker_class))
        notes.append(f"gunicorn's UvicornWorker comes from {origin}")
    refs += [_servers.granian("granian", asgi, WORKERS), _servers.gunicorn("gunicorn", wsgi, WORKERS)]
    return [spec for spec in drover + refs if spec.key in keys], notes


def where_in_reloads(times: list[float], starts: list[float], ends: list[float]) -> list[str]:
    """Say, for each failure time, which reload it fell in and how far into it (or after it)."""
    out = []
    for t in times[:20]:
        k = bisect.bisect_right(starts, t) - 1
        if k < 0:
            out.append(f"{t - starts[0]:+.3f}s before reload 1")
        elif k < len(ends) and t <= ends[k]:
            out.append(f"reload {k + 1} +{t - starts[k]:.3f}s (of {ends[k] - starts[k]:.2f}s)")
        else:
            out.append(f"after reload {k + 1} +{t - starts[k]:.3f}s")
    return out


def template_floor(spec: Spec) -> float:
    """Return the seconds a new interpreter takes to import what ``spec``'s template imports."""
    start = time.monotonic()
    subprocess.run([PYTHON, "-c", f"import {', '.join(spec.template_imports)}"], cwd=APPS, check=True, timeout=60)
    return time.monotonic() - start


def measure(spec: Spec, reloads: int, log_file: Any) -> dict[str, Any]:
    """Start ``spec``, load it with both shapes while reloading it; return what happened."""
    out: dict[str, Any] = {
        "label": spec.label, "reload_s": [], "reload_failures": [], "idle_reload_s": None, "error": None,
        "floor_s": [], "idle_floor_s": template_floor(spec) if spec.template_imports else None,
    }  # fmt: skip
    server = Running(spec, log_file)
    starts: list[float] = []
    ends: list[float] = []
    stats: dict[str, LoadStats] = {}
    try:
        out["ready_s"] = server.wait_ready()
        idle = server.reload()  # one without load first: what the load adds to a reload's time
        out["idle_reload_s"] = idle.seconds if idle.ok else None
        t0 = time.monotonic()
        keepalive = KeepAliveLoad(server.port, THREADS, t0)
        connection = ConnectionLoad(server.port, CONCURRENCY, t0)
        try:
            time.sleep(LEAD)
            for _ in range(reloads):
                starts.append(time.monotonic())
                outcome = server.reload()
                ends.append(time.monotonic())
                if outcome.ok:
                    out["reload_s"].append(outcome.seconds)
                else:
                    out["reload_failures"].append(f"after {outcome.seconds:.2f} s: {outcome.line.strip()}")
                if spec.template_imports:
                    out["floor_s"].append(template_floor(spec))
                time.sleep(PAUSE)
            time.sleep(TAIL - PAUSE)
        except RuntimeError as exc:
            out["error"] = str(exc)
        finally:
            stats = {"keepalive": keepalive.stop(), "connection": connection.stop()}
        out["load_s"] = time.monotonic() - t0
    except RuntimeError as exc:
        out["error"] = str(exc)
    finally:
        out["exit_code"] = server.stop()
    for shape, s in stats.items():
        out[shape] = {
            "requests": s.requests,
            "ok": s.ok,
            "failed": s.failed,
            "kinds": {kind: n for kind, n in s.kinds().items() if n},
            "reconnects": s.reconnects,
            "pids_seen": len(s.pids),
            "first_failures": s.first_failures,
            "failures_in_reloads": where_in_reloads(s.failure_times, starts, ends) if starts else [],
        }
    out["reloads_done"] = len(out["reload_s"])
    return out


def describe(result: dict[str, Any]) -> str:
    """One line: failures and kinds by shape, reload times."""
    parts = []
    for shape in SHAPES:
        r = result.get(shape)
        if r is None:
            continue
        kinds = ", ".join(f"{k} {n}" for k, n in r["kinds"].items()) or "none"
        parts.append(f"{shape}: {r['failed']} failed of {r['requests']} ({kinds})")
    times = result["reload_s"]
    if times:
        parts.append(f"reload {statistics.median(times):.2f} s [{min(times):.2f}-{max(times):.2f}] x{len(times)}")
    if result["idle_reload_s"] is not None:
        parts.append(f"without load {result['idle_reload_s']:.2f} s")
    if result["floor_s"]:
        floor = result["floor_s"]
        parts.append(
            f"floor (template imports) {statistics.median(floor):.2f} s under load, {result['idle_floor_s']:.2f} s without"
        )
    if result["reload_failures"]:
        parts.append(f"{len(result['reload_failures'])} reload(s) FAILED: {result['reload_failures'][0]}")
    if result["error"]:
        parts.append(f"ERROR {result['error']}")
    return "; ".join(parts)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def table(results: dict[str, dict[str, Any]]) -> str:
    header = [
        "server", "shape", "requests", "failed", "kinds", "reconnects", "pids", "reload s (median [min-max])", "rl fail",
        "idle rl s",
    ]  # fmt: skip
    lines = [header]
    for result in results.values():
        times = result["reload_s"]
        reload = f"{statistics.median(times):.2f} [{min(times):.2f}-{max(times):.2f}] x{len(times)}" if times else "-"
        reload_failed = str(len(result["reload_failures"]))
        idle = f"{result['idle_reload_s']:.2f}" if result["idle_reload_s"] is not None else "-"
        for shape in SHAPES:
            r = result.get(shape)
            if r is None:
                lines.append(
                    [result["label"], shape, "-", "-", result["error"] or "", "-", "-", reload, reload_failed, idle]
                )
                continue
            kinds = " ".join(f"{k}={n}" for k, n in r["kinds"].items()) or "-"
            lines.append(
                [result["label"], shape, str(r["requests"]), str(r["failed"]), kinds, str(r["reconnects"]),
                 str(r["pids_seen"]), reload, reload_failed, idle]
            )  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def main() -> None:
    args = parse_args(__doc__ or "", parts=KEYS)
    reloads = 2 if args.quick else 5
    keys = QUICK_KEYS if args.quick and len(args.part) == len(KEYS) else args.part
    specs, notes = targets(keys)
    (RESULTS / "logs").mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    with open(RESULTS / "logs" / "serve_reload-servers.log", "w") as log_file:
        for spec in specs:
            results[spec.key] = measure(spec, reloads, log_file)
            log(f"{spec.label}: {describe(results[spec.key])}")
    print(table(results), flush=True)

    def failed(key: str, shape: str) -> dict[str, Any]:
        r = results.get(key, {}).get(shape)
        return summary([r["failed"]]) if r is not None else summary([])

    rows = []
    for spec in specs:
        if not spec.drover:
            continue
        result = results[spec.key]
        ref = "gunicorn" if spec.key.startswith("wsgi") else "uvicorn"
        ref_label = results[ref]["label"] if ref in results else ""
        complete = result["reloads_done"] == reloads and not result["error"] and not result["reload_failures"]
        for shape, shape_label in SHAPES.items():
            r = result.get(shape)
            note = ""
            if r is not None:
                kinds = ", ".join(f"{k} {n}" for k, n in r["kinds"].items())
                note = f"{r['requests']} requests, {r['reconnects']} reconnects after Connection: close" + (
                    f"; failures: {kinds}; when: {'; '.join(r['failures_in_reloads'][:5])}" if r["failed"] else ""
                )
            if result["reload_failures"]:
                note += f"; {len(result['reload_failures'])} reload(s) FAILED: {result['reload_failures'][0]}"
            if result["error"]:
                note += f"; ERROR {result['error']}"
            value = failed(spec.key, shape)
            rows.append(
                row(
                    "serve_reload", f"{spec.label}, {shape_label}", f"failed in {reloads} reloads", "req", value,
                    failed(ref, shape), ref_label, compare="", goal="0",
                    ok=complete and value["median"] == 0, note=note,
                )
            )  # fmt: skip
        preload = spec.key.endswith("preload")
        ref_times = results[ref]["reload_s"] if ref in results else []
        ref_idle = results[ref]["idle_reload_s"] if ref in results else None
        r = row(
            "serve_reload", spec.label, f"reload of {WORKERS} under load", "s", summary(result["reload_s"]),
            summary(ref_times), ref_label, goal=f"< {RELOAD_GOAL_S:g} s" if preload else "",
            note=f"one reload without load first: {_seconds(result['idle_reload_s'])} ({ref_label}: {_seconds(ref_idle)})",
        )  # fmt: skip
        if preload and result["reload_s"]:
            r["ok"] = complete and statistics.median(result["reload_s"]) < RELOAD_GOAL_S
        rows.append(r)
        if result["floor_s"]:
            rows.append(
                row(
                    "serve_reload", f"{spec.label}: floor", "new template's imports under load", "s",
                    summary(result["floor_s"]), summary(result["reload_s"]), "its reload",
                    note=f"without load: {_seconds(result['idle_floor_s'])}",
                )
            )  # fmt: skip
    for spec in specs:
        if not spec.drover:
            notes.append(f"{spec.label}: {describe(results[spec.key])}")
    notes.append(
        f"{THREADS} keep-alive clients and {CONCURRENCY} new-connection clients at once, {reloads} SIGHUP reloads "
        f"back to back ({PAUSE:g} s apart); granian with --respawn-interval {_servers.GRANIAN_RESPAWN_INTERVAL:g} "
        "(3.5 by default); gunicorn sync answers every request with Connection: close (no keep-alive)"
    )
    write_result(args.out, "serve_reload", rows, {"reloads": reloads, "results": results}, notes)


if __name__ == "__main__":
    main()
