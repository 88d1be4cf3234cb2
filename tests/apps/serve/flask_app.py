"""A Flask (WSGI) app for `drover-py serve` tests: ``flask pid=PID``, with ``x-pid``, ``x-imported-by`` and ``x-servers``."""

from __future__ import annotations

import os
import sys

from flask import Flask, Response

app = Flask(__name__)

#: The pid of the process that imported this module (the preload template's under ``--preload``).
IMPORTED_BY = str(os.getpid())


def headers(pid: str) -> dict[str, str]:
    """Return an answer's headers: ``x-pid``, ``x-imported-by`` and ``x-servers`` (servers loaded here)."""
    servers = ",".join(name for name in ("uvicorn", "hypercorn", "waitress") if name in sys.modules)
    return {"x-pid": pid, "x-imported-by": IMPORTED_BY, "x-servers": servers}


@app.get("/")
def home() -> Response:
    pid = str(os.getpid())
    return Response(f"flask pid={pid}", mimetype="text/plain", headers=headers(pid))
