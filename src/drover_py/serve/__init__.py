"""Serve an ASGI or WSGI app by import string: ``drover-py serve main:app`` and its library side.

`create_master` returns a `drover_py.Master` whose workers serve the app (uvicorn on
asyncio, hypercorn on trio; a WSGI app in a thread pool), with the supervisor's
guarantees: readiness-gated start, zero-downtime reload with rollback, preload, and a
drain that loses no request, keep-alive connections included. `ServeOptions` holds the
serving settings. The worker program is `drover_py.serve.worker`.

This package's ``__init__`` stays light: every worker imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._options import ServeOptions as ServeOptions

if TYPE_CHECKING:
    from ._master import create_master as create_master

__all__ = ["ServeOptions", "create_master"]


def __getattr__(name: str) -> object:
    if name == "create_master":
        from ._master import create_master

        return create_master
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
