"""Helpers shared by the benchmark scripts: statistics, paths, /proc readers, process hygiene.

Every benchmark script (``bench_*.py``) runs in its own process, started by ``run.py``,
and writes one JSON document (see `Result`) to the path given with ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
APPS = HERE / "apps"
RESULTS = HERE / "results"
EXAMPLES = ROOT / "examples"
PYTHON = sys.executable
#: The ``drover-py`` console command of this environment: what a user runs (no ``-m``/runpy).
DROVER_PY = str(Path(PYTHON).with_name("drover-py"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36

T = TypeVar("T")
Json = dict[str, Any]


# -- statistics ---------------------------------------------------------------------


def summary(values: Sequence[float], scale: float = 1.0) -> Json:
    """Return median, min, max (and p99 for long series) of ``values`` times ``scale``."""
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None}
    data = sorted(v * scale for v in values)
    out: Json = {
        "n": len(data),
        "median": statistics.median(data),
        "min": data[0],
        "max": data[-1],
    }
    if len(data) >= 100:
        out["p99"] = percentile(data, 99)
    return out


def percentile(sorted_data: Sequence[float], pct: float) -> float:
    """Return the ``pct`` percentile of already sorted data (nearest rank)."""
    if not sorted_data:
        raise ValueError("no data")
    rank = max(0, min(len(sorted_data) - 1, round(pct / 100 * len(sorted_data) + 0.5) - 1))
    return sorted_data[rank]


def ratio(a: Json, b: Json, key: str = "median") -> float | None:
    """Return a[key] / b[key], or None when either is missing or b is zero."""
    x, y = a.get(key), b.get(key)
    if x is None or y is None or y == 0:
        return None
    return float(x) / float(y)


def interleaved(reps: int, cases: Sequence[T]) -> Iterator[tuple[int, T]]:
    """Yield (rep, case) with the case order rotated every repetition (A B, B A, ...)."""
    for rep in range(reps):
        shift = rep % len(cases)
        for case in list(cases[shift:]) + list(cases[:shift]):
            yield rep, case


# -- results ------------------------------------------------------------------------


def row(
    bench: str,
    case: str,
    metric: str,
    unit: str,
    value: Json,
    reference: Json | None = None,
    ref_label: str = "",
    compare: str = "ratio",
    goal: str = "",
    ok: bool | None = None,
    note: str = "",
    paired: Sequence[tuple[float, float]] = (),
) -> Json:
    """Return one line of the summary table.

    ``compare`` is "ratio" (value / reference), "diff" (value - reference), or "" (none):
    of the medians, or, given ``paired`` (value, reference) samples measured next to each
    other, the median of the per-pair ratios or differences, which a slow drift of the
    machine's load does not bias.
    """
    cmp_value: float | None = None
    if paired and compare in ("ratio", "diff"):
        if compare == "ratio":
            cmp_value = statistics.median(a / b for a, b in paired if b)
        else:
            cmp_value = statistics.median(a - b for a, b in paired)
    elif reference is not None and value.get("median") is not None and reference.get("median") is not None:
        if compare == "ratio":
            cmp_value = ratio(value, reference)
        elif compare == "diff":
            cmp_value = float(value["median"]) - float(reference["median"])
    return {
        "bench": bench,
        "case": case,
        "metric": metric,
        "unit": unit,
        "value": value,
        "reference": reference,
        "ref_label": ref_label,
        "compare": compare,
        "cmp": cmp_value,
        "cmp_of": "paired" if paired and compare else "medians",
        "goal": goal,
        "ok": ok,
        "note": note,
    }


def parse_args(description: str, parts: Sequence[str] = ()) -> argparse.Namespace:
    """Parse the options every benchmark takes; with ``parts``, also ``--part`` (all by default)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller sizes")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    if parts:
        parser.add_argument("--part", action="append", choices=parts, help="run only this part (repeatable)")
    args = parser.parse_args()
    if parts and not args.part:
        args.part = list(parts)
    return args


def write_result(path: Path, name: str, rows: list[Json], raw: Json, notes: Iterable[str] = ()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"name": name, "rows": rows, "raw": raw, "notes": list(notes)}
    path.write_text(json.dumps(doc, indent=1, default=str))


