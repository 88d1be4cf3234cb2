"""The examples run as a user runs them: start, serve HTTP, shut down on SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import sys
import urllib.request
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process

from .helpers import kill_on_exit

pytestmark = pytest.mark.anyio
EXAMPLES = Path(__file__).parent.parent / "examples"


def free_ports(count: int) -> int:
    """Return a base port such that base .. base+count-1 are free on 127.0.0.1 right now."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base: int = probe.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base


def get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        body: bytes = response.read()
        return body.decode()


async def read_until(process: Process, text: str, seen: list[str]) -> None:
    assert process.stdout is not None
    with anyio.fail_after(30):
        while text not in seen[0]:
            seen[0] += (await process.stdout.receive()).decode()


@pytest.mark.parametrize(
    ("example", "ports", "env_name", "expected"),
    [
        ("simple_app", 1, "PORT", ["Hello from simple_app!"]),
        ("single_app_cluster", 1, "PORT", ["Hello from single_app_cluster!"]),
        ("multi_app_cluster", 3, "BASE_PORT", ["Hello from foo!", "Hello from bar!", "Hello from baz!"]),
    ],
)
@pytest.mark.parametrize("master_backend", ["asyncio", "trio"])
async def test_example_serves_and_shuts_down(
    example: str, ports: int, env_name: str, expected: list[str], master_backend: str
) -> None:
    base = free_ports(ports)
    process = await anyio.open_process(
        [sys.executable, str(EXAMPLES / example / "main.py"), "--backend", master_backend],
        env={**os.environ, env_name: str(base)},
    )
    seen = [""]
    async with kill_on_exit(process):
        for port in range(base, base + ports):
            await read_until(process, f"serving http://127.0.0.1:{port}/", seen)
        bodies = [await anyio.to_thread.run_sync(get, base + i) for i in range(ports)]
        for body, fragment in zip(bodies, expected):
            assert fragment in body
        process.send_signal(signal.SIGINT)
        await read_until(process, "shut down", seen)
        with anyio.fail_after(30):
            assert await process.wait() == 0
