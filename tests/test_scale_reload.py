"""Runtime scale, graceful reload, upgrade with rollback and canary, restart policy, signals."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from drover_py import (
    ConfigError,
    ExitReasons,
    OperationInterruptedError,
    ReloadError,
    RestartLimitError,
    RestartPolicy,
    StateError,
    WorkerStatus,
)

from .conftest import APPS, BOTH_SPAWN_MODES, MasterBuilder
from .helpers import EventLog, is_running, kill_on_exit

pytestmark = pytest.mark.anyio
Records = Callable[[], list[tuple[int, str, str]]]
S = WorkerStatus


def events_by_pid(records: Records) -> dict[int, list[str]]:
    by_pid: dict[int, list[str]] = {}
    for pid, event, _ in records():
        by_pid.setdefault(pid, []).append(event)
    return by_pid


def tags(records: Records) -> dict[int, str]:
    return {pid: event.split(":", 1)[1] for pid, event, _ in records() if event.startswith("tag:")}


@BOTH_SPAWN_MODES
async def test_scale_up_and_down(make_master: MasterBuilder, records: Records) -> None:
    master = make_master(count=2)
    log = EventLog(master)
    async with master:
        await master.start()
        await master.scale(4)
        assert master.get_workers_statuses() == [S.STARTED] * 4
        assert [w.slot for w in master.workers] == [0, 1, 2, 3]
        assert master.config.count == 4
        kept = master.workers[:1]
        doomed = master.workers[1:]
        await master.scale(1)
        assert master.workers == kept
        assert master.config.count == 1
        assert {i for _, i in log.exits("worker-retired")} == {w.id for w in doomed}
        by_pid = events_by_pid(records)
        for worker in doomed:
            assert worker.pid is not None
            assert by_pid[worker.pid][-3:] == ["stop", "quit", "exit"]
        with pytest.raises(ConfigError, match="count"):
            await master.scale(0)
        await master.graceful_shutdown()
    assert log.of("worker-exit") == []


async def test_scale_before_start_sets_the_count(make_master: MasterBuilder) -> None:
    master = make_master(count=1)
    async with master:
        await master.scale(3)
        assert master.workers == []
        await master.start()
        assert master.get_workers_statuses() == [S.STARTED] * 3
        await master.graceful_shutdown()


async def test_failed_scale_up_keeps_the_old_workers(make_master: MasterBuilder) -> None:
    master = make_master("crash_boot@2", count=2)
    async with master:
        await master.start()
        before = master.workers
        with pytest.raises(Exception) as info:
            await master.scale(4)
        assert isinstance(info.value.reason, ExitReasons.AbnormalExit)  # type: ignore[attr-defined]
        assert master.workers == before and master.config.count == 2
        await master.graceful_shutdown()


async def test_reload_count_one_starts_new_before_stopping_old(make_master: MasterBuilder, records: Records) -> None:
    master = make_master(count=1)
    log = EventLog(master)
    async with master:
        await master.start()
        [old] = master.workers
        await master.graceful_reload()
        [new] = master.workers
        assert new.id != old.id and new.pid != old.pid and new.slot == 0 and new.status is S.STARTED
        await master.graceful_shutdown()
    events: list[tuple[int | None, str]] = [(pid, event) for pid, event, _ in records()]
    assert events.index((new.pid, "started")) < events.index((old.pid, "stop"))
    assert log.of("worker-exit") == []


async def test_reload_in_batches_replaces_every_worker(make_master: MasterBuilder) -> None:
    master = make_master(count=4)
    async with master:
        await master.start()
        before = master.workers
        old_ids = {w.id for w in before}
        report = await master.graceful_reload(batch_size=3, canary=0.2)
        assert master.get_workers_statuses() == [S.STARTED] * 4
        # the report, slot by slot: which pid went, which came, how fast it was ready
        assert report.workers == 4 and report.canary is True and not report.rolled_back
        assert [s.slot for s in report.slots] == [0, 1, 2, 3]
        assert [s.old_pid for s in report.slots] == [w.pid for w in before]
        assert [(s.new_id, s.new_pid) for s in report.slots] == [(w.id, w.pid) for w in master.workers]
        assert all(0 < s.ready_seconds <= report.seconds for s in report.slots)
        assert not old_ids & {w.id for w in master.workers}
        assert [w.slot for w in master.workers] == [0, 1, 2, 3]
        await master.graceful_shutdown()


@BOTH_SPAWN_MODES
async def test_upgrade_switches_script_and_env_on_success(
    make_master: MasterBuilder, records: Records, tmp_path: Path
) -> None:
    v2 = tmp_path / "worker_v2.py"
    v2.write_text((APPS / "worker.py").read_text())
    master = make_master(count=2, env={"TEST_TAG": "v1"})
    async with master:
        await master.start()
        new_env = {**master.config.env, "TEST_TAG": "v2"}
        await master.graceful_reload(script=v2, env=new_env)
        assert master.config.script == v2.resolve()
        assert master.config.env["TEST_TAG"] == "v2"
        pid_tags = tags(records)
        assert [pid_tags[w.pid] for w in master.workers if w.pid is not None] == ["v2", "v2"]
        await master.graceful_shutdown()


@BOTH_SPAWN_MODES
async def test_reload_rolls_back_when_a_replacement_crashes(make_master: MasterBuilder, records: Records) -> None:
    master = make_master(count=3, env={"TEST_TAG": "v1"})
    log = EventLog(master)
    async with master:
        await master.start()
        old_config = master.config
        bad_env = {**old_config.env, "TEST_TAG": "v2", "TEST_BEHAVIOUR": "crash_boot@1"}
        with pytest.raises(ReloadError) as info:
            await master.graceful_reload(env=bad_env)
        reason = info.value.reason
        assert isinstance(reason, ExitReasons.AbnormalExit) and reason.payload.code == 3
        assert info.value.slot == 1
        assert "1 slot(s) rolled back" in str(info.value)
        report = info.value.report
        assert report is not None and report.rolled_back and report.canary is None
        assert [s.slot for s in report.slots] == [0]  # slot 0 had switched, then went back
        assert report.slots[0].old_pid not in {w.pid for w in master.workers}
        assert master.config == old_config
        assert master.get_workers_statuses() == [S.STARTED] * 3
        pid_tags = tags(records)
        assert [pid_tags[w.pid] for w in master.workers if w.pid is not None] == ["v1"] * 3
        await master.graceful_shutdown()
    assert log.of("worker-exit") == []


@BOTH_SPAWN_MODES
async def test_reload_rolls_back_when_the_canary_dies(make_master: MasterBuilder) -> None:
    master = make_master(count=2, env={"TEST_TAG": "v1"})
    log = EventLog(master)
    async with master:
        await master.start()
        before = master.workers
        bad_env = {**master.config.env, "TEST_BEHAVIOUR": "exit_after_start=4"}
        with pytest.raises(ReloadError, match="canary window") as info:
            await master.graceful_reload(env=bad_env, canary=5.0)
        reason = info.value.reason
        assert isinstance(reason, ExitReasons.AbnormalExit) and reason.payload.code == 4
        assert info.value.stderr_tail == "exiting with code 4"
        assert info.value.report is not None and info.value.report.canary is False
        assert info.value.report.slots == ()  # the canary's slots never switched
        assert master.workers == before  # the old workers were never touched
        await master.graceful_shutdown()
    assert log.of("worker-exit") == []


async def test_reload_needs_a_started_master(make_master: MasterBuilder) -> None:
    master = make_master(count=1)
    async with master:
        with pytest.raises(StateError, match="start"):
            await master.graceful_reload()
        with pytest.raises(ConfigError, match="script"):
            await master.graceful_reload(script="/nonexistent.py")


async def test_concurrent_operations_are_serialised(make_master: MasterBuilder) -> None:
    master = make_master(count=2)
    async with master:
        await master.start()
        async with anyio.create_task_group() as tg:
            tg.start_soon(master.scale, 3)
            tg.start_soon(master.graceful_reload)
            tg.start_soon(master.scale, 1)
        assert len(master.workers) == master.config.count
        assert master.get_workers_statuses() == [S.STARTED] * master.config.count
        await master.graceful_shutdown()


async def test_shutdown_interrupts_an_operation(make_master: MasterBuilder) -> None:
    master = make_master("hang_boot@1", count=1, start_timeout=30)
    log = EventLog(master)
    errors: list[BaseException] = []

    async def scale_up() -> None:
        try:
            await master.scale(2)
        except StateError as exc:
            errors.append(exc)

    async with master:
        await master.start()
        async with anyio.create_task_group() as tg:
            tg.start_soon(scale_up)
            await log.wait_for("status-changed", count=3)  # STARTING, STARTED, then the new STARTING
            with anyio.fail_after(15):
                await master.graceful_shutdown()
        assert [str(e) for e in errors] == ["scale() was interrupted by a shutdown"]
        assert all(isinstance(e, OperationInterruptedError) for e in errors)
        assert master.workers == []


@BOTH_SPAWN_MODES
async def test_policy_restarts_a_crashed_worker(make_master: MasterBuilder) -> None:
    master = make_master(count=2, restart=RestartPolicy(delay=0))
    log = EventLog(master)
    async with master:
        await master.start()
        victim = master.workers[1]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        [(replacement,)] = (await log.wait_for("worker-started", count=3))[2:]
        started = [w for w in master.workers if w.status is S.STARTED]
        assert [w.slot for w in started] == [0, 1]
        assert started[1].id == replacement != victim.id
        await master.graceful_shutdown()
        await master.supervise()  # returns: the master shut down without giving up


@BOTH_SPAWN_MODES
async def test_simultaneous_crashes_are_replaced_concurrently(make_master: MasterBuilder, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    master = make_master(f"gate={gate}", count=3, restart=RestartPolicy(delay=0))
    log = EventLog(master)
    async with master:
        await master.start()
        first = {w.id for w in master.workers}
        (tmp_path / "gate.armed").touch()  # from now on a worker waits at the gate before "started"
        for victim in master.workers[:2]:
            assert victim.pid is not None
            os.kill(victim.pid, signal.SIGKILL)

        def spawned() -> set[object]:
            return {wid for wid, status in log.of("status-changed") if status is S.STARTING and wid not in first}

        # Neither replacement can be ready before the gate opens: serial restarts would
        # spawn the second only after the first's readiness (start_timeout, 20 s).
        await log.wait_until(lambda: len(spawned()) == 2, timeout=10)
        gate.touch()
        await log.wait_for("worker-started", count=5)
        started = [w for w in master.workers if w.status is S.STARTED]
        assert [w.slot for w in started] == [0, 1, 2]
        assert {w.id for w in started[:2]} == spawned()
        await master.graceful_shutdown()


async def test_policy_gives_up_on_a_crash_loop(make_master: MasterBuilder) -> None:
    policy = RestartPolicy(delay=0.01, max_restarts=3, within=60)
    master = make_master("exit_after_start@0=1", count=2, restart=policy)
    log = EventLog(master)
    async with master:
        await master.start()
        with anyio.fail_after(30):
            with pytest.raises(RestartLimitError, match="more than 3 restarts"):
                await master.supervise()
        [(error,)] = await log.wait_for("restarts-exhausted")
        assert isinstance(error, RestartLimitError)
        assert len(log.of("worker-exit")) == 4  # the first crash and three restarts
        assert master.get_workers_statuses() == [S.FAILED, S.STARTED]  # the healthy one is kept
        await master.graceful_shutdown()


async def read_json(process: Process, buffer: list[bytes]) -> dict[str, Any]:
    assert process.stdout is not None
    with anyio.fail_after(30):
        while b"\n" not in buffer[0]:
            buffer[0] += await process.stdout.receive()
    line, _, buffer[0] = buffer[0].partition(b"\n")
    result = json.loads(line)
    assert isinstance(result, dict)
    return result


async def wait_json(process: Process, buffer: list[bytes], accept: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    while True:
        message = await read_json(process, buffer)
        if accept(message):
            return message


@pytest.mark.parametrize("master_backend", ["asyncio", "trio"])
async def test_signals_drive_reload_scale_and_shutdown(master_backend: str) -> None:
    process = await anyio.open_process(
        [sys.executable, str(APPS / "signal_master.py"), master_backend, "2"], stderr=None
    )
    buffer = [b""]
    async with kill_on_exit(process):
        ready = await wait_json(process, buffer, lambda m: "ready" in m)
        first = ready["ready"]
        assert isinstance(first, list) and len(first) == 2
        process.send_signal(signal.SIGHUP)
        await wait_json(process, buffer, lambda m: m.get("total") == 2 and not set(first) & set(m["started"]))
        process.send_signal(signal.SIGTTIN)
        await wait_json(process, buffer, lambda m: m.get("total") == 3 and len(m["started"]) == 3)
        process.send_signal(signal.SIGTTOU)
        await wait_json(process, buffer, lambda m: m.get("total") == 2)
        process.send_signal(signal.SIGTERM)
        await wait_json(process, buffer, lambda m: "exited" in m)
        with anyio.fail_after(30):
            assert await process.wait() == 0
    assert not any(is_running(pid) for pid in first)