def log(message: str) -> None:
    print(f"  {message}", flush=True)


# -- environment --------------------------------------------------------------------


def child_env(**extra: object) -> dict[str, str]:
    """Return os.environ plus ``extra`` (str()-ed), for a benchmark's child processes."""
    env = dict(os.environ)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def become_subreaper() -> None:
    """Adopt the orphans of our descendants, so `stray_children` can find and end them."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def children_of(pid: int) -> list[int]:
    """Return the pids of the direct children of ``pid`` (all its threads), from /proc."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as file:
                found.extend(int(x) for x in file.read().split())
        except OSError:
            continue
    return found


def descendants_of(pid: int) -> list[int]:
    out: list[int] = []
    todo = children_of(pid)
    while todo:
        child = todo.pop()
        out.append(child)
        todo.extend(children_of(child))
    return out


def workers_of(pid: int) -> set[int]:
    """Return the children of ``pid`` but multiprocessing's resource tracker (uvicorn and granian start one)."""
    return {child for child in children_of(pid) if "resource_tracker" not in cmdline(child)}


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def process_state(pid: int) -> str:
    """Return the state letter of ``pid`` (R, S, Z, ...), or "" if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return ""


def end_strays(pid: int | None = None) -> tuple[list[str], int]:
    """SIGKILL and reap every live descendant of ``pid`` (default: this process).

    Return ("<pid> <command line>" of each live one ended, number of zombies reaped). As
    a subreaper we adopt the orphans of our descendants (e.g. server workers that outlive
    their master by a moment during a shutdown); those that already exited are zombies
    waiting for us, not leftovers.
    """
    me = os.getpid() if pid is None else pid
    strays = [child for child in descendants_of(me) if process_state(child) not in ("Z", "")]
    described = [f"{child} {cmdline(child)}" for child in strays]
    for child in strays:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    zombies = 0
    if me == os.getpid():
        for child in children_of(me):
            try:
                os.waitpid(child, 0)
            except ChildProcessError:
                continue
            zombies += child not in strays
    return described, zombies


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
    """Signal ``proc`` (a session leader), wait up to ``timeout``, then SIGKILL its group."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever it left in its group
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)
    return proc.returncode


# -- /proc readers ------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    """Return utime + stime of ``pid`` (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def thread_cpu_ns(pid: int) -> dict[int, int]:
    """Return {tid: on-CPU ns} for every live thread of ``pid`` (from schedstat)."""
    out: dict[int, int] = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as file:
                out[int(tid)] = int(file.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return out


def cpu_ns_delta(before: dict[int, int], after: dict[int, int]) -> int:
    """Return the CPU ns spent between two `thread_cpu_ns` samples by the threads alive at
    the second one (a thread that ended in between is not counted: use `cpu_ticks` too)."""
    return sum(ns - before.get(tid, 0) for tid, ns in after.items())


def cpu_ns(pid: int) -> int:
    """Return the on-CPU time of the live threads of ``pid``, in ns."""
    return sum(thread_cpu_ns(pid).values())


def thread_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def status_kb(field: str, pid: int | str = "self") -> int:
    """Return a kB field (VmRSS, VmHWM, ...) of /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


# -- misc ---------------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: One plain HTTP/1.1 request for "/" on loopback.
HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def fetch_head(port: int, timeout: float) -> bytes:
    """Send `HTTP_REQUEST` to 127.0.0.1:``port``; return what arrived up to the end of the headers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(HTTP_REQUEST)
        return read_head(sock)


def read_head(sock: socket.socket) -> bytes:
    """Return what ``sock`` receives up to the end of a response's headers (or of the stream)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def pid_in(head: bytes, who: str = "the server") -> int:
    """Return the worker pid of a response's ``x-worker-pid`` header; raise RuntimeError without one."""
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"x-worker-pid:"):
            return int(line.split(b":")[1])
    raise RuntimeError(f"{who}: no worker pid in {head[:200]!r}")


def answer_round(port: int, count: int, timeout: float, who: str = "the server") -> set[int]:
    """Open ``count`` connections to 127.0.0.1:``port``, then send a request on each; return the pids that answered."""
    with contextlib.ExitStack() as stack:
        socks = [
            stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=timeout)) for _ in range(count)
        ]
        for sock in socks:
            sock.sendall(HTTP_REQUEST)
        return {pid_in(read_head(sock), who) for sock in socks}


