"""Custom messages and requests over a channel, both ways, with flow control.

Used by the master (one `Conversation` per worker) and by the child's buses, so it is
light: the standard library, anyio and the pure protocol.

Flow control is by credit, counted in bytes (as HTTP/2 does). Each side may have at
most `WINDOW` bytes of message and request frames that the other side has not yet
consumed; the receiver grants credit back (a "credit" frame) each time it has consumed
half the window. So a receiver never buffers more than `WINDOW` bytes of frames, a
sender that outruns its receiver waits instead of filling memory, small messages
rarely wait or cost a credit frame, and the reader of a channel never has to stop
reading: the lifecycle frames ("stop", "stopped", ...) that share the pipe are always
handled at once, however many custom messages are queued. Responses and credit frames
are not counted: they are consumed as they arrive (a response answers a request that
was counted).
"""

from __future__ import annotations

import collections
import heapq
import inspect
import itertools
import math
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING

import anyio

from .._compat import BareThread
from .._exceptions import ChannelError, PeerGoneError, ProtocolError, RemoteError, RequestTimeoutError
from . import protocol as proto
from .channel import ChannelWriter

if TYPE_CHECKING:
    import anyio.abc

#: Bytes of message and request frames one side may have unconsumed at the other side.
WINDOW = 256 * 1024
#: A send that needs no wait still lets other tasks run at least once per this many sends.
YIELD_EVERY = 64
#: Consumed bytes that make the receiver grant credit back (half the window).
CREDIT_STEP = WINDOW // 2
# A sender that waits for credit for a frame of the largest size must get it back once
# what is in flight is consumed: half the window must hold the largest frame.
assert CREDIT_STEP >= proto.MAX_FRAME_SIZE
#: Error type of a response to a request that no handler is registered for.
NO_HANDLER = "NoHandler"
#: Seconds a request waits for its response unless told otherwise.
DEFAULT_TIMEOUT = 30.0


class NoHandler(LookupError):
    """No handler is registered for a request's name (answered as a `RemoteError`)."""


