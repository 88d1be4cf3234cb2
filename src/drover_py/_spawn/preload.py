"""Preload mode, master side: a warm template process per configuration forks the workers.

With ``preload`` on, `pool.Spawners` gives each `Worker` a spawner that asks the `Template`
of its configuration (started on first use, by exec of ``template.py``) to fork the worker. Every graceful reload starts
a new template (so reloaded workers run the code on disk now, as exec workers would);
the old one retires once its last worker is gone, and serves the rollback if any.

Failure policy: a template that cannot import a module, finds a thread, misses
``start_timeout`` or dies fails the spawns waiting on it with `TemplateError` (the
worker then reports `PreloadError`); the next spawn starts a new template. There is no
silent fall back to exec. Workers already forked keep running: their lifeline is their
own channel to the master, signals go through a pidfd, and only their exit status needs
the template (lost if it died first: see `LOST_STATUS`).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.abc
import attrs
from structlog.typing import FilteringBoundLogger

from .._config.options import MasterConfig
from .._env import FD_ENV
from .base import SpawnRequest, generation_key

#: The template program, run by path so that starting it imports nothing of drover-py.
TEMPLATE_PROGRAM = Path(__file__).with_name("template.py")
#: Return code of a forked worker whose template died before it: its status is unknown.
LOST_STATUS = 255
#: Seconds a closed template has to exit before it is killed.
_EXIT_TIMEOUT = 5.0


class TemplateError(OSError):
    """The preload template could not serve a spawn (import error, thread, died, timeout)."""


class TemplateDied(TemplateError):
    """The template died after it was ready; a new template may serve the spawn.

    Nothing of the spawn outlives it but, at most, a worker forked just before: its
    channel is the failed spawn's, which the master closes, so it ends (the lifeline).
    """


class ForkedProcess:
    """A worker forked by a template, as a `ChildProcess`.

    Signals go through a pidfd (safe against pid reuse) where the platform has them;
    the exit status comes from the template, which is the worker's parent.
    """

    def __init__(self, pid: int, pidfd: int | None) -> None:
        self._pid = pid
        self._pidfd = pidfd
        self._returncode: int | None = None
        self._exited = anyio.Event()

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def wait(self) -> int:
        """Wait for the exit status the template reports; return the return code."""
        await self._exited.wait()
        assert self._returncode is not None
        return self._returncode

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig``; raise ProcessLookupError if the process is gone."""
        if self._returncode is not None:
            raise ProcessLookupError(self._pid)
        if self._pidfd is not None:
            signal.pidfd_send_signal(self._pidfd, sig)
        else:
            os.kill(self._pid, sig)

    async def wait_gone(self) -> None:
        """Wait until the process ended, without its status (for when the template died)."""
        if self._pidfd is not None:
            await anyio.wait_readable(self._pidfd)

    def set_exited(self, returncode: int) -> None:
        if self._returncode is not None:
            return
        self._returncode = returncode
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self._exited.set()


@attrs.define
class _Pending:
    done: anyio.Event = attrs.field(factory=anyio.Event)
    process: ForkedProcess | None = None
    error: OSError | None = None


