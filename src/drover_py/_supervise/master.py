"""`Master`: owns the workers of one script, their lifecycle operations and events."""

from __future__ import annotations

import enum
import functools
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Literal, overload

import anyio
import anyio.abc
import attrs

from .._checks import check_count, check_seconds
from .._commands import CommandRegistry, H, decorator
from .._compat import exit_task_group
from .._config.options import MasterConfig
from .._exceptions import (
    DroverError,
    OperationInterruptedError,
    ReloadError,
    RestartLimitError,
    StateError,
)
from .._exit_reasons import ExitReason
from .._log import get_logger
from .._reports import ReloadReport
from .._spawn.pool import Spawners
from .._status import WorkerStatus
from .._wire.conversation import DEFAULT_TIMEOUT
from .._wire.metrics import MetricsBatch
from .appmetrics import AppMetrics
from .checks import CheckResult, ReloadCheck, check_workers, run_check
from .events import EventHandler, EventRegistry
from .recycler import Recycler
from .restarter import Restarter
from .rollout import Rollout
from .services import Services
from .stats import MasterStats
from .table import WorkerTable
from .talk import RequestHandler, Talk
from .worker import Worker, WorkerSnapshot

#: The events a master emits.
EventName = Literal[
    "message", "worker-exit", "worker-retired", "worker-started", "status-changed", "restarts-exhausted"
]
#: What an event handler returns: None, or an awaitable (an async handler's coroutine).
_Done = Awaitable[None] | None

#: Events a master emits, with the arguments handlers receive.
EVENTS: tuple[EventName, ...] = (
    "message",  # (worker_id, payload): a custom message from a worker (handlers awaited in order)
    "worker-exit",  # (reason, worker_id): a started worker ended without the master asking
    "worker-retired",  # (reason, worker_id): a started worker ended because the master asked
    "worker-started",  # (worker_id,): a worker sent "started"
    "status-changed",  # (worker_id, status): a worker moved to a new WorkerStatus
    "restarts-exhausted",  # (error,): the restart policy gave up (a RestartLimitError)
)


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class _Host:
    """The master as its workers see it (their `WorkerHost`)."""

    def __init__(self, master: Master, talk: Talk) -> None:
        self._master = master
        self.worker_message = talk.from_worker
        self.worker_request = talk.request_from_worker

    def worker_status(self, worker: Worker, status: WorkerStatus) -> None:
        self._master._worker_status(worker, status)

    def worker_exited(self, worker: Worker) -> None:
        self._master._worker_exited(worker)

    def worker_metrics(self, worker: Worker, batch: MetricsBatch) -> None:
        self._master._app_metrics.ingest(worker.id, worker.slot, batch)


