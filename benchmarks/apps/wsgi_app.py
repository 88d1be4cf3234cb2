"""A trivial WSGI app for gunicorn: answers "ok" with its pid."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

BODY = b"ok\n"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY))), ("X-Worker-Pid", str(os.getpid()))],
    )
    return [BODY]
