"""Child side: the listening sockets a worker inherited from its master. Light."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket

#: Environment variable listing the inherited listener fds, in bind order.
SOCKETS_ENV = "DROVER_PY_SOCKETS"

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
        value = os.environ.get(SOCKETS_ENV, "")
        _cache = []
        for text in filter(None, value.split(",")):
            sock = socket.socket(fileno=int(text))
            sock.set_inheritable(False)
            _cache.append(sock)
    return list(_cache)
