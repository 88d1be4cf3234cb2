"""The child side: `MessageBus` (async, anyio) and `SyncMessageBus` (threads).

Every worker imports this module on every start, so it must stay light: the standard
library, anyio and the pure protocol only. No attrs, no structlog, no master code.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from types import TracebackType

    import anyio.abc

    from .metrics import Counter, Gauge, Histogram, MetricRegistry

from .._checks import check_seconds
from .._compat import BareThread, call_in_turn, call_maybe_async, exit_task_group
from .._env import CHANNEL_ENV, HEARTBEAT_ENV, SLOT_ENV, WORKER_ID_ENV, parse_channel
from .._exceptions import ChannelError, StateError
from .._wire import protocol as proto
from .._wire.channel import ChannelReader, ChannelWriter
from .._wire.conversation import DEFAULT_TIMEOUT, Conversation, NoHandler, ThreadConversation, set_request_handler

#: Exit code of a worker whose master went away (its channel reached end of file).
LIFELINE_EXIT_CODE = 70

_EVENTS = {"stop": proto.STOP, "quit": proto.QUIT, "message": proto.MESSAGE}
# What each message lets the child send next, and the acknowledgement it expects.
_ACK = {proto.STOP: proto.STOPPED, proto.QUIT: proto.SHUT_DOWN}
_NEEDS = {proto.STOPPED: proto.STOP, proto.SHUT_DOWN: proto.QUIT}
#: Before these answers the metrics' last changes go out: a graceful exit loses none.
_FLUSH_BEFORE = frozenset({proto.STOPPED, proto.SHUT_DOWN})

Handler = Callable[..., "Awaitable[None] | None"]
SyncHandler = Callable[..., None]
#: Answers the master's request: ``handler(payload)`` returns a JSON-serialisable result.
RequestHandler = Callable[..., object]


def _channel_from_env() -> tuple[int, int]:
    value = os.environ.get(CHANNEL_ENV)
    if value is None:
        raise ChannelError(
            f"no drover-py channel: {CHANNEL_ENV} is not set. This script must be started by a drover_py Master."
        )
    try:
        read_fd, write_fd = parse_channel(value)
        os.fstat(read_fd)
        os.fstat(write_fd)
    except (ValueError, OSError) as exc:
        raise ChannelError(f"invalid drover-py channel {CHANNEL_ENV}={value!r}: {exc}") from None
    return read_fd, write_fd


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value is not None and value.isdigit() else None


def _writable(fd: int) -> bool:
    """Return whether the pipe ``fd`` has room for a write now (no wait)."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(0))


def _heartbeat_interval() -> float | None:
    try:
        interval = float(os.environ.get(HEARTBEAT_ENV, ""))
    except ValueError:
        return None
    return interval if interval > 0 else None


