"""The HTTP servers of the serve benchmarks (`serve`, `serve_reload`, `serve_rps`), as processes.

A `Spec` says how to launch one (``drover-py serve`` or a reference: uvicorn, gunicorn,
granian) on a port of 127.0.0.1; `Running` launches it in a session of its own, keeps
its output in a log file, tells when it is ready, reloads it (SIGHUP) and stops it.

- drover-py: ready at its "drover-py: serving ..." line (every worker answered its
  start); a reload is finished at its "reloaded" (or "reload failed") log line.
- the others: ready once the master has its count of worker processes and each of them
  answered a request (`answered_by`); a reload is finished once none of the old worker
  processes is left, the count is back and each new worker answered (gunicorn does not
  wait for its new workers to be ready before it stops the old ones).
"""

from __future__ import annotations

import importlib.util
import queue
import signal
import subprocess
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from _common import APPS, DROVER_PY, PYTHON, child_env, fetch_head, free_port, pid_in, stop_process, workers_of

READY_TIMEOUT = 60.0
RELOAD_TIMEOUT = 60.0
#: granian waits this long (seconds) after starting each replacement before stopping the
#: old worker (``--respawn-interval``, 3.5 by default: 14 s per reload of 4 workers).
GRANIAN_RESPAWN_INTERVAL = 1.0


@dataclass(frozen=True)
class Spec:
    key: str
    label: str
    argv: Sequence[str]  # "{port}" stands for the port
    workers: int
    drover: bool = False
    cwd: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    reload_failed: tuple[str, ...] = ()  # output that says a reload failed (drover-py's: "reload failed")
    #: With --preload: what its template imports (the app's module, the worker program, the server).
    template_imports: tuple[str, ...] = ()

    def command(self, port: int) -> list[str]:
        return [arg.replace("{port}", str(port)) for arg in self.argv]


def drover(
    key: str,
    label: str,
    app: str,
    workers: int,
    *,
    backend: str = "asyncio",
    preload: bool = False,
    quiet: bool = True,
    interface: str = "asgi",
) -> Spec:
    """``drover-py serve APP -w N --bind 127.0.0.1:PORT`` (no control socket, access log off)."""
    argv = [DROVER_PY, "serve", app, "-w", str(workers), "--bind", "127.0.0.1:{port}"]
    argv += ["--app-dir", str(APPS), "--backend", backend, "--no-control", "--no-access-log"]
    argv += ["--log-level", "warning" if quiet else "info", *(["--preload"] if preload else [])]
    server = {"asyncio": "_uvicorn", "trio": "_hypercorn"}[backend] if interface == "asgi" else "_waitress"
    imports = (app.split(":")[0], "drover_py.serve.worker", f"drover_py.serve.{server}") if preload else ()
    return Spec(key, label, argv, workers, drover=True, template_imports=imports)


def uvicorn(key: str, app: str, workers: int) -> Spec:
    """uvicorn's multiprocess supervisor; SIGHUP replaces the workers one by one, each
    replacement first, once it answered a health check: within 30 s here (5 by default,
    which its replacements missed on a loaded machine: the reload was abandoned), as long
    as drover-py's start timeout."""
    argv = [PYTHON, "-m", "uvicorn", app, "--app-dir", str(APPS), "--workers", str(workers)]
    argv += ["--host", "127.0.0.1", "--port", "{port}", "--no-access-log", "--log-level", "warning"]
    argv += ["--timeout-worker-healthcheck", "30"]
    return Spec(key, f"uvicorn --workers {workers}", argv, workers, reload_failed=("aborting the restart",))


def gunicorn(key: str, app: str, workers: int, worker_class: str = "sync") -> Spec:
    """gunicorn (no access log unless asked: none here); SIGHUP reloads it.

    Its worker timeout is 10 s (30 by default): after a SIGHUP, old UvicornWorkers under
    a keep-alive load often did not exit until it ended them ("WORKER TIMEOUT",
    SIGABRT), which made each reload take 30 s.
    """
    argv = [PYTHON, "-m", "gunicorn", "-w", str(workers), "-k", worker_class, "-b", "127.0.0.1:{port}"]
    argv += ["--chdir", str(APPS), "--log-level", "warning", "--graceful-timeout", "10", "--timeout", "10", app]
    name = "sync" if worker_class == "sync" else worker_class.rpartition(".")[2]
    return Spec(key, f"gunicorn -k {name} -w {workers}", argv, workers)


def granian(key: str, app: str, workers: int, interface: str = "asgi") -> Spec:
    """granian 2.x; SIGHUP respawns its workers one by one (new one first)."""
    argv = [PYTHON, "-m", "granian", "--interface", interface, "--workers", str(workers)]
    argv += ["--host", "127.0.0.1", "--port", "{port}", "--no-access-log", "--log-level", "warning"]
    argv += ["--respawn-interval", str(GRANIAN_RESPAWN_INTERVAL), "--workers-kill-timeout", "10", app]
    return Spec(key, f"granian --interface {interface} --workers {workers}", argv, workers, cwd=APPS)