def set_request_handler(
    handlers: dict[str, Callable[..., object]], name: str, handler: Callable[..., object] | None
) -> None:
    """Register ``handler`` for requests called ``name`` in ``handlers`` (None removes it)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"request name must be a non-empty str, got {name!r}")
    if handler is None:
        handlers.pop(name, None)
    elif not callable(handler):
        raise TypeError(f"handler for request {name!r} must be callable, got {handler!r}")
    else:
        handlers[name] = handler


class _Flow:
    """Credit and request bookkeeping shared by the async and the thread conversation."""

    def __init__(self, peer: str) -> None:
        self._peer = peer
        self._credit = WINDOW  # bytes of frames we may still send
        self._held = 0  # bytes received and not credited back yet
        self._consumed = 0  # of those, how many were consumed
        self._ids = itertools.count(1)
        self._closed: PeerGoneError | None = None

    @property
    def credit(self) -> int:
        """Return how many bytes of messages and requests may be sent now without waiting."""
        return self._credit

    def _accept(self, data: proto.Data) -> None:
        """Count a received message or request; raise ProtocolError past the window."""
        self._held += data.size
        if self._held > WINDOW:
            self._overflow()

    def _overflow(self) -> None:
        raise ProtocolError(f"{self._peer} sent more than {WINDOW} bytes of messages or requests without credit")

    def _credit_due(self, size: int) -> int:
        """Count a consumed frame of ``size`` bytes; return how much credit to grant now (or 0)."""
        self._consumed += size
        return self._grant() if self._consumed >= CREDIT_STEP else 0

    def _grant(self) -> int:
        """Return the credit to grant for what was consumed (`CREDIT_STEP` or more), and reset."""
        granted, self._consumed = self._consumed, 0
        self._held -= granted
        return granted

    def _settle(self, name: str, result: list[proto.Data], timeout: float) -> object:
        """Return the answer of a finished request, or raise why there is none."""
        if result:
            return _outcome(name, result[0])
        if self._closed is not None:
            raise self._closed
        raise RequestTimeoutError(f"no response to request {name!r} from {self._peer} within {timeout:g} s")

    def _gone(self, why: str) -> PeerGoneError:
        return PeerGoneError(f"{self._peer} is gone: {why}")


def error_frame(request_id: int, exc: BaseException) -> bytes:
    """Return the response frame for a handler that raised ``exc``."""
    error_type = NO_HANDLER if isinstance(exc, NoHandler) else type(exc).__name__
    return proto.encode_error(request_id, error_type, str(exc))


class Conversation(_Flow):
    """The async side: `send`, `request`, and `run` (dispatch what arrives, in order).

    ``deliver(payload)`` is called for each message, one at a time and in order, and
    what it returns, if not None, awaited before the next; it must contain its own
    errors if they should not end `run`. ``answer(name, payload)`` returns a request's
    result or an awaitable of it (raise `NoHandler` for an unknown name). A result is
    answered at once, by the task that received the request; an awaitable is awaited in
    a task of its own, so such requests are answered concurrently.
    """

    def __init__(
        self,
        writer: ChannelWriter,
        *,
        peer: str,
        deliver: Callable[[object], Awaitable[None] | None],
        answer: Callable[[str, object], object],
    ) -> None:
        super().__init__(peer)
        self._writer = writer
        self._deliver = deliver
        self._answer = answer
        self._inbox: collections.deque[proto.Data] = collections.deque()
        # Events exist only while someone waits on them (no Event per frame in a flood).
        self._arrived: anyio.Event | None = None  # `run` waits for the inbox
        self._drained: anyio.Event | None = None  # `wait_drained` waits
        self._credited: anyio.Event | None = None  # a sender waits for credit
        self._delivering = False  # `run` is delivering a message
        self._tg: anyio.abc.TaskGroup | None = None  # `run`'s, for the requests
        self._pending: dict[int, tuple[anyio.Event, list[proto.Data]]] = {}
        # Request deadlines, kept by one task of `run` instead of a cancel scope per request.
        self._deadlines: list[tuple[float, int]] = []  # heap of (deadline, request id)
        self._expiring = False  # that task runs
        self._expiry_at = math.inf  # when it wakes next
        self._expiry_moved: anyio.Event | None = None  # set to wake it earlier
        import anyio.lowlevel  # here, not at import time: a worker's import stays light

        self._check_cancelled = anyio.lowlevel.checkpoint_if_cancelled
        self._checkpoint = anyio.lowlevel.checkpoint
        self._sends_unyielded = 0  # sends since one of them let other tasks run

    # -- receiving (called by the channel's reader, never blocks) -------------------------

    def feed(self, data: proto.Data) -> None:
        """Take a conversation frame from the reader; raise ProtocolError for a violation."""
        if data.type == proto.MESSAGE:  # the usual frame, in as few steps as it takes
            self._held += data.size
            if self._held > WINDOW:
                self._overflow()
            self._inbox.append(data)
            if self._arrived is not None:
                self._arrived.set()
                self._arrived = None
        elif data.type == proto.RESPONSE:
            waiter = self._pending.pop(data.id, None)
            if waiter is not None:  # else the request timed out already
                waiter[1].append(data)
                waiter[0].set()
        elif data.type == proto.CREDIT:
            self._credit += data.n
            if self._credited is not None:
                self._credited.set()
                self._credited = None
        else:
            self._accept(data)
            if data.type == proto.REQUEST and self._tg is not None and not self._inbox and not self._delivering:
                # Nothing received earlier is still to be delivered: answer it now, without
                # a trip through `run` (the order is the same).
                self._respond(data)
                return
            self._inbox.append(data)
            if self._arrived is not None:
                self._arrived.set()
                self._arrived = None

    def close(self, why: str) -> None:
        """Fail every pending request and blocked send with `PeerGoneError`."""
        if self._closed is not None:
            return
        self._closed = self._gone(why)
        for event, _ in self._pending.values():
            event.set()
        if self._credited is not None:
            self._credited.set()
            self._credited = None

    async def run(self) -> None:
        """Deliver messages in order and answer requests, until cancelled."""
        inbox, deliver = self._inbox, self._deliver
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._expire_requests)
            try:
                while True:
                    while not inbox:
                        if self._drained is not None:
                            self._drained.set()
                            self._drained = None
                        self._arrived = arrived = anyio.Event()
                        await arrived.wait()
                    data = inbox.popleft()
                    if data.type == proto.MESSAGE:
                        waiting = deliver(data.payload)
                        if waiting is not None:
                            # Only while this waits can another task see the message
                            # half-delivered (a plain handler is done before anyone looks).
                            self._delivering = True
                            try:
                                await waiting
                            finally:
                                self._delivering = False
                        self._consumed += data.size
                        if self._consumed >= CREDIT_STEP:
                            self._post(proto.encode_credit(self._grant()))
                    else:
                        self._respond(data)
            finally:
                self._tg = None

    async def wait_drained(self) -> None:
        """Wait until every message received so far was delivered."""
        while self._inbox or self._delivering:
            if self._drained is None:
                self._drained = anyio.Event()
            await self._drained.wait()

    def _respond(self, data: proto.Data) -> None:
        """Answer a request now, or start a task that awaits its handler's awaitable."""
        try:
            result = self._answer(data.name, data.payload)
            if result is not None and inspect.isawaitable(result):
                assert self._tg is not None  # only `run` and what it lets in call this
                self._tg.start_soon(self._respond_later, data, result)
                return
            frame = proto.encode_response(data.id, result)
        except Exception as exc:  # the caller gets it as a RemoteError
            frame = error_frame(data.id, exc)
        self._post(frame)
        self._consumed_one(data.size)

    async def _respond_later(self, data: proto.Data, result: Awaitable[object]) -> None:
        try:
            frame = proto.encode_response(data.id, await result)
        except Exception as exc:
            frame = error_frame(data.id, exc)
        self._post(frame)
        self._consumed_one(data.size)

    def _consumed_one(self, size: int) -> None:
        granted = self._credit_due(size)
        if granted:
            self._post(proto.encode_credit(granted))

    def _post(self, frame: bytes) -> None:
        """Write ``frame`` without waiting; if it must wait, a task of `run` finishes it."""
        try:
            rest = self._writer.send_soon(frame)
        except ChannelError:
            return  # the peer is gone: its reader reports that, not this write
        if rest is not None:
            assert self._tg is not None
            self._tg.start_soon(self._write_rest, rest)

    async def _write_rest(self, rest: Coroutine[None, None, None]) -> None:
        try:
            await rest
        except ChannelError:
            pass

    # -- sending --------------------------------------------------------------------------

    async def _take_credit(self, size: int) -> None:
        while self._credit < size and self._closed is None:
            if self._credited is None:
                self._credited = anyio.Event()
            await self._credited.wait()
        if self._closed is not None:
            raise self._closed
        self._credit -= size

    async def _send_counted(self, frame: bytes) -> None:
        await self._take_credit(len(frame))
        try:
            await self._writer.send(frame)
        except ChannelError as exc:
            raise self._gone(str(exc)) from exc
        except BaseException:
            self._credit += len(frame)  # cancelled before the frame went out
            raise

    def _start_counted(self, frame: bytes) -> Coroutine[None, None, None] | None:
        """Take the credit (there is enough) and write ``frame``; return what finishes it, if it must wait."""
        self._credit -= len(frame)
        try:
            rest = self._writer.send_soon(frame)
        except ChannelError as exc:
            raise self._gone(str(exc)) from exc
        return None if rest is None else self._finish_counted(rest, len(frame))

    async def send(self, payload: object) -> None:
        """Send a message; wait while the peer has no room (backpressure)."""
        frame = proto.encode_message(payload)
        size = len(frame)
        if self._credit >= size and self._closed is None:
            # A cancelled send sends nothing. And a send that needs no wait still lets
            # other tasks run every `YIELD_EVERY` sends: with credit in bytes, a flood of
            # small messages could otherwise hold the event loop for thousands of them.
            self._sends_unyielded += 1
            if self._sends_unyielded < YIELD_EVERY:
                await self._check_cancelled()
            else:
                self._sends_unyielded = 0
                await self._checkpoint()
                if self._credit < size or self._closed is not None:  # changed meanwhile
                    await self._send_counted(frame)
                    return
            # `_start_counted`, inlined: this runs once per message.
            self._credit -= size
            try:
                rest = self._writer.send_soon(frame)
            except ChannelError as exc:
                raise self._gone(str(exc)) from exc
            if rest is not None:
                await self._finish_counted(rest, size)
            return
        await self._send_counted(frame)

    async def request(self, name: str, payload: object, timeout: float) -> object:
        """Send a request and return the peer's answer.

        Raise `RemoteError` if the peer's handler raised (or there is none),
        `RequestTimeoutError` after ``timeout`` seconds, `PeerGoneError` as soon as the
        peer goes away.
        """
        request_id = next(self._ids)
        frame = proto.encode_request(request_id, name, payload)
        event = anyio.Event()
        result: list[proto.Data] = []
        self._pending[request_id] = (event, result)
        try:
            if self._expiring and self._credit >= len(frame) and self._closed is None:
                # Fast path: the frame goes out now, and `_expire_requests` keeps the deadline.
                await self._check_cancelled()  # as a send: a cancelled request sends nothing
                rest = self._start_counted(frame)
                if rest is None:
                    self._expire_at(anyio.current_time() + timeout, request_id)
                    await event.wait()
                    return self._settle(name, result, timeout)
                sending = rest
            else:
                sending = self._send_counted(frame)
            with anyio.move_on_after(timeout):
                await sending
                await event.wait()
        finally:
            self._pending.pop(request_id, None)
        return self._settle(name, result, timeout)

    async def _finish_counted(self, rest: Coroutine[None, None, None], size: int) -> None:
        """Await the rest of a counted frame's send (see `ChannelWriter.send_soon`)."""
        try:
            await rest
        except ChannelError as exc:
            raise self._gone(str(exc)) from exc
        except BaseException:
            self._credit += size  # cancelled before the frame went out
            raise

    def _expire_at(self, deadline: float, request_id: int) -> None:
        """Have `_expire_requests` end request ``request_id`` at ``deadline`` if unanswered."""
        deadlines = self._deadlines
        heapq.heappush(deadlines, (deadline, request_id))
        if len(deadlines) > 2 * len(self._pending) + 64:  # answered ones pile up: drop them
            deadlines[:] = [entry for entry in deadlines if entry[1] in self._pending]
            heapq.heapify(deadlines)
        if deadline < self._expiry_at and self._expiry_moved is not None:
            self._expiry_moved.set()
            self._expiry_moved = None

    async def _expire_requests(self) -> None:
        """Wake each request whose deadline passed unanswered (it raises RequestTimeoutError)."""
        self._expiring = True
        deadlines = self._deadlines
        try:
            while True:
                now = anyio.current_time()
                while deadlines:
                    deadline, request_id = deadlines[0]
                    waiter = self._pending.get(request_id)
                    if waiter is not None and deadline > now:
                        break
                    heapq.heappop(deadlines)
                    if waiter is not None:
                        waiter[0].set()  # with no result: the request timed out
                self._expiry_at = deadlines[0][0] if deadlines else math.inf
                self._expiry_moved = moved = anyio.Event()
                with anyio.move_on_after(self._expiry_at - now):
                    await moved.wait()
        finally:
            self._expiring = False
            if self._pending:  # nothing would answer or expire them any more
                self.close("the conversation ended")


