"""Small helpers shared by the async context managers."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

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
