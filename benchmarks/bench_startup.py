"""1. Start to ready: ``await master.start()`` for N tiny workers vs the spawn floor.

The floor spawns N children concurrently with `anyio.open_process` (same options as
drover-py); each imports what a drover worker imports, runs an event loop and writes one
byte on an inherited pipe; the parent waits for N bytes. Goal: drover-py <= 1.10x.
"""

from __future__ import annotations

import anyio
from _common import interleaved, log, parse_args, row, summary, write_result
from _spawn import drover_start, floor_start

GOAL = 1.10


def main() -> None:
    args = parse_args(__doc__ or "")
    sizes = [1, 4, 16]
    backends = ["asyncio"] if args.quick else ["asyncio", "trio"]
    # more repetitions where a run is cheap
    reps_for = {1: 4, 4: 3, 16: 2} if args.quick else {1: 15, 4: 12, 16: 8}
    rows, raw = [], {}
    for backend in backends:
        for n in sizes:
            samples: dict[str, list[float]] = {"drover": [], "floor": []}
            cases = {"drover": drover_start, "floor": floor_start}
            for fn in cases.values():  # warm-up, untimed
                anyio.run(fn, n, backend=backend)
            for _, name in interleaved(reps_for[n], list(cases)):
                samples[name].append(anyio.run(cases[name], n, backend=backend))
            drover, floor = summary(samples["drover"], 1e3), summary(samples["floor"], 1e3)
            per_worker = summary([s / n for s in samples["drover"]], 1e3)
            r = row(
                "startup",
                f"N={n}, {backend} master",
                "start() to ready",
                "ms",
                drover,
                floor,
                "spawn floor",
                goal=f"<= {GOAL:.2f}x",
                note=f"{per_worker['median']:.1f} ms/worker; ratio of medians {drover['median'] / floor['median']:.2f}x",
                paired=list(zip(samples["drover"], samples["floor"])),
            )
            r["ok"] = r["cmp"] is not None and r["cmp"] <= GOAL
            rows.append(r)
            raw[f"{backend}/{n}"] = {"samples_s": samples, "per_worker_ms": per_worker}
            log(
                f"{backend} N={n}: drover {drover['median']:.1f} ms, floor {floor['median']:.1f} ms, ratio {r['cmp']:.2f}"
            )
    write_result(args.out, "startup", rows, raw)


if __name__ == "__main__":
    main()