class Master:
    """Supervise ``config.count`` worker processes of one script.

    Create it with `MasterFactory.create` and use it as ``async with master:``, which
    owns the supervising tasks. Leaving the block hard-stops (SIGKILL) and reaps whatever
    still runs, so call `graceful_shutdown` first for a graceful exit.

    Lifecycle operations (`start`, `scale`, `graceful_reload`, `restart_worker_by_id`)
    run one at a time, in call order; a shutdown interrupts the one in progress, which
    then raises `OperationInterruptedError` (a `StateError`). Automatic restarts of
    crashed workers form one such operation together: crashes of the same moment are
    replaced concurrently, not one after another's readiness.
    """

    def __init__(self, config: MasterConfig) -> None:
        self._config = config
        self._log = get_logger(script=config.script.name)
        self._events = EventRegistry(EVENTS, self._log)
        self._table = WorkerTable()
        #: Counts since the master was made (exits, restarts, reloads, times), for ``/metrics``.
        self.stats = MasterStats()
        self._talk = Talk(self._table, self._events)
        self._host = _Host(self, self._talk)
        self._state = _State.NEW
        self._started = False
        self._draining = False
        self._tg: anyio.abc.TaskGroup | None = None
        self._lock = anyio.Lock()
        self._op_scope: anyio.CancelScope | None = None
        self._restarter = (
            None
            if config.restart is None
            else Restarter(self._log, config.restart, self._operation, self._restart_one, self._give_up)
        )
        self._failure: RestartLimitError | None = None
        self._done = anyio.Event()
        self._rollout = Rollout(self._log, self._table, self._new_worker)
        self._recycler = Recycler(self._log, self._table, self.restart_worker_by_id)
        self._services = Services(self._log)
        self._spawners = Spawners(self._log, config)
        self._command_registry = CommandRegistry()
        #: The workers' own metrics (``mb.counter(...)``), per slot: ``_app_metrics.families()``.
        self._app_metrics = AppMetrics(self._log)

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
        return [w.snapshot() for w in self._table.ordered()]

    @property
    def draining(self) -> bool:
        """Return whether a graceful shutdown began (its drain included): the master is going away."""
        return self._draining

    @property
    def started_count(self) -> int:
        """Return how many workers are STARTED (during a reload a slot may have two)."""
        return self._table.started_count()

    def get_workers_statuses(self) -> list[WorkerStatus]:
        """Return the status of every worker in `workers` order (drover's API).

        The index is not the slot while a slot holds two workers (a FAILED one and its
        replacement, or an old and a new one during a reload): use `workers` and
        ``.slot`` when the slot matters.
        """
        return [w.status for w in self._table.ordered()]

    # -- events -------------------------------------------------------------------------

    @overload
    def on(
        self, event: Literal["message"], handler: Callable[[int, Any], _Done]
    ) -> None: ...  # the payload is what the worker sent

    @overload
    def on(
        self, event: Literal["worker-exit", "worker-retired"], handler: Callable[[ExitReason, int], _Done]
    ) -> None: ...

    @overload
    def on(self, event: Literal["worker-started"], handler: Callable[[int], _Done]) -> None: ...

    @overload
    def on(self, event: Literal["status-changed"], handler: Callable[[int, WorkerStatus], _Done]) -> None: ...

    @overload
    def on(self, event: Literal["restarts-exhausted"], handler: Callable[[RestartLimitError], _Done]) -> None: ...

    def on(self, event: str, handler: EventHandler) -> None:
        """Call ``handler`` on every ``event``; handlers may be sync or async.

        Events: "worker-exit" ``(reason, worker_id)`` for exits the master did not ask
        for, after the worker started; "worker-retired" ``(reason, worker_id)`` for exits
        it caused; "worker-started" ``(worker_id)``; "status-changed" ``(worker_id,
        status)``; "restarts-exhausted" ``(error)`` when the restart policy gives up.
        Each call runs as its own task in the master's task group; an
        exception is logged and the master goes on. Raise ValueError for an unknown name.
        Type checkers check a handler's parameters against its event's arguments.
        """
        self._events.on(event, handler)

    def off(self, event: EventName, handler: EventHandler) -> None:
        """Remove a handler added with `on`."""
        self._events.off(event, handler)

    def _emit(self, name: str, *args: object) -> None:
        if self._tg is not None:
            self._events.emit(self._tg, name, *args)

    # -- conversations with workers ---------------------------------------------------

    def handle(self, name: str, handler: RequestHandler | None) -> None:
        """Answer workers' ``mb.request(name, payload)`` with ``handler(worker_id, payload)``.

        The handler (sync or async) returns a JSON-serialisable result. If it raises, the
        worker's request raises `RemoteError` carrying the exception's type name and
        text; the master goes on. A coroutine function's requests are answered
        concurrently, each in a task; a plain function answers at once. One handler per
        name: a new one replaces the old, None removes it. Without a handler a request
        fails with `RemoteError` (``error_type == "NoHandler"``).
        """
        self._talk.handle(name, handler)

    def send(self, worker_id: int, payload: object) -> Awaitable[None]:
        """Send ``payload`` (JSON-serialisable) to a worker's ``mb.on("message", ...)``; await it.

        Messages arrive in order. When the worker has `WINDOW` bytes (256 KiB) of
        messages and requests it has not consumed yet, this waits (backpressure). Raise
        `UnknownWorkerError` for an unknown id (at the call), `PeerGoneError` once the
        worker has exited, TypeError for a payload that is not JSON and `ProtocolError`
        for one over the size limit.
        """
        return self._talk.send(worker_id, payload)

    async def broadcast(self, payload: object) -> list[int]:
        """Send ``payload`` to every started worker at once; return their ids.

        A worker that exits meanwhile is skipped; the others still get the message.
        """
        return await self._talk.broadcast(payload)

    async def request(
        self, worker_id: int, name: str, payload: object = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> object:
        """Ask a worker's ``mb.handle(name, ...)`` handler and return its answer.

        Raise `RemoteError` if the worker's handler raised or there is none,
        `RequestTimeoutError` after ``timeout`` seconds, `PeerGoneError` as soon as the
        worker exits (also mid-call), `UnknownWorkerError` for an unknown id.
        """
        timeout = check_seconds("timeout", timeout)
        return await self._talk.request(worker_id, name, payload, timeout)

    # -- control commands ----------------------------------------------------------

    @property
    def commands(self) -> CommandRegistry:
        """Return this master's control commands: custom ones, overrides, disabled built-ins."""
        return self._command_registry

    @overload
    def command(self, name: str, handler: None = None, *, help: str | None = None) -> Callable[[H], H]: ...

    @overload
    def command(self, name: str, handler: H, *, help: str | None = None) -> H: ...

    def command(self, name: str, handler: H | None = None, *, help: str | None = None) -> H | Callable[[H], H]:
        """Register ``handler`` as control command ``name``; without it, return a decorator.

        Parameters typed ``str``, ``int``, ``float`` or ``bool`` become the command's
        arguments; the docstring (or ``help``) is its help; the return value must be
        JSON-serialisable. A built-in's name overrides it. See `open_control_server`.
        """
        if handler is None:
            return decorator(self.commands, name, help)
        return self.commands.add(name, handler, help=help)

    # -- context ------------------------------------------------------------------------

    async def __aenter__(self) -> Master:
        if self._state is not _State.NEW:
            raise StateError("a Master can be entered only once; create a new one")
        self._services.open(self._config)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._spawners.open(self._tg)
        self._rollout.open(self._tg)
        self._state = _State.OPEN
        self._show_title()
        if self._config.recycle is not None:
            self._tg.start_soon(self._recycler.run, self._config.recycle, name="drover-py recycler")
        self._services.start(self._config, self._tg)
        self.stats.sink = self._services.output
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
            try:
                result = await exit_task_group(tg, exc_type, exc, tb)
            finally:
                self._services.close()
        return result

    @property
    def sockets(self) -> list[socket.socket]:
        """Return the listening sockets of ``bind``, in order, while the master is open.

        Port 0 is resolved: ``master.sockets[0].getsockname()`` is the bound address.
        Empty before ``async with master:`` and after it.
        """
        return self._services.sockets

    def _notify_ready(self) -> None:
        self._services.ready(self.started_count, self._config.count)

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
                raise OperationInterruptedError(f"{name}() was interrupted by a shutdown")

    def _closed(self) -> bool:
        return self._state is _State.CLOSED

    def _begin_closing(self) -> None:
        self._state = _State.CLOSING
        if self._op_scope is not None:
            self._op_scope.cancel()

    # -- worker bookkeeping ----------------------------------------------------------

    def _new_worker(self, slot: int, config: MasterConfig) -> Worker:
        worker = Worker(
            worker_id=self._table.next_id(),
            slot=slot,
            config=config,
            host=self._host,
            log=self._log,
            listen_fds=self._services.listen_fds,
            spawner=self._spawners.for_config(config),
            output=self._services.output,
        )
        self._table.add(worker)
        return worker

    def _worker_status(self, worker: Worker, status: WorkerStatus) -> None:
        self._emit("status-changed", worker.id, status)
        if status is WorkerStatus.STARTED:
            self.stats.started(worker)
            self._emit("worker-started", worker.id)
            self._recycler.worker_started()

    def _worker_exited(self, worker: Worker) -> None:
        self.stats.exited(worker)
        self._app_metrics.worker_gone(worker.id)
        if worker.requested:
            self._table.discard(worker)
        if not worker.ever_started or worker.probation:
            return  # the operation that spawned it reports the failure by raising
        if worker.requested:
            self._emit("worker-retired", worker.exit_reason, worker.id)
            return
        self._emit("worker-exit", worker.exit_reason, worker.id)
        if self._restarter is not None and self._tg is not None and self._state is _State.OPEN:
            self._tg.start_soon(self._restarter.restart, worker, name=f"drover-py restart of {worker.id}")

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
            await self._rollout.launch(range(self._config.count), self._config)
            self._started = True
            self._notify_ready()
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
            return await self._restart_one(worker_id)

    def restart_worker_soon(self, worker_id: int) -> None:
        """Start `restart_worker_by_id` as a task of the master and return at once.

        For callers that cannot wait for the replacement: a plain-function handler, or a
        worker asking for its own replacement (``drover-py serve --max-requests``).
        A failure is logged, not raised; an id already replaced is left alone.
        """
        if self._tg is None or self._closed():
            return

        async def restart() -> None:
            try:
                await self.restart_worker_by_id(worker_id)
            except StateError as exc:  # the master is shutting down: nothing to replace
                self._log.debug("restart abandoned", worker_id=worker_id, error=str(exc))
            except DroverError as exc:
                self._log.warning("restart failed", worker_id=worker_id, error=str(exc))

        self._tg.start_soon(restart, name=f"drover-py restart of worker {worker_id}")

    async def _restart_one(self, worker_id: int) -> int:
        if worker_id in self._table.replaced:
            return self._table.replaced[worker_id]
        old = self._table.find(worker_id)
        [new] = await self._rollout.replace([old.slot], self._config, olds=[old])
        self.stats.restarts += 1
        return new.id

    async def stop_worker_by_id(self, worker_id: int) -> None:
        """Retire worker ``worker_id`` gracefully without a replacement; its slot stays empty.

        `graceful_reload` fills empty slots again. Raise `UnknownWorkerError` for an id
        the master does not have.
        """
        async with self._operation("stop_worker_by_id"):
            await self._rollout.retire([self._table.find(worker_id)])

    async def scale(self, count: int) -> None:
        """Change the number of workers to ``count``; return once the change is done.

        Up: start workers in the new slots (readiness-gated, all or nothing for the new
        ones). Down: retire the workers of the highest slots gracefully (stop -> quit,
        with deadlines). Before `start`, only the count to start with changes.
        Raise `ConfigError` for ``count`` < 1.
        """
        count = check_count(count)
        async with self._operation("scale"):
            old = self._config.count
            if self._started and count > old:
                await self._rollout.launch(range(old, count), self._config)
            elif self._started and count < old:
                await self._rollout.retire([w for w in self._table if w.slot >= count])
            self._use(attrs.evolve(self._config, count=count))
            self._log.debug("scaled", old=old, count=count)

    async def graceful_reload(
        self,
        script: str | os.PathLike[str] | None = None,
        env: Mapping[str, object] | None = None,
        *,
        batch_size: int = 1,
        canary: float | None = None,
        check: str | os.PathLike[str] | ReloadCheck | None = None,
        check_timeout: float = 30.0,
    ) -> ReloadReport:
        """Replace every worker with zero downtime; optionally upgrade script or env; return a `ReloadReport`.

        Slot by slot (``batch_size`` slots at a time): start the replacement, wait for
        "started", then retire the old worker gracefully, so a slot is never empty. A
        given ``script`` or ``env`` (which replaces the ``env`` option) applies to the
        replacements and becomes the master's configuration only if every slot was
        replaced. With ``canary`` seconds, the first batch is watched that long before
        its old workers retire.

        With ``check``, the first batch is checked once ready (after its canary window)
        before its old workers retire: a script, run as `run_check` runs it with
        ``DROVER_PY_CHECK_WORKERS="id:pid,..."`` naming the new workers, must exit 0
        within ``check_timeout`` seconds; or an async callable, given the new workers'
        snapshots (it can `request` them), must not raise nor return False.

        Rollback: if a replacement fails to start (or exits in the canary window, or
        fails the check), the slots already switched are replaced again with the old
        configuration, the old workers still running are kept, and `ReloadError` is
        raised with ``.reason`` (a failed check's output in ``.stderr_tail``).
        """
        new_config = self._config  # evolve checks what changes (ConfigError)
        if script is not None:
            new_config = attrs.evolve(new_config, script=script)
        if env is not None:
            new_config = attrs.evolve(new_config, env=env)
        batch_size = check_count(batch_size, "batch_size")
        if canary is not None:
            canary = check_seconds("canary", canary)
        check_timeout = check_seconds("check_timeout", check_timeout)
        async with self._operation("graceful_reload"):
            if not self._started:
                raise StateError("graceful_reload() needs a started master: call start() first")
            old_config = self._config
            new_config = attrs.evolve(new_config, count=old_config.count)
            self._services.reloading()
            self._spawners.fresh(new_config)  # preload mode: a new template imports the code on disk now
            began = anyio.current_time()
            outcome = "interrupted"
            try:
                checker = None if check is None else functools.partial(check_workers, check, check_timeout)
                report = await self._rollout.reload(old_config, new_config, batch_size, canary, checker)
                outcome = "success"
                self._use(new_config)  # the old template goes once its last worker is gone
                self._log.debug("reloaded", script=new_config.script.name)
            except ReloadError:
                outcome = "rolled_back"
                raise
            finally:
                self.stats.reloaded(outcome, anyio.current_time() - began)
                self._notify_ready()
            return report

    async def run_check(self, script: str | os.PathLike[str], timeout: float = 30.0) -> CheckResult:
        """Run ``python SCRIPT`` once with the workers' environment, working directory and user.

        Return a `CheckResult`: passed (exit code 0 within ``timeout`` seconds) or not,
        the exit reason, the time taken and the last lines it printed. Past the timeout,
        its process group gets SIGTERM, then SIGKILL after ``kill_timeout``.
        """
        self._check_usable("run_check")
        timeout = check_seconds("timeout", timeout)
        return await run_check(self._config, script, timeout)

    async def drain(self, seconds: float) -> None:
        """Say the master is going away, and keep serving ``seconds`` before returning.

        `draining` turns True (``/healthz`` answers 503, so a load balancer or Kubernetes
        takes the instance out of rotation) while the workers go on as before; call
        `graceful_shutdown` afterwards (``graceful_shutdown(drain=...)`` does both).
        """
        seconds = check_seconds("seconds", seconds)
        self._check_usable("drain")
        self._draining = True
        self._services.stopping()
        self._log.info("draining before the shutdown", seconds=seconds)
        await anyio.sleep(seconds)  # the workers keep serving while the endpoints update

    def _use(self, config: MasterConfig) -> None:
        """Make ``config`` the master's configuration, for its titles and its spawners too."""
        self._config = config
        self._spawners.use(config)
        self._show_title()

    async def graceful_shutdown(self, *, drain: float = 0.0) -> None:
        """Stop every worker gracefully and concurrently; return once all are reaped.

        Per worker: "stop" -> "stopped" -> "quit" -> "shut_down" -> exit, all within
        ``stop_timeout``; then SIGTERM, then SIGKILL to its process group after
        ``kill_timeout``. An operation in progress is interrupted. Calling it again after
        it finished does nothing. The master cannot be started again afterwards.

        With ``drain`` seconds, first say so (`draining` turns True: the control server's
        ``/healthz`` answers 503, so a load balancer or Kubernetes takes the instance out
        of rotation) while the workers keep serving that long; then stop them.
        """
        if self._state is _State.NEW:
            raise StateError("graceful_shutdown() needs the master's context: 'async with master:'")
        if self._state is _State.CLOSED:
            return
        if drain and not self._draining:
            await self.drain(drain)
            if self._closed():  # a hard shutdown came meanwhile
                return
        self._draining = True
        self._begin_closing()
        self._services.stopping()
        async with self._lock:
            if self._closed():
                return
            await self._rollout.retire(list(self._table))
            self._table.clear()
            self._close()
            self._log.debug("shut down")

    async def hard_shutdown(self) -> None:
        """SIGKILL every worker's process group at once; return once all are reaped."""
        if self._state is _State.NEW:
            raise StateError("hard_shutdown() needs the master's context: 'async with master:'")
        self._begin_closing()
        workers = list(self._table)
        for worker in workers:
            worker.let_go()
            worker.kill()
        for worker in workers:
            await worker.stop()  # already dead: this only waits for the reap, bounded
        self._table.clear()
        self._close()

    def _show_title(self) -> None:
        if self._state is _State.OPEN:
            self._services.show_title(self._config)

    def _close(self) -> None:
        self._state = _State.CLOSED
        self._services.remove_title()
        self._spawners.close()
        self._done.set()

    async def supervise(self) -> None:
        """Block while the master runs; return once it has shut down.

        Raise `RestartLimitError` as soon as the restart policy gives up (the workers
        still running are kept: shut down or carry on as you see fit).
        """
        if self._state is _State.NEW:
            raise StateError("supervise() needs the master's context: 'async with master:'")
        await self._done.wait()
        if self._failure is not None:
            raise self._failure

    def _give_up(self, why: str) -> None:
        if self._failure is not None:
            return
        self._failure = RestartLimitError(f"restart policy gave up: {why}")
        self._log.error("restart policy gave up", why=why)
        self._emit("restarts-exhausted", self._failure)
        self._done.set()
