"""Bringing workers up and down: launch, retire, replace (with a canary), reload with rollback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

import anyio
import anyio.abc
from structlog.typing import FilteringBoundLogger

from .._config.options import MasterConfig
from .._exceptions import ReloadError, WorkerStartError
from .._reports import ReloadReport, SlotReport
from .memory import room as memory_room
from .recycler import read_rss
from .table import WorkerTable
from .worker import Worker

#: Checks new workers before the old ones retire; raises `WorkerStartError` to refuse them.
Check = Callable[[list[Worker]], Awaitable[None]]


class Rollout:
    """Start and stop workers of a master, readiness-gated and all or nothing.

    ``new_worker(slot, config)`` makes a worker (entered in the table); each runs as a task
    of the master's task group (`open`). The master holds the operation lock around calls.
    """

    def __init__(
        self, log: FilteringBoundLogger, table: WorkerTable, new_worker: Callable[[int, MasterConfig], Worker]
    ) -> None:
        self._log = log
        self._table = table
        self._new_worker = new_worker
        self._tg: anyio.abc.TaskGroup | None = None

    def open(self, tg: anyio.abc.TaskGroup) -> None:
        """Run the workers in ``tg`` (the master's task group)."""
        self._tg = tg

    async def launch(self, slots: Iterable[int], config: MasterConfig, *, probation: bool = False) -> list[Worker]:
        """Spawn one worker per slot concurrently and wait until each sent "started".

        All or nothing: on any failure (or cancellation) every worker of this call is
        retired and reaped before the error propagates. With ``probation`` the workers'
        exits raise no events until the caller clears it.
        """
        workers = [self._new_worker(slot, config) for slot in slots]
        if probation:
            for worker in workers:
                worker.watch()
        failures: list[WorkerStartError] = []

        async def bring_up(worker: Worker, scope: anyio.CancelScope) -> None:
            assert self._tg is not None
            try:
                await self._tg.start(worker.run, name=f"drover-py worker {worker.id}")
                await worker.wait_ready()
            except WorkerStartError as exc:
                failures.append(exc)
                scope.cancel()

        try:
            async with anyio.create_task_group() as tg:
                for worker in workers:
                    tg.start_soon(bring_up, worker, tg.cancel_scope)
        except BaseException:
            await self.retire(workers)
            raise
        if failures:
            await self.retire(workers)
            for failure in failures:
                self._log.debug("worker failed to start", error=str(failure))  # the exception reports it
            raise failures[0]
        return workers

    async def retire(self, workers: Iterable[Worker]) -> None:
        """Stop ``workers`` concurrently (graceful where possible); return once reaped.

        Shielded: a graceful stop under way is finished, not cut short, when the calling
        operation is interrupted; each stop is bounded by its own deadlines, and a hard
        shutdown still ends it at once by killing the process.
        """
        workers = list(workers)
        for worker in workers:
            worker.let_go()
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for worker in workers:
                    tg.start_soon(worker.stop)
        for worker in workers:
            self._table.discard(worker)

    async def replace(
        self,
        slots: list[int],
        config: MasterConfig,
        *,
        olds: list[Worker] | None = None,
        canary: float | None = None,
        check: Check | None = None,
        retiring: anyio.abc.TaskGroup | None = None,
    ) -> list[Worker]:
        """Start workers of ``config`` in ``slots``, then retire those they replace.

        With ``canary``, watch the new workers that long before retiring the old ones;
        if one exits, retire the new ones and raise `WorkerStartError`. Then ``check``
        them (it raises `WorkerStartError` to refuse them: the same). With ``retiring``,
        the old ones retire in that task group and this returns at once.
        """
        if olds is None:
            current = self._table.current()
            olds = [current[slot] for slot in slots if slot in current]
        news = await self.launch(slots, config, probation=canary is not None)
        if canary is not None:
            await self._watch(news, canary)
        if check is not None:
            try:
                await check(news)
            except WorkerStartError:
                await self.retire(news)
                raise
        by_slot = {new.slot: new for new in news}
        for old in olds:
            self._table.replaced[old.id] = by_slot[old.slot].id
        if retiring is None:
            await self.retire(olds)
        else:
            for old in olds:
                old.let_go()  # from now on, no longer the worker of its slot
            retiring.start_soon(self.retire, olds)
        return news

    async def _watch(self, workers: list[Worker], seconds: float) -> None:
        async def wait_exit(worker: Worker, scope: anyio.CancelScope) -> None:
            await worker.exited.wait()
            scope.cancel()

        with anyio.move_on_after(seconds):
            async with anyio.create_task_group() as tg:
                for worker in workers:
                    tg.start_soon(wait_exit, worker, tg.cancel_scope)
        failed = [w for w in workers if w.exited.is_set()]
        for worker in workers:
            worker.end_probation()
        if failed:
            await self.retire(workers)
            bad = failed[0]
            raise WorkerStartError(
                f"worker {bad.id} (slot {bad.slot}) {bad.exit_reason} within the canary window of {seconds:g} s",
                reason=bad.exit_reason,
                worker_id=bad.id,
                slot=bad.slot,
                stderr_tail=bad.stderr_tail.text(),
            )

    async def _retire_first_if_tight(self, olds: list[Worker], slots: list[int]) -> bool:
        """Retire ``olds`` now if their replacements would not fit beside them under the memory limit.

        Return whether they were retired (their slots then wait for the replacements).
        """
        left = memory_room()
        need = sum(read_rss(w.pid) or 0 for w in olds if w.pid is not None)
        if left is None or not olds or need <= left:
            return False
        why = f"a replacement needs about {need >> 20} MiB, the memory limit leaves {max(left, 0) >> 20} MiB"
        if len(slots) == 1:
            self._log.warning("this reload cannot be zero-downtime: the only worker goes first", why=why)
        else:
            self._log.warning("retiring old workers before their replacements start", why=why, slots=len(olds))
        await self.retire(olds)
        return True

    async def reload(
        self,
        old_config: MasterConfig,
        new_config: MasterConfig,
        batch_size: int,
        canary: float | None,
        check: Check | None = None,
    ) -> ReloadReport:
        """Roll every slot to ``new_config``, ``batch_size`` at a time; return what was done.

        On failure roll back and raise `ReloadError`, whose ``report`` says what had switched.
        """
        began = anyio.current_time()
        slots = list(range(old_config.count))
        switched: list[int] = []
        done: list[SlotReport] = []
        canary_passed: bool | None = None
        check_passed: bool | None = None
        failure: WorkerStartError | None = None
        emptied: list[int] = []  # slots of the batch under way whose old workers had to go first
        # The old workers of a batch retire while the next batch starts: each slot still
        # has its replacement ready before its old worker is asked to stop. A failure
        # (and so a rollback) is handled once every retirement under way has finished.
        async with anyio.create_task_group() as retiring:
            try:
                for index in range(0, len(slots), batch_size):
                    batch = slots[index : index + batch_size]
                    current = self._table.current()
                    old_pids = {slot: current[slot].pid for slot in batch if slot in current}
                    first = await self._retire_first_if_tight([current[s] for s in batch if s in current], slots)
                    emptied.extend(batch if first else [])
                    watched = canary if index == 0 else None
                    checked = check if index == 0 else None
                    if watched is not None:
                        canary_passed = False  # until the batch lived through the window
                    if checked is not None:
                        check_passed = False
                    news = await self.replace(batch, new_config, canary=watched, check=checked, retiring=retiring)
                    if watched is not None:
                        canary_passed = True
                    if checked is not None:
                        check_passed = True
                    switched.extend(batch)
                    done.extend(
                        SlotReport(
                            slot=new.slot,
                            old_pid=old_pids.get(new.slot),
                            new_id=new.id,
                            new_pid=new.pid,
                            ready_seconds=new.start_seconds or 0.0,
                            retired_first=first,
                        )
                        for new in news
                    )
                    emptied.clear()
            except WorkerStartError as error:
                failure = error
        if failure is not None:
            exc = failure
            self._log.warning("reload failed; rolling back", error=str(exc), switched=len(switched))

            def report() -> ReloadReport:
                seconds = anyio.current_time() - began
                return ReloadReport(
                    len(switched), seconds, tuple(done), canary_passed, check=check_passed, rolled_back=True
                )

            if switched or emptied:
                try:
                    await self.replace(switched, old_config)
                    await self.launch(emptied, old_config)
                except WorkerStartError as rollback:
                    raise _reload_error(
                        f"graceful reload failed ({exc}) and so did its rollback ({rollback}); "
                        "the slots that could not be rolled back keep the new version",
                        exc,
                        report(),
                    ) from exc
            raise _reload_error(
                f"graceful reload failed, {len(switched)} slot(s) rolled back: {exc}", exc, report()
            ) from exc
        return ReloadReport(
            new_config.count, anyio.current_time() - began, tuple(done), canary_passed, check=check_passed
        )


def _reload_error(message: str, failure: WorkerStartError, report: ReloadReport) -> ReloadError:
    """Return the `ReloadError` of a reload that ``failure`` ended: its reason, worker and last lines."""
    return ReloadError(
        message,
        reason=failure.reason,
        worker_id=failure.worker_id,
        slot=failure.slot,
        stderr_tail=failure.stderr_tail,
        report=report,
    )
