"""The app of the wsgi_sync example: a plain WSGI callable, standard library only.

Serve it with ``drover-py serve wsgi:app -w 2 --bind 127.0.0.1:2500`` from this folder,
or with ``python main.py`` (the same, from Python). A Flask or Django app (its WSGI
callable) is served the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

BODY = b"Hello from wsgi_sync!\n"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    # Synchronous code, as in any WSGI app: each request runs in a thread of the worker's
    # pool, so a blocking call here holds up only this request.
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(BODY))),
        # The pid of the worker that answered (read per request: with --preload the
        # module is imported once, in the template the workers are forked from).
        ("X-Worker", f"wsgi_sync pid={os.getpid()}"),
    ]
    start_response("200 OK", headers)
    return [BODY]
