"""The WSGI application of the wsgi_sync example: one line of text, naming its worker."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = os.environ.get("RESPONSE", "Hello from wsgi_sync!\n").encode()
    env = os.environ
    worker = f"wsgi_sync id={env.get('DROVER_PY_WORKER_ID')} slot={env.get('DROVER_PY_SLOT')} pid={os.getpid()}"
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body))), ("X-Worker", worker)]
    )
    return [body]
