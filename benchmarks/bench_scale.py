"""6. Scale: 16, 64 and 256 tiny workers (16 and 64 with --quick).

Each run is a fresh master process (`apps/scale_master.py`): time ``start()``,
``graceful_reload(batch_size=16)`` and ``graceful_shutdown()``, and the growth of the
master's RSS per worker. Reported per size, and per worker, to check the growth is
about linear (per-worker cost at the largest size within 1.5x of the smallest).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from _common import APPS, PYTHON, RESULTS, child_env, log, parse_args, row, summary, write_result

BATCH = 16
LINEAR_TOLERANCE = 1.5


FAILURES: list[str] = []


def run_once(backend: str, count: int, attempts: int = 2) -> dict[str, float]:
    """Run one scale master; retry once after a failure (kept in FAILURES, logged)."""
    for attempt in range(1, attempts + 1):
        proc = subprocess.run(
            [PYTHON, str(APPS / "scale_master.py"), backend, str(count), str(BATCH)],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=300,
            start_new_session=True,
        )
        if proc.returncode == 0:
            result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
            return result
        log_path = RESULTS / "logs" / f"scale-{backend}-{count}-failure-{len(FAILURES) + 1}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(proc.stderr)
        last = [line for line in proc.stderr.splitlines() if line and not line.startswith(" ")][-1:]
        FAILURES.append(f"N={count} attempt {attempt}: exit {proc.returncode}: {' '.join(last)[:300]}")
        log(f"run failed ({FAILURES[-1]}); stderr kept in {log_path.name}")
    raise RuntimeError(f"scale_master {count} failed {attempts} times")


def main() -> None:
    args = parse_args(__doc__ or "")
    sizes = [16, 64] if args.quick else [16, 64, 256]
    reps = {16: 2, 64: 1} if args.quick else {16: 3, 64: 3, 256: 2}
    backend = "asyncio"
    run_once(backend, 4)  # warm-up
    runs: dict[int, list[dict[str, float]]] = {}
    # Interleave sizes: one run of each size per round.
    for round_ in range(max(reps.values())):
        for n in sizes if round_ % 2 == 0 else list(reversed(sizes)):
            if round_ < reps[n]:
                result = run_once(backend, n)
                runs.setdefault(n, []).append(result)
                log(
                    f"N={n}: start {result['start_s']:.2f} s, reload {result['reload_s']:.2f} s, "
                    f"shutdown {result['shutdown_s']:.2f} s, RSS +{(result['rss_started_kb'] - result['rss_before_kb']) / n:.0f} kB/worker"
                )
    per_size: dict[int, dict[str, Any]] = {}
    rows, raw = [], {"backend": backend, "batch": BATCH, "runs": runs, "per_size": per_size}
    per_worker: dict[str, dict[int, float]] = {"start": {}, "reload": {}, "shutdown": {}, "rss": {}}
    for n in sizes:
        stats = {phase: summary([r[f"{phase}_s"] for r in runs[n]], 1e3) for phase in ("start", "reload", "shutdown")}
        rss = summary([(r["rss_started_kb"] - r["rss_before_kb"]) / n for r in runs[n]])
        per_size[n] = {**stats, "rss_kb_per_worker": rss}
        for phase in ("start", "reload", "shutdown"):
            per_worker[phase][n] = stats[phase]["median"] / n
        per_worker["rss"][n] = rss["median"]
        note = (
            f"reload {stats['reload']['median'] / 1e3:.2f} s, shutdown {stats['shutdown']['median'] / 1e3:.2f} s, "
            f"RSS +{rss['median']:.0f} kB/worker"
        )
        rows.append(row("scale", f"N={n}, {backend}", "start()", "ms", stats["start"], note=note, compare=""))
    small, large = sizes[0], sizes[-1]
    growth = {
        phase: (values[large] / values[small] if values[small] > 0 else None) for phase, values in per_worker.items()
    }
    linear = all(g is not None and g <= LINEAR_TOLERANCE for phase, g in growth.items() if phase != "rss")
    raw["per_worker"] = per_worker
    raw["growth_largest_vs_smallest"] = growth
    raw["about_linear"] = linear
    summary_note = ", ".join(f"{phase} {g:.2f}x" for phase, g in growth.items() if g is not None)
    r = row(
        "scale",
        f"N={large} vs N={small}",
        "per-worker growth",
        "x",
        {"median": growth["start"], "min": None, "max": None, "n": 1},
        compare="",
        goal=f"<= {LINEAR_TOLERANCE}x (about linear)",
        note=summary_note,
    )
    r["ok"] = linear
    rows.append(r)
    log(f"per-worker growth N={large} vs N={small}: {summary_note}; about linear: {linear}")
    raw["failures"] = FAILURES
    notes = [f"failed run (retried): {failure}" for failure in FAILURES]
    write_result(args.out, "scale", rows, raw, notes)


if __name__ == "__main__":
    main()