class _Lifeline:
    """A daemon thread that ends the process when the master's end of the channel closes.

    It polls the read fd for hang-up only, so it consumes no data and works whatever the
    event loop is doing (or when there is none). Not PR_SET_PDEATHSIG: trio spawns from a
    worker thread, and the signal fires when that thread exits, killing a healthy child.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._wake_r, self._wake_w = os.pipe()
        self._thread = BareThread(self._watch)

    def _watch(self) -> None:
        poller = select.poll()
        poller.register(self._fd, 0)  # POLLHUP and POLLERR are always reported
        poller.register(self._wake_r, select.POLLIN)
        while True:
            for fd, events in poller.poll():
                if fd == self._wake_r:
                    return
                if events & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    os._exit(LIFELINE_EXIT_CODE)

    def close(self) -> None:
        os.write(self._wake_w, b"x")
        self._thread.join()
        os.close(self._wake_r)
        os.close(self._wake_w)


class _BusState:
    """What both buses share: ids, handler registry, and the order of messages."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = _channel_from_env()
        #: The worker's slot (0 .. count-1), or None if the master did not say.
        self.slot = _int_env(SLOT_ENV)
        #: The worker's id within its master, or None if the master did not say.
        self.worker_id = _int_env(WORKER_ID_ENV)
        self._handlers: dict[str, list[Callable[..., object]]] = {proto.STOP: [], proto.QUIT: [], proto.MESSAGE: []}
        self._request_handlers: dict[str, RequestHandler] = {}
        self._received: set[str] = set()
        self._sent: set[str] = set()
        # The messages a caller of wait_stop()/wait_quit() answers itself: wait_stop()
        # takes both "stop" and "quit" (the linear style answers both), wait_quit() only
        # "quit", so a "stop" nobody handles still gets the default "stopped".
        self._owned: set[str] = set()
        #: Seconds between heartbeats the master asked for, or None.
        self.heartbeat_interval = _heartbeat_interval()
        self._metrics: MetricRegistry | None = None  # made by the first declaration
        self._metrics_lock = threading.Lock()

    def _register(self, event: str, handler: Callable[..., object]) -> None:
        message = _EVENTS.get(event)
        if message is None:
            raise ValueError(f"unknown bus event {event!r}; expected one of: {', '.join(_EVENTS)}")
        if not callable(handler):
            raise TypeError(f"handler for {event!r} must be callable, got {handler!r}")
        self._handlers[message].append(handler)

    def handle(self, name: str, handler: RequestHandler | None) -> None:
        """Answer the master's ``master.request(worker_id, name, payload)`` with ``handler(payload)``.

        The handler returns a JSON-serialisable result (an async bus also accepts a
        coroutine function). If it raises, the master's request raises `RemoteError`
        with the exception's type name and text, and the worker goes on. One handler
        per name: a new one replaces the old, None removes it.
        """
        set_request_handler(self._request_handlers, name, handler)

    def _request_handler(self, name: str) -> RequestHandler:
        handler = self._request_handlers.get(name)
        if handler is None:
            raise NoHandler(f"the worker has no handler for request {name!r}")
        return handler

    def _check_send(self, message: str) -> bool:
        """Return False for a repeated send; raise StateError for an out-of-order one."""
        if message in self._sent:
            return False
        needed = _NEEDS.get(message)
        if needed is not None and needed not in self._received:
            raise StateError(f"cannot send {message!r} before the master sent {needed!r}")
        return True

    def _default_applies(self, message: str) -> bool:
        return not self._handlers[message] and message not in self._owned

    def _own(self, message: str) -> None:
        self._owned.update((proto.STOP, proto.QUIT) if message == proto.STOP else (message,))

    # -- metrics ------------------------------------------------------------------------

    def counter(self, name: str, help: str, labels: Iterable[str] = ()) -> Counter:
        """Declare a counter, a total that only goes up, and return it; the master sums it per slot.

        As in prometheus_client: ``jobs = mb.counter("jobs_done_total", "Jobs done",
        labels=("queue",))``, then ``jobs.labels(queue="a").inc()`` (or
        ``.labels("a")``; keep the series rather than looking it up each time), or
        ``jobs.inc(2)`` for a counter without labels. An increment costs a few hundred
        nanoseconds, is thread-safe without a lock, and travels to the master with the
        others of the same interval. The master keeps each slot's total across the
        worker's restarts and reloads: it never goes back to 0.

        Declaring a name again with the same type, labels and help returns the same
        counter. Raise ValueError for an invalid name (Prometheus rules; the prefix
        ``drover_`` and the labels ``slot`` and ``master`` are reserved) or a name
        declared before with another type, labels or help.
        """
        return self._metric_registry().counter(name, help, labels)

    def gauge(self, name: str, help: str, labels: Iterable[str] = ()) -> Gauge:
        """Declare a gauge, a value that goes up and down, and return it.

        ``depth = mb.gauge("queue_depth", "Jobs waiting")``, then ``depth.set(12)``,
        ``depth.inc()`` or ``depth.dec(3)`` (``.labels(...)`` first when it has labels).
        The master shows the value of the live worker of each slot, and their sum; it
        disappears when that worker exits. Errors as for `counter`.
        """
        return self._metric_registry().gauge(name, help, labels)

    def histogram(
        self, name: str, help: str, labels: Iterable[str] = (), buckets: Iterable[float] | None = None
    ) -> Histogram:
        """Declare a histogram: observations counted in buckets, with their count and sum.

        ``latency = mb.histogram("job_seconds", "Job duration", buckets=(0.1, 0.5,
        2))``, then ``latency.observe(0.27)``. ``buckets`` are the upper bounds, in
        increasing order (+Inf is always added; prometheus_client's default buckets
        when None). The master keeps each slot's counts across the worker's restarts,
        as for a counter. Errors as for `counter`; the label ``le`` is reserved too.
        """
        registry = self._metric_registry()
        if buckets is None:
            from .metrics import DEFAULT_BUCKETS

            buckets = DEFAULT_BUCKETS
        return registry.histogram(name, help, labels, buckets)

    def _metric_registry(self) -> MetricRegistry:
        registry = self._metrics
        if registry is None:
            from .metrics import MetricRegistry  # on first use: a worker without metrics never loads it

            with self._metrics_lock:
                registry = self._metrics
                if registry is None:
                    registry = self._metrics = MetricRegistry()
                    self._metrics_created(registry)
        return registry

    def _metrics_created(self, registry: MetricRegistry) -> None:
        """Hand ``registry`` to the bus's flusher (called once, under ``_metrics_lock``)."""


