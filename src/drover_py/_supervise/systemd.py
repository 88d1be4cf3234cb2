"""sd_notify for the master: readiness, reload, stop, status and watchdog. No dependency.

Active only when systemd set ``NOTIFY_SOCKET`` (a unit with ``Type=notify``); every call
is then one datagram, and a failure to send is logged, never raised.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from structlog.typing import FilteringBoundLogger


class Notifier:
    """Send sd_notify datagrams to ``address`` (a path, or "@name" for the abstract namespace)."""

    def __init__(self, address: str, log: FilteringBoundLogger) -> None:
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._log = log

    @classmethod
    def from_env(cls, environ: Mapping[str, str], log: FilteringBoundLogger) -> Notifier | None:
        """Return a notifier if ``NOTIFY_SOCKET`` is set, else None."""
        address = environ.get("NOTIFY_SOCKET")
        return cls(address, log) if address else None

    def send(self, *fields: str) -> None:
        """Send ``fields`` ("READY=1", "STATUS=...") as one notification."""
        try:
            self._sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            self._log.warning("sd_notify failed", error=str(exc), fields=fields)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=shutting down")

    def close(self) -> None:
        self._sock.close()


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Return how often to send WATCHDOG=1 (half of WATCHDOG_USEC), or None."""
    pid = environ.get("WATCHDOG_PID")
    if pid is not None and pid != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None
