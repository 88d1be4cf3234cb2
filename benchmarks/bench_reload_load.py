"""Zero dropped requests during reload: HTTP load while the server is reloaded over and over.

usage: python benchmarks/bench_reload_load.py [--requests N] [--concurrency C] [--quick]
       [--only NAME ...] [--out PATH]

For each target in turn (a drover-py master, gunicorn, uvicorn --workers), a load client
keeps C connections busy with sequential ``GET /`` requests (one request per connection,
``Connection: close``) to 127.0.0.1 until N requests are done, while the server is
reloaded again and again: a new reload starts as soon as the previous one finished.

- drover-py: ``apps/reload_master.py`` (the master owns the listener); each SIGHUP runs
  ``master.graceful_reload()``, which prints "reloaded K" when it returned.
- gunicorn -w 4 (sync workers): SIGHUP (gunicorn's graceful reload: new workers, then the
  old ones stop gracefully). Finished when ``count`` of the old workers have exited.
- uvicorn --workers 4: SIGHUP, which uvicorn's multiprocess supervisor turns into
  ``restart_all()`` (replacement first, then ``terminate()`` of the old worker, one slot
  after the other). Finished as for gunicorn.

A request fails as "refused", "reset" (reset / broken pipe / aborted), "timeout" (no
complete answer within 5 s), "empty" (EOF before any byte), "bad" (not a complete
HTTP 200 answer) or "other" (any other OSError); the load client is `_common.run_load`.
Prints a table and writes the results to benchmarks/results/reload_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from _common import (
    APPS,
    FAILURE_KINDS,
    PYTHON,
    REQUEST_TIMEOUT,
    RESULTS,
    LoadStats,
    descendants_of,
    free_port,
    one_request,
    run_load,
    workers_of,
)

HOST = "127.0.0.1"

READY_TIMEOUT = 60.0  # seconds for a server to answer its first request
RELOAD_TIMEOUT = 60.0  # seconds for one reload to finish
LOAD_DEADLINE = 600.0  # seconds for the whole load of one target
STOP_TIMEOUT = 30.0  # seconds between SIGTERM and SIGKILL at the end


# -- the servers under test ------------------------------------------------------------


@dataclass
class Target:
    name: str
    argv: Callable[[int], list[str]]  # port -> command line (port unused for drover)
    count: int  # workers: a reload is finished once that many old workers exited
    drover: bool = False  # port and reload completion come from reload_master.py's stdout
    env: dict[str, str] = field(default_factory=dict)


def targets() -> list[Target]:
    master = str(APPS / "reload_master.py")
    return [
        Target("drover-py hypercorn x1", lambda p: [PYTHON, master, "hypercorn", "1"], 1, drover=True),
        Target("drover-py hypercorn x4", lambda p: [PYTHON, master, "hypercorn", "4"], 4, drover=True),
        Target("drover-py uvicorn x4", lambda p: [PYTHON, master, "uvicorn", "4"], 4, drover=True),
        Target(
            "gunicorn -w 4 (sync)",
            lambda p: [
                PYTHON, "-m", "gunicorn", "-w", "4", "-k", "sync", "-b", f"{HOST}:{p}", "--chdir", str(APPS),
                "--log-level", "warning", "--graceful-timeout", "10", "reload_wsgi:app",
            ],
            4,
        ),
        Target(
            "uvicorn --workers 4",
            lambda p: [
                PYTHON, "-m", "uvicorn", "asgi_app:app", "--app-dir", str(APPS), "--workers", "4",
                "--host", HOST, "--port", str(p), "--log-level", "warning",
            ],
            4,
        ),
    ]  # fmt: skip


@dataclass
class Outcome:
    target: str
    requests: int
    ok: int
    failed: int
    failures: dict[str, int]
    reloads: int
    reload_errors: int
    seconds: float
    requests_per_s: float
    pids_seen: int
    first_failures: list[str]
    server_exit_code: int | None
    error: str | None = None


class Server:
    """One server process under test, in its own session, always stopped by ``stop()``."""

    def __init__(self, target: Target, log: IO[bytes]) -> None:
        self.target = target
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.reloads = 0
        self.reload_errors = 0

    async def start(self) -> None:
        port = 0 if self.target.drover else free_port()
        self.proc = await asyncio.create_subprocess_exec(
            *self.target.argv(port),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=self.log,
            env={**os.environ, **self.target.env},
            start_new_session=True,
        )
        if self.target.drover:
            line = await self.read_line(READY_TIMEOUT)
            if not line.startswith("port "):
                raise RuntimeError(f"expected 'port N' from the master, got {line!r}")
            port = int(line.split()[1])
        self.port = port
        await self.wait_answering()

    async def read_line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            raise RuntimeError(f"the server exited (code {await self.proc.wait()})")
        return raw.decode().strip()

    async def wait_answering(self) -> None:
        request = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise RuntimeError(f"the server exited (code {self.proc.returncode})")
            kind, _ = await one_request(self.port, request)
            # Ready once it answers and (gunicorn, uvicorn) all its workers are up.
            if kind is None and (self.target.drover or len(workers_of(self.proc.pid)) >= self.target.count):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("the server did not answer in time")

    async def reload_once(self) -> None:
        """Ask for one reload and return once it finished."""
        assert self.proc is not None
        if self.target.drover:
            self.proc.send_signal(signal.SIGHUP)
            line = await self.read_line(RELOAD_TIMEOUT)
            if line.startswith("reloaded"):
                self.reloads += 1
            else:
                self.reload_errors += 1
            return
        old = workers_of(self.proc.pid)
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + RELOAD_TIMEOUT
        while time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            now = workers_of(self.proc.pid)
            if not old & now and len(now) >= self.target.count:  # every old worker replaced
                self.reloads += 1
                return
        self.reload_errors += 1  # never finished: counted, and the load goes on

    async def reload_until(self, done: asyncio.Event) -> None:
        deadline = time.monotonic() + LOAD_DEADLINE
        while not done.is_set() and time.monotonic() < deadline:
            await self.reload_once()

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL (to it and every descendant, by pid) after a deadline."""
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            family = descendants_of(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            for pid in family:  # workers left behind by a killed master
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        return proc.returncode


async def measure(target: Target, total: int, concurrency: int, log_path: Path) -> Outcome:
    stats = LoadStats()
    error: str | None = None
    seconds = 0.0
    with open(log_path, "wb") as log:
        server = Server(target, log)
        try:
            await server.start()
            done = asyncio.Event()
            reloader = asyncio.create_task(server.reload_until(done))
            t0 = time.monotonic()
            try:
                await run_load(server.port, total, concurrency, stats, t0)
                seconds = time.monotonic() - t0
            finally:
                done.set()
                await reloader  # lets the reload in progress finish: it is counted
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            exit_code = await server.stop()
    return Outcome(
        target=target.name,
        requests=stats.requests,
        ok=stats.ok,
        failed=stats.failed,
        failures={kind: stats.failures[kind] for kind in FAILURE_KINDS},
        reloads=server.reloads,
        reload_errors=server.reload_errors,
        seconds=round(seconds, 3),
        requests_per_s=round(stats.requests / seconds, 1) if seconds else 0.0,
        pids_seen=len(stats.pids),
        first_failures=stats.first_failures,
        server_exit_code=exit_code,
        error=error,
    )


# -- report ----------------------------------------------------------------------------


def table(outcomes: list[Outcome]) -> str:
    header = ["target", "requests", "failed", *FAILURE_KINDS, "reloads", "rl err", "pids", "req/s", "s"]
    rows = [header]
    for o in outcomes:
        rows.append(
            [
                o.target, str(o.requests), str(o.failed), *(str(o.failures[k]) for k in FAILURE_KINDS),
                str(o.reloads), str(o.reload_errors), str(o.pids_seen), f"{o.requests_per_s:.0f}", f"{o.seconds:.1f}",
            ]
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=None, help="requests per target (default 20000)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument("--quick", action="store_true", help="5000 requests per target")
    parser.add_argument("--only", nargs="*", default=None, help="run only targets whose name contains one of these")
    parser.add_argument("--out", type=Path, default=RESULTS / "reload_load.json")
    args = parser.parse_args()
    total = args.requests if args.requests is not None else (5000 if args.quick else 20000)
    chosen = [t for t in targets() if not args.only or any(word in t.name for word in args.only)]
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    outcomes: list[Outcome] = []
    for target in chosen:
        slug = re.sub(r"[^a-z0-9]+", "-", target.name.lower()).strip("-")
        print(f"{target.name}: {total} requests, {args.concurrency} connections, reloading ...", flush=True)
        outcome = asyncio.run(measure(target, total, args.concurrency, logs / f"reload_load-{slug}.log"))
        outcomes.append(outcome)
        print(f"  {outcome.failed} failed, {outcome.reloads} reloads, {outcome.requests_per_s:.0f} req/s", flush=True)
        if outcome.error:
            print(f"  error: {outcome.error}", flush=True)
        for line in outcome.first_failures:
            print(f"  failure: {line}", flush=True)

    print()
    print(table(outcomes))
    document = {
        "benchmark": "reload_load",
        "params": {"requests": total, "concurrency": args.concurrency, "request_timeout_s": REQUEST_TIMEOUT},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "results": [asdict(o) for o in outcomes],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {args.out.relative_to(Path.cwd()) if args.out.is_relative_to(Path.cwd()) else args.out}")
    return 0 if all(o.error is None for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
