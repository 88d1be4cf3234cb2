"""A Starlette app for `drover-py serve` tests: it answers with its pid.

``GET /`` answers ``VERSION pid=PID`` (``VERSION`` is a module constant, so a test can
write a new version of this file) with the pid in ``x-pid``, ``x-imported-by`` and ``x-servers`` headers too. With
``SERVE_TEST_FAIL_LIFESPAN`` set, its lifespan startup raises; with ``SERVE_TEST_GATE``
set to a path, its startup completes only once that file exists.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

VERSION = "v1"

#: The pid of the process that imported this module (the preload template's under ``--preload``).
IMPORTED_BY = str(os.getpid())


def headers(pid: str) -> dict[str, str]:
    """Return an answer's headers: ``x-pid``, ``x-imported-by`` and ``x-servers`` (servers loaded here)."""
    servers = ",".join(name for name in ("uvicorn", "hypercorn", "waitress") if name in sys.modules)
    return {"x-pid": pid, "x-imported-by": IMPORTED_BY, "x-servers": servers}


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    if os.environ.get("SERVE_TEST_FAIL_LIFESPAN"):
        raise RuntimeError("lifespan startup failed on purpose")
    gate = os.environ.get("SERVE_TEST_GATE")
    while gate and not os.path.exists(gate):  # the test opens the gate when it saw what it waits for
        await anyio.sleep(0.02)  # sync-ok: the app under test polls its gate file; the test waits on output
    yield


async def home(request: Request) -> PlainTextResponse:
    pid = str(os.getpid())
    return PlainTextResponse(f"{VERSION} pid={pid}", headers=headers(pid))


app = Starlette(routes=[Route("/", home)], lifespan=lifespan)
