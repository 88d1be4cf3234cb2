"""Opt-in master signal handling: the gunicorn habits, for one or several masters."""

from __future__ import annotations

import functools
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc

from .._checks import check_seconds
from .._compat import open_background_tasks
from .._exceptions import DroverError
from .._log import get_logger
from .._supervise.master import Master

#: The signals `open_signal_handlers` takes over while it is open.
HANDLED = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGTTIN, signal.SIGTTOU)


@asynccontextmanager
async def open_signal_handlers(*masters: Master, drain_delay: float = 0.0) -> AsyncIterator[None]:
    """Drive ``masters`` from process signals while the block runs.

    SIGHUP -> `Master.graceful_reload`; SIGTERM and SIGINT -> `Master.graceful_shutdown`
    (a second SIGINT -> `Master.hard_shutdown`); SIGTTIN / SIGTTOU -> scale by +1 / -1
    (never below 1). Each action runs as its own task; an error is logged, not raised.
    ``drain_delay`` seconds: SIGTERM first drains (``graceful_shutdown(drain=...)``:
    ``/healthz`` says 503 while the workers keep serving), as Kubernetes wants it.
    Opt-in so that a library user keeps control of their own process's signals; open it
    once per process, for every master together.
    """
    if not masters:
        raise ValueError("open_signal_handlers() needs at least one master")
    if drain_delay:
        drain_delay = check_seconds("drain_delay", drain_delay)
    log = get_logger()
    with anyio.open_signal_receiver(*HANDLED) as signals:
        async with open_background_tasks() as tg:

            def run(action: Callable[[], Awaitable[None]]) -> None:
                async def guarded() -> None:
                    try:
                        await action()
                    except DroverError as exc:
                        log.warning("signal action failed", error=str(exc))

                tg.start_soon(guarded)

            async def dispatch() -> None:
                interrupts = 0
                async for signum in signals:
                    log.info("signal received", signal=signal.Signals(signum).name)
                    for master in masters:
                        if signum == signal.SIGHUP:
                            run(functools.partial(_reload, master))
                        elif signum == signal.SIGTERM:
                            run(functools.partial(master.graceful_shutdown, drain=drain_delay))
                        elif signum == signal.SIGINT and interrupts == 0:
                            run(master.graceful_shutdown)
                        elif signum == signal.SIGINT:
                            run(master.hard_shutdown)
                        elif signum in (signal.SIGTTIN, signal.SIGTTOU):
                            run(functools.partial(_step, master, 1 if signum == signal.SIGTTIN else -1))
                    if signum == signal.SIGINT:
                        interrupts += 1

            tg.start_soon(dispatch)
            yield  # an error of the block comes out unchanged


async def _reload(master: Master) -> None:
    """Reload ``master`` gracefully and log the outcome (a failure rolled back: log why)."""
    log = get_logger()
    try:
        report = await master.graceful_reload()
    except DroverError as exc:
        log.warning("reload failed; the previous workers keep running", error=str(exc))
        return
    log.info("reloaded", workers=report.workers, seconds=round(report.seconds, 2))


async def _step(master: Master, delta: int) -> None:
    await master.scale(max(1, master.config.count + delta))
