"""Property-based HTTP tests of the control server against its OpenAPI document (schemathesis)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from drover_py import Master, open_control_server

from .conftest import MasterBuilder

KEY = "openapi-key"
# The event stream never ends: it is tested in test_control.py, not fuzzed.
schema = schemathesis.openapi.from_dict(
    json.loads((Path(__file__).parent.parent / "docs" / "openapi.json").read_text())
).exclude(path="/events")


@asynccontextmanager
async def _serve(master: Master) -> AsyncIterator[str]:
    async with master, open_control_server(master, tcp="127.0.0.1:0", access_key=KEY) as server:
        assert server.url is not None
        yield server.url


@pytest.fixture(params=["asyncio", "trio"])
def base_url(request: pytest.FixtureRequest, make_master: MasterBuilder) -> Iterator[str]:
    """Serve a master (not started: no worker is spawned) from an event loop in a thread."""
    with anyio.from_thread.start_blocking_portal(request.param) as portal:
        with portal.wrap_async_context_manager(_serve(make_master(count=1))) as url:
            yield url


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_control_api_conforms_to_its_openapi_document(case: schemathesis.Case[Any], base_url: str) -> None:
    # positive_data_acceptance is left out: one path serves every command, so the document
    # cannot say which arguments a given command accepts (help does, at run time).
    excluded = [schemathesis.checks.positive_data_acceptance]
    if case.path == "/healthz":  # 503 is the probe's documented "not healthy" (not started here)
        excluded.append(schemathesis.checks.not_a_server_error)
    case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {KEY}"},
        excluded_checks=excluded,
        timeout=10,
    )