def wait_all_answered(
    port: int, workers: int, timeout: float, alive: Callable[[], bool], who: str = "the server"
) -> set[int]:
    """Wait until ``workers`` distinct worker pids answered; return them. Raise RuntimeError after ``timeout``.

    Requests go in rounds of one connection per worker, all opened before any is sent: a
    sync worker (gunicorn's) holds the connection it accepted until its request comes, so
    the others must take the rest. One request at a time would not reach them all: every
    idle worker is woken for each connection, and the same few win the race to accept it
    again and again (with 16 workers, 10 had answered after 30 s). Not for servers whose
    workers accept many connections at once (asyncio ones): they may never all answer.
    """
    deadline = time.monotonic() + timeout
    seen: set[int] = set()
    while len(seen) < workers:
        if time.monotonic() > deadline or not alive():
            raise RuntimeError(f"{who}: {len(seen)} of {workers} workers answered")
        try:
            seen |= answer_round(port, workers, timeout=2, who=who)
        except (OSError, RuntimeError):
            time.sleep(0.01)  # not listening yet
    return seen


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


def pss_kb(pid: int) -> int:
    """Return the PSS of ``pid`` in kB (``/proc/PID/smaps_rollup``), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as file:
            for line in file:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pss_kb(root: int) -> dict[int, int]:
    """Return {pid: PSS in kB} of ``root`` and every descendant (the sum is the tree's PSS)."""
    return {pid: pss_kb(pid) for pid in [root, *descendants_of(root)]}


# -- HTTP load while a server reloads -------------------------------------------------
#
# Two load shapes: `run_load` (asyncio, a new connection per request, ``Connection:
# close``) and `KeepAliveLoad` (threads of http.client, one persistent connection each).
# Neither retries a failed request: a failure is counted, by kind.

#: How a request fails: "refused", "reset" (reset / broken pipe / aborted), "closed" (a
#: keep-alive connection closed by the server without an answer to the request sent on
#: it), "timeout" (no complete answer in time), "empty" (EOF before any byte), "bad" (not
#: a complete HTTP 200 answer), "other" (any other OSError).
FAILURE_KINDS = ("refused", "reset", "closed", "timeout", "empty", "bad", "other")
REQUEST_TIMEOUT = 5.0  # seconds for one request: connect, send, read the answer
PID_RE = re.compile(rb"(?:x-worker-pid: |pid=)(\d+)", re.IGNORECASE)


@dataclass
class LoadStats:
    """What a load client saw; `merge` adds another's (one per thread, merged at the end)."""

    requests: int = 0
    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    pids: set[int] = field(default_factory=set)
    reconnects: int = 0  # answers with ``Connection: close`` on a keep-alive connection
    first_failures: list[str] = field(default_factory=list)  # a few, with their time
    failure_times: list[float] = field(default_factory=list)  # time.monotonic() of each (bounded)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def fail(self, kind: str, t0: float, detail: str) -> None:
        now = time.monotonic()
        self.failures[kind] += 1
        if len(self.failure_times) < 1000:
            self.failure_times.append(now)
        if len(self.first_failures) < 10:
            self.first_failures.append(f"t={now - t0:.3f}s {kind} {detail}")

    def merge(self, other: LoadStats) -> None:
        self.requests += other.requests
        self.ok += other.ok
        self.failures.update(other.failures)
        self.pids |= other.pids
        self.reconnects += other.reconnects
        self.first_failures = (self.first_failures + other.first_failures)[:10]
        self.failure_times = sorted(self.failure_times + other.failure_times)[:1000]

    def kinds(self) -> dict[str, int]:
        return {kind: self.failures[kind] for kind in FAILURE_KINDS}


def check_response(data: bytes) -> str | None:
    """Return None for a complete HTTP 200 answer, else the failure kind."""
    if not data:
        return "empty"
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1.1 200"):
        return "bad"
    match = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
    if match is None or len(body) != int(match.group(1)):
        return "bad"
    return None


async def one_request(port: int, request: bytes, timeout: float = REQUEST_TIMEOUT) -> tuple[str | None, bytes]:
    """Send one request on a new connection to 127.0.0.1; return (failure kind or None, answer)."""
    data = b""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(request)
                await writer.drain()
                data = await reader.read()  # to EOF: the server closes (Connection: close)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except ConnectionRefusedError:
        return "refused", data
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        return "reset", data
    except TimeoutError:
        return "timeout", data
    except OSError:
        return "other", data
    return check_response(data), data


async def run_load(
    port: int,
    total: int,
    concurrency: int,
    stats: LoadStats,
    t0: float,
    stop: Callable[[], bool] = lambda: False,
    deadline_s: float = 600.0,
) -> None:
    """Keep ``concurrency`` new-connection clients busy until ``total`` requests were
    issued, ``stop()`` is true, or ``deadline_s`` passed."""
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    issued = 0
    deadline = time.monotonic() + deadline_s

    async def client() -> None:
        nonlocal issued
        while issued < total and not stop() and time.monotonic() < deadline:
            issued += 1
            kind, data = await one_request(port, request)
            stats.requests += 1
            if kind is None:
                stats.ok += 1
                match = PID_RE.search(data)
                if match is not None:
                    stats.pids.add(int(match.group(1)))
            else:
                stats.fail(kind, t0, f"{len(data)} bytes, ending {data[-60:]!r}")

    await asyncio.gather(*(client() for _ in range(concurrency)))


class ConnectionLoad:
    """`run_load` in a thread of its own (its own event loop) until `stop`."""

    def __init__(self, port: int, concurrency: int, t0: float) -> None:
        self.stats = LoadStats()
        self._stop = threading.Event()
        args = (port, 1 << 62, concurrency, self.stats, t0, self._stop.is_set)
        self._thread = threading.Thread(target=lambda: asyncio.run(run_load(*args)), daemon=True)
        self._thread.start()

    def stop(self) -> LoadStats:
        self._stop.set()
        self._thread.join(REQUEST_TIMEOUT + 5)
        return self.stats


class KeepAliveLoad:
    """``threads`` clients, each with one persistent HTTP/1.1 connection (http.client).

    No retry: a request that fails is counted, and the next one goes on a new
    connection. An answer with ``Connection: close`` ends its connection and the next
    request opens a new one, as any client does (counted in ``reconnects``, not a
    failure).
    """

    def __init__(self, port: int, threads: int, t0: float) -> None:
        self.port, self.t0 = port, t0
        self._stop = threading.Event()
        self._stats = [LoadStats() for _ in range(threads)]
        self._threads = [threading.Thread(target=self._client, args=(s,), daemon=True) for s in self._stats]
        for thread in self._threads:
            thread.start()

    def _client(self, stats: LoadStats) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
            stats.requests += 1
            kind, detail = None, ""
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                body = response.read()
                length = response.getheader("content-length")
                if response.status != 200 or length is None or int(length) != len(body):
                    kind, detail = "bad", f"status {response.status}, {len(body)} bytes"
                else:
                    stats.ok += 1
                    pid = response.getheader("x-worker-pid")
                    if pid is not None:
                        stats.pids.add(int(pid))
                    if response.will_close:
                        stats.reconnects += 1
                        conn.close()
                        conn = None
            except http.client.RemoteDisconnected as exc:  # before ConnectionResetError: it is one
                kind, detail = "closed", str(exc)
            except ConnectionRefusedError as exc:
                kind, detail = "refused", str(exc)
            except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as exc:
                kind, detail = "reset", f"{type(exc).__name__}: {exc}"
            except TimeoutError as exc:
                kind, detail = "timeout", str(exc)
            except (http.client.HTTPException, ValueError) as exc:
                kind, detail = "bad", f"{type(exc).__name__}: {exc}"
            except OSError as exc:
                kind, detail = "other", f"{type(exc).__name__}: {exc}"
            if kind is not None:
                stats.fail(kind, self.t0, detail)
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.001)  # a refused connect fails at once: do not spin
        if conn is not None:
            conn.close()

    def stop(self) -> LoadStats:
        self._stop.set()
        total = LoadStats()
        for thread, stats in zip(self._threads, self._stats):
            thread.join(REQUEST_TIMEOUT + 5)
            total.merge(stats)
        return total
