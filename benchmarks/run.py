"""Run drover-py's benchmarks: print a table, write results/results.json and results/*.png.

usage: python benchmarks/run.py [--quick] [--only NAME ...] [--publish]

Each benchmark runs in its own process (``bench_<name>.py``) with a time limit, against
its reference in the same run. With --only, the other benchmarks' entries of an existing
results.json are kept (each entry records the run it comes from). See
benchmarks/README.md for what each one measures. With --publish (a full run of every
benchmark only), the table and the plots also go to benchmarks/latest/, which is kept in
git and shown on the performance page of the docs (docs/performance.md).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import HERE, PYTHON, RESULTS, become_subreaper, end_strays

LATEST = HERE / "latest"

# name -> (script, time limit in s for a full run, for a quick run)
BENCHES: dict[str, tuple[str, float, float]] = {
    "startup": ("bench_startup.py", 150, 60),
    "restart": ("bench_restart.py", 90, 40),
    "import": ("bench_import.py", 90, 40),
    "channel": ("bench_channel.py", 240, 60),
    "talk": ("bench_talk.py", 150, 60),
    "metrics": ("bench_metrics.py", 120, 60),
    "idle": ("bench_idle.py", 150, 60),
    "scale": ("bench_scale.py", 240, 60),
    "serve": ("bench_serve.py", 360, 150),
    "preload": ("bench_preload.py", 240, 120),
    "serve_reload": ("bench_serve_reload.py", 900, 300),
    "serve_rps": ("bench_serve_rps.py", 300, 120),
}
PACKAGES = [
    "drover-py", "anyio", "trio", "structlog", "attrs", "hypercorn", "uvicorn", "gunicorn", "granian", "waitress", "matplotlib",
    "prometheus-client",
]  # fmt: skip
# Imported once before the benchmarks so that the bytecode cache is warm for every child.
WARM_IMPORTS = (
    "import anyio, anyio.abc, anyio.lowlevel, anyio._backends._asyncio, anyio._backends._trio, trio, json, "
    "multiprocessing.connection, structlog, attrs, hypercorn.trio, hypercorn.config, uvicorn, uvicorn.main, "
    "uvicorn.supervisors.multiprocess, uvicorn.protocols.http.h11_impl, uvicorn.lifespan.on, uvicorn.loops.asyncio, "
    "gunicorn.app.wsgiapp, gunicorn.workers.sync, drover_py, drover_py._supervise.master, drover_py._supervise.factory, "
    "drover_py._control.signals, drover_py._config.policies, drover_py._cli, drover_py.serve._master, drover_py.serve.worker, "
    "drover_py.serve._uvicorn, drover_py.serve._hypercorn, drover_py.serve._waitress, granian"
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and sizes (about 2 minutes)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHES), metavar="NAME", help=f"among: {', '.join(BENCHES)}")
    parser.add_argument(
        "--publish",
        action="store_true",
        help="also write the table and plots to benchmarks/latest/ (full runs of everything only)",
    )
    args = parser.parse_args()
    if args.publish and (args.quick or args.only):
        parser.error("--publish needs a full run of every benchmark: drop --quick and --only")
    return args


def git_state() -> dict[str, Any]:
    """Return the commit measured and whether src/ differs from it."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--", "src")
    return {"commit": git("rev-parse", "--short", "HEAD"), "src_modified": None if status is None else bool(status)}


