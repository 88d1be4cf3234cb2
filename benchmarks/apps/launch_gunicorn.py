"""Run ``gunicorn -w N wsgi_app:app`` (sync workers) on 127.0.0.1:PORT (usage: launch_gunicorn.py PORT N)."""

from __future__ import annotations

import sys
from pathlib import Path

from gunicorn.app.wsgiapp import run

if __name__ == "__main__":
    port, workers = sys.argv[1], sys.argv[2]
    sys.argv = [
        "gunicorn",
        "--chdir",
        str(Path(__file__).resolve().parent),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        workers,
        "--worker-class",
        "sync",
        "--log-level",
        "warning",
        "wsgi_app:app",
    ]
    run()
