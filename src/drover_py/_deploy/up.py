"""``drover-py up``: the apps of a deployment file, one control server for all, signals, ``reload-config``.

SIGTERM and SIGINT stop the apps in reverse dependency order (a second SIGINT kills
them); SIGHUP, like ``drover-py ctl reload-config``, reads the file again and applies
what changed (`Deployment.update`). Exit codes are those of ``run``: 0 after a
shutdown, 1 an app could not start (or a ``once`` app failed), 2 the file is not valid,
3 a restart policy gave up, 4 an address or the control socket is in use, 130 interrupted.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, nullcontext
from typing import TYPE_CHECKING

import anyio

from .._cli.options import DEFAULT_SOCKET, EXIT_OK, EXIT_USAGE, SOCKET_ENV
from .._cli.supervise import _describe, _exit_code, _plural, run_reported
from .._commands import JSON, CommandError
from .._compat import open_background_tasks
from .._exceptions import ConfigError, DeploymentError, DroverError
from .._log import get_logger
from .._supervise.progress import show_progress
from .deployment import Deployment, DeploymentApp, Reporter, load_deployment

if sys.version_info < (3, 11):  # pragma: no cover
    pass

if TYPE_CHECKING:
    from .._control.server import ControlServer


def up(ns: argparse.Namespace, key: str | None) -> int:
    """Run ``drover-py up`` with the options ``ns``; return its exit code."""
    try:
        deployment = load_deployment(ns.config)
    except ConfigError as exc:
        print(f"drover-py up: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run_reported(ns, lambda: anyio.run(_up, ns, key, deployment, backend=ns.backend), _code)


def _code(error: BaseException) -> int:
    """Return the exit code for ``error``: that of the app's own error when an app failed."""
    if isinstance(error, DeploymentError) and isinstance(error.__cause__, DroverError):
        return _exit_code(error.__cause__)
    return _exit_code(error)


async def _up(ns: argparse.Namespace, key: str | None, deployment: Deployment) -> int:
    deployment._reporter = _Printer()
    async with deployment, AsyncExitStack() as stack:
        server: ControlServer | None = None
        where: list[str] = []
        if not ns.no_control and deployment.masters:
            from .._control.server import open_control_server  # here: h11 and the rest only when used

            unix = ns.control or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
            server = await stack.enter_async_context(
                open_control_server(
                    deployment.masters, unix=unix, tcp=ns.control_tcp, access_key=key, metrics_tcp=ns.metrics_bind
                )
            )
            where = [f"unix:{server.unix_path}", *([server.url] if server.url else [])]
        reloader = Reloader(deployment, server)
        if server is not None:
            server.command("reload-config", reloader.command)
        await stack.enter_async_context(_open_signal_handlers(deployment, reloader, ns.drain_delay))
        await deployment.start()
        control = f"; control on {' and '.join(where)}" if where else ""
        print(
            f"drover-py: up: {_plural(len(deployment.apps), 'app')} of {deployment.path} started{control}", flush=True
        )
        try:
            await deployment.supervise()
        except DeploymentError:  # a restart policy gave up: the others stop gracefully first
            await deployment.graceful_shutdown()
            raise
    print("drover-py: shut down", flush=True)
    return EXIT_OK


class _Printer(Reporter):
    """Print a line as each app starts and stops, and progress while a master starts slowly."""

    def starting(self, app: DeploymentApp) -> AbstractAsyncContextManager[object]:
        return nullcontext() if app.master is None else show_progress(app.master, f"starting {app.name}")

    async def started(self, app: DeploymentApp, ns: argparse.Namespace, seconds: float) -> None:
        what = f"done in {seconds:.1f} s" if app.master is None else await _describe(ns, app.master)
        print(f"drover-py: {app.name}: {what}", flush=True)

    def stopped(self, app: DeploymentApp) -> None:
        print(f"drover-py: {app.name}: shut down", flush=True)


class Reloader:
    """Read the deployment file again and apply it: ``ctl reload-config`` and SIGHUP."""

    def __init__(self, deployment: Deployment, server: ControlServer | None) -> None:
        self._deployment = deployment
        self._server = server

    async def apply(self) -> list[str]:
        """Apply the file as it is now; return what changed, one line per app; print the outcome.

        Raise `CommandError` if it does not validate (then nothing changed), or
        `DeploymentError` if a change failed.
        """
        try:
            try:
                new = load_deployment(self._deployment.path)
            except ConfigError as exc:
                raise CommandError(f"{exc}; nothing changed") from None
            try:
                changes = await self._deployment.update(new)
            finally:
                self._serve_masters()
        except DroverError as exc:
            print(f"drover-py up: reload-config: {exc}", file=sys.stderr, flush=True)
            raise
        print(f"drover-py: up: reload-config: {self._summary(changes)}", flush=True)
        return changes

    def _serve_masters(self) -> None:
        """Make the control server serve the masters the deployment has now."""
        if self._server is None:
            return
        served, current = self._server.masters, self._deployment.masters
        for name, master in served.items():
            if current.get(name) is not master:
                self._server.remove_master(name)
        for name, master in current.items():
            if served.get(name) is not master:
                self._server.add_master(name, master)

    def _summary(self, changes: list[str]) -> str:
        return "; ".join(changes) if changes else f"no change in {self._deployment.path}"

    async def command(self) -> JSON:
        """Read the deployment file again and apply what changed (supervisord's update).

        New apps start, removed apps stop gracefully, a changed app is reloaded with
        rollback when only its script or env changed, else stopped and started again.
        A file that does not validate changes nothing.
        """
        changes = await self.apply()
        return {"message": self._summary(changes), "changes": changes}

    async def on_signal(self) -> None:
        """Apply the file (SIGHUP); the outcome is printed."""
        try:
            await self.apply()
        except DroverError:
            pass


@asynccontextmanager
async def _open_signal_handlers(deployment: Deployment, reloader: Reloader, drain: float) -> AsyncIterator[None]:
    """SIGTERM/SIGINT: graceful shutdown in reverse order (a second SIGINT: hard); SIGHUP: reload-config.

    SIGTERM drains every app first for ``drain`` seconds (``--drain-delay``), as Kubernetes wants.
    """
    log = get_logger()
    with anyio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
        async with open_background_tasks() as tg:

            async def guarded(action: Callable[[], Awaitable[None]]) -> None:
                try:
                    await action()
                except DroverError as exc:
                    log.warning("signal action failed", error=str(exc))

            async def dispatch() -> None:
                interrupts = 0
                async for signum in signals:
                    log.info("signal received", signal=signal.Signals(signum).name)
                    if signum == signal.SIGHUP:
                        tg.start_soon(guarded, reloader.on_signal)
                    elif signum == signal.SIGTERM:
                        tg.start_soon(guarded, functools.partial(deployment.graceful_shutdown, drain=drain))
                    elif interrupts == 0:
                        tg.start_soon(guarded, deployment.graceful_shutdown)
                    else:
                        tg.start_soon(guarded, deployment.hard_shutdown)
                    if signum == signal.SIGINT:
                        interrupts += 1

            tg.start_soon(dispatch)
            yield  # an error of the block comes out unchanged