def environment() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_start": os.getloadavg(),
        "versions": versions,
        "git": git_state(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def prepare_env() -> None:
    """Give every child the same bytecode situation: a cache, under benchmarks/results/.

    A worker start imports drover-py; with PYTHONDONTWRITEBYTECODE and no cached bytecode
    it would compile drover-py's sources on every start (see the import benchmark).
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(RESULTS / "pycache")
    os.environ["PYTHONUNBUFFERED"] = "1"
    os.environ.pop("DROVER_PY_DEBUG", None)
    subprocess.run([PYTHON, "-c", WARM_IMPORTS], check=False, capture_output=True, timeout=120)


def run_bench(name: str, quick: bool) -> dict[str, Any] | None:
    script, full_limit, quick_limit = BENCHES[name]
    limit = quick_limit if quick else full_limit
    out = RESULTS / f"{name}.json"
    out.unlink(missing_ok=True)
    log_path = RESULTS / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [PYTHON, str(HERE / script), "--out", str(out), *(["--quick"] if quick else [])]
    print(f"== {name} (limit {limit:.0f} s)", flush=True)
    start = time.monotonic()
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(argv, stderr=log_file, start_new_session=True)
        try:
            proc.wait(limit)
        except subprocess.TimeoutExpired:
            print(f"   {name}: over its time limit; stopped", flush=True)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    strays, zombies = end_strays()
    if strays:
        print(f"   {name}: ended {len(strays)} leftover process(es):", flush=True)
        for stray in strays:
            print(f"     {stray[:160]}", flush=True)
    elapsed = time.monotonic() - start
    if proc.returncode != 0 or not out.exists():
        tail = log_path.read_text()[-1500:]
        print(
            f"   {name} failed (exit {proc.returncode}); log {log_path.relative_to(HERE.parent)}:\n{tail}", flush=True
        )
        return None
    doc: dict[str, Any] = json.loads(out.read_text())
    doc["elapsed_s"] = elapsed
    doc["leftover_processes"] = strays
    doc["orphans_reaped"] = zombies
    print(f"   {name}: {elapsed:.1f} s", flush=True)
    return doc


# -- table --------------------------------------------------------------------------


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "msg/s" or abs(value) >= 10_000:
        return f"{value / 1000:,.0f}k" if abs(value) >= 10_000 else f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt_stat(stat: dict[str, Any] | None, unit: str) -> str:
    if not stat or stat.get("median") is None:
        return "-"
    text = fmt(stat["median"], unit)
    if stat.get("n", 0) > 1 and stat.get("min") is not None:
        text += f" [{fmt(stat['min'], unit)}-{fmt(stat['max'], unit)}]"
    return text


HEADER = [
    "bench",
    "case",
    "metric",
    "unit",
    "drover-py median [min-max]",
    "reference median [min-max]",
    "cmp",
    "goal",
    "",
]


def cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Return the table's cells, one list per row (as `HEADER`)."""
    lines = []
    for r in rows:
        if r["compare"] == "ratio" and r["cmp"] is not None:
            cmp = f"{r['cmp']:.2f}x"
        elif r["compare"] == "diff" and r["cmp"] is not None:
            cmp = f"{r['cmp']:+.1f} {r['unit']}"
        else:
            cmp = ""
        if cmp and r.get("cmp_of") == "paired":
            cmp += "*"
        status = {True: "ok", False: "MISSED", None: ""}[r["ok"]]
        ref = fmt_stat(r["reference"], r["unit"])
        if r["ref_label"]:
            ref = f"{ref} ({r['ref_label']})"
        lines.append(
            [
                r["bench"],
                r["case"],
                r["metric"],
                r["unit"],
                fmt_stat(r["value"], r["unit"]),
                ref,
                cmp,
                r["goal"],
                status,
            ]
        )
    return lines


def table(rows: list[dict[str, Any]]) -> str:
    header = HEADER
    lines = [header, *cells(rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if index == 0:
            out.append("  ".join("-" * w for w in widths).rstrip())
    return "\n".join(out)


def publish(env: dict[str, Any], docs: dict[str, dict[str, Any]], plots: list[Path]) -> None:
    """Write benchmarks/latest/: table.md (every row and note of this run) and the plots."""
    LATEST.mkdir(exist_ok=True)
    for old in LATEST.glob("*.png"):
        old.unlink()
    git = env["git"]

    def load(key: str) -> str:
        return " ".join(f"{x:.2f}" for x in env[key])

    lines = [
        "# drover-py benchmarks: the last published full run",
        "",
        f"Commit {git['commit']}{' with changes in src/' if git['src_modified'] else ''}, {env['time']}; "
        f"{env['cpu_count']} cores ({env['cpus_usable']} usable), {env['implementation']} {env['python']}, "
        f"{platform.system()} {platform.machine()}; load average {load('loadavg_start')} at the start, {load('loadavg_end')} at the end; "
        f"{env['total_s']:.0f} s. Written by `benchmarks/run.py --publish`; benchmarks/README.md says what each "
        "row measures. `*`: the median of the per-repetition ratios (or differences) of runs made back to back.",
        "",
        "| " + " | ".join(HEADER[:-1] + ["met"]) + " |",
        "|" + "---|" * len(HEADER),
    ]
    rows = [r for name in BENCHES if name in docs for r in docs[name]["rows"]]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in cells(rows)]
    lines += ["", "## Notes", ""]
    for name in BENCHES:
        if name not in docs:
            continue
        seen = set()
        for r in docs[name]["rows"]:
            if r["note"] and (r["case"], r["note"]) not in seen:
                seen.add((r["case"], r["note"]))
                lines.append(f"- {name} / {r['case']}: {r['note']}")
        lines += [f"- {name}: {note}" for note in docs[name]["notes"]]
    lines += ["", "## Plots", ""]
    for path in plots:
        target = LATEST / path.name
        target.write_bytes(path.read_bytes())
        lines += [f"![{path.stem}]({path.name})", ""]
    (LATEST / "table.md").write_text("\n".join(lines))
    print(f"published: {(LATEST / 'table.md').relative_to(HERE.parent)} and {len(plots)} plots")


def previous_docs() -> dict[str, dict[str, Any]]:
    try:
        previous = json.loads((RESULTS / "results.json").read_text())
    except (OSError, ValueError):
        return {}
    docs: dict[str, dict[str, Any]] = previous.get("benchmarks", {})
    return {name: doc for name, doc in docs.items() if name in BENCHES}


def main() -> int:
    args = parse_args()
    names = args.only or list(BENCHES)
    RESULTS.mkdir(parents=True, exist_ok=True)
    env = environment()
    git = env["git"]
    print(
        f"drover-py benchmarks ({'quick' if args.quick else 'full'}): {env['cpu_count']} cores "
        f"({env['cpus_usable']} usable), Python {env['python']}, load average "
        f"{' '.join(f'{x:.2f}' for x in env['loadavg_start'])}; commit {git['commit']}"
        f"{' + changes in src/' if git['src_modified'] else ''}",
        flush=True,
    )
    become_subreaper()
    prepare_env()
    started = time.monotonic()
    docs: dict[str, dict[str, Any]] = {}
    for name in names:
        doc = run_bench(name, args.quick)
        if doc is not None:
            docs[name] = doc
    env["loadavg_end"] = os.getloadavg()
    env["total_s"] = time.monotonic() - started
    for doc in docs.values():
        doc["run"] = {"time": env["time"], "git": env["git"], "quick": args.quick}
    rows = [r for name in names if name in docs for r in docs[name]["rows"]]
    print()
    print(table(rows))
    print("* median of the per-repetition ratios (or differences) of runs made back to back")
    print()
    for name in names:
        if name not in docs:
            print(f"{name}: FAILED (see benchmarks/results/logs/{name}.log)")
            continue
        printed = set()
        for r in docs[name]["rows"]:
            line = f"{name} / {r['case']}: {r['note']}"
            if r["note"] and line not in printed:
                printed.add(line)
                print(line)
        for note in docs[name]["notes"]:
            print(f"{name}: {note}")
    print(
        f"\n{env['cpu_count']} cores, load average at the end "
        f"{' '.join(f'{x:.2f}' for x in env['loadavg_end'])}; total {env['total_s']:.0f} s"
    )
    succeeded = all(name in docs for name in names)
    if args.only:  # keep the other benchmarks of the previous results.json (each says its run)
        docs = {**previous_docs(), **docs}
    all_rows = [r for name in BENCHES if name in docs for r in docs[name]["rows"]]
    results = {"quick": args.quick, "environment": env, "rows": all_rows, "benchmarks": docs}
    (RESULTS / "results.json").write_text(json.dumps(results, indent=1, default=str))
    plots: list[Path] = []
    try:
        from _plots import plot_all
    except ImportError as exc:  # matplotlib is in the "bench" extra
        print(f"no plots: {exc}")
    else:
        plots = plot_all(docs, RESULTS)
        for path in plots:
            print(f"plot: {Path(path).relative_to(HERE.parent)}")
    print(f"results: {(RESULTS / 'results.json').relative_to(HERE.parent)}")
    if args.publish:
        if succeeded:
            publish(env, docs, plots)
        else:
            print("not published: a benchmark failed")
    return 0 if succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
