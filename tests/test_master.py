"""The Master against real worker processes, on asyncio and trio."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import anyio
import pytest

from drover_py import (
    ExitReasons,
    SpawnError,
    StartTimeoutError,
    StateError,
    UnknownWorkerError,
    WorkerStartError,
    WorkerStatus,
)

from .conftest import APPS, BOTH_SPAWN_MODES, MasterBuilder
from .helpers import EventLog, is_running, wait_process_gone

pytestmark = [pytest.mark.anyio, BOTH_SPAWN_MODES]
Records = Callable[[], list[tuple[int, str, str]]]


async def test_start_brings_up_every_worker(make_master: MasterBuilder, records: Records) -> None:
    master = make_master(count=3)
    log = EventLog(master)
    async with master:
        await master.start()
        assert master.get_workers_statuses() == [WorkerStatus.STARTED] * 3
        workers = master.workers
        assert [w.slot for w in workers] == [0, 1, 2]
        assert len({w.id for w in workers}) == 3
        assert all(w.pid is not None and is_running(w.pid) for w in workers)
        assert all(w.started_at is not None for w in workers)
        started = {(pid, slot) for pid, event, slot in records() if event == "started"}
        assert started == {(w.pid, str(w.slot)) for w in workers}
        assert {args[0] for args in log.of("worker-started")} == {w.id for w in workers}
        await master.graceful_shutdown()
        assert master.workers == []


@pytest.mark.parametrize(
    ("behaviour", "kind", "code"),
    [("exit_after_start=0", ExitReasons.NormalExit, 0), ("exit_after_start=3", ExitReasons.AbnormalExit, 3)],
)
async def test_exit_codes_are_classified(
    make_master: MasterBuilder, behaviour: str, kind: type[ExitReasons.ExitReason], code: int
) -> None:
    master = make_master(behaviour, count=1)
    log = EventLog(master)
    async with master:
        await master.start()
        await log.wait_for("worker-exit")
        [(reason, worker_id)] = log.exits()
        assert type(reason) is kind
        assert reason.payload.code == code
        assert reason.stderr_tail == f"exiting with code {code}"  # what the worker said last
        assert str(reason) == f"exited with code {code}"
        assert master.get_workers_statuses() == [WorkerStatus.FAILED]
        assert master.workers[0].id == worker_id
        assert master.workers[0].exit_reason == reason
        await master.graceful_shutdown()
    assert log.of("worker-retired") == []


async def test_external_sigkill_is_an_external_signal(make_master: MasterBuilder) -> None:
    master = make_master(count=2)
    log = EventLog(master)
    async with master:
        await master.start()
        victim = master.workers[1]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        await log.wait_for("worker-exit")
        [(reason, worker_id)] = log.exits()
        assert isinstance(reason, ExitReasons.ExternalSignal)
        assert reason.payload.signal is signal.SIGKILL
        assert worker_id == victim.id
        assert master.get_workers_statuses() == [WorkerStatus.STARTED, WorkerStatus.FAILED]
        survivor = master.workers[0].id
        await master.graceful_shutdown()
    assert [i for _, i in log.exits("worker-retired")] == [survivor]


async def test_graceful_shutdown_retires_without_worker_exit(make_master: MasterBuilder, records: Records) -> None:
    master = make_master(count=3)
    log = EventLog(master)
    async with master:
        await master.start()
        ids = {w.id for w in master.workers}
        await master.graceful_shutdown()
    assert log.of("worker-exit") == []
    retired = log.exits("worker-retired")
    assert {i for _, i in retired} == ids
    assert all(isinstance(r, ExitReasons.NormalExit) for r, _ in retired)
    by_pid: dict[int, list[str]] = {}
    for pid, event, _ in records():
        by_pid.setdefault(pid, []).append(event)
    assert list(by_pid.values()) == [["boot", "started", "stop", "quit", "exit"]] * 3


async def test_status_changes_follow_drover_phases(make_master: MasterBuilder) -> None:
    master = make_master(count=1)
    log = EventLog(master)
    async with master:
        await master.start()
        await master.graceful_shutdown()
    statuses = [status for _, status in log.of("status-changed")]
    S = WorkerStatus
    assert statuses == [S.STARTING, S.STARTED, S.STOPPING, S.STOPPED, S.SHUTTING_DOWN, S.SHUT_DOWN]


async def test_bus_defaults_stop_and_quit_without_handlers(make_master: MasterBuilder) -> None:
    master = make_master("default_handlers", count=2)
    log = EventLog(master)
    async with master:
        await master.start()
        await master.graceful_shutdown()
    assert [type(r) for r, _ in log.exits("worker-retired")] == [ExitReasons.NormalExit] * 2


async def test_linear_worker_answers_itself(make_master: MasterBuilder, records: Records) -> None:
    master = make_master(count=2, script=APPS / "linear_worker.py")
    log = EventLog(master)
    async with master:
        await master.start()
        await master.graceful_shutdown()
    assert [type(r) for r, _ in log.exits("worker-retired")] == [ExitReasons.NormalExit] * 2
    by_pid: dict[int, list[str]] = {}
    for pid, event, _ in records():
        by_pid.setdefault(pid, []).append(event)
    assert list(by_pid.values()) == [["drained", "quit", "exit"]] * 2


@pytest.mark.parametrize("sync", ["0", "1"])
async def test_a_worker_waiting_only_for_quit_still_answers_stop(make_master: MasterBuilder, sync: str) -> None:
    # Without a "stop" handler, wait_quit() alone once left "stop" unanswered: every
    # graceful stop waited out stop_timeout and ended in SIGTERM.
    master = make_master(count=1, script=APPS / "quit_only_worker.py", env={"TEST_SYNC": sync}, stop_timeout=30.0)
    log = EventLog(master)
    async with master:
        await master.start()
        with anyio.fail_after(20):
            await master.graceful_shutdown()
    assert [type(r) for r, _ in log.exits("worker-retired")] == [ExitReasons.NormalExit]


async def test_sync_worker(make_master: MasterBuilder, records: Records) -> None:
    master = make_master(count=2, script=APPS / "sync_worker.py")
    log = EventLog(master)
    async with master:
        await master.start()
        assert master.get_workers_statuses() == [WorkerStatus.STARTED] * 2
        await master.graceful_shutdown()
    assert [type(r) for r, _ in log.exits("worker-retired")] == [ExitReasons.NormalExit] * 2
    by_pid: dict[int, list[str]] = {}
    for pid, event, _ in records():
        by_pid.setdefault(pid, []).append(event)
    assert list(by_pid.values()) == [["started", "stop", "quit", "exit"]] * 2


async def test_trio_worker_under_any_master(make_master: MasterBuilder) -> None:
    master = make_master("trio", count=2)
    async with master:
        await master.start()
        assert master.get_workers_statuses() == [WorkerStatus.STARTED] * 2
        await master.graceful_shutdown()


async def test_worker_ignoring_stop_is_terminated(make_master: MasterBuilder) -> None:
    master = make_master("ignore_stop", count=1, stop_timeout=0.5)
    log = EventLog(master)
    async with master:
        await master.start()
        await master.graceful_shutdown()
    [(reason, _)] = log.exits("worker-retired")
    assert isinstance(reason, ExitReasons.ExternalSignal) and reason.payload.signal is signal.SIGTERM


async def test_worker_ignoring_stop_and_sigterm_is_killed(make_master: MasterBuilder) -> None:
    master = make_master("ignore_stop,ignore_term", count=2, stop_timeout=0.5, kill_timeout=0.5)
    log = EventLog(master)
    async with master:
        await master.start()
        await master.graceful_shutdown()
        assert master.workers == []
    reasons = [r for r, _ in log.exits("worker-retired")]
    assert len(reasons) == 2
    assert all(isinstance(r, ExitReasons.ExternalSignal) and r.payload.signal is signal.SIGKILL for r in reasons)
    assert log.of("worker-exit") == []


async def test_grandchildren_die_with_their_worker(make_master: MasterBuilder, records: Records) -> None:
    master = make_master("grandchild,ignore_stop,ignore_term", count=1, stop_timeout=0.3, kill_timeout=0.3)
    async with master:
        await master.start()
        [grandchild] = [int(e.split(":")[1]) for _, e, _ in records() if e.startswith("grandchild:")]
        assert is_running(grandchild)
        await master.graceful_shutdown()
    await wait_process_gone(grandchild, timeout=5)
    assert not is_running(grandchild)


async def test_crash_on_boot_fails_start_and_leaves_nothing(make_master: MasterBuilder) -> None:
    master = make_master("crash_boot@1", count=3)
    log = EventLog(master)
    async with master:
        with pytest.raises(WorkerStartError) as info:
            await master.start()
        reason = info.value.reason
        assert isinstance(reason, ExitReasons.AbnormalExit) and reason.payload.code == 3
        assert info.value.slot == 1
        assert "exited with code 3 before it sent 'started'" in str(info.value)
        assert "\n" not in str(info.value)
        # the worker's last 20 lines of stderr: the 25 numbered ones from the 7th on, and the last
        expected = "\n".join([*(f"boot line {n}" for n in range(7, 26)), "crash_boot: giving up before 'started'"])
        assert info.value.stderr_tail == reason.stderr_tail == expected
        assert master.workers == []
    assert log.of("worker-exit") == []


async def test_signal_handlers_let_the_blocks_error_out_unchanged(make_master: MasterBuilder) -> None:
    # not wrapped in an exception group, as `async with master` does not wrap it either
    from drover_py import open_signal_handlers

    master = make_master("crash_boot", count=1)
    async with master:
        with pytest.raises(WorkerStartError):
            async with open_signal_handlers(master):
                await master.start()


async def test_start_timeout_fails_start_and_leaves_nothing(make_master: MasterBuilder) -> None:
    master = make_master("hang_boot", count=2, start_timeout=0.5)
    log = EventLog(master)
    async with master:
        with pytest.raises(StartTimeoutError) as info:
            await master.start()
        reason = info.value.reason
        assert isinstance(reason, ExitReasons.StartTimeout) and reason.timeout == 0.5
        assert master.workers == []
        # a failed start may be retried; it fails the same way
        with pytest.raises(StartTimeoutError):
            await master.start()
    assert log.of("worker-exit") == [] and log.of("worker-retired") == []


async def test_spawn_failure_is_a_spawn_error(make_master: MasterBuilder) -> None:
    master = make_master(count=2)
    object.__setattr__(master.config, "python", "/nonexistent/python")
    async with master:
        with pytest.raises(SpawnError) as info:
            await master.start()
        assert info.value.reason is None
        assert isinstance(info.value.__cause__, OSError)
        assert master.workers == []


async def test_hard_shutdown_kills_everything(make_master: MasterBuilder) -> None:
    master = make_master("ignore_stop,ignore_term", count=3)
    log = EventLog(master)
    async with master:
        await master.start()
        pids = [w.pid for w in master.workers]
        with anyio.fail_after(5):
            await master.hard_shutdown()
        assert master.workers == []
        assert not any(pid is not None and is_running(pid) for pid in pids)
    reasons = [r for r, _ in log.exits("worker-retired")]
    assert len(reasons) == 3
    assert all(isinstance(r, ExitReasons.ExternalSignal) and r.payload.signal is signal.SIGKILL for r in reasons)


async def test_leaving_the_block_kills_and_reaps(make_master: MasterBuilder) -> None:
    master = make_master(count=2)
    with pytest.raises(RuntimeError, match="boom"):
        async with master:
            await master.start()
            pids = [w.pid for w in master.workers]
            raise RuntimeError("boom")
    assert not any(pid is not None and is_running(pid) for pid in pids)


async def test_restart_failed_worker_gives_exactly_one_replacement(make_master: MasterBuilder) -> None:
    master = make_master(count=2)
    replacements: list[int] = []
    both_done = anyio.Event()

    async def restart(reason: ExitReasons.ExitReason, worker_id: int) -> None:
        replacements.append(await master.restart_worker_by_id(worker_id))
        if len(replacements) == 2:
            both_done.set()

    master.on("worker-exit", restart)
    master.on("worker-exit", restart)  # two handlers racing for the same worker
    async with master:
        await master.start()
        victim = master.workers[0]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        with anyio.fail_after(15):
            await both_done.wait()
        assert replacements[0] == replacements[1]
        workers = master.workers
        assert [w.slot for w in workers] == [0, 1]
        assert [w.status for w in workers] == [WorkerStatus.STARTED] * 2
        assert workers[0].id == replacements[0] != victim.id
        await master.graceful_shutdown()


async def test_restart_running_worker_starts_new_before_stopping_old(
    make_master: MasterBuilder, records: Records
) -> None:
    master = make_master(count=1)
    log = EventLog(master)
    async with master:
        await master.start()
        [old] = master.workers
        new_id = await master.restart_worker_by_id(old.id)
        [new] = master.workers
        assert new.id == new_id and new.slot == old.slot == 0 and new.pid != old.pid
        assert await master.restart_worker_by_id(old.id) == new_id  # no second replacement
        assert len(master.workers) == 1
        await master.graceful_shutdown()
    events: list[tuple[int | None, str]] = [(pid, event) for pid, event, _ in records()]
    assert events.index((new.pid, "started")) < events.index((old.pid, "stop"))
    assert [i for _, i in log.exits("worker-retired")] == [old.id, new_id]
    assert log.of("worker-exit") == []


async def test_restart_unknown_id(make_master: MasterBuilder) -> None:
    master = make_master(count=1)
    async with master:
        await master.start()
        with pytest.raises(UnknownWorkerError):
            await master.restart_worker_by_id(999)
        await master.graceful_shutdown()


@pytest.mark.parametrize("fault", ["garbage", "oversized", "close_channel"])
async def test_broken_channel_stops_only_that_worker(make_master: MasterBuilder, fault: str) -> None:
    master = make_master(f"{fault}@0", count=2)
    log = EventLog(master)
    async with master:
        await master.start()  # slot 0 misbehaves right after "started"
        healthy = master.workers[1]
        await log.wait_for("worker-exit")
        [(reason, worker_id)] = log.exits()
        assert isinstance(reason, ExitReasons.ExternalSignal) and reason.payload.signal is signal.SIGTERM
        assert master.get_workers_statuses() == [WorkerStatus.FAILED, WorkerStatus.STARTED]
        assert master.workers[0].id == worker_id
        assert master.workers[1] == healthy  # the other worker did not notice
        await master.graceful_shutdown()


async def test_two_masters_in_one_process(make_master: MasterBuilder) -> None:
    first, second = make_master(count=2), make_master(count=3)
    async with first, second:
        async with anyio.create_task_group() as tg:
            tg.start_soon(first.start)
            tg.start_soon(second.start)
        assert first.get_workers_statuses() == [WorkerStatus.STARTED] * 2
        assert second.get_workers_statuses() == [WorkerStatus.STARTED] * 3
        assert not {w.pid for w in first.workers} & {w.pid for w in second.workers}
        async with anyio.create_task_group() as tg:
            tg.start_soon(first.graceful_shutdown)
            tg.start_soon(second.graceful_shutdown)


async def test_state_errors(make_master: MasterBuilder) -> None:
    master = make_master(count=1)
    with pytest.raises(StateError, match="async with master"):
        await master.start()
    async with master:
        await master.start()
        with pytest.raises(StateError, match="already called"):
            await master.start()
        await master.graceful_shutdown()
        await master.graceful_shutdown()  # idempotent
        with pytest.raises(StateError, match="closed"):
            await master.start()
        with pytest.raises(StateError, match="closed"):
            await master.restart_worker_by_id(1)
    with pytest.raises(StateError, match="only once"):
        async with master:
            pass


async def test_unknown_event_name(make_master: MasterBuilder) -> None:
    master = make_master(count=1)
    with pytest.raises(ValueError, match="unknown event 'worker-exited'"):
        master.on("worker-exited", lambda *args: None)  # type: ignore[call-overload]  # what a type checker would refuse


async def test_raising_handler_is_contained(make_master: MasterBuilder) -> None:
    master = make_master(count=2)
    log = EventLog(master)

    def bad(*args: object) -> None:
        raise RuntimeError("handler bug")

    master.on("worker-exit", bad)
    master.on("worker-started", bad)
    async with master:
        await master.start()
        victim = master.workers[0]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        await log.wait_for("worker-exit")
        assert master.get_workers_statuses() == [WorkerStatus.FAILED, WorkerStatus.STARTED]
        await master.graceful_shutdown()
