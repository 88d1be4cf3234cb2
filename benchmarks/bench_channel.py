"""4. Channel round trip and throughput: drover_py._wire.channel vs multiprocessing.Pipe.

Two processes, a pair of ``os.pipe()``. drover-py: `ChannelReader` / `ChannelWriter`
with protocol frames (``{"type":"stop"}\\n``, with a `Decoder` that allows "stop" in
both directions), on the
parent's event loop (asyncio, then trio) and the child's (same backend). Reference, in
the same run and interleaved: ``multiprocessing.Pipe(duplex=False)`` pairs, blocking
``send``/``recv`` of the same small dict. Also measured, to show where the time goes
(benchmarks/_alt_channels.py): the floor of any anyio channel over a pipe ("raw": no decoding, no lock).

- RTT: the child echoes; p50 and p99 over many round trips.
- Throughput: the parent sends as fast as it can, the child counts and acks the last.

Goals: RTT p50 <= 1.5x multiprocessing, throughput >= 0.8x. In full runs the child's
system calls per message are counted too, with ``perf stat`` syscall tracepoints (or
``strace -c``, which slows the child down enough to change the pattern, if perf cannot).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
from _alt_channels import RawReader, RawWriter, Reader, Writer
from _common import APPS, PYTHON, child_env, interleaved, log, parse_args, percentile, row, summary, write_result

from drover_py._wire import protocol as proto
from drover_py._wire.channel import ChannelReader, ChannelWriter

PEER = APPS / "channel_peer.py"
MP_PEER = APPS / "mp_peer.py"
# A message type the protocol knows (so the decoder takes its fast path, as real traffic
# does), allowed in this direction by the Decoder built for the benchmark.
PING = proto.STOP
FRAME = proto.encode(PING)
OBJ = {"type": PING}
RTT_GOAL = 1.5
TPUT_GOAL = 0.8


#: Syscalls counted (in-kernel tracepoints, so the timing is hardly disturbed).
SYSCALLS = ["read", "write", "epoll_wait", "epoll_pwait", "epoll_ctl", "getpid", "futex", "poll"]


def tracer_prefix(out: Path) -> list[str]:
    """Return the command prefix that counts the child's system calls into ``out``."""
    if TRACER == "perf":
        events = ",".join(["raw_syscalls:sys_enter", *(f"syscalls:sys_enter_{name}" for name in SYSCALLS)])
        return ["perf", "stat", "-x,", "-o", str(out), "-e", events, "--"]
    return ["strace", "-f", "-c", "-o", str(out)]


def find_tracer() -> str | None:
    """Return "perf" if syscall tracepoints can be counted, else "strace" if present, else None."""
    if shutil.which("perf"):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "probe"
            probe = subprocess.run(
                ["perf", "stat", "-x,", "-o", str(out), "-e", "raw_syscalls:sys_enter", "--", "true"],
                capture_output=True,
            )
            if probe.returncode == 0 and parse_perf(out).get("total", 0) > 0:
                return "perf"
    return "strace" if shutil.which("strace") else None


TRACER: str | None = None


def spawn(argv: list[str], child_fds: tuple[int, int], strace_out: Path | None = None) -> subprocess.Popen[bytes]:
    prefix = tracer_prefix(strace_out) if strace_out is not None else []
    proc = subprocess.Popen(
        [*prefix, *argv],
        pass_fds=child_fds,
        env=child_env(BENCH_CHANNEL=f"{child_fds[0]},{child_fds[1]}"),
        start_new_session=True,
    )
    for fd in child_fds:
        os.close(fd)
    return proc


