"""Heartbeats, recycling, halting on "cannot start", and escalation details."""

from __future__ import annotations

import os
import signal

import anyio
import pytest

from drover_py import ConfigError, ExitReasons, RecyclePolicy, RestartLimitError, RestartPolicy, WorkerStatus

from .conftest import APPS, MasterBuilder
from .helpers import EventLog

pytestmark = pytest.mark.anyio
S = WorkerStatus


@pytest.mark.parametrize("script", ["worker.py", "sync_worker.py"])
async def test_frozen_worker_is_detected_by_heartbeat(make_master: MasterBuilder, script: str) -> None:
    master = make_master(count=2, heartbeat_timeout=1.5, kill_timeout=0.5, script=APPS / script)
    log = EventLog(master)
    async with master:
        await master.start()
        frozen, healthy = master.workers
        assert frozen.pid is not None
        os.kill(frozen.pid, signal.SIGSTOP)  # SIGTERM stays pending on a stopped process
        await log.wait_for("worker-exit")
        [(reason, worker_id)] = log.exits()
        assert worker_id == frozen.id
        assert isinstance(reason, ExitReasons.ExternalSignal) and reason.payload.signal is signal.SIGKILL
        assert reason.detail is not None and "no heartbeat for 1.5 s" in reason.detail
        assert "no heartbeat" in str(reason)
        assert master.workers[1] == healthy
        await master.graceful_shutdown()


async def test_heartbeats_keep_a_healthy_worker_alive(make_master: MasterBuilder) -> None:
    master = make_master(count=1, heartbeat_timeout=0.6)
    log = EventLog(master)
    async with master:
        await master.start()
        with anyio.move_on_after(2.0):  # several heartbeat periods; nothing may happen
            await log.wait_for("worker-exit", timeout=10)
        assert log.of("worker-exit") == []
        assert master.get_workers_statuses() == [S.STARTED]
        await master.graceful_shutdown()


async def test_cannot_start_exit_code_halts_the_policy(make_master: MasterBuilder) -> None:
    master = make_master("exit_after_start@1=3", count=2, restart=RestartPolicy(delay=0))
    log = EventLog(master)
    async with master:
        await master.start()
        with anyio.fail_after(15):
            with pytest.raises(RestartLimitError, match="code 3, which means it cannot start"):
                await master.supervise()
        assert len(log.of("worker-exit")) == 1  # no restart was even tried
        await master.graceful_shutdown()


async def test_escalation_is_in_the_retirement_reason(make_master: MasterBuilder) -> None:
    master = make_master("ignore_stop,ignore_term", count=1, stop_timeout=0.3, kill_timeout=0.3)
    log = EventLog(master)
    async with master:
        await master.start()
        await master.graceful_shutdown()
    [(reason, _)] = log.exits("worker-retired")
    assert reason.detail == "no graceful stop within 0.3 s, SIGTERM ignored for 0.3 s"


async def test_recycle_by_age(make_master: MasterBuilder) -> None:
    master = make_master(count=2, recycle=RecyclePolicy(max_age=0.5, jitter=0.0, check_interval=5))
    log = EventLog(master)
    async with master:
        await master.start()
        first = {w.id for w in master.workers}
        retired = await log.wait_for("worker-retired", count=2)
        assert {worker_id for _, worker_id in retired[:2]} == first
        assert log.of("worker-exit") == []
        await master.graceful_shutdown()


async def test_recycle_by_memory(make_master: MasterBuilder) -> None:
    master = make_master(count=1, recycle=RecyclePolicy(max_rss=1024, check_interval=0.2))
    log = EventLog(master)
    async with master:
        await master.start()
        [old] = master.workers
        [(reason, worker_id)] = (await log.wait_for("worker-retired"))[:1]
        assert worker_id == old.id and isinstance(reason, ExitReasons.NormalExit)
        await master.graceful_shutdown()


@pytest.mark.parametrize(
    ("options", "option"),
    [({"jitter": 1.0}, "recycle.jitter"), ({"max_rss": 0}, "recycle.max_rss"), ({"max_age": -1}, "recycle.max_age")],
)
def test_bad_recycle_options(options: dict[str, object], option: str) -> None:
    with pytest.raises(ConfigError) as info:
        RecyclePolicy(**options)  # type: ignore[arg-type]
    assert info.value.option == option
