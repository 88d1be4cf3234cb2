"""Listening sockets owned by the master and inherited by every worker.

One socket per address, created once when the master opens, passed to every worker it
spawns (across reloads, scaling and restarts) and closed when the master closes. A
worker retiring never closes the listener, so no queued connection is lost (per-worker
SO_REUSEPORT listeners lose their whole accept queue when one closes).
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Mapping, Sequence

from .._config.binds import BindSpec
from .._exceptions import BindError

__all__ = ["SYSTEMD_ENV", "Listeners", "systemd_fds"]

#: The first fd systemd passes with socket activation.
SD_LISTEN_FDS_START = 3
#: What systemd sets for the master; removed from the workers' environment.
SYSTEMD_ENV = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _tcp(spec: BindSpec, backlog: int) -> socket.socket:
    infos = socket.getaddrinfo(spec.host, spec.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _unix(spec: BindSpec, backlog: int, mode: int) -> socket.socket:
    try:
        if stat.S_ISSOCK(os.stat(spec.path).st_mode):
            os.unlink(spec.path)  # a stale socket of an earlier run
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(spec.path)
        os.chmod(spec.path, mode)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _adopt(fd: int) -> socket.socket:
    sock = socket.socket(fileno=fd)
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise OSError(f"fd {fd} is not a stream socket")
    return sock


def systemd_fds(environ: Mapping[str, str]) -> list[int]:
    """Return the fds systemd passed to this process (socket activation), or []."""
    if environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))


class Listeners:
    """The master's listening sockets, in bind order, and the Unix paths it created."""

    def __init__(self, specs: Sequence[BindSpec], *, backlog: int, unix_mode: int) -> None:
        """Create (or adopt) every listener; on failure close those made, raise BindError."""
        self.sockets: list[socket.socket] = []
        self._paths: list[str] = []
        try:
            for spec in specs:
                try:
                    self._open(spec, backlog, unix_mode)
                except OSError as exc:
                    raise BindError(f"cannot listen on {spec}: {exc.strerror or exc}") from exc
        except BaseException:
            self.close()
            raise
        for sock in self.sockets:
            sock.set_inheritable(False)  # reaches workers through pass_fds only

    def _open(self, spec: BindSpec, backlog: int, unix_mode: int) -> None:
        if spec.kind == "tcp":
            self.sockets.append(_tcp(spec, backlog))
        elif spec.kind == "unix":
            self.sockets.append(_unix(spec, backlog, unix_mode))
            self._paths.append(spec.path)
        elif spec.kind == "fd":
            self.sockets.append(_adopt(spec.fd))
        else:
            fds = systemd_fds(os.environ)
            if not fds:
                raise OSError("no sockets passed by systemd (LISTEN_FDS/LISTEN_PID are not for this process)")
            self.sockets.extend(_adopt(fd) for fd in fds)

    @property
    def fds(self) -> tuple[int, ...]:
        """Return the listeners' fds, in bind order."""
        return tuple(sock.fileno() for sock in self.sockets)

    def close(self) -> None:
        """Close every listener and remove the Unix socket files this master created."""
        for sock in self.sockets:
            sock.close()
        for path in self._paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.sockets, self._paths = [], []