def finish(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise RuntimeError("a channel peer did not exit") from None
    if proc.returncode != 0:
        raise RuntimeError(f"a channel peer exited with {proc.returncode}")


# -- drover-py channel (and the prototype) ----------------------------------------


async def channel_run(
    backend: str, impl: str, mode: str, count: int, warm: int = 0, strace_out: Path | None = None
) -> tuple[list[int], float]:
    """Run one peer; return (round trip times in ns, seconds for the timed part)."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    proc = spawn([PYTHON, str(PEER), backend, impl, mode, str(count)], (to_child_r, from_child_w), strace_out)
    if impl == "drover":
        reader: Reader = ChannelReader(from_child_r, frozenset({PING}))
        writer: Writer = ChannelWriter(to_child_w)
    else:
        reader, writer = RawReader(from_child_r), RawWriter(to_child_w)
    rtts: list[int] = []
    try:
        with anyio.fail_after(120):
            if mode == "echo":
                for _ in range(warm):
                    await writer.send(FRAME)
                    await reader.receive()
                start = time.perf_counter()
                for _ in range(count):
                    t0 = time.perf_counter_ns()
                    await writer.send(FRAME)
                    if await reader.receive() is None:
                        raise RuntimeError("peer closed")
                    rtts.append(time.perf_counter_ns() - t0)
            elif mode == "source":
                start = time.perf_counter()
                for _ in range(count):
                    if await reader.receive() is None:
                        raise RuntimeError("peer closed")
            else:
                start = time.perf_counter()
                for _ in range(count):
                    await writer.send(FRAME)
                if await reader.receive() is None:
                    raise RuntimeError("peer closed")
            elapsed = time.perf_counter() - start
    finally:
        os.close(to_child_w)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(finish, proc)
        os.close(from_child_r)
    return rtts, elapsed


# -- multiprocessing.Pipe -----------------------------------------------------------


def mp_run(mode: str, count: int, warm: int = 0, strace_out: Path | None = None) -> tuple[list[int], float]:
    child_recv, parent_send = multiprocessing.Pipe(duplex=False)
    parent_recv, child_send = multiprocessing.Pipe(duplex=False)
    assert isinstance(parent_send, Connection) and isinstance(parent_recv, Connection)
    fds = (os.dup(child_recv.fileno()), os.dup(child_send.fileno()))
    child_recv.close()
    child_send.close()
    proc = spawn([PYTHON, str(MP_PEER), mode, str(count)], fds, strace_out)
    rtts: list[int] = []
    try:
        if mode == "echo":
            for _ in range(warm):
                parent_send.send(OBJ)
                parent_recv.recv()
            start = time.perf_counter()
            for _ in range(count):
                t0 = time.perf_counter_ns()
                parent_send.send(OBJ)
                parent_recv.recv()
                rtts.append(time.perf_counter_ns() - t0)
        elif mode == "source":
            start = time.perf_counter()
            for _ in range(count):
                parent_recv.recv()
        else:
            start = time.perf_counter()
            for _ in range(count):
                parent_send.send(OBJ)
            parent_recv.recv()
        elapsed = time.perf_counter() - start
    finally:
        parent_send.close()
        finish(proc)
        parent_recv.close()
    return rtts, elapsed


# -- system calls per message ------------------------------------------------------


def parse_perf(path: Path) -> dict[str, int]:
    calls: dict[str, int] = {}
    for line in path.read_text().splitlines():
        fields = line.split(",")
        if len(fields) < 3 or not fields[0].strip().isdigit():
            continue
        event = fields[2]
        name = "total" if event == "raw_syscalls:sys_enter" else event.rpartition("sys_enter_")[2]
        calls[name] = int(fields[0])
    return calls


def parse_counts(path: Path) -> dict[str, int]:
    if TRACER == "perf":
        counts = parse_perf(path)
        counts["other"] = counts.pop("total", 0) - sum(counts.values())
        return counts
    return parse_strace(path)


def parse_strace(path: Path) -> dict[str, int]:
    calls: dict[str, int] = {}
    dashes = 0
    for line in path.read_text().splitlines():
        if line.startswith("------"):
            dashes += 1
            continue
        if dashes != 1:
            continue
        fields = line.split()
        if len(fields) >= 5 and fields[3].isdigit():
            calls[fields[-1]] = calls.get(fields[-1], 0) + int(fields[3])
    return calls


def syscalls_per_message(run: Callable[[int, Path], object], low: int, high: int) -> dict[str, float]:
    """Return the child's system calls per message: (calls(high) - calls(low)) / (high - low)."""
    with tempfile.TemporaryDirectory() as tmp:
        counts = []
        for n in (low, high):
            out = Path(tmp) / f"trace-{n}"
            run(n, out)
            counts.append(parse_counts(out))
    per = {
        name: (counts[1].get(name, 0) - counts[0].get(name, 0)) / (high - low)
        for name in set(counts[0]) | set(counts[1])
    }
    per = {name: round(v, 2) for name, v in per.items() if v >= 0.05}
    per["total"] = round(sum(per.values()), 2)
    return per


# (mode, low count, high count); "sink" profiles the reading side, "source" the writing one.
MODES = (("echo", 200, 800), ("sink", 5_000, 15_000), ("source", 5_000, 15_000))


def syscall_profiles(backends: list[str]) -> dict[str, dict[str, float]]:
    profiles: dict[str, dict[str, float]] = {}
    for backend in backends:
        for impl in ("drover", "raw"):
            for mode, low, high in MODES:

                def run(n: int, out: Path, impl: str = impl, mode: str = mode) -> object:
                    return anyio.run(channel_run, backend, impl, mode, n, 0, out, backend=backend)

                profiles[f"{impl}/{backend}/{mode}"] = syscalls_per_message(run, low, high)
    for mode, low, high in MODES:

        def run_mp(n: int, out: Path, mode: str = mode) -> object:
            return mp_run(mode, n, 0, out)

        profiles[f"multiprocessing/{mode}"] = syscalls_per_message(run_mp, low, high)
    return profiles


# -- per-operation costs ------------------------------------------------------------


async def micro_costs(count: int, batches: int = 5) -> dict[str, float]:
    """Return the in-process cost (us) of the pieces a channel message goes through.

    Each cost is the best of ``batches`` batches of ``count`` operations (as timeit does),
    which filters out the time slices other processes took, less the cost of the loop
    and of calling an empty coroutine function.
    """
    decoder = proto.Decoder(frozenset({PING}))
    known = {FRAME: PING}  # what a fast path for the few fixed frames would cost
    slow_lock, fast_lock = anyio.Lock(), anyio.Lock(fast_acquire=True)

    async def feed() -> None:
        decoder.feed(FRAME)

    async def lookup() -> None:
        buffer = b"" + FRAME
        end = buffer.find(b"\n")
        known.get(buffer[: end + 1])

    async def lock_default() -> None:
        async with slow_lock:
            pass

    async def lock_fast() -> None:
        async with fast_lock:
            pass

    request = {"type": "request", "id": 5, "name": "echo", "payload": {"n": 1}}
    response = b'{"type":"response","id":5,"result":{"n":1}}'

    async def json_encode() -> None:
        json.dumps(request, separators=(",", ":")).encode()

    async def json_decode() -> None:
        json.loads(response)

    async def pickle_both() -> None:  # what multiprocessing.Pipe pays instead of the two above
        pickle.loads(pickle.dumps(request))

    async def event() -> None:
        anyio.Event().set()

    async def nothing() -> None:
        pass

    cases = {
        "": nothing,
        "Decoder.feed (1 frame)": feed,
        "known-frame lookup (1 frame)": lookup,
        "anyio.Lock() acquire+release": lock_default,
        "anyio.Lock(fast_acquire=True) acquire+release": lock_fast,
        "anyio.lowlevel.checkpoint()": anyio.lowlevel.checkpoint,
        "json encode (request)": json_encode,
        "json decode (response)": json_decode,
        "pickle dumps+loads (request)": pickle_both,
        "anyio.Event() + set()": event,
    }
    out: dict[str, float] = {}
    for name, op in cases.items():
        best = float("inf")
        for _ in range(batches):
            start = time.perf_counter()
            for _ in range(count):
                await op()
            best = min(best, time.perf_counter() - start)
        out[name] = best / count * 1e6
    base = out.pop("")
    return {name: max(0.0, cost - base) for name, cost in out.items()}


# -- main -------------------------------------------------------------------------


def main() -> None:
    args = parse_args(__doc__ or "")
    rtt_n = 1000 if args.quick else 5000
    tput_n = 30_000 if args.quick else 100_000
    reps = 2 if args.quick else 3
    warm = 200
    rows: list[dict[str, Any]] = []
    raw: dict[str, Any] = {}
    impls = ["drover", "raw", "mp"]
    for backend in ["asyncio", "trio"]:
        p50s: dict[str, list[float]] = {i: [] for i in impls}
        p99s: dict[str, list[float]] = {i: [] for i in impls}
        rates: dict[str, list[float]] = {i: [] for i in impls}
        all_rtts: dict[str, list[int]] = {i: [] for i in impls}

        def measure(impl: str, mode: str, count: int, warm_n: int) -> tuple[list[int], float]:
            if impl == "mp":
                return mp_run(mode, count, warm_n)
            fn: Callable[..., Awaitable[tuple[list[int], float]]] = channel_run
            return anyio.run(fn, backend, impl, mode, count, warm_n, backend=backend)

        for impl in impls:  # warm-up
            measure(impl, "echo", 500, warm)
            measure(impl, "sink", 10_000, 0)
        for _, impl in interleaved(reps, impls):
            rtts, _ = measure(impl, "echo", rtt_n, warm)
            data = sorted(rtts)
            p50s[impl].append(percentile(data, 50) / 1e3)
            p99s[impl].append(percentile(data, 99) / 1e3)
            all_rtts[impl].extend(rtts)
            _, elapsed = measure(impl, "sink", tput_n, 0)
            rates[impl].append(tput_n / elapsed)
        stats = {
            impl: {"p50_us": summary(p50s[impl]), "p99_us": summary(p99s[impl]), "msg_per_s": summary(rates[impl])}
            for impl in impls
        }
        labels = (("drover", "drover-py"), ("raw", "raw anyio floor"))
        for impl, label in labels:
            r = row(
                "channel",
                f"{label}, {backend}",
                "RTT p50",
                "us",
                stats[impl]["p50_us"],
                stats["mp"]["p50_us"],
                "mp.Pipe",
                goal=f"<= {RTT_GOAL:.1f}x" if impl == "drover" else "",
                note=f"p99 {stats[impl]['p99_us']['median']:.0f} us vs {stats['mp']['p99_us']['median']:.0f} us",
            )
            if impl == "drover":
                r["ok"] = r["cmp"] is not None and r["cmp"] <= RTT_GOAL
            rows.append(r)
            r = row(
                "channel",
                f"{label}, {backend}",
                "throughput",
                "msg/s",
                stats[impl]["msg_per_s"],
                stats["mp"]["msg_per_s"],
                "mp.Pipe",
                goal=f">= {TPUT_GOAL:.1f}x" if impl == "drover" else "",
            )
            if impl == "drover":
                r["ok"] = r["cmp"] is not None and r["cmp"] >= TPUT_GOAL
            rows.append(r)
        raw[backend] = {
            "stats": stats,
            "rtt_us_sample": {
                impl: [v / 1e3 for v in values[:: max(1, len(values) // 4000)]] for impl, values in all_rtts.items()
            },
        }
        for impl in impls:
            log(
                f"{backend} {impl}: RTT p50 {stats[impl]['p50_us']['median']:.1f} us, "
                f"p99 {stats[impl]['p99_us']['median']:.1f} us, {stats[impl]['msg_per_s']['median']:,.0f} msg/s"
            )
    notes = []
    raw["micro_us"] = {}
    for backend in ["asyncio", "trio"]:
        costs = anyio.run(micro_costs, 10_000 if args.quick else 20_000, backend=backend)
        raw["micro_us"][backend] = costs
        notes.append(f"per-operation cost on {backend} (us): " + ", ".join(f"{k} {v:.2f}" for k, v in costs.items()))
        log(notes[-1])
    global TRACER
    TRACER = None if args.quick else find_tracer()
    if TRACER is not None:
        log(f"counting the child's system calls per message ({TRACER})")
        try:
            profiles = syscall_profiles(["asyncio", "trio"])
        except (OSError, RuntimeError) as exc:
            log(f"{TRACER} failed: {exc}")
        else:
            raw["syscalls_per_message"] = profiles
            for name, per in profiles.items():
                detail = ", ".join(f"{k} {v:g}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if k != "total")
                notes.append(f"child syscalls per message ({TRACER}), {name}: {per['total']:g} ({detail})")
                log(notes[-1])
    write_result(args.out, "channel", rows, raw, notes)


if __name__ == "__main__":
    main()