def _exit_after_quit() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(0)


class MessageBus(_BusState):
    """Talk to the master from an async worker (asyncio or trio, through anyio).

    Use it as ``async with MessageBus() as mb:``. Register handlers with ``mb.on("stop",
    fn)`` and ``mb.on("quit", fn)`` (sync or async), then ``await mb.send_started()``
    once the worker is ready to serve. A handler that raises ends the ``async with``
    block with that error, as any task of a task group would.

    Defaults, for an event without a handler, unless the worker ever called `wait_stop`
    or `wait_quit` (then it answers both messages itself): on "stop" the bus answers
    "stopped" at once; on "quit" it answers "shut_down", flushes stdout and stderr and
    ends the process with exit code 0.

    When the master set ``heartbeat_timeout``, the bus sends a heartbeat from the event
    loop at the interval the master asked for, so a frozen process or a loop blocked
    for too long is detected.

    Metrics (`counter`, `gauge`, `histogram`) go to the master at most once per
    interval (1 s, or ``DROVER_PY_METRICS_INTERVAL`` seconds) when they changed, and
    once more before "stopped" and "shut_down" and when the block ends.

    If the master goes away (its end of the channel closes, even after a SIGKILL), the
    process exits at once with `LIFELINE_EXIT_CODE`, from a watcher thread that works
    even while the event loop is blocked.

    Raise `ChannelError` when the script was not started by a drover-py master.
    """

    def __init__(self) -> None:
        super().__init__()
        self._tg: anyio.abc.TaskGroup | None = None
        self._lifeline: _Lifeline | None = None
        self._writer: ChannelWriter | None = None
        self._conversation: Conversation | None = None
        self._events: dict[str, anyio.Event] = {}
        # The metrics' flusher sleeps on a pipe that the first change after a batch
        # writes to, from whatever thread made it.
        self._wake_r = self._wake_w = -1
        self._wake_lock = threading.Lock()  # no wake-up writes to a closed (maybe reused) fd
        self._flush_lock: anyio.Lock | None = None

    def on(self, event: str, handler: Handler) -> None:
        """Call ``handler`` (a function or a coroutine function) when ``event`` arrives.

        ``event`` is "stop" (stop accepting work, then `send_stopped`), "quit"
        (release what is left, `send_shut_down`, then let the process end), both called
        as ``handler()``, or "message": ``handler(payload)`` for each message of
        `Master.send` or `Master.broadcast`, awaited one at a time, in order. Messages
        that arrive with no "message" handler are dropped.
        """
        self._register(event, handler)

    async def __aenter__(self) -> MessageBus:
        if self._tg is not None:
            raise StateError("this MessageBus is already open")
        self._events = {proto.STOP: anyio.Event(), proto.QUIT: anyio.Event()}
        self._lifeline = _Lifeline(self._read_fd)
        os.set_inheritable(self._read_fd, False)
        os.set_inheritable(self._write_fd, False)
        self._writer = ChannelWriter(self._write_fd)
        reader = ChannelReader(self._read_fd, proto.TO_WORKER)
        self._conversation = Conversation(self._writer, peer="the master", deliver=self._deliver, answer=self._answer)
        self._flush_lock = anyio.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._read_loop, reader, name="drover-py bus reader")
        self._tg.start_soon(self._conversation.run, name="drover-py bus conversation")
        self._tg.start_soon(self._metrics_loop, name="drover-py metrics")
        if self.heartbeat_interval is not None:
            self._tg.start_soon(self._heartbeat, self.heartbeat_interval, name="drover-py heartbeat")
        with self._metrics_lock:
            if self._metrics is not None:
                self._metrics.attach(self._wake)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None and self._lifeline is not None
        if self._metrics is not None:  # what changed since the last batch, if the master still reads
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                try:
                    await self._flush_metrics(force=True)
                except ChannelError:
                    pass
        self._tg.cancel_scope.cancel()
        try:
            return await exit_task_group(self._tg, exc_type, exc, tb)
        finally:
            with self._wake_lock:
                os.close(self._wake_r)
                os.close(self._wake_w)
                self._wake_r = self._wake_w = -1
            self._lifeline.close()
            os.close(self._read_fd)
            os.close(self._write_fd)

    async def _read_loop(self, reader: ChannelReader) -> None:
        assert self._conversation is not None
        feed = self._conversation.feed
        while True:
            messages = await reader.receive_batch()
            if messages is None:
                self._conversation.close("its channel ended")
                return  # the master is gone: the lifeline thread ends the process
            for message in messages:
                if isinstance(message, str):
                    self._dispatch(message)
                else:
                    feed(message)

    def _deliver(self, payload: object) -> Awaitable[None] | None:
        """Run the message handlers in turn; return what is left to await, if anything."""
        return call_in_turn(list(self._handlers[proto.MESSAGE]), payload)

    def _answer(self, name: str, payload: object) -> object:
        """Return the handler's result, or its awaitable (a coroutine function's)."""
        return self._request_handler(name)(payload)

    def _talk(self) -> Conversation:
        if self._conversation is None:
            raise StateError("use the MessageBus inside 'async with MessageBus() as mb:'")
        return self._conversation

    def send(self, payload: object) -> Awaitable[None]:
        """Send ``payload`` (JSON-serialisable) to the master's "message" handlers; await it.

        Messages arrive in order. When the master has `WINDOW` bytes (256 KiB) of this
        worker's messages and requests not yet handled, this waits (backpressure).
        Raise TypeError for a payload that is not JSON, `ProtocolError` for one over
        the size limit, `PeerGoneError` once the master is gone.
        """
        # The conversation's own coroutine, not one of ours around it: this runs per message.
        return self._talk().send(payload)

    async def request(self, name: str, payload: object = None, *, timeout: float = DEFAULT_TIMEOUT) -> object:
        """Ask the master's ``master.handle(name, ...)`` handler and return its answer.

        Raise `RemoteError` if the handler raised or there is none,
        `RequestTimeoutError` after ``timeout`` seconds and `PeerGoneError` if the
        master goes away meanwhile; `ConfigError` for a ``timeout`` that is not a
        finite number of seconds > 0.
        """
        return await self._talk().request(name, payload, check_seconds("timeout", timeout))

    # -- metrics ------------------------------------------------------------------------

    def _metrics_created(self, registry: MetricRegistry) -> None:
        if self._wake_w >= 0:
            registry.attach(self._wake)  # else `__aenter__` does

    def _wake(self) -> None:
        """Wake `_metrics_loop` (from any thread): something changed since the last batch."""
        with self._wake_lock:
            if self._wake_w >= 0:
                try:
                    os.write(self._wake_w, b"!")
                except OSError:  # full: it is awake already
                    pass

    async def _metrics_loop(self) -> None:
        """Send the metrics' changes: at once after a quiet time, then at most once per interval."""
        wake_r = self._wake_r
        retry = False
        while True:
            if not retry:
                await anyio.wait_readable(wake_r)
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
            try:
                retry = not await self._flush_metrics(force=False)
            except ChannelError:
                return  # the master is gone; the lifeline handles it
            assert self._metrics is not None
            await anyio.sleep(self._metrics.interval)

    async def _flush_metrics(self, *, force: bool) -> bool:
        """Send what the metrics did since the last batch; return False if the channel is congested.

        Congested: a frame is being written or waits its turn, the master holds a window
        of our messages, or the pipe is full. Then nothing is collected, and the next
        batch carries these changes too, rather than queueing frames. ``force`` sends
        anyway (waiting for its turn).
        """
        registry, writer, conversation = self._metrics, self._writer, self._conversation
        if registry is None or writer is None or conversation is None or self._flush_lock is None:
            return True
        async with self._flush_lock:  # one batch at a time, in order: a declaration precedes its series
            if not force and (
                writer.busy or conversation.credit < proto.MAX_FRAME_SIZE or not _writable(self._write_fd)
            ):
                return False
            for frame in registry.collect():
                await writer.send(frame)
        return True

    async def flush_metrics(self) -> None:
        """Send the metrics' changes to the master now, without waiting for the interval.

        Not needed for a graceful stop (the bus sends them before "stopped"); useful
        before a worker ends in another way, or to make sure the master has them.
        """
        if self._writer is None:
            raise StateError("use the MessageBus inside 'async with MessageBus() as mb:'")
        await self._flush_metrics(force=True)

    async def _heartbeat(self, interval: float) -> None:
        """Prove the event loop runs: a frozen or blocked loop misses its beats."""
        assert self._writer is not None
        frame = proto.encode(proto.HEARTBEAT)
        while True:
            await anyio.sleep(interval)
            try:
                await self._writer.send(frame)
            except ChannelError:
                return  # the master is gone; the lifeline handles it

    def _dispatch(self, message: str) -> None:
        assert self._tg is not None
        self._received.add(message)
        self._events[message].set()
        if self._handlers[message]:
            for handler in self._handlers[message]:
                self._tg.start_soon(self._call, handler)
        elif self._default_applies(message):
            self._tg.start_soon(self._default_stop if message == proto.STOP else self._default_quit)

    @staticmethod
    async def _call(handler: Callable[..., object], *args: object) -> None:
        await call_maybe_async(handler, *args)

    async def _default_stop(self) -> None:
        await self.send_stopped()

    async def _default_quit(self) -> None:
        await self.send_shut_down()
        _exit_after_quit()

    async def _send(self, message: str) -> None:
        if self._writer is None:
            raise StateError("use the MessageBus inside 'async with MessageBus() as mb:'")
        if self._check_send(message):
            self._sent.add(message)
            if message in _FLUSH_BEFORE and self._metrics is not None:
                await self._flush_metrics(force=True)
            await self._writer.send(proto.encode(message))

    async def send_started(self) -> None:
        """Tell the master this worker is ready; `Master.start` waits for this."""
        await self._send(proto.STARTED)

    async def send_stopped(self) -> None:
        """Tell the master this worker stopped accepting work (after "stop")."""
        await self._send(proto.STOPPED)

    async def send_shut_down(self) -> None:
        """Tell the master this worker released everything and will exit (after "quit")."""
        await self._send(proto.SHUT_DOWN)

    async def _wait(self, message: str) -> None:
        if not self._events:
            raise StateError("use the MessageBus inside 'async with MessageBus() as mb:'")
        self._own(message)
        await self._events[message].wait()

    async def wait_stop(self) -> None:
        """Block until the master sends "stop". The caller then owes `send_stopped`.

        From the first call on, the bus leaves both "stop" and "quit" to the caller (the
        linear style: wait, drain, `send_stopped`, `wait_quit`, `send_shut_down`).
        """
        await self._wait(proto.STOP)

    async def wait_quit(self) -> None:
        """Block until the master sends "quit". The caller then owes `send_shut_down`.

        A "stop" with no handler (and no `wait_stop`) still gets the default "stopped".
        """
        await self._wait(proto.QUIT)


