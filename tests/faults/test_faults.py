"""The fault matrix: real faults in real processes, each with its documented outcome.

Every case ends with no orphan (the autouse fixture), no lost healthy worker, and no
hang (pytest-timeout and explicit deadlines). Faults covered elsewhere are listed in
tests/faults/README.md.
"""

from __future__ import annotations

import os
import signal

import anyio
import pytest

from drover_py import ExitReasons, WorkerStartError, WorkerStatus

from ..conftest import APPS, MasterBuilder
from ..helpers import EventLog, is_running, run_json_app

pytestmark = pytest.mark.anyio
S = WorkerStatus


async def test_sigkill_while_starting_fails_start(make_master: MasterBuilder) -> None:
    master = make_master("hang_boot@1", count=2, start_timeout=30)
    log = EventLog(master)

    async def kill_the_hanging_one() -> None:
        while True:
            worker_id, status = (await log.wait_for("status-changed", count=len(log.of("status-changed")) + 1))[-1]
            assert isinstance(worker_id, int)
            hanging = [w for w in master.workers if w.slot == 1 and w.status is S.STARTING]
            if hanging and hanging[0].pid is not None:
                os.kill(hanging[0].pid, signal.SIGKILL)
                return

    async with master:
        async with anyio.create_task_group() as tg:
            tg.start_soon(kill_the_hanging_one)
            with pytest.raises(WorkerStartError) as info:
                await master.start()
        reason = info.value.reason
        assert isinstance(reason, ExitReasons.ExternalSignal) and reason.payload.signal is signal.SIGKILL
        assert info.value.slot == 1
        assert master.workers == []
    assert log.of("worker-exit") == []


async def test_sigkill_while_stopping_completes_the_shutdown(make_master: MasterBuilder) -> None:
    master = make_master("ignore_stop", count=2, stop_timeout=30)
    log = EventLog(master)
    async with master:
        await master.start()
        victim = master.workers[0]
        assert victim.pid is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(master.graceful_shutdown)
            await log.wait_for("status-changed", count=6)  # both reached STOPPING
            os.kill(victim.pid, signal.SIGKILL)
            await log.wait_for("worker-retired")
            other = master.workers[0]
            assert other.pid is not None
            os.kill(other.pid, signal.SIGKILL)  # the other ignores stop too: end the test fast
    reasons = {worker_id: reason for reason, worker_id in log.exits("worker-retired")}
    assert isinstance(reasons[victim.id], ExitReasons.ExternalSignal)
    assert log.of("worker-exit") == []


@pytest.mark.parametrize("frame", ["stopped", "shut_down", "reboot"])
async def test_unknown_or_out_of_order_message_stops_only_that_worker(make_master: MasterBuilder, frame: str) -> None:
    master = make_master(f"send@0={frame}", count=2)
    log = EventLog(master)
    async with master:
        await master.start()
        healthy = master.workers[1]
        await log.wait_for("worker-exit")
        [(reason, _)] = log.exits()
        assert reason.detail is not None
        assert ("out of order" in reason.detail) if frame != "reboot" else ("unknown message type" in reason.detail)
        assert master.get_workers_statuses() == [S.FAILED, S.STARTED]
        assert master.workers[1] == healthy
        await master.graceful_shutdown()


async def test_shutdown_during_scale_down_lets_the_drain_finish(make_master: MasterBuilder) -> None:
    master = make_master("slow_stop@1=1.0", count=2)
    log = EventLog(master)
    async with master:
        await master.start()
        async with anyio.create_task_group() as tg:
            tg.start_soon(master.scale, 1)
            await log.wait_for("status-changed", count=5)  # slot 1 is STOPPING, draining
            await master.graceful_shutdown()
    reasons = [reason for reason, _ in log.exits("worker-retired")]
    assert len(reasons) == 2
    assert all(isinstance(r, ExitReasons.NormalExit) for r in reasons), reasons


async def test_old_worker_dies_during_reload(make_master: MasterBuilder) -> None:
    master = make_master(count=2)
    log = EventLog(master)
    async with master:
        await master.start()
        old_slot1 = master.workers[1]
        assert old_slot1.pid is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(master.graceful_reload, None, None)
            await log.wait_for("worker-started", count=3)  # slot 0's replacement is up
            os.kill(old_slot1.pid, signal.SIGKILL)
        assert [reason_id for _, reason_id in log.exits()] == [old_slot1.id]
        assert master.get_workers_statuses() == [S.STARTED, S.STARTED]
        assert old_slot1.id not in {w.id for w in master.workers}
        await master.graceful_shutdown()


async def test_hanging_exit_handler_is_contained(make_master: MasterBuilder) -> None:
    master = make_master(count=2)
    log = EventLog(master)
    entered = anyio.Event()

    async def hang(reason: ExitReasons.ExitReason, worker_id: int) -> None:
        entered.set()
        await anyio.sleep_forever()

    master.on("worker-exit", hang)
    async with master:
        await master.start()
        victim = master.workers[0]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        with anyio.fail_after(10):
            await entered.wait()
        await master.restart_worker_by_id(victim.id)  # the master still works
        assert master.get_workers_statuses() == [S.STARTED, S.STARTED]
        with anyio.fail_after(20):
            await master.graceful_shutdown()
    assert len(log.of("worker-retired")) == 2  # leaving the block cancelled the handler


async def test_sixty_four_workers(make_master: MasterBuilder) -> None:
    master = make_master(count=64, start_timeout=60, stop_timeout=30)
    async with master:
        with anyio.fail_after(60):
            await master.start()
        assert master.get_workers_statuses() == [S.STARTED] * 64
        pids = [w.pid for w in master.workers]
        with anyio.fail_after(60):
            await master.graceful_shutdown()
    assert not any(pid is not None and is_running(pid) for pid in pids)


@pytest.mark.parametrize("master_backend", ["asyncio", "trio"])
def test_fd_pressure_gives_a_clear_error_and_leaks_nothing(master_backend: str) -> None:
    outcome = run_json_app(APPS / "fd_master.py", master_backend)
    assert outcome["error"] is not None and "Too many open files" in outcome["error"]
    assert "cannot spawn worker" in outcome["error"]
    assert outcome["cause"] == "OSError"
    assert outcome["workers"] == 0
    assert outcome["fds_after"] == outcome["fds_before"]
