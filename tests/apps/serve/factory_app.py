"""An app factory for ``drover-py serve --factory factory_app:create_app``."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


def create_app() -> Starlette:
    """Return a new app that answers ``factory pid=PID``."""

    async def home(request: Request) -> PlainTextResponse:
        pid = str(os.getpid())
        return PlainTextResponse(f"factory pid={pid}", headers={"x-pid": pid})

    return Starlette(routes=[Route("/", home)])
