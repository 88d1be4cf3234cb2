"""3. Child import cost: ``python -c "from drover_py import MessageBus"`` vs ``import anyio``.

Wall time of the whole interpreter run (start, import, exit), interleaved, many runs.
Also reported: the interpreter floor (``python -c pass``), ``import anyio, anyio.abc,
anyio.lowlevel`` (what any anyio program that uses task groups loads), the time to
compile drover-py's child-side modules when no bytecode is cached, and the
``-X importtime`` top contributors of the drover-py import. Goal: <= 1.25x.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

from _common import PYTHON, child_env, interleaved, log, parse_args, row, summary, write_result

GOAL = 1.25
CASES = {
    "drover": "from drover_py import MessageBus",
    "anyio": "import anyio",
    "anyio_core": "import anyio, anyio.abc, anyio.lowlevel",
    "python": "pass",
}


def run_once(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([PYTHON, "-c", code], check=True, env=child_env())
    return time.perf_counter() - start


def importtime(code: str, runs: int) -> dict[str, tuple[float, float]]:
    """Return {module: (median self us, median cumulative us)} over ``runs`` runs."""
    seen: dict[str, list[tuple[int, int]]] = {}
    for _ in range(runs):
        proc = subprocess.run(
            [PYTHON, "-X", "importtime", "-c", code], check=True, capture_output=True, text=True, env=child_env()
        )
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, cumulative, name = line[len("import time:") :].split("|")
            seen.setdefault(name.strip(), []).append((int(self_us), int(cumulative)))
    return {
        name: (statistics.median(s for s, _ in values), statistics.median(c for _, c in values))
        for name, values in seen.items()
    }


def child_sources() -> list[str]:
    """Return the source files of the drover_py modules a worker's import loads."""
    code = (
        "import sys; from drover_py import MessageBus; "
        "print('\\n'.join(m.__file__ for n, m in sys.modules.items() if n.startswith('drover_py')))"
    )
    out = subprocess.run([PYTHON, "-c", code], check=True, capture_output=True, text=True, env=child_env())
    return [line for line in out.stdout.splitlines() if line.endswith(".py")]


def compile_cost(runs: int) -> float:
    """Return the median seconds to compile drover-py's child-side sources (no .pyc case)."""
    texts = [(Path(p).read_text(), p) for p in child_sources()]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for text, name in texts:
            compile(text, name, "exec", dont_inherit=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    args = parse_args(__doc__ or "")
    reps = 12 if args.quick else 30
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    for name in CASES:  # warm-up (and fill the bytecode cache)
        run_once(CASES[name])
        run_once(CASES[name])
    for _, name in interleaved(reps, list(CASES)):
        samples[name].append(run_once(CASES[name]))
    stats = {name: summary(values, 1e3) for name, values in samples.items()}
    floor = stats["python"]["median"]
    import_only = (stats["drover"]["median"] - floor) / max(1e-9, stats["anyio"]["median"] - floor)
    r = row(
        "import",
        "from drover_py import MessageBus",
        "python -c wall time",
        "ms",
        stats["drover"],
        stats["anyio"],
        "import anyio",
        goal=f"<= {GOAL:.2f}x",
        paired=list(zip(samples["drover"], samples["anyio"])),
        note=(
            f"ratio of medians {stats['drover']['median'] / stats['anyio']['median']:.2f}x; "
            f"interpreter alone {floor:.1f} ms; imports only: {import_only:.2f}x; "
            f"vs 'import anyio, anyio.abc, anyio.lowlevel': "
            f"{stats['drover']['median'] / stats['anyio_core']['median']:.2f}x"
        ),
    )
    r["ok"] = r["cmp"] is not None and r["cmp"] <= GOAL
    rows = [r]

    timing = importtime(CASES["drover"], 3 if args.quick else 7)
    anyio_modules = set(importtime(CASES["anyio"], 1))
    top_self = sorted(timing.items(), key=lambda kv: kv[1][0], reverse=True)[:15]
    added = {m: t for m, t in timing.items() if m not in anyio_modules}
    top_added = sorted(added.items(), key=lambda kv: kv[1][0], reverse=True)[:15]
    compile_ms = compile_cost(5 if args.quick else 20) * 1e3
    log(
        f"drover {stats['drover']['median']:.1f} ms, anyio {stats['anyio']['median']:.1f} ms, "
        f"anyio core {stats['anyio_core']['median']:.1f} ms, python {floor:.1f} ms, ratio {r['cmp']:.2f}"
    )
    log(f"modules added over 'import anyio': {len(added)}, self time {sum(t[0] for t in added.values()) / 1e3:.1f} ms")
    log(f"compiling the child-side sources (no .pyc): {compile_ms:.1f} ms")
    raw = {
        "samples_s": samples,
        "stats_ms": stats,
        "import_only_ratio": import_only,
        "compile_child_sources_ms": compile_ms,
        "importtime_top_self_us": [[m, s, c] for m, (s, c) in top_self],
        "importtime_added_over_anyio_us": [[m, s, c] for m, (s, c) in top_added],
        "added_modules": sorted(added),
        "drover_modules_us": {m: t for m, t in timing.items() if m.startswith("drover_py")},
    }
    notes = [
        "-X importtime, top self times (us, median of runs): "
        + ", ".join(f"{m} {s:.0f}" for m, (s, _) in top_self[:10]),
        "modules the drover-py import adds over 'import anyio' (self us): "
        + ", ".join(f"{m} {s:.0f}" for m, (s, _) in top_added[:12]),
        f"without cached bytecode, compiling drover-py's child-side modules costs {compile_ms:.1f} ms per worker start",
    ]
    write_result(args.out, "import", rows, raw, notes)


if __name__ == "__main__":
    main()
