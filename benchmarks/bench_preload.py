"""8. Preload mode: workers forked from a warm template, against exec mode and gunicorn sync.

Four measurements, each with exec mode (and gunicorn where it applies) in the same run,
in interleaved order:

- spawn: one tiny worker (``apps/tiny_worker.py``) from ``scale(n + 1)`` called to its
  "started", asyncio master, modules preloaded (anyio, its asyncio backend, drover_py).
  Goal: <= 5 ms median.
- crash: SIGKILL the only HTTP worker; time until a response comes from its replacement.
  drover-py with ``RestartPolicy(delay=0)``, against ``gunicorn -w 1`` sync workers
  serving the trivial WSGI app ``apps/wsgi_app.py``. Two drover-py workers: the same
  stack as gunicorn's (``apps/sync_worker.py``: synchronous, `SyncMessageBus`, wsgiref,
  the same app), and uvicorn on asyncio (``apps/uvicorn_worker.py``). The client
  connects once, right after the kill, and waits for the answer (the connection waits
  in the shared socket's backlog). Goal: preload below gunicorn's median.
- reload: ``graceful_reload()`` (batch_size=1) of 16 tiny workers, asyncio master. In
  preload mode a reload starts a new template (it imports the code on disk now), whose
  start-up is included. Goal: <= 200 ms.
- memory: tree PSS (``/proc/PID/smaps_rollup``, master + every descendant) with 16 idle
  HTTP workers: drover-py exec and preload (sync and uvicorn workers), gunicorn -w 16
  sync. Goal: preload at or below gunicorn.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import anyio
from _common import (
    APPS,
    PYTHON,
    RESULTS,
    child_env,
    fetch_head,
    free_port,
    interleaved,
    log,
    parse_args,
    pid_in,
    row,
    stop_process,
    summary,
    tree_pss_kb,
    wait_all_answered,
    write_result,
)
from _spawn import tiny_master

SPAWN_GOAL_MS = 5.0
RELOAD_GOAL_MS = 200.0
TINY_PRELOAD = ["anyio", "anyio._backends._asyncio", "drover_py"]
#: What ``--part`` may name (all four by default), e.g. ``--part crash`` alone.
PARTS = ["spawn", "crash", "reload", "memory"]


# -- spawn and reload (masters in this process) ------------------------------------------


async def spawn_samples(reps: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"exec": [], "preload": []}
    masters = {"exec": tiny_master(1), "preload": tiny_master(1, preload=TINY_PRELOAD)}
    async with masters["exec"], masters["preload"]:
        for master in masters.values():
            await master.start()
            await master.scale(2)  # warm-up (starts the template in preload mode)
            await master.scale(1)
        for _, mode in interleaved(reps, ["exec", "preload"]):
            master = masters[mode]
            start = time.perf_counter()
            await master.scale(2)
            samples[mode].append(time.perf_counter() - start)
            await master.scale(1)
        for master in masters.values():
            await master.graceful_shutdown()
    return samples


async def reload_once(mode: str, count: int) -> float:
    master = tiny_master(count, preload=TINY_PRELOAD if mode == "preload" else False)
    async with master:
        await master.start()
        await anyio.sleep(0.2)  # let the start settle
        start = time.perf_counter()
        await master.graceful_reload()
        elapsed = time.perf_counter() - start
        await master.graceful_shutdown()
    return elapsed


# -- HTTP servers (their own processes) ----------------------------------------------------


#: The HTTP servers compared: drover-py ("<worker>-<mode>") and gunicorn's sync workers.
SERVERS = ["sync-preload", "sync-exec", "uvicorn-preload", "uvicorn-exec", "gunicorn"]


class Server:
    """One HTTP server launched as a subprocess (a session leader) on a free port."""

    def __init__(self, kind: str, workers: int) -> None:
        self.kind = kind
        self.port = free_port()
        if kind == "gunicorn":
            argv = [PYTHON, str(APPS / "launch_gunicorn.py"), str(self.port), str(workers)]
        else:
            worker, mode = kind.split("-")
            argv = [PYTHON, str(APPS / "preload_serve.py"), str(self.port), str(workers), mode, worker]
        log_file = open(RESULTS / "logs" / "preload-servers.log", "a")
        self.proc = subprocess.Popen(
            argv, env=child_env(), stdout=subprocess.DEVNULL, stderr=log_file, start_new_session=True
        )
        log_file.close()
        self.workers = workers
        self.worker_pids: set[int] = set()

    def fetch_pid(self, timeout: float = 10.0) -> int:
        """Return the pid of the worker that answers one request."""
        return pid_in(fetch_head(self.port, timeout), self.kind)

    def wait_up(self, timeout: float = 60.0) -> None:
        """Wait until every worker answered (distinct pids), bounded by ``timeout`` (`_common.wait_all_answered`)."""
        self.worker_pids = wait_all_answered(
            self.port, self.workers, timeout, lambda: self.proc.poll() is None, self.kind
        )

    def crash_to_answer(self) -> float:
        """SIGKILL the worker that answers; return seconds until its replacement answered."""
        old = self.fetch_pid()
        time.sleep(0.2)  # let the previous replacement settle
        start = time.perf_counter()
        os.kill(old, signal.SIGKILL)
        while True:
            try:
                pid = self.fetch_pid()
            except OSError:
                if time.perf_counter() - start > 30:
                    raise
                continue  # refused while nothing listens: gunicorn keeps its socket, so rare
            if pid != old:
                return time.perf_counter() - start

    def tree_pss_kb(self) -> tuple[int, int]:
        """Return the PSS of the server process and every descendant, and that of its workers, in kB."""
        pss = tree_pss_kb(self.proc.pid)
        return sum(pss.values()), sum(kb for pid, kb in pss.items() if pid in self.worker_pids)

    def stop(self) -> None:
        stop_process(self.proc)


def crash_samples(reps: int) -> dict[str, list[float]]:
    kinds = SERVERS
    servers = {kind: Server(kind, 1) for kind in kinds}
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    try:
        for server in servers.values():
            server.wait_up()
            server.crash_to_answer()  # warm-up
        for _, kind in interleaved(reps, kinds):
            samples[kind].append(servers[kind].crash_to_answer())
    finally:
        for server in servers.values():
            server.stop()
    return samples


def memory_samples(reps: int, workers: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Return the tree PSS samples (MB) by server, and the PSS of one worker (mean, MB)."""
    kinds = SERVERS
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    per_worker: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _, kind in interleaved(reps, kinds):
        server = Server(kind, workers)
        try:
            server.wait_up(90)
            time.sleep(1.0)  # idle
            total, of_workers = server.tree_pss_kb()
            samples[kind].append(total / 1024)
            per_worker[kind].append(of_workers / 1024 / max(1, len(server.worker_pids)))
        finally:
            server.stop()
    return samples, per_worker


