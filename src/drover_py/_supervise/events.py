"""A small registry of named events whose handlers run as tasks, errors contained."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from types import CoroutineType

import anyio.abc
from structlog.typing import FilteringBoundLogger

from .._compat import call_in_turn, call_maybe_async

#: A handler may be a plain function or a coroutine function.
EventHandler = Callable[..., Awaitable[None] | None]


class EventRegistry:
    """Keep handlers per event name and run them in a task group on `emit`."""

    def __init__(self, names: Iterable[str], log: FilteringBoundLogger) -> None:
        self._handlers: dict[str, list[EventHandler]] = {name: [] for name in names}
        self._log = log

    def _check(self, name: str) -> None:
        if name not in self._handlers:
            raise ValueError(f"unknown event {name!r}; expected one of: {', '.join(self._handlers)}")

    def on(self, name: str, handler: EventHandler) -> None:
        """Add ``handler`` for ``name``; raise ValueError for an unknown event name."""
        self._check(name)
        if not callable(handler):
            raise TypeError(f"handler for {name!r} must be callable, got {handler!r}")
        self._handlers[name].append(handler)

    def off(self, name: str, handler: EventHandler) -> None:
        """Remove ``handler`` from ``name``; raise ValueError if it was not added."""
        self._check(name)
        try:
            self._handlers[name].remove(handler)
        except ValueError:
            raise ValueError(f"handler {handler!r} is not registered for {name!r}") from None

    def emit(self, tg: anyio.abc.TaskGroup, name: str, *args: object) -> None:
        """Start every handler of ``name`` with ``args`` as a task in ``tg``."""
        for handler in self._handlers[name]:
            tg.start_soon(self._call, name, handler, args, name=f"drover-py {name} handler")

    def call_in_turn(self, name: str, *args: object) -> Awaitable[None] | None:
        """Run every handler of ``name`` with ``args`` one after the other, errors contained.

        Return None when they all returned without awaiting, else an awaitable that
        awaits the first one that did not and runs the rest; await it before the next call.
        """
        handlers = self._handlers[name]
        if len(handlers) != 1:
            return call_in_turn(list(handlers), *args, contain=functools.partial(self._contain, name))
        # One handler, the usual case (a message handler is called per message): no copy,
        # no closure, and one coroutine of ours only if the handler's result must be awaited.
        handler = handlers[0]
        try:
            result = handler(*args)
        except Exception:
            self._contain(name, handler)
            return None
        if result is None or not (type(result) is CoroutineType or inspect.isawaitable(result)):
            return None
        return self._await_contained(name, handler, result)

    def _contain(self, name: str, handler: Callable[..., object]) -> None:
        """Log the exception being handled, raised by ``handler`` of event ``name``."""
        self._log.exception("event handler raised", event_name=name, handler=repr(handler))

    async def _await_contained(self, name: str, handler: Callable[..., object], result: Awaitable[object]) -> None:
        try:
            await result
        except Exception:
            self._contain(name, handler)

    async def _call(self, name: str, handler: EventHandler, args: tuple[object, ...]) -> None:
        try:
            await call_maybe_async(handler, *args)
        except Exception:
            self._log.exception("event handler raised", event_name=name, handler=repr(handler))
