"""A Starlette app for `drover-py serve` tests: it answers with its pid.

``GET /`` answers ``VERSION pid=PID`` (``VERSION`` is a module constant, so a test can
write a new version of this file) with the pid in an ``x-pid`` header too. With
``SERVE_TEST_FAIL_LIFESPAN`` set, its lifespan startup raises; with ``SERVE_TEST_GATE``
set to a path, its startup completes only once that file exists.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

VERSION = "v1"


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
    return PlainTextResponse(f"{VERSION} pid={pid}", headers={"x-pid": pid})


app = Starlette(routes=[Route("/", home)], lifespan=lifespan)
