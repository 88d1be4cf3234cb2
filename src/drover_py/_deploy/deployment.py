"""`Deployment`: the apps of one file, started in dependency order and stopped in reverse.

Each service app is a `Master`, built as ``drover-py run`` or ``serve`` builds its own
and held open by a task of the deployment; a ``once`` app is one process that must exit
0 (`drover_py._deploy.once`). An app starts once every app it depends on is started
(all its workers sent "started") or, for a ``once`` one, done; independent apps start
together. Stopping goes the other way: an app stops once every app that depends on it
has stopped.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager, nullcontext
from pathlib import Path
from types import TracebackType
from typing import Literal

import anyio
import anyio.abc
import attrs

from .._compat import exit_task_group
from .._config.file import AppSpec, DeploymentSpec, parse_deployment
from .._config.options import MasterConfig
from .._exceptions import (
    ConfigFileError,
    DeploymentError,
    DroverError,
    OperationInterruptedError,
    RestartLimitError,
    StateError,
)
from .._supervise.master import Master
from .once import run_once
from .options import build, schema


@attrs.frozen(eq=False)
class DeploymentApp:
    """One app of a deployment file: its name, kind, dependencies, configuration and master."""

    #: The name of its table (``[apps.NAME]``); its master is served under it.
    name: str
    #: "service" (workers, until shut down) or "once" (one process that must exit 0).
    kind: Literal["service", "once"]
    #: The apps started (a ``once`` app: done) before this one starts.
    depends_on: tuple[str, ...]
    #: Its configuration; for a ``once`` app, its script, args, env, cwd, user and timeouts.
    config: MasterConfig
    #: A service's master, not started until `Deployment.start`; None for a ``once`` app.
    master: Master | None


_State = Literal["new", "starting", "started", "done", "failed", "stopping", "stopped"]


class _Entry:
    """An app as the deployment runs it: what the file says, its options, where it stands."""

    def __init__(self, app: DeploymentApp, spec: AppSpec, ns: argparse.Namespace) -> None:
        self.app = app
        self.spec = spec
        self.ns = ns
        self.state: _State = "new"
        #: Whether its master was entered (by a task of the deployment).
        self.entered = False
        #: A ``once`` app's run while it goes, and the event set once it ended.
        self.scope: anyio.CancelScope | None = None
        self.ran = anyio.Event()
        #: Set once the deployment stopped its master.
        self.stopped = anyio.Event()

    @property
    def name(self) -> str:
        return self.app.name

    @property
    def ready(self) -> bool:
        """Return whether the apps that depend on this one may start."""
        return self.state in ("started", "done")


class Reporter:
    """What a deployment says as it goes: nothing, by default (``drover-py up`` prints lines)."""

    def starting(self, app: DeploymentApp) -> AbstractAsyncContextManager[object]:
        """Return a context manager around the start of ``app``'s master."""
        return nullcontext()

    async def started(self, app: DeploymentApp, ns: argparse.Namespace, seconds: float) -> None:
        """Tell that ``app`` started (a ``once`` app: ended well) after ``seconds``."""

    def stopped(self, app: DeploymentApp) -> None:
        """Tell that the deployment stopped ``app``'s workers."""