class SyncMessageBus(_BusState):
    """Talk to the master from a synchronous worker (threads, a WSGI server, a plain loop).

    Use it as ``with SyncMessageBus() as mb:``. A reader thread receives the master's
    messages and calls the handlers registered with ``mb.on(...)`` in that thread, one
    at a time. The main thread typically calls ``mb.send_started()`` and then blocks in
    ``mb.wait_quit()`` or serves until a "stop" handler ends its loop. Defaults, the
    lifeline and the metrics are those of `MessageBus` (the metrics go out from a thread
    of their own, started by the first declaration).
    """

    def __init__(self) -> None:
        super().__init__()
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._events = {proto.STOP: threading.Event(), proto.QUIT: threading.Event()}
        self._lifeline: _Lifeline | None = None
        self._reader: BareThread | None = None
        self._wake_r = self._wake_w = -1
        self._opened = False
        self._closing = threading.Event()
        self._conversation: ThreadConversation | None = None
        self._metrics_wake = threading.Event()
        self._metrics_thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()

    def on(self, event: str, handler: SyncHandler) -> None:
        """Call ``handler`` when ``event`` arrives.

        "stop" and "quit" call ``handler()`` in the reader thread; "message" calls
        ``handler(payload)`` in the dispatcher thread, one message at a time, in order
        (an exception is printed to stderr and the next message is delivered).
        """
        self._register(event, handler)

    def __enter__(self) -> SyncMessageBus:
        if self._opened:
            raise StateError("this SyncMessageBus is already open")
        self._opened = True
        self._lifeline = _Lifeline(self._read_fd)
        os.set_inheritable(self._read_fd, False)
        os.set_inheritable(self._write_fd, False)
        os.set_blocking(self._read_fd, True)
        os.set_blocking(self._write_fd, True)
        self._wake_r, self._wake_w = os.pipe()
        self._conversation = ThreadConversation(
            self._write_frame, peer="the master", deliver=self._deliver, answer=self._answer
        )
        self._reader = BareThread(self._read_loop)
        if self.heartbeat_interval is not None:
            threading.Thread(
                target=self._heartbeat, args=(self.heartbeat_interval,), name="drover-py heartbeat", daemon=True
            ).start()
        with self._metrics_lock:
            if self._metrics is not None:
                self._start_metrics(self._metrics)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._lifeline is not None and self._reader is not None and self._conversation is not None
        if self._metrics is not None:  # what changed since the last batch, if the master still reads
            try:
                self._flush_metrics(force=True)
            except ChannelError:
                pass
        self._closing.set()
        self._metrics_wake.set()
        if self._metrics_thread is not None and self._metrics_thread is not threading.current_thread():
            self._metrics_thread.join()
        self._conversation.close("the bus was closed")
        with self._write_lock:  # no heartbeat is mid-write when the fds close
            pass
        os.write(self._wake_w, b"x")
        if not self._reader.is_current():
            self._reader.join()
        self._lifeline.close()
        for fd in (self._wake_r, self._wake_w, self._read_fd, self._write_fd):
            os.close(fd)

    def _heartbeat(self, interval: float) -> None:
        """Beat from a thread: proves the process is not frozen (not that main is free)."""
        frame = proto.encode(proto.HEARTBEAT)
        while not self._closing.wait(interval):
            with self._write_lock:
                if self._closing.is_set():
                    return
                try:
                    os.write(self._write_fd, frame)
                except OSError:
                    return

    # -- metrics ------------------------------------------------------------------------

    def _metrics_created(self, registry: MetricRegistry) -> None:
        if self._opened:
            self._start_metrics(registry)  # else `__enter__` does

    def _start_metrics(self, registry: MetricRegistry) -> None:
        if self._metrics_thread is not None:
            return
        registry.attach(self._metrics_wake.set)
        self._metrics_thread = threading.Thread(target=self._metrics_loop, name="drover-py metrics", daemon=True)
        self._metrics_thread.start()

    def _metrics_loop(self) -> None:
        """Send the metrics' changes: at once after a quiet time, then at most once per interval."""
        assert self._metrics is not None
        interval = self._metrics.interval
        retry = False
        while True:
            if not retry:
                self._metrics_wake.wait()
            self._metrics_wake.clear()
            if self._closing.is_set():
                return
            try:
                retry = not self._flush_metrics(force=False)
            except ChannelError:
                return  # the master is gone; the lifeline handles it
            if self._closing.wait(interval):
                return

    def _flush_metrics(self, *, force: bool) -> bool:
        """Send what the metrics did since the last batch; False if congested (see `MessageBus`)."""
        registry, conversation = self._metrics, self._conversation
        if registry is None or conversation is None:
            return True
        with self._flush_lock:  # one batch at a time, in order: a declaration precedes its series
            if not force and (
                self._write_lock.locked() or conversation.credit < proto.MAX_FRAME_SIZE or not _writable(self._write_fd)
            ):
                return False
            for frame in registry.collect():
                self._write_frame(frame)
        return True

    def flush_metrics(self) -> None:
        """Send the metrics' changes to the master now (see `MessageBus.flush_metrics`)."""
        if not self._opened:
            raise StateError("use the SyncMessageBus inside 'with SyncMessageBus() as mb:'")
        self._flush_metrics(force=True)

    def _read_loop(self) -> None:
        decoder = proto.Decoder(proto.TO_WORKER)
        poller = select.poll()
        poller.register(self._read_fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._wake_r in ready:
                return
            data = os.read(self._read_fd, 65536)
            if not data:
                assert self._conversation is not None
                self._conversation.close("its channel ended")
                return  # the master is gone: the lifeline thread ends the process
            assert self._conversation is not None
            batch: list[proto.Data] = []  # conversation frames, handed over together
            for message in decoder.feed(data):
                if isinstance(message, str):
                    if batch:
                        self._conversation.feed_many(batch)
                        batch = []
                    self._dispatch(message)
                else:
                    batch.append(message)
            if batch:
                self._conversation.feed_many(batch)

    def _deliver(self, payload: object) -> None:
        for handler in list(self._handlers[proto.MESSAGE]):
            try:
                handler(payload)
            except Exception:
                import traceback

                traceback.print_exc()

    def _answer(self, name: str, payload: object) -> object:
        return self._request_handler(name)(payload)

    def _write_frame(self, frame: bytes) -> None:
        with self._write_lock:
            try:
                written = os.write(self._write_fd, frame)  # the whole frame, nearly always
                if written < len(frame):
                    view = memoryview(frame)[written:]
                    while view:
                        view = view[os.write(self._write_fd, view) :]
            except OSError as exc:
                raise ChannelError(f"channel closed: {exc}") from exc

    def _talk(self) -> ThreadConversation:
        if self._conversation is None:
            raise StateError("use the SyncMessageBus inside 'with SyncMessageBus() as mb:'")
        return self._conversation

    def send(self, payload: object, timeout: float | None = None) -> None:
        """Send ``payload`` to the master's "message" handlers (see `MessageBus.send`).

        Block while the master has no room, at most ``timeout`` seconds (then raise
        `RequestTimeoutError`).
        """
        self._talk().send(payload, None if timeout is None else check_seconds("timeout", timeout))

    def request(self, name: str, payload: object = None, timeout: float = DEFAULT_TIMEOUT) -> object:
        """Ask the master's handler for ``name`` and block for its answer (see `MessageBus.request`)."""
        return self._talk().request(name, payload, check_seconds("timeout", timeout))

    def _dispatch(self, message: str) -> None:
        with self._state_lock:
            self._received.add(message)
            self._events[message].set()
            handlers = list(self._handlers[message])
            default = not handlers and self._default_applies(message)
        for handler in handlers:
            handler()
        if default:
            if message == proto.STOP:
                self.send_stopped()
            else:
                self.send_shut_down()
                _exit_after_quit()

    def _send(self, message: str) -> None:
        if not self._opened:
            raise StateError("use the SyncMessageBus inside 'with SyncMessageBus() as mb:'")
        with self._state_lock:
            if not self._check_send(message):
                return
            self._sent.add(message)
        if message in _FLUSH_BEFORE and self._metrics is not None:
            self._flush_metrics(force=True)
        self._write_frame(proto.encode(message))

    def send_started(self) -> None:
        """Tell the master this worker is ready; `Master.start` waits for this."""
        self._send(proto.STARTED)

    def send_stopped(self) -> None:
        """Tell the master this worker stopped accepting work (after "stop")."""
        self._send(proto.STOPPED)

    def send_shut_down(self) -> None:
        """Tell the master this worker released everything and will exit (after "quit")."""
        self._send(proto.SHUT_DOWN)

    def _wait(self, message: str, timeout: float | None) -> bool:
        with self._state_lock:
            self._own(message)
        return self._events[message].wait(timeout)

    def wait_stop(self, timeout: float | None = None) -> bool:
        """Block until "stop" arrives; return False if ``timeout`` seconds passed first."""
        return self._wait(proto.STOP, timeout)

    def wait_quit(self, timeout: float | None = None) -> bool:
        """Block until "quit" arrives; return False if ``timeout`` seconds passed first."""
        return self._wait(proto.QUIT, timeout)
