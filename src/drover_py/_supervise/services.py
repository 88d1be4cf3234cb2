"""What a master opens on entry and closes on exit, around its workers."""

from __future__ import annotations

import os
import socket

import anyio
import anyio.abc
from structlog.typing import FilteringBoundLogger

from .._child.title import master_titles
from .._config.options import MasterConfig
from .output import OutputSink
from .sockets import Listeners
from .systemd import Notifier, watchdog_interval


class Services:
    """A master's listening sockets, its sd_notify link (and watchdog), the output sink, its title."""

    def __init__(self, log: FilteringBoundLogger) -> None:
        self._log = log
        self._listeners: Listeners | None = None
        self._notifier: Notifier | None = None
        #: Where the workers' captured output goes, once `start` ran.
        self.output: OutputSink | None = None
        self._title_key = master_titles.new_key()

    def open(self, config: MasterConfig) -> None:
        """Create the listening sockets of ``bind`` (raise `BindError`) and find systemd's socket."""
        if config.bind:
            self._listeners = Listeners(config.bind, backlog=config.backlog, unix_mode=config.unix_mode)
        self._notifier = Notifier.from_env(os.environ, self._log)

    def start(self, config: MasterConfig, tg: anyio.abc.TaskGroup) -> None:
        """Run the watchdog pings and the output sink in ``tg`` (the master's task group)."""
        interval = watchdog_interval(os.environ) if self._notifier is not None else None
        if interval is not None:
            tg.start_soon(self._watchdog, interval, name="drover-py sd_notify watchdog")
        self.output = OutputSink(config.output, self._log)
        tg.start_soon(self.output.run, name="drover-py output")

    def close(self) -> None:
        if self._listeners is not None:
            self._listeners.close()
        if self._notifier is not None:
            self._notifier.close()

    @property
    def sockets(self) -> list[socket.socket]:
        return [] if self._listeners is None else list(self._listeners.sockets)

    @property
    def listen_fds(self) -> tuple[int, ...]:
        return () if self._listeners is None else self._listeners.fds

    async def _watchdog(self, interval: float) -> None:
        assert self._notifier is not None
        while True:
            self._notifier.send("WATCHDOG=1")
            await anyio.sleep(interval)

    def ready(self, started: int, count: int) -> None:
        """Tell systemd the master is ready, with how many workers started."""
        if self._notifier is not None:
            self._notifier.ready(f"{started} of {count} workers started")

    def reloading(self) -> None:
        if self._notifier is not None:
            self._notifier.reloading()

    def stopping(self) -> None:
        if self._notifier is not None:
            self._notifier.stopping()

    def show_title(self, config: MasterConfig) -> None:
        """Show the master (its script and count) in the process title, if titles are on."""
        name = config.title_name()
        if name is not None:
            master_titles.show(self._title_key, name, config.count)

    def remove_title(self) -> None:
        master_titles.remove(self._title_key)
