"""Run ``uvicorn asgi_app:app --workers N`` on 127.0.0.1:PORT (usage: launch_uvicorn.py PORT N)."""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

if __name__ == "__main__":
    uvicorn.run(
        "asgi_app:app",
        app_dir=str(Path(__file__).resolve().parent),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        workers=int(sys.argv[2]),
        log_level="info",
        access_log=False,
    )
