"""Custom messages and requests between the master and its workers, both ways."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from drover_py import (
    ExitReasons,
    Master,
    MasterFactory,
    PeerGoneError,
    ProtocolError,
    RemoteError,
    RequestTimeoutError,
    UnknownWorkerError,
)
from drover_py._wire.conversation import WINDOW, YIELD_EVERY

from .conftest import APPS
from .helpers import EventLog

pytestmark = pytest.mark.anyio

TALKER = APPS / "talk_worker.py"
MODES = ["async", "sync"]


def talker(flags: str = "", count: int = 1, mode: str = "async", **options: Any) -> Master:
    if mode == "sync":
        flags = f"sync,{flags}"
    options.setdefault("start_timeout", 20.0)
    options.setdefault("stop_timeout", 10.0)
    options.setdefault("kill_timeout", 2.0)
    return MasterFactory.create(script=TALKER, count=count, env={"TALK": flags}, **options)


def messages(log: EventLog, key: str) -> list[tuple[int, Any]]:
    """Return (worker_id, payload[key]) of the messages carrying ``key``."""
    found = []
    for worker_id, payload in log.of("message"):
        assert isinstance(worker_id, int) and isinstance(payload, dict)
        if key in payload:
            found.append((worker_id, payload[key]))
    return found


async def wait_messages(log: EventLog, key: str, count: int, timeout: float = 15.0) -> list[tuple[int, Any]]:
    with anyio.fail_after(timeout):
        while len(messages(log, key)) < count:
            await log.wait_for("message", len(log.of("message")) + 1, timeout=timeout)
    return messages(log, key)


@pytest.mark.parametrize("mode", MODES)
async def test_worker_message_arrives_as_an_event_with_its_id(mode: str) -> None:
    master = talker("hello", count=2, mode=mode)
    log = EventLog(master)
    async with master:
        await master.start()
        hellos = await wait_messages(log, "hello", 2)
        by_slot = {w.slot: w.id for w in master.workers}
        assert sorted(hellos) == sorted((by_slot[slot], slot) for slot in (0, 1))
        await master.graceful_shutdown()


@pytest.mark.parametrize("mode", MODES)
async def test_messages_to_a_worker_arrive_in_order_past_the_credit_window(mode: str) -> None:
    master = talker(mode=mode)
    log = EventLog(master)
    async with master:
        await master.start()
        [worker] = master.workers
        filler = "x" * 2000
        for i in range(300):  # 600 kB, over twice the window: the sender waits for credit
            await master.send(worker.id, {"i": i, "text": "é\n\u2028", "filler": filler})
        echoes = await wait_messages(log, "echo", 300)
        expected = [{"i": i, "text": "é\n\u2028", "filler": filler} for i in range(300)]
        assert [payload for _, payload in echoes] == expected
        await master.graceful_shutdown()


@pytest.mark.parametrize("handlers", ["plain", "coroutine", "both"])
async def test_a_raising_message_handler_is_contained_and_the_next_message_delivered(handlers: str) -> None:
    master = talker()
    seen: list[tuple[str, object]] = []
    all_seen = anyio.Event()

    def record(kind: str, payload: object) -> None:
        seen.append((kind, payload))
        if len(seen) == (6 if handlers == "both" else 3):
            all_seen.set()
        if payload == {"echo": 0}:
            raise RuntimeError("handler bug")

    def plain(worker_id: int, payload: object) -> None:
        record("plain", payload)

    async def coroutine(worker_id: int, payload: object) -> None:
        await anyio.lowlevel.checkpoint()
        record("coroutine", payload)

    if handlers in ("plain", "both"):
        master.on("message", plain)
    if handlers in ("coroutine", "both"):
        master.on("message", coroutine)
    async with master:
        await master.start()
        [worker] = master.workers
        for i in range(3):
            await master.send(worker.id, i)  # echoed back as {"echo": i}
        with anyio.fail_after(15):
            await all_seen.wait()
        kinds = ["plain", "coroutine"] if handlers == "both" else [handlers]
        assert seen == [(kind, {"echo": i}) for i in range(3) for kind in kinds]
        await master.graceful_shutdown()


async def test_broadcast_reaches_every_started_worker() -> None:
    master = talker(count=3)
    log = EventLog(master)
    async with master:
        await master.start()
        reached = await master.broadcast(["all", 1])
        assert reached == sorted(w.id for w in master.workers)
        echoes = await wait_messages(log, "echo", 3)
        assert sorted(worker_id for worker_id, _ in echoes) == reached
        assert all(payload == ["all", 1] for _, payload in echoes)
        await master.graceful_shutdown()


@pytest.mark.parametrize("mode", MODES)
async def test_master_requests_a_worker(mode: str) -> None:
    master = talker(mode=mode)
    async with master:
        await master.start()
        [worker] = master.workers
        assert await master.request(worker.id, "add", {"a": 2, "b": 40}) == 42
        with pytest.raises(RemoteError) as failed:
            await master.request(worker.id, "fail")
        assert (failed.value.error_type, failed.value.remote_message) == ("ValueError", "bad input")
        with pytest.raises(RemoteError) as missing:
            await master.request(worker.id, "no-such-thing")
        assert missing.value.error_type == "NoHandler" and "no-such-thing" in missing.value.remote_message
        # concurrent requests each get their own answer
        results: dict[int, object] = {}

        async def ask(i: int) -> None:
            results[i] = await master.request(worker.id, "add", {"a": i, "b": 1000})

        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(ask, i)
        assert results == {i: i + 1000 for i in range(100)}
        await master.graceful_shutdown()


@pytest.mark.parametrize("mode", MODES)
async def test_request_timeout_leaves_no_stale_answer(mode: str) -> None:
    master = talker(mode=mode)
    async with master:
        await master.start()
        [worker] = master.workers
        with pytest.raises(RequestTimeoutError, match="'slow'"):
            await master.request(worker.id, "slow", {"seconds": 0.5}, timeout=0.1)
        # the late answer of the timed-out request must not reach the next request
        assert await master.request(worker.id, "slow", {"seconds": 0.6}) == "late"
        assert await master.request(worker.id, "add", {"a": 1, "b": 1}) == 2
        # a short timeout fires while a request with a longer one waits
        answers: list[object] = []

        async def long_request() -> None:
            answers.append(await master.request(worker.id, "slow", {"seconds": 0.2}, timeout=60))

        async with anyio.create_task_group() as tg:
            tg.start_soon(long_request)
            with anyio.fail_after(20), pytest.raises(RequestTimeoutError, match="'slow'"):
                await master.request(worker.id, "slow", {"seconds": 0.2}, timeout=0.05)
        assert answers == ["late"]
        await master.graceful_shutdown()


@pytest.mark.parametrize("mode", MODES)
async def test_request_to_a_worker_that_dies_mid_call_fails_at_once(mode: str) -> None:
    master = talker(mode=mode)
    log = EventLog(master)
    async with master:
        await master.start()
        [worker] = master.workers
        with anyio.fail_after(10):  # far below the request's own 30 s timeout
            with pytest.raises(PeerGoneError, match=f"worker {worker.id}"):
                await master.request(worker.id, "die")
        [(reason, worker_id)] = await log.wait_for("worker-exit")
        assert worker_id == worker.id and isinstance(reason, ExitReasons.AbnormalExit) and reason.payload.code == 9
        with pytest.raises(PeerGoneError):
            await master.send(worker.id, "anyone there?")
        with pytest.raises(UnknownWorkerError):
            await master.request(12345, "add", {"a": 1, "b": 2})
        await master.graceful_shutdown()


@pytest.mark.parametrize("mode", MODES)
async def test_worker_requests_the_master(mode: str) -> None:
    master = talker("ask=double,ask@1=broken", count=2, mode=mode)
    log = EventLog(master)

    async def double(worker_id: int, payload: dict[str, int]) -> dict[str, int]:
        await anyio.sleep(0)  # sync-ok: a checkpoint, so this handler really is async
        return {"worker": worker_id, "doubled": payload["n"] * 2}

    def broken(worker_id: int, payload: object) -> None:
        raise KeyError("nope")

    master.handle("double", double)
    master.handle("broken", broken)
    async with master:
        await master.start()
        await wait_messages(log, "asked", 2)
        asked = [payload for _, payload in log.of("message") if isinstance(payload, dict) and "asked" in payload]
        by_slot = {w.slot: w.id for w in master.workers}
        assert {"asked": "double", "result": {"worker": by_slot[0], "doubled": 0}} in asked
        assert {"asked": "broken", "error": ["KeyError", "'nope'"]} in asked
        # a request from the master can make the worker ask the master in turn
        relayed = await master.request(by_slot[0], "relay", {"name": "double", "payload": {"n": 21}})
        assert relayed == {"worker": by_slot[0], "doubled": 42}
        master.handle("double", None)
        with pytest.raises(RemoteError) as missing:
            await master.request(by_slot[0], "relay", {"name": "double", "payload": {"n": 1}})
        assert missing.value.error_type == "RemoteError"  # the worker's request failed with NoHandler
        assert "NoHandler" in missing.value.remote_message
        for bad in (None, 0, "5"):  # the worker's request refuses a bad timeout, naming it
            with pytest.raises(RemoteError) as refused:
                await master.request(by_slot[0], "relay", {"name": "double", "timeout": bad})
            assert refused.value.error_type == "ConfigError"
            assert "option 'timeout'" in refused.value.remote_message
        await master.graceful_shutdown()


@pytest.mark.parametrize("mode", MODES)
async def test_flood_of_messages_does_not_delay_a_graceful_stop(mode: str) -> None:
    master = talker("flood", count=2, mode=mode, stop_timeout=5.0)
    log = EventLog(master)

    async def slow_consumer(worker_id: int, payload: object) -> None:
        await anyio.sleep(0.001)  # sync-ok: the master handles messages slower than they come

    master.on("message", slow_consumer)
    async with master:
        await master.start()
        await wait_messages(log, "flood", 200)
        ids = [w.id for w in master.workers]

        async def flood_workers() -> None:
            while True:
                await master.broadcast({"from": "master"})

        async with anyio.create_task_group() as tg:
            tg.start_soon(flood_workers)
            await master.graceful_shutdown()
            tg.cancel_scope.cancel()
        retired = log.exits("worker-retired")
        assert sorted(worker_id for _, worker_id in retired) == ids
        for reason, _ in retired:  # stopped and quit in time: no escalation
            assert isinstance(reason, ExitReasons.NormalExit) and reason.detail is None


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
async def test_a_sender_that_never_has_to_wait_still_lets_other_tasks_run(backend: str) -> None:
    # The window holds thousands of small messages: a send loop must not hold the
    # worker's event loop (its reader, its other tasks) until the credit runs out.
    master = talker("fairness" + (",trio" if backend == "trio" else ""))
    log = EventLog(master)
    async with master:
        await master.start()
        [(_, sent)] = await wait_messages(log, "sends_before_another_task_ran", 1)
        # Without the periodic yield it is thousands (until the credit runs out). The
        # task runs at the first yield (after YIELD_EVERY = 64 sends), or on trio, which
        # runs a task started meanwhile in its next batch, at the second.
        assert YIELD_EVERY == 64
        assert 1 <= sent <= 2 * YIELD_EVERY
        await master.graceful_shutdown()


async def test_bad_payloads_are_refused_and_the_worker_lives_on() -> None:
    master = talker()
    async with master:
        await master.start()
        [worker] = master.workers
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            await master.send(worker.id, {1, 2})
        with pytest.raises(ProtocolError, match="over the limit"):
            await master.send(worker.id, "x" * 70_000)
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            await master.broadcast(object())
        assert await master.request(worker.id, "add", {"a": 1, "b": 2}) == 3
        await master.graceful_shutdown()


async def test_worker_ignoring_credit_is_stopped_and_others_are_kept() -> None:
    master = talker(f"rawflood@0={WINDOW // 4096 + 1}", count=2)  # frames of over 4 KiB: past the window
    log = EventLog(master)
    blocked = anyio.Event()

    async def stuck(worker_id: int, payload: object) -> None:
        await blocked.wait()  # consume nothing, so no credit goes back

    master.on("message", stuck)
    async with master:
        await master.start()
        by_slot = {w.slot: w.id for w in master.workers}
        [(reason, worker_id)] = await log.wait_for("worker-exit")
        assert worker_id == by_slot[0]
        assert isinstance(reason, ExitReasons.ExitReason) and "without credit" in str(reason.detail)
        blocked.set()
        assert await master.request(by_slot[1], "add", {"a": 1, "b": 2}) == 3
        await master.graceful_shutdown()
