"""The spawn seam: how a worker process comes to exist.

`Worker` builds a `SpawnRequest` (the complete environment and the fds the child must
inherit) and hands it to a `Spawner`. Exec mode (`ExecSpawner`) runs
``python script *args`` with `anyio.open_process`; another mode (such as forking from a
warm template) only has to return something that behaves like a `ChildProcess`.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import Protocol

import anyio
import anyio.abc
import attrs

from ._config import MasterConfig


@attrs.frozen(kw_only=True)
class SpawnRequest:
    """Everything a spawner needs to create one worker process."""

    #: The configuration the worker runs with (script, args, python, cwd, ...).
    config: MasterConfig
    #: The worker's complete environment.
    env: Mapping[str, str]
    #: Descriptors the child inherits under the same numbers (channel, listeners).
    pass_fds: tuple[int, ...]
    #: Descriptor to use as the child's stdout, or None to share the master's.
    stdout: int | None = None
    #: Descriptor to use as the child's stderr, or None to share the master's.
    stderr: int | None = None


class ChildProcess(Protocol):
    """The part of a process a `Worker` uses (`anyio.abc.Process` is one)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def send_signal(self, signal: signal.Signals) -> None: ...


class Spawner(Protocol):
    """Create worker processes. Each child must lead a new session (its own group)."""

    async def spawn(self, request: SpawnRequest) -> ChildProcess:
        """Start the process; raise OSError if it cannot be created."""
        ...


class ExecSpawner:
    """Spawn each worker by exec: ``config.python config.script *config.args``."""

    async def spawn(self, request: SpawnRequest) -> ChildProcess:
        """Start the worker with `anyio.open_process` in a new session."""
        run_as = request.config.run_as
        try:
            return await self._open(request)
        except PermissionError as exc:
            if run_as is None:
                raise
            who = f"uid {run_as.uid}" if run_as.uid is not None else f"gid {run_as.gid}"
            raise PermissionError(
                exc.errno, f"{exc.strerror} ({who} must be able to reach and execute it and read the script)", exc.filename
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
