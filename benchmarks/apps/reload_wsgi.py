"""The trivial WSGI app of the reload-under-load benchmark (gunicorn): answers "ok"."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

BODY = b"ok\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY))), ("X-Worker-Pid", str(os.getpid()))]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", HEADERS)
    return [BODY]
