"""4b. Custom messages and requests over the bus vs multiprocessing.Pipe.

A real master (this process, on asyncio or trio) with one real worker
(``apps/talk_worker.py``: `MessageBus` on the same backend, or the `SyncMessageBus`),
talking through the public API. Reference, in the same run and interleaved: a child with
two ``multiprocessing.Pipe(duplex=False)`` connections (``apps/mp_talk_peer.py``),
blocking ``send``/``recv`` of the same small dict. Both peers stay up for the whole
case (warm), so process start-up is never timed.

- request RTT, master -> worker: ``await master.request(wid, "echo", payload)`` timed in
  the master; worker -> master: ``await mb.request("echo", payload)`` timed in the worker.
  Reference: a send + recv round trip timed on either side. p50 (and p99) per run.
- throughput, worker -> master: the worker calls ``mb.send(payload)`` n times, each
  arriving at the master's "message" handler, then a request that the master answers
  once it has handled them all; timed in the worker. Master -> worker:
  ``master.send(wid, payload)`` n times, then ``master.request(wid, "count")`` (answered
  after every message was handled); timed in the master. Reference: n sends, then an ack.

- request floors (``_request_floor.py``, master -> worker, interleaved with the rest):
  the least a request round trip costs with JSON frames and a reader task that wakes
  the asker, on raw anyio (asyncio and trio), the same with the asker reading its own
  answer (no reader task: one request at a time), and on asyncio-native I/O (``add_reader``
  kept registered, answers resolved in the selector's callback), which drover-py's
  source may not use. They show how much of drover-py's round trip is its own.

Goals: RTT p50 <= 1.5x multiprocessing, throughput >= 0.8x.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import time
from contextlib import AsyncExitStack
from typing import Any

import anyio
from _common import APPS, PYTHON, child_env, interleaved, log, parse_args, row, summary, write_result
from _request_floor import open_floor_peer

from drover_py import MasterFactory

WORKER = APPS / "talk_worker.py"
MP_PEER = APPS / "mp_talk_peer.py"
PAYLOAD = {"n": 1}
RTT_GOAL = 1.5
TPUT_GOAL = 0.8
#: (label, master backend, worker bus, request floors measured with it: see _request_floor.py)
CASES = (
    ("asyncio", "asyncio", "asyncio", ("anyio", "direct", "native")),
    ("trio", "trio", "trio", ("anyio", "direct")),
    ("sync bus", "asyncio", "sync", ()),
)
FLOOR_LABELS = {
    "anyio": "request floor: raw anyio + JSON",
    "direct": "request floor: raw anyio + JSON, asker reads",
    "native": "request floor: asyncio-native + JSON",
}
#: measure -> (metric, unit, higher is better)
MEASURES = {
    "rtt_m2w": ("request RTT p50, master->worker", "us", False),
    "rtt_w2m": ("request RTT p50, worker->master", "us", False),
    "tput_w2m": ("throughput, worker->master", "msg/s", True),
    "tput_m2w": ("throughput, master->worker", "msg/s", True),
}


class MpPeer:
    """The reference child, kept running for the whole case."""

    def __init__(self) -> None:
        child_recv, self.send_conn = multiprocessing.Pipe(duplex=False)
        self.recv_conn, child_send = multiprocessing.Pipe(duplex=False)
        fds = (os.dup(child_recv.fileno()), os.dup(child_send.fileno()))
        child_recv.close()
        child_send.close()
        self.proc = subprocess.Popen(
            [PYTHON, str(MP_PEER)],
            pass_fds=fds,
            env=child_env(BENCH_CHANNEL=f"{fds[0]},{fds[1]}"),
            start_new_session=True,
        )
        for fd in fds:
            os.close(fd)

    def rtt_m2w(self, n: int) -> tuple[float, float]:
        send, recv = self.send_conn.send, self.recv_conn.recv
        send(("echo", n))
        rtts = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            send(PAYLOAD)
            recv()
            rtts.append(time.perf_counter_ns() - t0)
        rtts.sort()
        return rtts[n // 2] / 1e3, rtts[min(n - 1, n * 99 // 100)] / 1e3

    def rtt_w2m(self, n: int) -> tuple[float, float]:
        send, recv = self.send_conn.send, self.recv_conn.recv
        send(("rtt", n))
        for _ in range(n):
            send(recv())
        p50, p99 = recv()
        return p50 / 1e3, p99 / 1e3

    def tput_w2m(self, n: int) -> float:
        self.send_conn.send(("flood", n))
        recv = self.recv_conn.recv
        for _ in range(n):
            recv()
        self.send_conn.send("ack")
        return float(n / recv())

    def tput_m2w(self, n: int) -> float:
        send = self.send_conn.send
        t0 = time.perf_counter()
        send(("sink", n))
        for _ in range(n):
            send(PAYLOAD)
        assert self.recv_conn.recv() == n
        return n / (time.perf_counter() - t0)

    def close(self) -> None:
        self.send_conn.close()
        try:
            self.proc.wait(20)
        finally:
            self.recv_conn.close()
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)


async def run_case(
    backend: str, worker_bus: str, floors: tuple[str, ...], reps: int, rtt_n: int, tput_n: int
) -> dict[str, dict[str, list[float]]]:
    """Return {"drover" | "mp" | floor: {measure: [per-run value], measure + "_p99": [...]}}.

    The floors (on ``backend``, this run's) measure "rtt_m2w" only.
    """
    master = MasterFactory.create(
        script=str(WORKER), count=1, env=child_env(BENCH_WORKER_BACKEND=worker_bus), start_timeout=60, stop_timeout=10
    )
    seen = 0
    flood_target = 0

    async def on_message(worker_id: int, payload: object) -> None:
        nonlocal seen
        seen += 1

    async def on_flood_done(worker_id: int, payload: object) -> None:
        if seen < flood_target:  # cannot happen: messages are handled in order
            raise RuntimeError(f"flood_done after {seen} of {flood_target} messages")

    master.on("message", on_message)
    master.handle("echo", lambda worker_id, payload: payload)
    master.handle("flood_done", on_flood_done)
    results: dict[str, dict[str, list[float]]] = {impl: {} for impl in ["drover", "mp", *floors]}

    def add(impl: str, key: str, value: float) -> None:
        results[impl].setdefault(key, []).append(value)

    mp = MpPeer()
    try:
        async with master, AsyncExitStack() as stack:
            peers = {floor: await stack.enter_async_context(open_floor_peer(backend, floor)) for floor in floors}
            with anyio.fail_after(300):
                await master.start()
                [wid] = [w.id for w in master.workers]

                async def drover_once(measure: str, n: int) -> None:
                    nonlocal seen, flood_target
                    if measure == "rtt_m2w":
                        rtts = []
                        for _ in range(n):
                            t0 = time.perf_counter_ns()
                            await master.request(wid, "echo", PAYLOAD, timeout=60)
                            rtts.append(time.perf_counter_ns() - t0)
                        rtts.sort()
                        add("drover", measure, rtts[n // 2] / 1e3)
                        add("drover", measure + "_p99", rtts[min(n - 1, n * 99 // 100)] / 1e3)
                    elif measure == "rtt_w2m":
                        result = await master.request(wid, "rtt", n, timeout=120)
                        assert isinstance(result, list)
                        p50, p99 = result
                        add("drover", measure, p50 / 1e3)
                        add("drover", measure + "_p99", p99 / 1e3)
                    elif measure == "tput_w2m":
                        seen, flood_target = 0, n
                        seconds = await master.request(wid, "flood", n, timeout=120)
                        assert isinstance(seconds, float) and seen == n, (seconds, seen)
                        add("drover", measure, n / seconds)
                    else:
                        await master.request(wid, "count", None)  # reset the worker's counter
                        start = time.perf_counter()
                        for _ in range(n):
                            await master.send(wid, PAYLOAD)
                        got = await master.request(wid, "count", None, timeout=120)
                        elapsed = time.perf_counter() - start
                        assert got == n, (got, n)
                        add("drover", measure, n / elapsed)

                def mp_once(measure: str, n: int) -> None:
                    value = getattr(mp, measure)(n)
                    if isinstance(value, tuple):
                        add("mp", measure, value[0])
                        add("mp", measure + "_p99", value[1])
                    else:
                        add("mp", measure, value)

                async def floor_once(floor: str, n: int) -> None:
                    p50, p99 = await peers[floor].rtt(n, PAYLOAD)
                    add(floor, "rtt_m2w", p50)
                    add(floor, "rtt_m2w_p99", p99)

                def size(measure: str) -> int:
                    return rtt_n if measure.startswith("rtt") else tput_n

                for measure in MEASURES:  # warm-up, then forget
                    await drover_once(measure, size(measure) // 5)
                    mp_once(measure, size(measure) // 5)
                for floor in floors:
                    await floor_once(floor, rtt_n // 5)
                results = {impl: {} for impl in ["drover", "mp", *floors]}
                for _, impl in interleaved(reps, ["drover", "mp", *floors]):
                    if impl in peers:
                        await floor_once(impl, rtt_n)
                        continue
                    for measure in MEASURES:
                        if impl == "drover":
                            await drover_once(measure, size(measure))
                        else:
                            mp_once(measure, size(measure))
                await master.graceful_shutdown()
    finally:
        mp.close()
    return results


def main() -> None:
    args = parse_args(__doc__ or "")
    reps = 3 if args.quick else 5
    rtt_n = 1000 if args.quick else 3000
    tput_n = 10_000 if args.quick else 30_000
    rows: list[dict[str, Any]] = []
    raw: dict[str, Any] = {}
    for label, backend, worker_bus, floors in CASES:
        results = anyio.run(run_case, backend, worker_bus, floors, reps, rtt_n, tput_n, backend=backend)
        stats = {impl: {key: summary(values) for key, values in per.items()} for impl, per in results.items()}
        raw[label] = {"master": backend, "worker": worker_bus, "stats": stats}
        for measure, (metric, unit, higher) in MEASURES.items():
            goal = f">= {TPUT_GOAL:.1f}x" if higher else f"<= {RTT_GOAL:.1f}x"
            note = ""
            if not higher:
                note = f"p99 {stats['drover'][measure + '_p99']['median']:.0f} us vs {stats['mp'][measure + '_p99']['median']:.0f} us"
            r = row(
                "talk",
                f"drover-py, {label}",
                metric,
                unit,
                stats["drover"][measure],
                stats["mp"][measure],
                "mp.Pipe",
                goal=goal,
                note=note,
            )
            cmp = r["cmp"]
            r["ok"] = cmp is not None and (cmp >= TPUT_GOAL if higher else cmp <= RTT_GOAL)
            rows.append(r)
            log(
                f"{label}: {metric}: drover-py {stats['drover'][measure]['median']:,.1f} {unit}, "
                f"mp.Pipe {stats['mp'][measure]['median']:,.1f} {unit}, ratio {cmp:.2f}"
            )
        for floor in floors:
            metric = MEASURES["rtt_m2w"][0]
            value = stats[floor]["rtt_m2w"]
            note = f"p99 {stats[floor]['rtt_m2w_p99']['median']:.0f} us; drover-py is {stats['drover']['rtt_m2w']['median'] / value['median']:.2f}x this"
            r = row(
                "talk",
                f"{FLOOR_LABELS[floor]}, {label}",
                metric,
                "us",
                value,
                stats["mp"]["rtt_m2w"],
                "mp.Pipe",
                note=note,
            )
            rows.append(r)
            log(f"{label}: {FLOOR_LABELS[floor]}: {value['median']:.1f} us, ratio to mp.Pipe {r['cmp']:.2f}; {note}")
    notes = [
        f"one worker per case, warm; {reps} runs per measure, drover-py, mp.Pipe and the request floors alternating; "
        f"{rtt_n} round trips and {tput_n} messages per run; payload {PAYLOAD}"
    ]
    write_result(args.out, "talk", rows, raw, notes)


if __name__ == "__main__":
    main()
