"""Automatic restarts: replace crashed workers as the `RestartPolicy` decides."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import anyio
import anyio.abc
from structlog.typing import FilteringBoundLogger

from .._config.policies import GiveUp, Leave, RestartPolicy, RestartTracker
from .._exceptions import DroverError, OperationInterruptedError, WorkerStartError
from .._exit_reasons import ExitReason
from .worker import Worker


class _Restart:
    """A crashed worker's automatic replacement, waiting for the operation lock."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: DroverError | None = None


class Restarter:
    """Replace crashed workers: when and how often (the policy), and together (one operation).

    ``operation(name)`` is the master's operation lock; ``replace(worker_id)`` replaces one
    worker under it; ``give_up(why)`` is called once the policy gives up.
    """

    def __init__(
        self,
        log: FilteringBoundLogger,
        policy: RestartPolicy,
        operation: Callable[[str], AbstractAsyncContextManager[None]],
        replace: Callable[[int], Awaitable[int]],
        give_up: Callable[[str], None],
    ) -> None:
        self._log = log
        self._tracker = RestartTracker(policy)
        self._operation = operation
        self._replace = replace
        self._give_up = give_up
        #: Crashed workers' automatic restarts waiting for the lock, by worker id.
        self._crashed: dict[int, _Restart] = {}
        #: The task group of the automatic restarts running now, which later crashes join.
        self._restarting: anyio.abc.TaskGroup | None = None

    async def restart(self, worker: Worker) -> None:
        """Replace ``worker``, which crashed, after the policy's delay; retry as it allows."""
        reason: ExitReason | None = worker.exit_reason
        uptime = worker.uptime()
        worker_id = worker.id
        while True:
            decision = self._tracker.decide(now=anyio.current_time(), slot=worker.slot, reason=reason, uptime=uptime)
            if isinstance(decision, Leave):
                return
            if isinstance(decision, GiveUp):
                self._give_up(decision.why)
                return
            self._log.info("restarting worker", worker_id=worker_id, slot=worker.slot, delay=decision.delay)
            if decision.delay > 0:  # with no delay, straight on: every loop iteration delays the replacement
                await anyio.sleep(decision.delay)
            try:
                await self._restart_crashed(worker_id)
                return
            except WorkerStartError as exc:
                self._log.warning("restart failed", worker_id=worker_id, error=str(exc))
                reason, uptime = None, 0.0
            except DroverError as exc:  # shut down meanwhile, or retired by someone else
                self._log.debug("restart abandoned", worker_id=worker_id, error=str(exc))
                return

    async def _restart_crashed(self, worker_id: int) -> None:
        """Replace crashed worker ``worker_id`` alongside the other crashes of the moment.

        Automatic restarts take the operation lock together: the first one to get it
        replaces every crash waiting for it, and a crash noticed while those run joins
        them, each replaced concurrently and on its own (one failing undoes no other),
        so simultaneous crashes do not queue behind one another's readiness. Raise
        what `Master.restart_worker_by_id` would.
        """
        mine = _Restart()
        if self._restarting is not None:
            self._restarting.start_soon(self._settle, worker_id, mine)
            await mine.done.wait()
        else:
            self._crashed[worker_id] = mine
            try:
                async with self._operation("restart_worker_by_id"):
                    if not mine.done.is_set():
                        try:
                            async with anyio.create_task_group() as tg:
                                self._restarting = tg
                                batch, self._crashed = self._crashed, {}
                                for crashed_id, restart in batch.items():
                                    tg.start_soon(self._settle, crashed_id, restart)
                        finally:
                            self._restarting = None
            finally:
                if self._crashed.get(worker_id) is mine:  # cancelled before anyone took it
                    del self._crashed[worker_id]
        if mine.error is not None:
            raise mine.error

    async def _settle(self, worker_id: int, restart: _Restart) -> None:
        try:
            await self._replace(worker_id)
        except DroverError as exc:
            restart.error = exc
        except anyio.get_cancelled_exc_class():
            restart.error = OperationInterruptedError("restart_worker_by_id() was interrupted by a shutdown")
            raise
        finally:
            restart.done.set()
