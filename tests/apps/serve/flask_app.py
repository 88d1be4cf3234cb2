"""A Flask (WSGI) app for `drover-py serve` tests: it answers ``flask pid=PID`` and an ``x-pid`` header."""

from __future__ import annotations

import os

from flask import Flask, Response

app = Flask(__name__)


@app.get("/")
def home() -> Response:
    pid = str(os.getpid())
    return Response(f"flask pid={pid}", mimetype="text/plain", headers={"x-pid": pid})
