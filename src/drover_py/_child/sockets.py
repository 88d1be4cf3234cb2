"""Child side: the listening sockets a worker inherited from its master. Light."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .._env import SOCKETS_ENV, parse_sockets

if TYPE_CHECKING:
    import socket


_cache: list[socket.socket] | None = None


def inherited_sockets() -> list[socket.socket]:
    """Return the listening sockets the master bound, in its ``bind`` order.

    Each is a `socket.socket` already listening (family and type detected from the
    fd); ``getsockname()`` gives its address. Hand them to your server instead of
    binding: they stay open across reloads, so no queued connection is lost. Calling
    this again returns the same objects. Outside a master, or without ``bind``, the
    list is empty.
    """
    global _cache
    if _cache is None:
        import socket  # here, not at import: every worker imports this module

        _cache = []
        for fd in parse_sockets(os.environ.get(SOCKETS_ENV, "")):
            sock = socket.socket(fileno=fd)
            sock.set_inheritable(False)
            _cache.append(sock)
    return list(_cache)
