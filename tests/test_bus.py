"""The child side: clear errors outside a master, light imports, handler registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from drover_py import LIFELINE_EXIT_CODE, ChannelError, MessageBus, StateError, SyncMessageBus
from drover_py._env import CHANNEL_ENV


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env, check=False
    )


def test_message_bus_outside_a_master_names_the_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CHANNEL_ENV, raising=False)
    with pytest.raises(ChannelError, match=f"{CHANNEL_ENV} is not set"):
        MessageBus()
    with pytest.raises(ChannelError, match="started by a drover_py Master"):
        SyncMessageBus()


@pytest.mark.parametrize("value", ["nonsense", "3", "999999,999998"])
def test_message_bus_with_a_bad_channel(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(CHANNEL_ENV, value)
    with pytest.raises(ChannelError, match="invalid drover-py channel"):
        MessageBus()


def test_script_run_without_master_exits_with_the_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != CHANNEL_ENV}
    result = run_python("import anyio\nfrom drover_py import MessageBus\nanyio.run(MessageBus().__aenter__)", env)
    assert result.returncode == 1
    assert "ChannelError" in result.stderr and CHANNEL_ENV in result.stderr


#: What a worker process imports of drover-py, exactly: a new import here is a decision to make.
CHILD_MODULES = {
    "drover_py", "drover_py._checks", "drover_py._compat", "drover_py._env", "drover_py._exceptions",
    "drover_py._child", "drover_py._child.bus", "drover_py._child.sockets", "drover_py._child.title",
    "drover_py._wire", "drover_py._wire.channel", "drover_py._wire.conversation", "drover_py._wire.protocol",
}  # fmt: skip
#: ... and of a worker with metrics (loaded by its first declaration).
METRICS_MODULES = CHILD_MODULES | {"drover_py._child.metrics", "drover_py._wire.metrics"}
#: ... and of drover-py serve's WSGI worker (no event loop server).
SERVE_WSGI_MODULES = CHILD_MODULES | {
    "drover_py.serve", "drover_py.serve._drain", "drover_py.serve._load", "drover_py.serve._options",
    "drover_py.serve._waitress", "drover_py.serve.worker",
}  # fmt: skip
#: The other distributions a worker may import (anyio's own dependencies vary by Python version).
THIRD_PARTY = {"anyio", "exceptiongroup", "sniffio", "typing_extensions"}


@pytest.mark.parametrize(
    ("imports", "expected", "others"),
    [
        ("from drover_py import MessageBus, SyncMessageBus", CHILD_MODULES, THIRD_PARTY),
        ("from drover_py._child.metrics import MetricRegistry", METRICS_MODULES, THIRD_PARTY),
        ("import drover_py.serve.worker, drover_py.serve._waitress", SERVE_WSGI_MODULES, THIRD_PARTY | {"waitress"}),
    ],
    ids=["bus", "metrics", "serve-wsgi"],
)
def test_a_worker_imports_only_what_is_allowed(imports: str, expected: set[str], others: set[str]) -> None:
    result = run_python(f"import sys, json\n{imports}\nprint(json.dumps(sorted(sys.modules)))")
    assert result.returncode == 0, result.stderr
    modules = set(json.loads(result.stdout))
    assert {m for m in modules if m.split(".")[0] == "drover_py"} == expected
    tops = {m.split(".")[0] for m in modules if not m.startswith("_")} - set(sys.stdlib_module_names) - {"drover_py"}
    assert tops <= others, f"a worker imports {sorted(tops - others)}"


def _bus_with_pipe(monkeypatch: pytest.MonkeyPatch) -> tuple[MessageBus, list[int]]:
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    monkeypatch.setenv(CHANNEL_ENV, f"{r1},{w2}")
    return MessageBus(), [r1, w1, r2, w2]


def test_unknown_bus_event_and_bad_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    bus, fds = _bus_with_pipe(monkeypatch)
    try:
        with pytest.raises(ValueError, match="unknown bus event 'stopp'.*stop, quit"):
            bus.on("stopp", lambda: None)
        with pytest.raises(TypeError, match="must be callable"):
            bus.on("stop", "not callable")  # type: ignore[arg-type]
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.anyio
async def test_sending_out_of_order_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    bus, fds = _bus_with_pipe(monkeypatch)
    with pytest.raises(StateError, match="async with MessageBus"):
        await bus.send_started()
    try:
        async with bus:
            with pytest.raises(StateError, match="before the master sent 'stop'"):
                await bus.send_stopped()
            with pytest.raises(StateError, match="before the master sent 'quit'"):
                await bus.send_shut_down()
            await bus.send_started()
            await bus.send_started()  # repeated: a no-op
        assert os.read(fds[2], 1000) == b'{"type":"started"}\n'
    finally:
        for fd in (fds[1], fds[2]):
            os.close(fd)


@pytest.mark.anyio
async def test_bus_body_error_propagates_unwrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    bus, fds = _bus_with_pipe(monkeypatch)
    try:
        with pytest.raises(KeyError):
            async with bus:
                raise KeyError("mine")
    finally:
        for fd in (fds[1], fds[2]):
            os.close(fd)


def test_sync_child_lifeline() -> None:
    """A worker whose main thread is blocked (no event loop) still exits on EOF."""
    r_child, w_master = os.pipe()
    r_master, w_child = os.pipe()
    code = (
        "import time\nfrom drover_py import SyncMessageBus\n"
        "with SyncMessageBus():\n    time.sleep(600)\n"  # sync-ok: a blocked main thread, the point of the test
    )
    env = {**os.environ, "DROVER_PY_CHANNEL": f"{r_child},{w_child}"}
    child = subprocess.Popen([sys.executable, "-c", code], env=env, pass_fds=(r_child, w_child))
    try:
        os.close(r_child)
        os.close(w_child)
        os.close(w_master)  # the "master" goes away
        assert child.wait(timeout=10) == LIFELINE_EXIT_CODE
    finally:
        child.kill()
        child.wait()
        os.close(r_master)
