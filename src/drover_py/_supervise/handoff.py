"""What a worker is handed at birth: its descriptors and its environment, built in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping

from .._child.title import worker_title
from .._config.options import MasterConfig
from .._env import PROCTITLE_ENV, worker_vars
from .._spawn.base import SpawnRequest
from .sockets import SYSTEMD_ENV


def child_env(
    config: MasterConfig,
    *,
    slot: int,
    worker_id: int,
    channel: tuple[int, int],
    sockets: tuple[int, ...],
    environ: Mapping[str, str] = os.environ,
) -> dict[str, str]:
    """Return the complete environment of a worker.

    The master's own (without what systemd set for the master), then ``env``, then the
    contract of `drover_py._env`, then the title and ``run_as``'s HOME, USER and LOGNAME
    (those three only where ``env`` does not set them).
    """
    heartbeat = None if config.heartbeat_timeout is None else config.heartbeat_timeout / 3
    name = config.title_name()
    return {
        **base_env(config, environ),
        **worker_vars(channel=channel, slot=slot, worker_id=worker_id, sockets=sockets, heartbeat=heartbeat),
        **({} if name is None else {PROCTITLE_ENV: worker_title(name, slot)}),
        **_user_env(config),
    }


def base_env(config: MasterConfig, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Return what every process of ``config`` gets: the master's environment (without
    what systemd set for the master), ``env``, and ``run_as``'s HOME, USER, LOGNAME."""
    return {**{k: v for k, v in environ.items() if k not in SYSTEMD_ENV}, **config.env, **_user_env(config)}


def _user_env(config: MasterConfig) -> dict[str, str]:
    """Return HOME, USER and LOGNAME of ``run_as``, where ``env`` does not set them."""
    return {} if config.run_as is None else {k: v for k, v in config.run_as.env().items() if k not in config.env}


class Handoff:
    """The pipes of one spawn: the channel both ways, and stderr (and stdout) when captured.

    `open` creates them all or none; after the spawn the child's ends are closed
    (`close_child_ends`) and the master keeps its own (`channel`, `output`).
    """

    def __init__(self, fds: list[int], *, stderr: bool, stdout: bool) -> None:
        read_child, write_master, read_master, write_child = fds[:4]
        self.channel = (read_master, write_master)
        self._child_channel = (read_child, write_child)
        self._stderr = (fds[4], fds[5]) if stderr else None
        self._stdout = (fds[6], fds[7]) if stderr and stdout else None

    @classmethod
    def open(cls, *, stderr: bool, stdout: bool) -> Handoff:
        """Create the pipes: the channel, plus stderr's and stdout's if captured."""
        opened: list[int] = []
        try:
            for _ in range(2 + stderr + (stderr and stdout)):
                opened.extend(os.pipe())
        except OSError:
            for fd in opened:
                os.close(fd)
            raise
        return cls(opened, stderr=stderr, stdout=stdout)

    @property
    def output(self) -> tuple[int | None, int] | None:
        """Return the master's read ends of (stdout or None, stderr), or None if not captured."""
        if self._stderr is None:
            return None
        return (None if self._stdout is None else self._stdout[0], self._stderr[0])

    def request(self, config: MasterConfig, *, slot: int, worker_id: int, sockets: tuple[int, ...]) -> SpawnRequest:
        """Return the spawn request of a worker: its environment and the descriptors it inherits."""
        env = child_env(config, slot=slot, worker_id=worker_id, channel=self._child_channel, sockets=sockets)
        return SpawnRequest(
            config=config,
            env=env,
            pass_fds=(*self._child_channel, *sockets),
            stdout=None if self._stdout is None else self._stdout[1],
            stderr=None if self._stderr is None else self._stderr[1],
        )

    def close_child_ends(self) -> None:
        """Close the child's ends (the child has its copies, or was never made)."""
        for pipe in (self._stdout, self._stderr):
            if pipe is not None:
                os.close(pipe[1])
        for fd in self._child_channel:
            os.close(fd)

    def close_master_ends(self) -> None:
        """Close the master's ends (the spawn failed)."""
        for fd in self.channel:
            os.close(fd)
        for pipe in (self._stdout, self._stderr):
            if pipe is not None:
                os.close(pipe[0])
