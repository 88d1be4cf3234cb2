"""The spawn seam: how a worker process comes to exist.

`Worker` builds a `SpawnRequest` (the complete environment and the fds the child must
inherit) and hands it to a `Spawner`: `exec.ExecSpawner` runs ``python script *args``,
`preload.Template` forks from a warm template; `pool.Spawners` decides which one a
configuration gets. A spawner only has to return something that behaves like a `ChildProcess`.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import Protocol

import attrs

from .._config.options import MasterConfig


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


def generation_key(config: MasterConfig) -> MasterConfig:
    """Return what decides which template serves ``config``: everything but the count."""
    return attrs.evolve(config, count=1)
