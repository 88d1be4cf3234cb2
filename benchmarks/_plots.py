"""PNG plots of the benchmark results (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

Doc = dict[str, Any]
DROVER, REF, OTHER, FLOOR = "#1f77b4", "#999999", "#ff7f0e", "#2ca02c"


def _bars(ax: Axes, labels: Sequence[str], stats: Sequence[dict[str, Any]], colors: Sequence[str], unit: str) -> None:
    """Bars at the median with min-max whiskers."""
    medians = [float(s.get("median") or 0.0) for s in stats]
    low = [m - float(s["min"]) if s.get("min") is not None else 0.0 for m, s in zip(medians, stats)]
    high = [float(s["max"]) - m if s.get("max") is not None else 0.0 for m, s in zip(medians, stats)]
    xs = range(len(labels))
    ax.bar(xs, medians, color=colors, yerr=[low, high], capsize=3)
    ax.set_xticks(list(xs), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(unit)
    ax.grid(axis="y", alpha=0.3)


def _ms(samples: Sequence[float]) -> dict[str, Any]:
    data = sorted(v * 1e3 for v in samples)
    if not data:
        return {"median": None}
    mid = len(data) // 2
    median = data[mid] if len(data) % 2 else (data[mid - 1] + data[mid]) / 2
    return {"median": median, "min": data[0], "max": data[-1]}


def plot_startup(doc: Doc, ax_factory: Callable[[int], list[Axes]]) -> None:
    raw = doc["raw"]
    backends = sorted({key.split("/")[0] for key in raw})
    axes = ax_factory(len(backends))
    for ax, backend in zip(axes, backends):
        labels, stats, colors = [], [], []
        for key in sorted((k for k in raw if k.startswith(backend + "/")), key=lambda k: int(k.split("/")[1])):
            n = key.split("/")[1]
            for name, color in (("drover", DROVER), ("floor", REF)):
                labels.append(f"N={n} {name}")
                stats.append(_ms(raw[key]["samples_s"][name]))
                colors.append(color)
        _bars(ax, labels, stats, colors, "ms")
        ax.set_title(f"start() to ready vs spawn floor (master on {backend})", fontsize=9)


def plot_restart(doc: Doc, ax_factory: Callable[[int], list[Axes]]) -> None:
    raw = doc["raw"]
    axes = ax_factory(len(raw))
    for ax, (case, data) in zip(axes, raw.items()):
        if case == "many":  # simultaneous crashes, against a cold start() of as many
            count = data["count"]
            names = [
                ("crash", f"{count} SIGKILLed at once\nto all ready", DROVER),
                ("cold", f"cold start()\n{count} workers", REF),
            ]
            title = f"{count} crashes at once (RestartPolicy(delay=0))"
        else:
            names = [
                ("crash", "SIGKILL to\nreplacement ready", DROVER),
                ("cold", "cold start()\n1 worker", REF),
                ("floor", "spawn floor", REF),
                ("detect", "exit detected", OTHER),
            ]
            title = f"crash to replacement (RestartPolicy(delay=0), {case})"
        _bars(ax, [n[1] for n in names], [_ms(data["samples_s"][n[0]]) for n in names], [n[2] for n in names], "ms")
        ax.set_title(title, fontsize=9)


def plot_import(doc: Doc, ax_factory: Callable[[int], list[Axes]]) -> None:
    [ax] = ax_factory(1)
    samples = doc["raw"]["samples_s"]
    labels = list(samples)
    ax.boxplot([[v * 1e3 for v in samples[k]] for k in labels])
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
    ax.set_ylabel("ms (whole interpreter run)")
    ax.set_title("python -c '<import>' wall time", fontsize=9)
    ax.grid(axis="y", alpha=0.3)


def plot_channel(doc: Doc, ax_factory: Callable[[int], list[Axes]]) -> None:
    raw = doc["raw"]
    backends = [b for b in ("asyncio", "trio") if b in raw]
    axes = ax_factory(3)
    impls = ["drover", "raw", "mp"]
    colors = {"drover": DROVER, "raw": "#2ca02c", "mp": REF}
    labels, p50, tput, cols = [], [], [], []
    for backend in backends:
        for impl in impls:
            stats = raw[backend]["stats"][impl]
            labels.append(f"{impl}\n{backend}")
            p50.append(stats["p50_us"])
            tput.append({k: (v / 1e3 if isinstance(v, (int, float)) else v) for k, v in stats["msg_per_s"].items()})
            cols.append(colors[impl])
    _bars(axes[0], labels, p50, cols, "us")
    axes[0].set_title("round trip p50", fontsize=9)
    _bars(axes[1], labels, tput, cols, "thousand msg/s")
    axes[1].set_title("one-way throughput", fontsize=9)
    for backend, style in zip(backends, ("-", "--")):
        for impl in impls:
            values = sorted(raw[backend]["rtt_us_sample"][impl])
            if values:
                ys = [i / len(values) for i in range(1, len(values) + 1)]
                axes[2].plot(values, ys, style, color=colors[impl], label=f"{impl} {backend}", lw=1)
    axes[2].set_xscale("log")
    axes[2].set_xlabel("round trip (us)")
    axes[2].set_title("round trip CDF", fontsize=9)
    axes[2].legend(fontsize=6)
    axes[2].grid(alpha=0.3)


def plot_talk(doc: Doc, ax_factory: Callable[[int], list[Axes]]) -> None:
    raw = doc["raw"]
    axes = ax_factory(2)
    for ax, (kind, unit, scale) in zip(axes, (("rtt", "us", 1.0), ("tput", "thousand msg/s", 1e-3))):
        labels, stats, cols = [], [], []
        for case, data in raw.items():
            for measure in ("m2w", "w2m"):
                for impl in ("drover", "mp"):
                    stat = data["stats"][impl][f"{kind}_{measure}"]
                    labels.append(f"{'drover' if impl == 'drover' else 'mp'} {case} {measure.replace('2', '->')}")
                    stats.append({k: (v * scale if isinstance(v, (int, float)) else v) for k, v in stat.items()})
                    cols.append(DROVER if impl == "drover" else REF)
            for impl in data["stats"]:  # the request floors (round trip, master -> worker only)
                if impl not in ("drover", "mp") and kind == "rtt":
                    stat = data["stats"][impl]["rtt_m2w"]
                    labels.append(f"{impl} floor {case} m->w")
                    stats.append(stat)
                    cols.append(FLOOR)
        _bars(ax, labels, stats, cols, unit)
        ax.set_title("request round trip p50" if kind == "rtt" else "one-way custom messages", fontsize=9)


def plot_idle(doc: Doc, ax_factory: Callable[[int], list[Axes]]) -> None:
    masters = doc["raw"]["masters"]
    axes = ax_factory(2)
    names = list(masters)
    colors = [REF if name == "uvicorn" else DROVER for name in names]
    for ax, key, title in ((axes[0], "pct_of_core", "master CPU"), (axes[1], "workers_pct_of_core", "16 workers' CPU")):
        stats = [{"median": masters[n][key], "min": masters[n][key], "max": masters[n][key]} for n in names]
        _bars(ax, names, stats, colors, "% of one core")
        ax.set_title(f"idle {title} over {doc['raw']['window_s']:.0f} s", fontsize=9)


def plot_scale(doc: Doc, ax_factory: Callable[[int], list[Axes]]) -> None:
    per_size = doc["raw"]["per_size"]
    sizes = sorted(per_size, key=int)
    ns = [int(n) for n in sizes]
    axes = ax_factory(2)
    for phase, color in (("start", DROVER), ("reload", OTHER), ("shutdown", REF)):
        medians = [per_size[n][phase]["median"] / 1e3 for n in sizes]
        axes[0].plot(ns, medians, "o-", color=color, label=f"{phase}()" if phase != "reload" else "graceful_reload(16)")
    axes[0].set_xscale("log", base=2)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("workers")
    axes[0].set_ylabel("s")
    axes[0].set_title("time per operation (log-log: slope 1 = linear)", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[0].grid(alpha=0.3)
    _bars(
        axes[1],
        [f"N={n}" for n in sizes],
        [per_size[n]["rss_kb_per_worker"] for n in sizes],
        [DROVER] * len(sizes),
        "kB",
    )
    axes[1].set_title("master RSS growth per worker", fontsize=9)


def plot_serve(doc: Doc, ax_factory: Callable[[int], list[Axes]]) -> None:
    raw = doc["raw"]
    served, memory = raw.get("served_ms"), raw.get("memory_mb")
    axes = ax_factory(int(served is not None) + int(memory is not None))
    if served is not None:
        ax = axes.pop(0)
        names = list(served)
        colors = [DROVER if n.startswith(("drover", "serve")) else REF for n in names]
        _bars(ax, names, [served[n] for n in names], colors, "ms")
        for i, name in enumerate(names):
            ready = raw["ready_ms"].get(name)
            if ready and ready.get("median") is not None:
                ax.plot([i], [ready["median"]], "k_", markersize=20)
        ax.set_title("launch to 4 workers answering (bar), ready line (tick)", fontsize=9)
    if memory is not None:
        ax = axes.pop(0)
        names = list(memory)
        colors = [DROVER if n.startswith("serve") else REF for n in names]
        _bars(ax, names, [_ms([v / 1e3 for v in memory[n]]) for n in names], colors, "MB")
        ax.set_title("tree PSS, 16 idle workers", fontsize=9)


def plot_serve_reload(doc: Doc, ax_factory: Callable[[int], list[Axes]]) -> None:
    results = doc["raw"]["results"]
    ax_failed, ax_time = ax_factory(2)
    keys = list(results)
    xs = range(len(keys))
    for offset, shape, color in ((-0.2, "keepalive", DROVER), (0.2, "connection", OTHER)):
        values = [results[k].get(shape, {}).get("failed", 0) for k in keys]
        ax_failed.bar([x + offset for x in xs], values, width=0.4, color=color, label=shape)
    ax_failed.set_xticks(list(xs), keys, rotation=30, ha="right", fontsize=8)
    ax_failed.set_ylabel("failed requests")
    ax_failed.legend(fontsize=8)
    ax_failed.set_title(f"failed requests over {doc['raw']['reloads']} reloads of 4 workers", fontsize=9)
    colors = [DROVER if not results[k]["label"].startswith(("uvicorn", "gunicorn", "granian")) else REF for k in keys]
    _bars(ax_time, keys, [_ms(results[k]["reload_s"]) for k in keys], colors, "ms")
    ax_time.set_title("time per reload, under load", fontsize=9)


def plot_serve_rps(doc: Doc, ax_factory: Callable[[int], list[Axes]]) -> None:
    runs = doc["raw"]["runs"]
    [ax] = ax_factory(1)
    keys = list(runs)
    stats = [_ms([r["rps"] / 1e3 for r in runs[k]]) for k in keys]
    _bars(ax, keys, stats, [DROVER if k.startswith("drover") else REF for k in keys], "requests/s")
    ax.set_title("wrk -t2 -c32, 4 workers", fontsize=9)


PLOTTERS: dict[str, Callable[[Doc, Callable[[int], list[Axes]]], None]] = {
    "startup": plot_startup,
    "restart": plot_restart,
    "import": plot_import,
    "channel": plot_channel,
    "talk": plot_talk,
    "idle": plot_idle,
    "scale": plot_scale,
    "serve": plot_serve,
    "serve_reload": plot_serve_reload,
    "serve_rps": plot_serve_rps,
}


def plot_all(docs: dict[str, Doc], out_dir: Path) -> list[Path]:
    """Write one PNG per benchmark that has results; return their paths."""
    written = []
    for name, doc in docs.items():
        plotter = PLOTTERS.get(name)
        if plotter is None:
            continue
        holder: list[Any] = []

        def factory(count: int) -> list[Axes]:
            fig, axes = plt.subplots(1, count, figsize=(5.5 * count, 4.2), squeeze=False)
            holder.append(fig)
            return list(axes[0])

        try:
            plotter(doc, factory)
        except (KeyError, TypeError, ValueError) as exc:
            print(f"plot {name}: skipped ({exc!r})")
            continue
        fig = holder[0]
        fig.suptitle(f"drover-py benchmark: {name}", fontsize=10)
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