def versus(value: dict[str, float], reference: dict[str, float], unit: str) -> str:
    """Describe ``value`` (a summary) and its ratio to ``reference``, for a note."""
    return (
        f"{value['median']:.1f} {unit} [{value['min']:.1f}-{value['max']:.1f}], "
        f"{value['median'] / reference['median']:.2f}x gunicorn"
    )


def main() -> None:
    args = parse_args(__doc__ or "", parts=PARTS)
    (RESULTS / "logs").mkdir(parents=True, exist_ok=True)
    spawn_reps, crash_reps, reload_reps, memory_reps = (8, 5, 2, 1) if args.quick else (30, 15, 5, 3)
    rows, raw, notes = [], {}, []

    if "spawn" in args.part:
        spawn = anyio.run(spawn_samples, spawn_reps, backend="asyncio")
        s_pre, s_exec = summary(spawn["preload"], 1e3), summary(spawn["exec"], 1e3)
        r = row(
            "preload", "spawn, tiny worker", "scale(+1) to started", "ms", s_pre, s_exec, "exec mode",
            goal=f"<= {SPAWN_GOAL_MS:g} ms", paired=list(zip(spawn["preload"], spawn["exec"])),
        )  # fmt: skip
        r["ok"] = s_pre["median"] <= SPAWN_GOAL_MS
        rows.append(r)
        raw["spawn_s"] = spawn
        log(f"spawn: preload {s_pre['median']:.2f} ms, exec {s_exec['median']:.1f} ms")

    if "crash" in args.part:
        crash = crash_samples(crash_reps)
        c = {kind: summary(values, 1e3) for kind, values in crash.items()}
        for worker in ("sync", "uvicorn"):
            pre, exe = f"{worker}-preload", f"{worker}-exec"
            r = row(
                "preload", f"crash, 1 {worker} worker", "SIGKILL to new answer", "ms", c[pre], c["gunicorn"],
                "gunicorn sync", paired=list(zip(crash[pre], crash["gunicorn"])), goal="< gunicorn",
                note=f"exec mode {versus(c[exe], c['gunicorn'], 'ms')}",
            )  # fmt: skip
            r["ok"] = c[pre]["median"] < c["gunicorn"]["median"]
            rows.append(r)
        raw["crash_s"] = crash
        log("crash: " + ", ".join(f"{k} {v['median']:.1f} ms" for k, v in c.items()))

    if "reload" in args.part:
        reload: dict[str, list[float]] = {"preload": [], "exec": []}
        for _, mode in interleaved(reload_reps, ["preload", "exec"]):
            reload[mode].append(anyio.run(reload_once, mode, 16, backend="asyncio"))
        g_pre, g_exec = summary(reload["preload"], 1e3), summary(reload["exec"], 1e3)
        r = row(
            "preload", "reload, 16 tiny workers", "graceful_reload()", "ms", g_pre, g_exec, "exec mode",
            goal=f"<= {RELOAD_GOAL_MS:g} ms", note="includes the new template's start-up (imports)",
        )  # fmt: skip
        r["ok"] = g_pre["median"] <= RELOAD_GOAL_MS
        rows.append(r)
        raw["reload_s"] = reload
        log(f"reload: preload {g_pre['median']:.0f} ms, exec {g_exec['median']:.0f} ms")

    if "memory" in args.part:
        memory, per_worker = memory_samples(memory_reps, 16)
        m = {kind: summary(values) for kind, values in memory.items()}
        w = {kind: summary(values) for kind, values in per_worker.items()}
        for worker in ("sync", "uvicorn"):
            pre, exe = f"{worker}-preload", f"{worker}-exec"
            split = (
                f"; one worker {w[pre]['median']:.2f} MB (gunicorn's {w['gunicorn']['median']:.2f}), the rest "
                f"(master and template; gunicorn's arbiter) {m[pre]['median'] - 16 * w[pre]['median']:.1f} MB "
                f"({m['gunicorn']['median'] - 16 * w['gunicorn']['median']:.1f})"
            )
            r = row(
                "preload", f"memory, 16 idle {worker} workers", "tree PSS", "MB", m[pre], m["gunicorn"],
                "gunicorn sync", paired=list(zip(memory[pre], memory["gunicorn"])), goal="<= gunicorn",
                note=f"exec mode {versus(m[exe], m['gunicorn'], 'MB')}{split}",
            )  # fmt: skip
            r["ok"] = m[pre]["median"] <= m["gunicorn"]["median"]
            rows.append(r)
        raw["memory_mb"] = memory
        raw["memory_per_worker_mb"] = per_worker
        log("memory: " + ", ".join(f"{k} {v['median']:.0f} MB" for k, v in m.items()))

    notes.append(
        "preload: the sync rows run the same stack as gunicorn's sync workers (one blocking WSGI server per "
        "process, the same app); the uvicorn rows run uvicorn on asyncio. Exec mode of each is in the notes, "
        f"with its ratio to gunicorn. Load average at the end: {os.getloadavg()[0]:.2f}"
    )
    write_result(args.out, "preload", rows, raw, notes)


if __name__ == "__main__":
    main()