class Deployment:
    """The apps of a deployment file; `load_deployment` reads one.

    Use it as ``async with deployment:``, which opens every service's master (their
    listening sockets are bound then, before any app starts) and, when it ends, kills
    whatever still runs. `start` starts the apps in dependency order, `supervise` waits
    while they run, `graceful_shutdown` stops them in reverse order, and `update` applies
    the file as it was changed. Lifecycle operations run one at a time.
    """

    def __init__(self, spec: DeploymentSpec, entries: Iterable[_Entry]) -> None:
        self._spec = spec
        self._entries = {entry.name: entry for entry in entries}
        self._state: Literal["new", "open", "closing", "closed"] = "new"
        self._started = False
        self._tg: anyio.abc.TaskGroup | None = None
        self._lock = anyio.Lock()
        self._hosts = 0  # masters held open by a task, plus one while an update runs
        self._done = anyio.Event()
        self._failure: DeploymentError | None = None
        self._reporter = Reporter()

    # -- introspection --------------------------------------------------------------------

    @property
    def path(self) -> str:
        """Return the file the deployment was read from, as it was named."""
        return self._spec.path

    @property
    def apps(self) -> tuple[DeploymentApp, ...]:
        """Return the apps in start order: each after the apps it depends on, else in file order."""
        return tuple(entry.app for entry in self._entries.values())

    @property
    def masters(self) -> dict[str, Master]:
        """Return the masters of the service apps by app name, in start order."""
        return {entry.name: entry.app.master for entry in self._entries.values() if entry.app.master is not None}

    # -- context --------------------------------------------------------------------------

    async def __aenter__(self) -> Deployment:
        if self._state != "new":
            raise StateError("a Deployment can be entered only once; load it again")
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._state = "open"
        try:
            for entry in self._entries.values():
                if entry.app.master is not None:
                    await self._open(entry)
        except BaseException:
            await self.__aexit__(None, None, None)  # the masters opened are closed again
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        try:
            with anyio.CancelScope(shield=True):
                await self.hard_shutdown()
        finally:
            self._state = "closed"
            self._tg.cancel_scope.cancel()
            tg, self._tg = self._tg, None
            result = await exit_task_group(tg, exc_type, exc, tb)
        return result

    async def _open(self, entry: _Entry) -> None:
        """Open ``entry``'s master in a task of the deployment; raise `DeploymentError` if it cannot."""
        assert self._tg is not None
        try:
            await self._tg.start(self._host, entry)
        except DroverError as exc:
            raise _failed(entry.name, exc) from exc

    async def _host(self, entry: _Entry, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Hold ``entry``'s master open until it is shut down."""
        master = entry.app.master
        assert master is not None
        async with master:
            entry.entered = True
            self._hosts += 1
            task_status.started()
            try:
                await master.supervise()
            except RestartLimitError as exc:
                if self._failure is None:
                    self._failure = _failed(entry.name, exc)
                    self._failure.__cause__ = exc
                self._done.set()
                await entry.stopped.wait()  # its workers run on until the deployment stops it
            finally:
                self._release()

    def _release(self) -> None:
        self._hosts -= 1
        if self._hosts == 0 and self._started:
            self._done.set()

    def _check_open(self, operation: str) -> None:
        if self._state == "new":
            raise StateError(f"{operation}() needs the deployment's context: 'async with deployment:'")
        if self._state != "open":
            raise StateError(f"{operation}(): the deployment is {self._state}")

    # -- start ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every app, each once the apps it depends on are started; return when all are.

        A service is started when all its workers sent "started" (`Master.start`); a
        ``once`` app when its process exited 0. Independent apps start concurrently. All
        or nothing: if an app fails (a worker cannot start, a ``once`` app does not exit
        0), the starts in progress are interrupted, the apps started are stopped in
        reverse order, and `DeploymentError` is raised naming the app (its own error as
        ``__cause__``). A shutdown meanwhile raises `OperationInterruptedError`.
        """
        self._check_open("start")
        async with self._lock:
            self._check_open("start")
            if self._started:
                raise StateError("start() was already called")
            await self._start_all(list(self._entries.values()))
            self._started = True
            if self._hosts == 0:  # nothing to supervise: only once apps
                self._done.set()

    async def _start_all(self, entries: list[_Entry]) -> None:
        """Start ``entries`` in dependency order; on a failure, stop them all and raise."""
        settled = {entry.name: anyio.Event() for entry in entries}
        failures: list[DeploymentError] = []

        async def start(entry: _Entry, tg: anyio.abc.TaskGroup) -> None:
            try:
                for name in entry.app.depends_on:
                    if name in settled:
                        await settled[name].wait()
                if failures or self._state != "open":
                    return
                missing = [name for name in entry.app.depends_on if not self._entries[name].ready]
                if missing:
                    raise DeploymentError(entry.name, f"not started: {', '.join(missing)} is not running")
                await self._start_one(entry)
            except DroverError as exc:
                if not failures and self._state == "open":
                    failures.append(exc if isinstance(exc, DeploymentError) else _failed(entry.name, exc))
                    for other in entries:  # interrupt the other starts in progress
                        if other.state == "starting":
                            tg.start_soon(self._stop_one, other)
            finally:
                settled[entry.name].set()

        async with anyio.create_task_group() as tg:
            for entry in entries:
                tg.start_soon(start, entry, tg)
        if failures or self._state != "open":
            await self._stop_all(entries)
            if failures:
                raise failures[0]
            raise OperationInterruptedError("start() was interrupted by a shutdown")

    async def _start_one(self, entry: _Entry) -> None:
        entry.state = "starting"
        began = anyio.current_time()
        try:
            master = entry.app.master
            if master is None:
                try:
                    with anyio.CancelScope() as scope:
                        entry.scope = scope
                        await run_once(entry.app.config)
                finally:
                    entry.ran.set()
                if scope.cancelled_caught:
                    raise OperationInterruptedError("stopped before it ended")
                entry.state = "done"
            else:
                if not entry.entered:
                    await self._open(entry)
                async with self._reporter.starting(entry.app):
                    await master.start()
                entry.state = "started"
        except BaseException:
            if entry.state == "starting":
                entry.state = "failed"
            raise
        await self._reporter.started(entry.app, entry.ns, anyio.current_time() - began)

    # -- stop -----------------------------------------------------------------------------

    async def supervise(self) -> None:
        """Wait while the apps run; return once every service app has shut down.

        Raise `DeploymentError` as soon as an app's restart policy gives up (``__cause__``:
        its `RestartLimitError`); the apps keep running: shut the deployment down.
        """
        if not self._started:
            raise StateError("supervise() needs a started deployment: call start() first")
        await self._done.wait()
        if self._failure is not None:
            raise self._failure

    async def graceful_shutdown(self, *, drain: float = 0.0) -> None:
        """Stop every app gracefully, each once the apps that depend on it stopped; return when done.

        Independent apps stop concurrently, each as `Master.graceful_shutdown` does; a
        ``once`` app still running is stopped (SIGTERM, then SIGKILL). A start or update
        in progress is interrupted. With ``drain`` seconds, every master drains first, all
        at once (`Master.drain`: ``/healthz`` says 503 while they keep serving).
        """
        if self._state == "new":
            raise StateError("graceful_shutdown() needs the deployment's context: 'async with deployment:'")
        if drain and self._state == "open":
            async with anyio.create_task_group() as tg:
                for master in self.masters.values():
                    if not master.draining and master.started_count > 0:
                        tg.start_soon(master.drain, drain)
        if self._state == "open":
            self._state = "closing"
        await self._stop_all(list(self._entries.values()))
        async with self._lock:  # a start or an update in progress has ended: stop what it added
            await self._stop_all(list(self._entries.values()))
        self._done.set()

    async def hard_shutdown(self) -> None:
        """Kill every app's processes at once (SIGKILL); return once all are reaped."""
        if self._state == "new":
            raise StateError("hard_shutdown() needs the deployment's context: 'async with deployment:'")
        if self._state == "open":
            self._state = "closing"
        async with anyio.create_task_group() as tg:
            for entry in list(self._entries.values()):
                if entry.scope is not None:
                    entry.scope.cancel()
                if entry.app.master is not None and entry.entered:
                    tg.start_soon(entry.app.master.hard_shutdown)
        for entry in self._entries.values():
            entry.stopped.set()
        self._done.set()

    async def _stop_all(self, entries: list[_Entry]) -> None:
        """Stop ``entries``, each once those of them that depend on it stopped."""
        stopped = {entry.name: anyio.Event() for entry in entries}

        async def stop(entry: _Entry) -> None:
            try:
                for other in entries:
                    if entry.name in other.app.depends_on:
                        await stopped[other.name].wait()
                await self._stop_one(entry)
            finally:
                stopped[entry.name].set()

        async with anyio.create_task_group() as tg:
            for entry in entries:
                tg.start_soon(stop, entry)

    async def _stop_one(self, entry: _Entry) -> None:
        master = entry.app.master
        if master is None:
            if entry.scope is not None:
                entry.scope.cancel()
                await entry.ran.wait()
            return
        if not entry.entered:
            return
        announce = entry.state == "started"
        if entry.state in ("new", "starting", "started"):
            entry.state = "stopping"
        await master.graceful_shutdown()
        entry.state = "stopped"
        entry.stopped.set()
        if announce:
            self._reporter.stopped(entry.app)

    # -- update ---------------------------------------------------------------------------

    async def update(self, new: Deployment) -> list[str]:
        """Apply ``new`` (the file loaded again) as supervisord's ``update`` does; return what changed.

        Apps gone from the file stop gracefully (in reverse dependency order); apps new
        in it start (in dependency order); a changed app is reloaded with rollback
        (`Master.graceful_reload`) when only its ``script`` or ``env`` changed, else
        stopped and started again (a ``once`` app runs again). Unchanged apps are left
        alone. The lines returned say what was done to which app ("added api"). Raise
        `DeploymentError` if a change failed; its message also says what was done. New
        apps that fail to start are stopped and left out (a later update tries again).
        """
        if new is self or new._state != "new":
            raise StateError("update() takes a deployment just loaded (load_deployment), never entered")
        self._check_open("update")
        async with self._lock:
            self._check_open("update")
            if not self._started:
                raise StateError("update() needs a started deployment: call start() first")
            self._hosts += 1  # supervise() goes on while apps are swapped
            try:
                return await self._update(new)
            finally:
                self._release()

    async def _update(self, new: Deployment) -> list[str]:
        old = self._entries
        done: list[str] = []
        failed: list[tuple[str, str]] = []
        removed = [entry for name, entry in old.items() if name not in new._entries]
        restarted: list[tuple[_Entry, _Entry]] = []
        reloaded: list[tuple[_Entry, _Entry, list[str]]] = []
        entries: dict[str, _Entry] = {}
        for name, entry in new._entries.items():
            was = old.get(name)
            if was is None:
                entries[name] = entry
                continue
            changed = [key for key in was.spec.changed(entry.spec) if key != "depends_on"]
            if not changed:  # perhaps depends_on: it orders the next start and stop
                was.spec, was.app = entry.spec, attrs.evolve(was.app, depends_on=entry.app.depends_on)
                entries[name] = was
            elif _reloadable(was, entry, changed):
                reloaded.append((was, entry, changed))
                entries[name] = was
            else:
                restarted.append((was, entry))
                entries[name] = entry
        await self._stop_all([*removed, *(was for was, _ in restarted if was.app.master is not None)])
        done += [f"removed {entry.name}" for entry in removed]
        self._entries = entries
        for was, entry, changed in reloaded:
            assert was.app.master is not None
            try:
                await was.app.master.graceful_reload(
                    script=entry.app.config.script if "script" in changed else None,
                    env=entry.app.config.env if "env" in changed else None,
                )
            except DroverError as exc:
                failed.append((was.name, f"reload failed, the previous version runs on: {exc}"))
                continue
            was.spec, was.app = entry.spec, attrs.evolve(entry.app, config=was.app.master.config, master=was.app.master)
            done.append(f"reloaded {was.name} ({' and '.join(changed)} changed)")
        starting = [entry for name, entry in entries.items() if name not in old or entry in (e for _, e in restarted)]
        try:
            await self._start_all(starting)
        except DeploymentError as exc:
            for entry in starting:
                del self._entries[entry.name]
            why = str(exc).removeprefix(f"{exc.app}: ")
            failed.append((exc.app, f"{why}; not started: {', '.join(entry.name for entry in starting)}"))
        else:
            for entry in starting:
                if entry.name not in old:
                    done.append(f"added {entry.name}")
                else:
                    keys = " and ".join(old[entry.name].spec.changed(entry.spec))
                    if entry.app.kind == "once":
                        done.append(f"ran {entry.name} again ({keys} changed)")
                    else:
                        done.append(f"restarted {entry.name} (stopped and started: {keys} changed)")
        if failed:
            app, why = failed[0]
            also = [f"{name}: {reason}" for name, reason in failed[1:]] + done
            raise DeploymentError(app, why + (f" (also: {'; '.join(also)})" if also else ""))
        return done


