"""A Starlette app for `drover-py serve` tests: it answers with its pid.

``GET /`` answers ``VERSION pid=PID`` (``VERSION`` is a module constant, so a test can
write a new version of this file) with the pid in an ``x-pid`` header too. With
``SERVE_TEST_FAIL_LIFESPAN`` set, its lifespan startup raises.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

VERSION = "v1"


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    if os.environ.get("SERVE_TEST_FAIL_LIFESPAN"):
        raise RuntimeError("lifespan startup failed on purpose")
    yield


async def home(request: Request) -> PlainTextResponse:
    pid = str(os.getpid())
    return PlainTextResponse(f"{VERSION} pid={pid}", headers={"x-pid": pid})


app = Starlette(routes=[Route("/", home)], lifespan=lifespan)
