"""Small helpers shared by the async context managers and the child side's threads."""

from __future__ import annotations

import _thread
import inspect
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from types import CoroutineType
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from types import TracebackType

    import anyio.abc

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup


async def exit_task_group(
    tg: anyio.abc.TaskGroup,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> bool | None:
    """Leave ``tg`` (whose scope the caller cancelled), letting the body's error out bare.

    A task group wraps the error of its host body in an exception group; an ``async
    with`` block of ours should raise the user's own exception unchanged instead.
    """
    try:
        return await tg.__aexit__(exc_type, exc, tb)
    except BaseExceptionGroup as group:
        if exc is not None and len(group.exceptions) == 1 and group.exceptions[0] is exc:
            raise exc from group.__cause__
        raise


@asynccontextmanager
async def open_background_tasks() -> AsyncIterator[anyio.abc.TaskGroup]:
    """Yield a task group for tasks that run beside the block and are cancelled when it ends.

    Unlike a plain task group, an error of the block comes out unchanged, not in an
    exception group (see `exit_task_group`).
    """
    import anyio  # here: the child side imports this module too

    tg = anyio.create_task_group()
    await tg.__aenter__()
    try:
        yield tg
    except BaseException as exc:
        tg.cancel_scope.cancel()
        await exit_task_group(tg, type(exc), exc, exc.__traceback__)
        raise
    tg.cancel_scope.cancel()
    await tg.__aexit__(None, None, None)


async def call_maybe_async(function: Callable[..., object], *args: object, **kwargs: object) -> object:
    """Call ``function``; if it returned an awaitable (a coroutine function), await it."""
    result = function(*args, **kwargs)
    if result is not None and inspect.isawaitable(result):  # None: a plain function, no await
        result = await result
    return result


def call_in_turn(
    handlers: Sequence[Callable[..., object]],
    *args: object,
    contain: Callable[[Callable[..., object]], None] | None = None,
) -> Awaitable[None] | None:
    """Call ``handlers`` with ``args`` one after the other, each after the last one ended.

    Return None if every one returned without awaiting; else, at the first that returned
    an awaitable, return an awaitable that awaits it and calls the rest the same way.
    With ``contain``, an Exception of a handler is passed over: ``contain(handler)`` is
    called inside the ``except`` block (to log it) and the next handler runs.
    """
    last = len(handlers) - 1
    for index, handler in enumerate(handlers):
        try:
            result = handler(*args)
        except Exception:
            if contain is None:
                raise
            contain(handler)
            continue
        if result is not None and (type(result) is CoroutineType or inspect.isawaitable(result)):
            if index == last and contain is None:
                return cast("Awaitable[None]", result)  # nothing to run after it: no coroutine of ours
            return _call_rest(result, handlers[index:], args, contain)
    return None


async def _call_rest(
    first: Awaitable[object],
    handlers: Sequence[Callable[..., object]],
    args: tuple[object, ...],
    contain: Callable[[Callable[..., object]], None] | None,
) -> None:
    """Await ``first`` (what ``handlers[0]`` returned), then call the other handlers."""
    for index, handler in enumerate(handlers):
        try:
            await (first if index == 0 else call_maybe_async(handler, *args))
        except Exception:
            if contain is None:
                raise
            contain(handler)


class BareThread:
    """A daemon thread started without `threading.Thread`'s start-up handshake.

    ``threading.Thread.start`` blocks until the new thread runs, which costs a worker
    0.3 ms or more of its start-up per thread on a busy machine. This thread is not in
    `threading.enumerate`, and an exception it lets out goes to `sys.unraisablehook`.
    """

    def __init__(self, target: Callable[[], object]) -> None:
        self._target = target
        self._done = _thread.allocate_lock()
        self._done.acquire()
        self.ident: int = _thread.start_new_thread(self._run, ())

    def _run(self) -> None:
        self.ident = _thread.get_ident()
        try:
            self._target()
        finally:
            self._done.release()

    def is_current(self) -> bool:
        """Return whether the caller runs in this thread."""
        return _thread.get_ident() == self.ident

    def join(self) -> None:
        """Wait until the thread has returned."""
        with self._done:
            pass