def _reloadable(was: _Entry, entry: _Entry, changed: list[str]) -> bool:
    """Return whether ``changed`` can be applied by a graceful reload of ``was``'s master."""
    allowed = {"script", "env"} if was.spec.program == "script" else {"env"}
    return (
        was.app.master is not None
        and was.state == "started"
        and entry.app.kind == "service"
        and entry.spec.program == was.spec.program
        and set(changed) <= allowed
    )


def _failed(app: str, error: DroverError) -> DeploymentError:
    failure = DeploymentError(app, str(error))
    failure.__cause__ = error
    return failure


def load_deployment(path: str | os.PathLike[str] = "drover.toml") -> Deployment:
    """Read the deployment file ``path`` and check it; return its apps, their masters built but not started.

    One ``[apps.NAME]`` table per app, with the long options of ``drover-py run``
    (``script = "worker.py"``) or ``drover-py serve`` (``app = "main:app"``) spelled
    with underscores, and ``kind``, ``depends_on``, ``env``. Relative paths in it
    (``script``, ``cwd``, ``app_dir``) are from the file's folder. The whole file is
    checked before anything is built, then each master is built as ``run`` or ``serve``
    builds its own. Raise `ConfigFileError` (a `ConfigError`): one line with the file,
    the line where it is known, the key path (``apps.web.workers``) and what was expected.
    """
    shown = os.fspath(path)
    try:
        text = Path(shown).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(shown, None, "", f"cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigFileError(shown, None, "", f"not UTF-8 text: {exc}") from None
    spec = parse_deployment(text, shown, schema())
    base = Path(shown).absolute().parent
    entries = []
    for app in spec.apps:
        ns, master = build(app, base, spec.at)
        entries.append(
            _Entry(
                DeploymentApp(
                    name=app.name,
                    kind=app.kind,
                    depends_on=app.depends_on,
                    config=master.config,
                    master=master if app.kind == "service" else None,
                ),
                app,
                ns,
            )
        )
    return Deployment(spec, entries)
