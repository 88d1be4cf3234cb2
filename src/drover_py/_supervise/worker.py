"""One worker process as the master sees it: spawn, channel, status, stop escalation."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable
from typing import Protocol

import anyio
import anyio.abc
import attrs
from structlog.typing import FilteringBoundLogger

from .._config.options import MasterConfig
from .._exceptions import (
    ChannelError,
    PeerGoneError,
    PreloadError,
    ProtocolError,
    SpawnError,
    StartTimeoutError,
    WorkerStartError,
)
from .._exit_reasons import ExitReason, StartTimeout, classify
from .._spawn.base import ChildProcess, Spawner
from .._spawn.exec import ExecSpawner
from .._spawn.preload import TemplateDied, TemplateError
from .._status import WorkerStatus, can_transition
from .._wire import protocol as proto
from .._wire.channel import ChannelReader, ChannelWriter
from .._wire.conversation import DEFAULT_TIMEOUT, Conversation
from .._wire.metrics import MetricsBatch
from .handoff import Handoff
from .oom import OOM_DETAIL, OomProbe
from .output import OutputSink, Source, Tail, read_output

#: Seconds the master keeps reading a worker's channel after its process exited.
DRAIN_TIMEOUT = 0.5
#: Seconds to wait for the kernel to reap a worker after SIGKILL before giving up.
REAP_TIMEOUT = 10.0

# The status a worker must be in for each message it may send, and the status it leads to.
_ACCEPTS = {
    proto.STARTED: (WorkerStatus.STARTING, WorkerStatus.STARTED),
    proto.STOPPED: (WorkerStatus.STOPPING, WorkerStatus.STOPPED),
    proto.SHUT_DOWN: (WorkerStatus.SHUTTING_DOWN, WorkerStatus.SHUT_DOWN),
}


@attrs.frozen
class WorkerSnapshot:
    """A frozen view of one worker, as returned by `Master.workers`."""

    #: Unique within one master, never reused.
    id: int
    #: 0 .. count-1; a replacement takes the slot of the worker it replaces.
    slot: int
    #: Process id, or None before the process exists.
    pid: int | None
    status: WorkerStatus
    #: Wall-clock time (``time.time()``) at which it sent "started", or None.
    started_at: float | None
    #: Why the process ended, once it has.
    exit_reason: ExitReason | None


class WorkerHost(Protocol):
    """What a `Worker` tells its master, and asks of it."""

    def worker_status(self, worker: Worker, status: WorkerStatus) -> None:
        """``worker`` moved to ``status``."""

    def worker_exited(self, worker: Worker) -> None:
        """``worker``'s process was reaped; its exit reason is final."""

    def worker_message(self, worker: Worker, payload: object) -> Awaitable[None] | None:
        """Handle a message from ``worker``; return what is left to await, if anything."""

    def worker_request(self, worker: Worker, name: str, payload: object) -> object:
        """Answer ``worker``'s request (or return an awaitable of the answer); raise NoHandler if none."""

    def worker_metrics(self, worker: Worker, batch: MetricsBatch) -> None:
        """Take a batch of ``worker``'s metrics; raise ProtocolError if it is inconsistent."""


