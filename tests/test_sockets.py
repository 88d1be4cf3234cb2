"""Master-owned listening sockets, socket activation and sd_notify, on asyncio and trio."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketStream

from drover_py import BindError, ConfigError, MasterFactory
from drover_py._config.binds import BindSpec, parse_bind

from .conftest import APPS, MasterBuilder
from .helpers import EventLog, run_json_app

pytestmark = pytest.mark.anyio
ECHO = APPS / "echo_worker.py"


@pytest.mark.parametrize(
    ("entry", "spec"),
    [
        ("127.0.0.1:8000", BindSpec("tcp", host="127.0.0.1", port=8000)),
        ("[::1]:0", BindSpec("tcp", host="::1", port=0)),
        ("localhost:65535", BindSpec("tcp", host="localhost", port=65535)),
        ("unix:/run/app.sock", BindSpec("unix", path="/run/app.sock")),
        ("fd://3", BindSpec("fd", fd=3)),
        ("systemd", BindSpec("systemd")),
    ],
)
def test_parse_bind(entry: str, spec: BindSpec) -> None:
    assert parse_bind(entry) == spec
    assert str(spec) == entry


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("127.0.0.1:8000", "list of addresses"),
        (["127.0.0.1"], "host:port"),
        (["127.0.0.1:99999"], "host:port"),
        (["::1:80"], "brackets"),
        ([":80"], "empty host"),
        (["unix:"], "empty socket path"),
        (["fd://x"], "fd://<number>"),
        (["systemd", "systemd"], "once"),
        ([80], "address string"),
    ],
)
def test_bad_bind_names_the_option(value: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        MasterFactory.create(script=ECHO, bind=value)  # type: ignore[arg-type]
    assert info.value.option == "bind"


async def ask(address: tuple[str, int] | str) -> list[str]:
    stream: SocketStream
    with anyio.fail_after(10):
        if isinstance(address, str):
            stream = await anyio.connect_unix(address)
        else:
            stream = await anyio.connect_tcp(*address)
        async with stream:
            data = b""
            while not data.endswith(b"\n"):
                data += await stream.receive()
    return data.decode().split()


async def test_workers_serve_every_bound_socket(make_master: MasterBuilder, tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    master = make_master(count=2, script=ECHO, bind=["127.0.0.1:0", "[::1]:0", f"unix:{path}"], unix_mode=0o600)
    assert master.sockets == []
    async with master:
        v4, v6, unix = master.sockets
        assert v4.getsockname()[1] != 0 and v6.family == socket.AF_INET6
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        await master.start()
        pids = {str(w.pid) for w in master.workers}
        for address in (v4.getsockname()[:2], ("::1", v6.getsockname()[1]), str(path)):
            pid, slot, notify, listen = await ask(address)
            assert pid in pids and slot in {"0", "1"}
        await master.graceful_shutdown()
        assert master.sockets != []  # open until the master closes
    assert master.sockets == []
    assert not path.exists()
    assert v4.fileno() == -1


async def test_listener_survives_reload_scale_and_restart(make_master: MasterBuilder) -> None:
    master = make_master(count=1, script=ECHO, bind=["127.0.0.1:0"])
    async with master:
        await master.start()
        address = master.sockets[0].getsockname()
        first = (await ask(address))[0]
        await master.graceful_reload()
        await master.scale(2)
        await master.restart_worker_by_id(master.workers[0].id)
        await master.scale(1)
        answer = (await ask(address))[0]
        assert answer != first and answer == str(master.workers[0].pid)
        await master.graceful_shutdown()


async def test_no_connection_error_during_reload(make_master: MasterBuilder) -> None:
    """count=1: a sequential client sees every request answered while the worker rolls."""
    master = make_master(count=1, script=ECHO, bind=["127.0.0.1:0"])
    answered: list[str] = []
    async with master:
        await master.start()
        address = master.sockets[0].getsockname()
        reloads = 3

        async def client(scope: anyio.CancelScope) -> None:
            while True:
                answered.append((await ask(address))[0])  # any error fails the test

        async with anyio.create_task_group() as tg:
            tg.start_soon(client, tg.cancel_scope)
            for _ in range(reloads):
                await master.graceful_reload()
            tg.cancel_scope.cancel()
        await master.graceful_shutdown()
    assert len(set(answered)) >= 2  # the answers came from more than one generation
    assert len(answered) > reloads


async def test_port_in_use_is_a_bind_error(make_master: MasterBuilder) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        master = make_master(count=1, script=ECHO, bind=[f"127.0.0.1:{port}"])
        with pytest.raises(BindError, match=f"cannot listen on 127.0.0.1:{port}"):
            async with master:
                pass


async def test_systemd_bind_without_activation_is_a_bind_error(make_master: MasterBuilder) -> None:
    master = make_master(count=1, script=ECHO, bind=["systemd"])
    with pytest.raises(BindError, match="no sockets passed by systemd"):
        async with master:
            pass


@pytest.mark.parametrize("master_backend", ["asyncio", "trio"])
def test_socket_activation(master_backend: str) -> None:
    outcome = run_json_app(APPS / "activation_master.py", master_backend)
    pid, slot, notify, listen = outcome["answer"]
    assert slot == "0"
    assert listen == "False"  # LISTEN_FDS is for the master only


async def test_sd_notify(make_master: MasterBuilder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    master = make_master(count=2, script=ECHO, bind=["127.0.0.1:0"])
    log = EventLog(master)

    async def next_message(prefix: str) -> list[str]:
        with anyio.fail_after(10):
            while True:
                await anyio.wait_readable(receiver)
                fields = receiver.recv(4096).decode().split("\n")
                if fields[0].startswith(prefix):
                    return fields

    try:
        async with master:
            assert await next_message("WATCHDOG=1") == ["WATCHDOG=1"]
            await master.start()
            assert await next_message("READY=1") == ["READY=1", "STATUS=2 of 2 workers started"]
            *_, notify, _ = await ask(master.sockets[0].getsockname())
            assert notify == "False"  # NOTIFY_SOCKET is not passed to workers
            await master.graceful_reload()
            reloading = await next_message("RELOADING=1")
            assert reloading[1].startswith("MONOTONIC_USEC=") and int(reloading[1].split("=")[1]) > 0
            assert (await next_message("READY=1"))[0] == "READY=1"
            await master.graceful_shutdown()
            assert (await next_message("STOPPING=1"))[0] == "STOPPING=1"
    finally:
        receiver.close()
    assert master.get_workers_statuses() == [] and log.of("worker-exit") == []
