"""`Master`: owns the workers of one script, their lifecycle operations and events."""

from __future__ import annotations

import enum
import itertools
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from types import TracebackType

import anyio
import anyio.abc

from ._compat import exit_task_group
from ._config import MasterConfig
from ._events import EventHandler, EventRegistry
from ._exceptions import StateError, UnknownWorkerError, WorkerStartError
from ._log import get_logger
from ._status import WorkerStatus
from ._worker import Worker, WorkerSnapshot

#: Events a master emits, with the arguments handlers receive.
EVENTS = (
    "worker-exit",  # (reason, worker_id): a started worker ended without the master asking
    "worker-retired",  # (reason, worker_id): a started worker ended because the master asked
    "worker-started",  # (worker_id,): a worker sent "started"
    "status-changed",  # (worker_id, status): a worker moved to a new WorkerStatus
)


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Master:
    """Supervise ``config.count`` worker processes of one script.

    Create it with `MasterFactory.create` and use it as ``async with master:``, which
    owns the supervising tasks. Leaving the block hard-stops (SIGKILL) and reaps whatever
    still runs, so call `graceful_shutdown` first for a graceful exit.

    Lifecycle operations (`start`, `restart_worker_by_id`) run one at a time; a
    shutdown interrupts the one in progress, which then raises `StateError`.
    """

    def __init__(self, config: MasterConfig) -> None:
        self._config = config
        self._log = get_logger(script=config.script.name)
        self._events = EventRegistry(EVENTS, self._log)
        self._workers: dict[int, Worker] = {}
        self._replaced: dict[int, int] = {}
        self._ids = itertools.count(1)
        self._state = _State.NEW
        self._started = False
        self._tg: anyio.abc.TaskGroup | None = None
        self._lock = anyio.Lock()
        self._op_scope: anyio.CancelScope | None = None

    # -- introspection --------------------------------------------------------------

    @property
    def config(self) -> MasterConfig:
        """Return the master's current (frozen) configuration."""
        return self._config

    @property
    def workers(self) -> list[WorkerSnapshot]:
        """Return frozen snapshots of every known worker, ordered by slot, then id.

        Listed are the running workers, those being retired, and FAILED ones (crashed
        workers keep their place until their slot is restarted or the master shuts down).
        """
        return [w.snapshot() for w in self._ordered()]

    def get_workers_statuses(self) -> list[WorkerStatus]:
        """Return the status of every worker in `workers` order (drover's API)."""
        return [w.status for w in self._ordered()]

    def _ordered(self) -> list[Worker]:
        return sorted(self._workers.values(), key=lambda w: (w.slot, w.id))

    # -- events -------------------------------------------------------------------------

    def on(self, event: str, handler: EventHandler) -> None:
        """Call ``handler`` on every ``event``; handlers may be sync or async.

        Events: "worker-exit" ``(reason, worker_id)`` for exits the master did not ask
        for, after the worker started; "worker-retired" ``(reason, worker_id)`` for exits
        it caused; "worker-started" ``(worker_id)``; "status-changed" ``(worker_id,
        status)``. Each call runs as its own task in the master's task group; an
        exception is logged and the master goes on. Raise ValueError for an unknown name.
        """
        self._events.on(event, handler)

    def off(self, event: str, handler: EventHandler) -> None:
        """Remove a handler added with `on`."""
        self._events.off(event, handler)

    def _emit(self, name: str, *args: object) -> None:
        if self._tg is not None:
            self._events.emit(self._tg, name, *args)

    # -- context ------------------------------------------------------------------------

    async def __aenter__(self) -> Master:
        if self._state is not _State.NEW:
            raise StateError("a Master can be entered only once; create a new one")
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._state = _State.OPEN
        self._log.debug("master open", count=self._config.count)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        try:
            with anyio.CancelScope(shield=True):
                await self.hard_shutdown()
        finally:
            self._tg.cancel_scope.cancel()
            tg, self._tg = self._tg, None
            result = await exit_task_group(tg, exc_type, exc, tb)
        return result

    def _check_usable(self, operation: str) -> None:
        if self._state is _State.NEW:
            raise StateError(f"{operation}() needs the master's context: 'async with master:'")
        if self._state is not _State.OPEN:
            raise StateError(f"{operation}(): the master is {self._state.value}")

    @asynccontextmanager
    async def _operation(self, name: str) -> AsyncIterator[None]:
        self._check_usable(name)
        async with self._lock:
            self._check_usable(name)
            with anyio.CancelScope() as scope:
                self._op_scope = scope
                try:
                    yield
                finally:
                    self._op_scope = None
            if scope.cancelled_caught:
                raise StateError(f"{name}() was interrupted by a shutdown")

    def _closed(self) -> bool:
        return self._state is _State.CLOSED

    def _begin_closing(self) -> None:
        self._state = _State.CLOSING
        if self._op_scope is not None:
            self._op_scope.cancel()

    # -- worker bookkeeping ----------------------------------------------------------

    def _new_worker(self, slot: int) -> Worker:
        worker = Worker(
            worker_id=next(self._ids),
            slot=slot,
            config=self._config,
            log=self._log,
            on_status=self._worker_status,
            on_exit=self._worker_exited,
        )
        self._workers[worker.id] = worker
        return worker

    def _worker_status(self, worker: Worker, status: WorkerStatus) -> None:
        self._emit("status-changed", worker.id, status)
        if status is WorkerStatus.STARTED:
            self._emit("worker-started", worker.id)

    def _worker_exited(self, worker: Worker) -> None:
        if worker.requested:
            self._workers.pop(worker.id, None)
        if not worker.ever_started:
            return  # the operation that spawned it reports the failure by raising
        name = "worker-retired" if worker.requested else "worker-exit"
        self._emit(name, worker.exit_reason, worker.id)

    async def _launch(self, slots: Iterable[int]) -> list[Worker]:
        """Spawn one worker per slot concurrently and wait until each sent "started".

        All or nothing: on any failure (or cancellation) every worker of this call is
        retired and reaped before the error propagates.
        """
        workers = [self._new_worker(slot) for slot in slots]
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
            with anyio.CancelScope(shield=True):
                await self._retire(workers)
            raise
        if failures:
            with anyio.CancelScope(shield=True):
                await self._retire(workers)
            self._log.error("start failed", error=str(failures[0]))
            raise failures[0]
        return workers

    async def _retire(self, workers: Iterable[Worker]) -> None:
        """Stop ``workers`` concurrently (graceful where possible); return once reaped."""
        workers = list(workers)
        for worker in workers:
            worker.requested = True
        async with anyio.create_task_group() as tg:
            for worker in workers:
                tg.start_soon(worker.stop)
        for worker in workers:
            self._workers.pop(worker.id, None)

    # -- lifecycle operations -------------------------------------------------------

    async def start(self) -> None:
        """Start ``count`` workers concurrently; return when every one sent "started".

        All or nothing: if any worker exits or misses ``start_timeout``, every worker this
        call spawned is stopped and reaped, and `WorkerStartError` (`StartTimeoutError`,
        `SpawnError`) is raised with ``.reason``; no "worker-exit" fires for them. After
        such a failure `start` may be called again. Calling it after it succeeded, or
        after a shutdown, raises `StateError`.
        """
        async with self._operation("start"):
            if self._started:
                raise StateError("start() was already called; use restart_worker_by_id() to replace workers")
            await self._launch(range(self._config.count))
            self._started = True
            self._log.debug("started", count=self._config.count)

    async def restart_worker_by_id(self, worker_id: int) -> int:
        """Replace worker ``worker_id`` in its slot and return the replacement's id.

        For a worker that exited (FAILED), start a replacement. For a running one, start
        the replacement first and retire the old one once it is ready. Exactly one
        replacement is made per worker: calling this again with the same id returns the
        id of the replacement made the first time. If the replacement fails to start,
        `WorkerStartError` is raised and the old worker is left as it was.

        Raise `UnknownWorkerError` for an id the master never had or already retired.
        """
        async with self._operation("restart_worker_by_id"):
            if worker_id in self._replaced:
                return self._replaced[worker_id]
            old = self._workers.get(worker_id)
            if old is None:
                raise UnknownWorkerError(worker_id)
            [new] = await self._launch([old.slot])
            self._replaced[worker_id] = new.id
            if old.status is WorkerStatus.FAILED:
                self._workers.pop(worker_id, None)
            else:
                await self._retire([old])
            return new.id

    async def graceful_shutdown(self) -> None:
        """Stop every worker gracefully and concurrently; return once all are reaped.

        Per worker: "stop" -> "stopped" -> "quit" -> "shut_down" -> exit, all within
        ``stop_timeout``; then SIGTERM, then SIGKILL to its process group after
        ``kill_timeout``. An operation in progress is interrupted. Calling it again after
        it finished does nothing. The master cannot be started again afterwards.
        """
        if self._state is _State.NEW:
            raise StateError("graceful_shutdown() needs the master's context: 'async with master:'")
        if self._state is _State.CLOSED:
            return
        self._begin_closing()
        async with self._lock:
            if self._closed():
                return
            await self._retire(list(self._workers.values()))
            self._workers.clear()
            self._state = _State.CLOSED
            self._log.debug("shut down")

    async def hard_shutdown(self) -> None:
        """SIGKILL every worker's process group at once; return once all are reaped."""
        if self._state is _State.NEW:
            raise StateError("hard_shutdown() needs the master's context: 'async with master:'")
        self._begin_closing()
        workers = list(self._workers.values())
        for worker in workers:
            worker.kill()
        for worker in workers:
            await worker.stop()  # already dead: this only waits for the reap, bounded
        self._workers.clear()
        self._state = _State.CLOSED