class Worker:
    """One child process and its channel. Owned and driven by a `Master` (its `WorkerHost`).

    ``run`` is the worker's supervising task; `stop`, `terminate` and `kill` are called
    by the master's operations. None of them raises for the child's misbehaviour: they
    escalate and record instead.
    """

    def __init__(
        self,
        *,
        worker_id: int,
        slot: int,
        config: MasterConfig,
        host: WorkerHost,
        log: FilteringBoundLogger,
        listen_fds: tuple[int, ...] = (),
        spawner: Spawner | None = None,
        output: OutputSink | None = None,
    ) -> None:
        self.id = worker_id
        self.slot = slot
        self.config = config
        self._listen_fds = listen_fds
        self._spawner: Spawner = ExecSpawner() if spawner is None else spawner
        self._log = log.bind(worker_id=worker_id, slot=slot)
        self._host = host
        self._conversation: Conversation | None = None
        self._output = output
        self._output_fds: tuple[int | None, int] | None = None  # read ends of captured stdout (if it is), stderr
        #: The last lines of the worker's stderr (while the master's output sink reads it).
        self.stderr_tail = Tail()
        self._output_done = anyio.Event()
        self.status = WorkerStatus.INITIALIZED
        self.process: ChildProcess | None = None
        self.started_at: float | None = None
        self.exit_reason: ExitReason | None = None
        #: The master asked this worker to go (stop, terminate or kill): see `let_go`.
        self.requested = False
        #: Why the master judged this worker broken, if it did, and the kind of fault
        #: ("protocol", "channel", "heartbeat").
        self.fault: str | None = None
        self.fault_kind: str | None = None
        #: How the master had to escalate, if it did (becomes the exit reason's detail).
        self.escalation: str | None = None
        self.ever_started = False
        #: While set, an exit is reported by the operation watching the worker, not by
        #: events: see `watch` and `end_probation`.
        self.probation = False
        self._started_clock: float | None = None
        self._spawned_clock: float | None = None
        self._oom: OomProbe | None = None
        self._terminating = False
        self._stopping = False
        self._writer: ChannelWriter | None = None
        self._reader: ChannelReader | None = None
        self._fds: tuple[int, ...] = ()
        self._tg: anyio.abc.TaskGroup | None = None
        # Set on "started", and also when the process ends.
        self._started = anyio.Event()
        self._stopped = anyio.Event()
        self._shut_down = anyio.Event()
        self._process_ended = anyio.Event()
        self._reader_done = anyio.Event()
        self._last_message = 0.0  # loop time of the last message (for the heartbeat watchdog)
        #: Set once the process is reaped and the worker's bookkeeping is final.
        self.exited = anyio.Event()

    @property
    def pid(self) -> int | None:
        """Return the process id, or None before the spawn."""
        return None if self.process is None else self.process.pid

    @property
    def start_seconds(self) -> float | None:
        """Return the seconds from spawn to "started", or None before "started"."""
        if self._spawned_clock is None or self._started_clock is None:
            return None
        return self._started_clock - self._spawned_clock

    def uptime(self) -> float:
        """Return the seconds between "started" and now (or 0 if it never started)."""
        return 0.0 if self._started_clock is None else anyio.current_time() - self._started_clock

    def snapshot(self) -> WorkerSnapshot:
        """Return a frozen view of this worker."""
        return WorkerSnapshot(
            id=self.id,
            slot=self.slot,
            pid=self.pid,
            status=self.status,
            started_at=self.started_at,
            exit_reason=self.exit_reason,
        )

    def _set_status(self, new: WorkerStatus) -> None:
        if new is self.status:
            return
        if not can_transition(self.status, new):
            self._log.debug("status transition ignored", old=self.status.name, new=new.name)
            return
        self._log.debug("status changed", old=self.status.name, new=new.name)
        self.status = new
        self._host.worker_status(self, new)

    # -- the supervising task ------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Spawn the process, serve its channel and reap it. Report the exit to the master.

        Raise `SpawnError` (before ``task_status.started()``) if the process cannot be
        created. Whatever happens, `exited` is set when this returns.
        """
        process: ChildProcess | None = None
        try:
            with anyio.CancelScope(shield=True):  # a process half-spawned must not leak
                process = await self._spawn()
            assert process is not None
            self.process = process
            self._spawned_clock = anyio.current_time()
            self._oom = OomProbe.of(process.pid)
            self._log = self._log.bind(pid=process.pid)
            self._log.debug("spawned", command=self.config.command())
            self._set_status(WorkerStatus.STARTING)
            task_status.started()
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._read_loop, name=f"drover-py worker {self.id} reader")
                assert self._conversation is not None
                tg.start_soon(self._conversation.run, name=f"drover-py worker {self.id} conversation")
                if self.config.heartbeat_timeout is not None:
                    tg.start_soon(self._watchdog, self.config.heartbeat_timeout)
                if self._output_fds is not None:
                    tg.start_soon(self._capture, self._output_fds, process.pid)
                else:
                    self._output_done.set()
                await process.wait()
                self._process_ended.set()
                with anyio.move_on_after(DRAIN_TIMEOUT):
                    for done in (self._output_done, self._reader_done):
                        if not done.is_set():  # waiting on a set Event is still a trip through the loop
                            await done.wait()
                    self._conversation.close(f"worker {self.id} exited")
                    await self._conversation.wait_drained()  # what it said before exiting
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                if self._conversation is not None:
                    self._conversation.close(f"worker {self.id} exited")
                if process is not None:
                    if process.returncode is None:
                        self._kill_group()
                        with anyio.move_on_after(REAP_TIMEOUT):
                            await process.wait()
                    self._kill_group()  # whatever the worker left behind in its group
                for fd in self._fds:
                    os.close(fd)
                self._fds = ()
                self._finish(None if process is None else process.returncode)

    async def _capture(self, fds: tuple[int | None, int], pid: int) -> None:
        assert self._output is not None
        source = Source(self.config.script.name, self.slot, self.id, pid, self.stderr_tail)
        try:
            async with anyio.create_task_group() as tg:
                if fds[0] is not None:
                    tg.start_soon(read_output, fds[0], source, "stdout", self._output)
                tg.start_soon(read_output, fds[1], source, "stderr", self._output)
        finally:
            self._output_done.set()

    async def _spawn(self) -> ChildProcess:
        """Create the process; raise `SpawnError` (or `PreloadError`) if it cannot be.

        A preload template that dies under a spawn is replaced once: its death is not
        the worker's fault (a template killed by the OOM killer, or by hand, just before).
        """
        try:
            try:
                return await self._spawn_once()
            except TemplateDied as exc:
                self._log.warning("preload template died during a spawn; asking a new one", error=str(exc))
                return await self._spawn_once()
        except OSError as exc:
            raise self._spawn_error(exc) from exc

    async def _spawn_once(self) -> ChildProcess:
        output = self._output
        handoff = Handoff.open(stderr=output is not None, stdout=output is not None and output.captures_stdout)
        try:
            request = handoff.request(self.config, slot=self.slot, worker_id=self.id, sockets=self._listen_fds)
            process = await self._spawner.spawn(request)
        except OSError:
            handoff.close_master_ends()
            raise
        finally:
            handoff.close_child_ends()
        read_master, write_master = handoff.channel
        self._fds = handoff.channel
        self._output_fds = handoff.output
        if self._output_fds is not None:
            self._fds += tuple(fd for fd in self._output_fds if fd is not None)
        self._writer = ChannelWriter(write_master)
        self._reader = ChannelReader(read_master, proto.FROM_WORKER)
        self._conversation = Conversation(
            self._writer, peer=f"worker {self.id}", deliver=self._deliver, answer=self._answer
        )
        return process

    def _deliver(self, payload: object) -> Awaitable[None] | None:
        """Run the master's message handlers; return what is left to await, if anything."""
        return self._host.worker_message(self, payload)

    def _answer(self, name: str, payload: object) -> object:
        """Return the master's answer to a request, or an awaitable of it."""
        return self._host.worker_request(self, name, payload)

    def _spawn_error(self, exc: OSError) -> SpawnError:
        self._log.error("spawn failed", error=str(exc))
        error_class = PreloadError if isinstance(exc, TemplateError) else SpawnError
        return error_class(
            f"cannot spawn worker {self.id} (slot {self.slot}) for {str(self.config.script)!r}: {exc}",
            reason=None,
            worker_id=self.id,
            slot=self.slot,
        )

    def _finish(self, returncode: int | None) -> None:
        if returncode is not None:
            detail = self.fault or self.escalation
            if detail is None and returncode == -signal.SIGKILL and not self._terminating and self._oom is not None:
                detail = OOM_DETAIL if self._oom.fired() else None
            self.exit_reason = classify(returncode, detail=detail, stderr_tail=self.stderr_tail.text())
        if not self.requested:
            self._set_status(WorkerStatus.FAILED)
        for event in (self._started, self._stopped, self._shut_down, self._process_ended, self.exited):
            event.set()
        if self.requested or not self.ever_started:
            self._log.debug("exited", reason=str(self.exit_reason))
        else:
            self._log.warning("exited unexpectedly", reason=str(self.exit_reason))
        self._host.worker_exited(self)

    async def _read_loop(self) -> None:
        assert self._reader is not None
        reader = self._reader
        watched = self.config.heartbeat_timeout is not None
        assert self._conversation is not None
        feed = self._conversation.feed
        try:
            while True:
                try:
                    messages = await reader.receive_batch()
                except ProtocolError as exc:
                    self._set_fault("protocol", f"protocol error: {exc}")
                    return
                if messages is None:
                    break
                if watched:  # the heartbeat watchdog counts any message as a sign of life
                    self._last_message = anyio.current_time()
                try:
                    for message in messages:
                        if isinstance(message, str):
                            self._handle(message)
                        elif message.type == proto.METRICS:
                            self._host.worker_metrics(self, message.payload)  # type: ignore[arg-type]
                        else:
                            feed(message)
                except ProtocolError as exc:
                    self._set_fault("protocol", f"protocol error: {exc}")
                    return
        finally:
            self._reader_done.set()
        if self.requested:
            return  # a worker being stopped may close its channel first; stop() has deadlines
        with anyio.move_on_after(self.config.kill_timeout):
            await self._process_ended.wait()
            return
        if not self.requested:
            self._set_fault("channel", f"closed its channel but kept running for {self.config.kill_timeout:g} s")

    async def _watchdog(self, timeout: float) -> None:
        """Fault the worker once ``timeout`` passes without any message from it.

        Messages only record the time; this task wakes once per deadline, not per beat.
        """
        await self._started.wait()
        while not self._process_ended.is_set():
            remaining = self._last_message + timeout - anyio.current_time()
            if remaining <= 0:
                self._set_fault("heartbeat", f"no heartbeat for {timeout:g} s: frozen, or its event loop is blocked")
                return
            await anyio.sleep(remaining)

    def _handle(self, message: str) -> None:
        self._last_message = anyio.current_time()
        if message == proto.HEARTBEAT:
            return
        if self._terminating:
            self._log.debug("message ignored while terminating", message=message)
            return
        expected, new = _ACCEPTS[message]
        if self.status is not expected:
            self._set_fault("protocol", f"message {message!r} out of order (status {self.status.name})")
            return
        self._log.debug("message", message=message)
        if message == proto.STARTED:  # known to the status handlers
            self.started_at = time.time()
            self._started_clock = anyio.current_time()
            if self.process is not None:
                self._oom = OomProbe.of(self.process.pid)  # the cgroup it settled in
        self._set_status(new)
        if message == proto.STARTED:
            self.ever_started = True
            self._started.set()
        elif message == proto.STOPPED:
            self._stopped.set()
        else:
            self._shut_down.set()

    def _set_fault(self, kind: str, fault: str) -> None:
        if self.fault is not None or self._process_ended.is_set():
            return
        self.fault = fault
        self.fault_kind = kind
        self._log.error("worker is broken; terminating it", fault=fault)
        assert self._tg is not None
        self._tg.start_soon(self._terminate_now)

    async def _terminate_now(self) -> None:
        await self.terminate(requested=self.requested)

    # -- operations the master calls ----------------------------------------------

    async def wait_ready(self) -> None:
        """Wait for "started"; raise `WorkerStartError` if the worker exits or times out."""
        with anyio.move_on_after(self.config.start_timeout):
            await self._started.wait()
        if self.ever_started:
            return  # what happens next (even a crash right away) is reported as an exit
        where = f"worker {self.id} (slot {self.slot}) of {self.config.display_name()!r}"
        if self.exited.is_set() or self._process_ended.is_set():
            await self.exited.wait()
            raise WorkerStartError(
                f"{where} {self.exit_reason} before it sent 'started'",
                reason=self.exit_reason,
                worker_id=self.id,
                slot=self.slot,
                stderr_tail=self.stderr_tail.text(),
            )
        timeout = StartTimeout(self.config.start_timeout)
        raise StartTimeoutError(
            f"{where} {timeout}: it must call send_started() once ready; if it needs longer, "
            "raise start_timeout (--start-timeout)",
            reason=timeout,
            worker_id=self.id,
            slot=self.slot,
            stderr_tail=self.stderr_tail.text(),
        )

    def _talk(self) -> Conversation:
        if self._conversation is None:
            raise PeerGoneError(f"worker {self.id} has no channel yet")
        return self._conversation

    def send_message(self, payload: object) -> Awaitable[None]:
        """Send a custom message (see `Master.send`); await the result."""
        return self._talk().send(payload)  # the conversation's coroutine: no frame of our own

    def request(self, name: str, payload: object, timeout: float = DEFAULT_TIMEOUT) -> Awaitable[object]:
        """Send a request to the worker and return its answer (see `Master.request`); await it."""
        return self._talk().request(name, payload, timeout)

    async def _send(self, message: str) -> bool:
        assert self._writer is not None
        try:
            await self._writer.send(proto.encode(message))
        except ChannelError as exc:
            self._log.warning("cannot send to worker", message=message, error=str(exc))
            return False
        return True

    def let_go(self) -> None:
        """Mark the worker as asked to go: from now on its exit is a retirement, not a crash."""
        self.requested = True

    def watch(self) -> None:
        """Put the worker on probation: its exit is the watching operation's to report."""
        self.probation = True

    def end_probation(self) -> None:
        """End `watch`: an exit from now on raises the usual events."""
        self.probation = False

    async def stop(self) -> None:
        """Retire the worker gracefully, escalating past deadlines; return once reaped.

        A STARTED worker gets "stop" then "quit", all within ``stop_timeout``; one that
        never started is terminated at once. Past the deadline: `terminate`.
        """
        self.requested = True
        if self.exited.is_set():
            return
        if self._stopping:
            await self._wait_exited()  # another caller drives the stop
            return
        self._stopping = True
        if self.status is not WorkerStatus.STARTED or self._terminating:
            await self.terminate()
            return
        with anyio.move_on_after(self.config.stop_timeout):
            self._set_status(WorkerStatus.STOPPING)
            if await self._send(proto.STOP):
                await self._stopped.wait()
                if not self._process_ended.is_set():
                    self._set_status(WorkerStatus.SHUTTING_DOWN)
                    if await self._send(proto.QUIT):
                        await self._shut_down.wait()
                        await self._process_ended.wait()
        if not self._process_ended.is_set():
            self.escalation = f"no graceful stop within {self.config.stop_timeout:g} s"
            self._log.warning(
                "graceful stop incomplete; terminating",
                status=self.status.name,
                stop_timeout=self.config.stop_timeout,
            )
            await self.terminate()
        await self._wait_exited()

    async def terminate(self, *, requested: bool = True) -> None:
        """Send SIGTERM, then SIGKILL to the process group after ``kill_timeout``; reap."""
        self.requested = self.requested or requested
        self._terminating = True
        if self.process is not None and not self._process_ended.is_set():
            if self.status in (WorkerStatus.STARTING, WorkerStatus.STARTED):
                self._set_status(WorkerStatus.STOPPING)
            self._signal(signal.SIGTERM)
            with anyio.move_on_after(self.config.kill_timeout):
                await self._process_ended.wait()
            if not self._process_ended.is_set():
                ignored = f"SIGTERM ignored for {self.config.kill_timeout:g} s"
                self.escalation = ignored if self.escalation is None else f"{self.escalation}, {ignored}"
                self._log.warning("ignored SIGTERM; sending SIGKILL", kill_timeout=self.config.kill_timeout)
                self.kill()
        await self._wait_exited()

    def kill(self) -> None:
        """Send SIGKILL to the worker's process group now (does not wait)."""
        self._terminating = True
        self._kill_group()

    async def _wait_exited(self) -> None:
        with anyio.move_on_after(REAP_TIMEOUT):
            await self.exited.wait()
        if not self.exited.is_set():
            self._log.error("process not reaped after SIGKILL", reap_timeout=REAP_TIMEOUT)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        try:
            self.process.send_signal(sig)
        except ProcessLookupError:
            pass

    def _kill_group(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            self._signal(signal.SIGKILL)