def _outcome(name: str, response: proto.Data) -> object:
    if response.error is not None:
        raise RemoteError(name, *response.error)
    return response.payload


class ThreadConversation(_Flow):
    """The thread side, for `SyncMessageBus`: the same protocol with blocking calls.

    ``write(frame)`` writes a whole frame (thread-safe, raising ChannelError). Messages
    and requests are handled one at a time, in order, in a dispatcher thread (started
    by the first of them), so the reader thread stays free for the lifecycle messages.
    """

    def __init__(
        self,
        write: Callable[[bytes], None],
        *,
        peer: str,
        deliver: Callable[[object], None],
        answer: Callable[[str, object], object],
    ) -> None:
        super().__init__(peer)
        self._write_frame = write
        self._deliver = deliver
        self._answer = answer
        self._cond = threading.Condition()
        self._inbox: collections.deque[proto.Data | None] = collections.deque()
        self._pending: dict[int, list[proto.Data]] = {}
        #: Started by the first message or request: a worker that gets none never pays for it.
        self._thread: BareThread | None = None

    def feed_many(self, batch: Iterable[proto.Data]) -> None:
        """Take the conversation frames of one read: one lock and one wake-up for them all."""
        with self._cond:
            for data in batch:
                if data.type == proto.MESSAGE or data.type == proto.REQUEST:
                    self._accept(data)
                    self._inbox.append(data)
                elif data.type == proto.RESPONSE:
                    if data.id in self._pending:
                        self._pending[data.id].append(data)
                else:  # credit
                    self._credit += data.n
            if self._thread is None and self._inbox:
                self._thread = BareThread(self._dispatch)
            self._cond.notify_all()

    def close(self, why: str) -> None:
        """Fail pending requests and blocked sends; end the dispatcher after its inbox."""
        with self._cond:
            if self._closed is None:
                self._closed = self._gone(why)
                self._inbox.append(None)
            self._cond.notify_all()

    def _dispatch(self) -> None:
        deliver = self._deliver
        while True:
            with self._cond:  # take all that arrived: one lock per batch, not per message
                while not self._inbox:
                    self._cond.wait()
                batch, self._inbox = self._inbox, collections.deque()
            for data in batch:
                if data is None:
                    return
                if data.type == proto.MESSAGE:
                    deliver(data.payload)
                else:
                    try:
                        frame = proto.encode_response(data.id, self._answer(data.name, data.payload))
                    except Exception as exc:
                        frame = error_frame(data.id, exc)
                    self._try_write(frame)
                self._consumed += data.size  # only this thread counts consumption
                if self._consumed >= CREDIT_STEP:
                    with self._cond:  # the reader counts what it holds under the lock
                        granted = self._grant()
                    self._try_write(proto.encode_credit(granted))

    def _try_write(self, frame: bytes) -> None:
        try:
            self._write_frame(frame)
        except ChannelError:
            pass

    def _send_counted(self, frame: bytes, deadline: float | None) -> None:
        with self._cond:
            while self._credit < len(frame) and self._closed is None:
                if not self._cond.wait(_remaining(deadline)) and _remaining(deadline) == 0:
                    raise RequestTimeoutError(f"{self._peer} gave no credit in time (it is not reading)")
            if self._closed is not None:
                raise self._closed
            self._credit -= len(frame)
        try:
            self._write_frame(frame)
        except ChannelError as exc:
            raise self._gone(str(exc)) from exc

    def send(self, payload: object, timeout: float | None = None) -> None:
        """Send a message; block while the peer has no room, at most ``timeout`` seconds."""
        self._send_counted(proto.encode_message(payload), _deadline(timeout))

    def request(self, name: str, payload: object, timeout: float) -> object:
        """Send a request and block for the answer (errors as in `Conversation.request`)."""
        request_id = next(self._ids)
        frame = proto.encode_request(request_id, name, payload)
        deadline = _deadline(timeout)
        with self._cond:
            result = self._pending[request_id] = []
        try:
            self._send_counted(frame, deadline)
            with self._cond:
                while not result and self._closed is None:
                    if not self._cond.wait(_remaining(deadline)) and _remaining(deadline) == 0:
                        break
        except RequestTimeoutError:
            pass
        finally:
            with self._cond:
                self._pending.pop(request_id, None)
        return self._settle(name, result, timeout)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