class Template:
    """One template process and its control socket; forks workers of one configuration."""

    def __init__(
        self, config: MasterConfig, env: dict[str, str], log: FilteringBoundLogger, on_idle: Callable[[], None]
    ) -> None:
        self._on_idle = on_idle
        self.key = generation_key(config)
        self.config = config
        #: The configuration objects this template serves (by identity; see `Spawners`).
        self.served: list[MasterConfig] = [config]
        self._env = env
        self._log = log
        self._sock: socket.socket | None = None
        self._send_lock = anyio.Lock()
        self._ready = anyio.Event()
        self._error: TemplateError | None = None
        self._pending: dict[int, _Pending] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._ids = itertools.count(1)
        self._scope = anyio.CancelScope()
        self._spawning = 0
        self.closed = False
        self.pid: int | None = None
        self._process: anyio.abc.Process | None = None

    def idle(self) -> bool:
        """Return whether no worker of this template runs and no spawn is under way."""
        return not self._children and not self._spawning

    def close(self) -> None:
        """Close the control socket (the template exits on end of file) and stop serving."""
        self.closed = True
        self._scope.cancel()

    def _where(self) -> str:
        return f"preload template of {self.config.script.name!r}"

    def _fail(self, error: TemplateError) -> None:
        if self._error is None:
            self._error = error
        self._ready.set()
        for pending in self._pending.values():
            if not pending.done.is_set():
                pending.error = self._error
                pending.done.set()

    async def run(self, on_exit: Callable[[Template], None]) -> None:
        """Start the template process, serve its messages, and reap it when it ends."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        process: anyio.abc.Process | None = None
        preload = self.config.preload
        spec = {
            "modules": list(preload) if isinstance(preload, tuple) else [],
            "script_imports": preload is True,
            # Each worker's first step sets its title: import setproctitle (and the logging
            # it imports) once here, shared, instead of in every worker on its way to serving.
            "optional": ["setproctitle"] if self.config.title_name() is not None else [],
        }
        try:
            with self._scope:
                try:
                    with anyio.CancelScope(shield=True):  # a process half-started must not leak
                        process = await anyio.open_process(
                            [
                                self.config.python,
                                str(TEMPLATE_PROGRAM),
                                str(child.fileno()),
                                str(self.config.script),
                                json.dumps(spec),
                            ],
                            env=self._env,
                            pass_fds=(child.fileno(),),
                            start_new_session=True,
                            cwd=self.config.cwd,
                            stdin=None,
                            stdout=None,
                            stderr=None,
                        )
                except OSError as exc:
                    self._fail(TemplateError(exc.errno, f"cannot start the {self._where()}: {exc}"))
                    return
                finally:
                    child.close()
                assert process is not None
                self._process = process
                self.pid = process.pid
                self._log = self._log.bind(template_pid=process.pid)
                self._log.debug("preload template started")
                parent.setblocking(False)
                self._sock = parent
                await self._read_loop(parent)
                self.closed = True  # the next spawn starts a new template
                error = TemplateDied if self._ready.is_set() else TemplateError  # died serving, or starting
                self._fail(error(f"the {self._where()} exited unexpectedly"))
                if self._children:
                    self._log.error("preload template died; its workers run on without exit statuses")
                    async with anyio.create_task_group() as tg:
                        for forked in list(self._children.values()):
                            tg.start_soon(self._watch_orphan, forked)
        finally:
            with anyio.CancelScope(shield=True):
                self.closed = True
                self._sock = None
                parent.close()
                self._fail(TemplateError(f"the {self._where()} was closed"))
                for forked in self._children.values():
                    forked.set_exited(LOST_STATUS)
                self._children.clear()
                if process is not None:
                    with anyio.move_on_after(_EXIT_TIMEOUT):
                        await process.wait()
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
                    await process.aclose()
                    self._log.debug("preload template exited", returncode=process.returncode)
                on_exit(self)

    async def _watch_orphan(self, forked: ForkedProcess) -> None:
        await forked.wait_gone()
        self._log.warning("exit status of a worker lost with its template", pid=forked.pid)
        forked.set_exited(LOST_STATUS)
        self._children.pop(forked.pid, None)

    async def _read_loop(self, sock: socket.socket) -> None:
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(sock, 65536, 4)
            except BlockingIOError:
                await anyio.wait_readable(sock)
                continue
            except ConnectionResetError:
                return
            if not data:
                return
            self._dispatch(json.loads(data), fds)

    def _dispatch(self, message: dict[str, object], fds: list[int]) -> None:
        if "exit" in message:
            pid, code = message["exit"], message["code"]
            assert isinstance(pid, int) and isinstance(code, int)
            forked = self._children.pop(pid, None)
            if forked is not None:
                forked.set_exited(code)
            if self.idle():
                self._on_idle()
        elif "spawned" in message or "failed" in message:
            rid = message.get("spawned", message.get("failed"))
            pending = self._pending.get(rid) if isinstance(rid, int) else None
            if "spawned" in message:
                pid = message["pid"]
                assert isinstance(pid, int)
                for fd in fds:
                    os.set_inheritable(fd, False)
                forked = ForkedProcess(pid, fds[0] if fds else None)
                self._children[pid] = forked
                if pending is None:  # pragma: no cover - the spawner always waits for its answer
                    return
                pending.process = forked
            elif pending is not None:
                number = message.get("errno")
                pending.error = OSError(number if isinstance(number, int) else 0, str(message.get("error")))
            if pending is not None:
                pending.done.set()
        elif "ready" in message:
            self._log.debug("preload template ready", modules=message.get("modules"))
            self._ready.set()
        elif "error" in message:
            self._log.error("preload template failed", error=message["error"])
            self._fail(TemplateError(f"{self._where()} failed: {message['error']}"))

    async def spawn(self, request: SpawnRequest) -> ForkedProcess:
        """Ask the template to fork the worker of ``request``; raise OSError on failure."""
        self._spawning += 1
        try:
            if not self._ready.is_set():
                with anyio.move_on_after(self.config.start_timeout):
                    await self._ready.wait()
            if not self._ready.is_set():
                self._fail(
                    TemplateError(f"the {self._where()} did not get ready within {self.config.start_timeout:g} s")
                )
                self.close()
            if self._error is not None:
                raise self._error
            return await self._request(request)
        finally:
            self._spawning -= 1
            if self.idle():
                self._on_idle()

    async def _request(self, request: SpawnRequest) -> ForkedProcess:
        sock = self._sock
        if sock is None or self.closed:
            raise TemplateError(f"the {self._where()} is closed")
        rid = next(self._ids)
        config = request.config
        message = {
            "spawn": rid,
            "argv": [str(config.script), *config.args],
            "env": dict(request.env),
            "fd_env": list(FD_ENV),
            "nfds": len(request.pass_fds),
            "targets": list(request.pass_fds),
            "stdout": request.stdout is not None,
            "stderr": request.stderr is not None,
            "cwd": None if config.cwd is None else str(config.cwd),
            "uid": None if config.run_as is None else config.run_as.uid,
            "gid": None if config.run_as is None else config.run_as.gid,
            "groups": None if config.run_as is None else list(config.run_as.groups),
        }
        fds = [*request.pass_fds, *(fd for fd in (request.stdout, request.stderr) if fd is not None)]
        data = json.dumps(message).encode()
        pending = self._pending[rid] = _Pending()
        try:
            # A template answers in milliseconds; one that does not (stopped, or stuck in a
            # preloaded module's fork hook) is killed, and the spawn goes to a new one.
            with anyio.move_on_after(self.config.start_timeout):
                if not self._send(sock, data, fds):  # the template lags: its socket buffer is full
                    async with self._send_lock:  # one waiter at a time (anyio allows no more)
                        while not self._send(sock, data, fds):
                            await anyio.wait_writable(sock)
                await pending.done.wait()
            if not pending.done.is_set():
                self._kill(f"did not answer a spawn request within {self.config.start_timeout:g} s")
        finally:
            del self._pending[rid]
        if pending.error is not None:
            raise pending.error
        assert pending.process is not None
        return pending.process

    def _kill(self, why: str) -> None:
        """Fail what waits on this template with `TemplateDied` (``why``), and SIGKILL it.

        Its workers run on: `run` watches them as orphans once the template is gone.
        """
        self.closed = True  # the next spawn starts a new template
        self._fail(TemplateDied(f"the {self._where()} {why}; killed"))
        self._log.error("preload template killed", why=why)
        if self._process is not None and self._process.returncode is None:
            self._process.kill()

    def _send(self, sock: socket.socket, data: bytes, fds: list[int]) -> bool:
        """Send a request; return False if the socket has no room for it now."""
        try:
            socket.send_fds(sock, [data], fds)
            return True
        except BlockingIOError:
            return False
        except OSError as exc:  # died before its end of file reached our reader
            self.closed = True  # the next spawn starts a new template
            raise TemplateDied(exc.errno, f"the {self._where()} is gone: {exc.strerror or exc}") from exc
