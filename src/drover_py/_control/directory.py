"""The masters a control server serves, by name, and what it keeps about each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import anyio

from .._commands import JSON, Command, CommandError
from .._exceptions import ConfigError
from .._supervise.master import Master
from .builtins import Builtins

if TYPE_CHECKING:
    from .server import ControlServer

Masters = Master | Sequence[Master] | Mapping[str, Master]


class UnknownMaster(CommandError):
    """No master of that name is served (404), or several are and none was named (400)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Directory:
    """The masters served by name; per master, starts per slot and its built-in commands."""

    def __init__(self, server: ControlServer, masters: dict[str, Master]) -> None:
        self._server = server
        self.masters: dict[str, Master] = {}
        #: Masters started by 'start SCRIPT', each with the event set once it is gone.
        self.added: dict[str, anyio.Event] = {}
        #: Per master, how many workers started in each slot since the server opened.
        self.starts: dict[str, dict[int, int]] = {}
        self._builtins: dict[str, Builtins] = {}
        #: Commands of the whole process (`ControlServer.command`): every master has them.
        self.shared: dict[str, Command] = {}
        for name, master in masters.items():
            self.track(name, master)

    def track(self, name: str, master: Master) -> None:
        """Serve ``master`` as ``name`` and count its workers' starts per slot."""
        self.masters[name] = master
        starts = self.starts.setdefault(name, {})

        def started(worker_id: int) -> None:
            for worker in master.workers:
                if worker.id == worker_id:
                    starts[worker.slot] = starts.get(worker.slot, 0) + 1

        master.on("worker-started", started)

    def forget(self, name: str) -> None:
        """Stop serving master ``name`` (one started by a command, now gone)."""
        self.masters.pop(name, None)
        self.added.pop(name, None)
        self.starts.pop(name, None)
        self._builtins.pop(name, None)

    def pick(self, name: str | None) -> str:
        """Return the name of the master meant: ``name``, or the only one served."""
        if name is None:
            if len(self.masters) == 1:
                return next(iter(self.masters))
            raise UnknownMaster(400, f"several masters are served; name one with ?master= ({', '.join(self.masters)})")
        if name not in self.masters:
            raise UnknownMaster(404, f"no master named {name!r}; masters: {', '.join(self.masters) or 'none'}")
        return name

    def commands(self, name: str) -> dict[str, Command]:
        """Return the commands in effect for master ``name``: its own, over the process's and the built-ins."""
        master = self.masters[name]
        builtins = self._builtins.get(name)
        if builtins is None or builtins.master is not master:
            builtins = self._builtins[name] = Builtins(self._server, name, master)
        return master.commands.resolve({**builtins.commands, **self.shared})

    def describe(self) -> list[JSON]:
        return [
            {"name": name, "script": str(m.config.script), "count": m.config.count, "started": m.started_count}
            for name, m in self.masters.items()
        ]


def name_masters(masters: Masters) -> dict[str, Master]:
    """Return ``masters`` by name: one, a list (named after their scripts) or a mapping."""
    if isinstance(masters, Master):
        masters = [masters]
    if isinstance(masters, Mapping):
        named = dict(masters)
    else:
        named = {}
        for master in masters:
            name = master.config.script.stem
            if name in named:
                raise ConfigError("masters", f"two masters run {name!r}: pass a mapping of names to masters")
            named[name] = master
    if not named:
        raise ConfigError("masters", "at least one master is needed")
    for name, master in named.items():
        if not isinstance(master, Master):
            raise ConfigError("masters", f"{name!r} is not a Master: {master!r}")
    return named