def uvicorn_worker_class() -> tuple[str | None, str]:
    """Return (gunicorn's ``-k`` for uvicorn, or None, and where it comes from / why it is missing).

    uvicorn deprecated ``uvicorn.workers`` for the ``uvicorn-worker`` package; either
    will do, the package first.
    """
    if importlib.util.find_spec("uvicorn_worker") is not None:
        return "uvicorn_worker.UvicornWorker", "the uvicorn-worker package"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import uvicorn.workers  # noqa: F401
    except ImportError as exc:
        return None, f"neither uvicorn-worker nor uvicorn.workers is importable ({exc})"
    return "uvicorn.workers.UvicornWorker", "uvicorn.workers (deprecated in favour of the uvicorn-worker package)"


@dataclass(frozen=True)
class Reload:
    """The outcome of one reload: its duration (signal to end), success, the line that said so."""

    seconds: float
    ok: bool
    line: str = ""


def answered_by(port: int, pids: set[int], deadline: float, threads: int = 4) -> bool:
    """Return True once every worker in ``pids`` answered a request (new connections from
    ``threads`` threads, as `bench_serve`'s poller), False at ``deadline`` (time.monotonic())
    or when a worker answers that is not in ``pids`` (they changed: look again)."""
    seen: set[int] = set()
    stray = threading.Event()
    lock = threading.Lock()

    def poll() -> None:
        while not stray.is_set() and time.monotonic() < deadline:
            with lock:
                if seen >= pids:
                    return
            try:
                pid = pid_in(fetch_head(port, timeout=2))
            except (OSError, RuntimeError):
                time.sleep(0.01)
                continue
            with lock:
                if pid in pids:
                    seen.add(pid)
                else:
                    stray.set()

    pollers = [threading.Thread(target=poll, daemon=True) for _ in range(threads)]
    for poller in pollers:
        poller.start()
    for poller in pollers:
        poller.join(max(0.0, deadline - time.monotonic()) + 3)
    return seen >= pids


class Running:
    """One server process: launched by the constructor, always ended by `stop`."""

    def __init__(self, spec: Spec, log: IO[str], port: int | None = None) -> None:
        self.spec = spec
        self.port = port or free_port()
        self._log = log
        self._lines: queue.Queue[tuple[float, str, str]] = queue.Queue()
        self.started = time.perf_counter()
        log.write(f"=== {spec.label}: {' '.join(spec.command(self.port))}\n")
        log.flush()
        self.proc = subprocess.Popen(
            spec.command(self.port),
            cwd=spec.cwd,
            env=child_env(**spec.extra_env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(stream, name), daemon=True)
            for stream, name in ((self.proc.stdout, "out"), (self.proc.stderr, "err"))
        ]
        for reader in self._readers:
            reader.start()
        self._lock = threading.Lock()

    def _read(self, stream: IO[str], name: str) -> None:
        for line in stream:
            self._lines.put((time.perf_counter(), name, line.rstrip("\n")))
            with self._lock:
                self._log.write(f"[{self.spec.key} {name}] {line}")
                self._log.flush()

    def wait_line(self, needles: Sequence[str], timeout: float) -> tuple[float, str] | None:
        """Return (time, line) of the next output line containing one of ``needles``, or None."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                at, _, line = self._lines.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                if self.proc.poll() is not None and self._lines.empty():
                    return None
                continue
            if any(needle in line for needle in needles):
                return at, line

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> float:
        """Return the seconds from the launch until it is ready (see the module's docstring)."""
        if self.spec.drover:
            found = self.wait_line(["drover-py: serving"], timeout)
            if found is None:
                raise RuntimeError(f"{self.spec.label}: not ready in {timeout:.0f} s (exit {self.proc.poll()})")
            return found[0] - self.started
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.spec.label}: exited with {self.proc.returncode} before it was ready")
            workers = workers_of(self.proc.pid)
            if len(workers) >= self.spec.workers and answered_by(self.port, workers, deadline):
                return time.perf_counter() - self.started
            time.sleep(0.02)
        raise RuntimeError(f"{self.spec.label}: not ready in {timeout:.0f} s")

    def reload(self, timeout: float = RELOAD_TIMEOUT) -> Reload:
        """SIGHUP; return when the reload finished or failed. Raise if neither happened in time."""
        while not self._lines.empty():  # earlier lines are not this reload's outcome
            self._lines.get_nowait()
        if self.spec.drover:
            start = time.perf_counter()
            self.proc.send_signal(signal.SIGHUP)
            found = self.wait_line(["reloaded", "reload failed"], timeout)
            if found is None:
                raise RuntimeError(f"{self.spec.label}: no reload outcome in {timeout:.0f} s")
            return Reload(found[0] - start, "reload failed" not in found[1], found[1])
        old = workers_of(self.proc.pid)
        start = time.perf_counter()
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            failed = self.wait_line(self.spec.reload_failed, 0.01) if self.spec.reload_failed else None
            if failed is not None:
                return Reload(failed[0] - start, False, failed[1])
            if not self.spec.reload_failed:
                time.sleep(0.01)
            now = workers_of(self.proc.pid)
            if not old & now and len(now) >= self.spec.workers and answered_by(self.port, now, deadline):
                return Reload(time.perf_counter() - start, True)
        raise RuntimeError(f"{self.spec.label}: the reload did not finish in {timeout:.0f} s")

    def stop(self) -> int | None:
        code = stop_process(self.proc, timeout=20)
        for reader in self._readers:
            reader.join(5)
        return code
