"""Exec mode: each worker is a new ``python script *args`` process."""

from __future__ import annotations

import os
import signal

import anyio
import anyio.abc

from .base import ChildProcess, SpawnRequest


class ExecProcess:
    """An exec'd worker (an `anyio.abc.Process`) that is signalled through a pidfd.

    `subprocess.Popen.send_signal`, which anyio's asyncio backend calls, first polls
    with ``waitpid(WNOHANG)``: on a worker that has just died it reaps the process
    ahead of asyncio's child watcher, which then reports exit code 255 instead of the
    real status (a SIGKILL read as an abnormal exit). A pidfd signals without reaping
    and never reaches a reused pid. Without pidfds, signals go the usual way.
    """

    def __init__(self, process: anyio.abc.Process) -> None:
        self._process = process
        self._pidfd: int | None = None
        if hasattr(os, "pidfd_open"):
            try:
                self._pidfd = os.pidfd_open(process.pid)
            except OSError:  # already gone: signals go the usual way
                pass

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    async def wait(self) -> int:
        """Wait for the exit; return the return code (and let go of the pidfd)."""
        code = await self._process.wait()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        return code

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig``; raise ProcessLookupError if the process is gone."""
        if self._pidfd is None:
            self._process.send_signal(sig)
        else:
            signal.pidfd_send_signal(self._pidfd, sig)


class ExecSpawner:
    """Spawn each worker by exec: ``config.python config.script *config.args``."""

    async def spawn(self, request: SpawnRequest) -> ChildProcess:
        """Start the worker with `anyio.open_process` in a new session."""
        run_as = request.config.run_as
        try:
            return ExecProcess(await self._open(request))
        except PermissionError as exc:
            if run_as is None:
                raise
            who = f"uid {run_as.uid}" if run_as.uid is not None else f"gid {run_as.gid}"
            raise PermissionError(
                exc.errno,
                f"{exc.strerror} ({who} must be able to reach and execute it and read the script)",
                exc.filename,
            ) from exc

    @staticmethod
    async def _open(request: SpawnRequest) -> anyio.abc.Process:
        run_as = request.config.run_as
        return await anyio.open_process(
            request.config.command(),
            env=request.env,
            pass_fds=request.pass_fds,
            start_new_session=True,
            cwd=request.config.cwd,
            user=None if run_as is None else run_as.uid,
            group=None if run_as is None else run_as.gid,
            extra_groups=None if run_as is None else run_as.groups,
            stdin=None,
            stdout=request.stdout,
            stderr=request.stderr,
        )
