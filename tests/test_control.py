"""The control server over real sockets (Unix and 127.0.0.1), on asyncio and trio."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from drover_py import (
    BindError,
    CommandError,
    ConfigError,
    ControlClient,
    ControlServer,
    Master,
    WorkerStatus,
    open_control_server,
)
from drover_py._commands import JSON
from drover_py._control.openapi import openapi_document

from .conftest import WORKER, MasterBuilder
from .helpers import EventLog, is_running

pytestmark = pytest.mark.anyio
KEY = "s3cret-key"
OPENAPI = Path(__file__).parent.parent / "docs" / "openapi.json"


@asynccontextmanager
async def served(
    master: Master, tmp_path: Path, *, start: bool = True, **options: object
) -> AsyncIterator[tuple[ControlServer, ControlClient]]:
    """Open ``master`` and a control server for it on a temp Unix socket."""
    async with master, open_control_server(master, unix=tmp_path / "ctl.sock", **options) as server:  # type: ignore[arg-type]
        if start:
            await master.start()
        key = options.get("access_key")
        yield server, ControlClient(unix=str(tmp_path / "ctl.sock"), key=key if isinstance(key, str) else None)


def data_lines(stream: bytes) -> list[dict[str, Any]]:
    """Return the complete ``data:`` lines of a server-sent event stream, parsed."""
    lines = stream.decode(errors="replace").split("\n")[:-1]  # the last one may be cut
    return [json.loads(line[6:]) for line in lines if line.startswith("data: ")]


def result(body: JSON) -> JSON:
    assert isinstance(body, dict) and body["ok"] is True, body
    value: JSON = body["result"]
    return value


def rows(body: JSON) -> list[dict[str, JSON]]:
    value = result(body)
    assert isinstance(value, list)
    return [row for row in value if isinstance(row, dict)]


async def raw(path: Path, data: bytes, *, eof: bool = True) -> tuple[int, bytes]:
    """Send raw bytes on the Unix socket (then EOF); return the status code and the whole reply."""
    async with await anyio.connect_unix(path) as stream:
        await stream.send(data)
        if eof:
            await stream.send_eof()
        reply = b""
        with anyio.fail_after(10):
            while True:
                try:
                    reply += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
    return int(reply.split(b" ", 2)[1]), reply


async def test_builtin_commands(make_master: MasterBuilder, tmp_path: Path) -> None:
    master = make_master(count=2)
    async with served(master, tmp_path) as (server, client):
        assert stat.S_IMODE(os.stat(tmp_path / "ctl.sock").st_mode) == 0o600
        workers = rows((await client.run("workers")).body)
        assert [(w["slot"], w["status"], w["restarts"]) for w in workers] == [(0, "STARTED", 0), (1, "STARTED", 0)]
        assert all(isinstance(w["rss"], int) and w["rss"] > 0 and isinstance(w["uptime"], float) for w in workers)
        assert result((await client.run("health")).body) == {
            "healthy": True,
            "started": 2,
            "count": 2,
            "failed": 0,
            "pid": os.getpid(),
        }
        names = [row["name"] for row in rows((await client.run("help")).body)]
        assert names == sorted(
            ["help", "workers", "health", "start", "restart", "upgrade", "test", "scale", "shutdown", "exit"]
        )
        restart_help = result((await client.run("help", ["restart"])).body)
        assert isinstance(restart_help, dict) and restart_help["usage"] == "restart [TARGET] [TIMEOUT] [CHECK]"
        assert (await client.run("start")).status == 409  # already started

        assert result((await client.run("scale", ["3"])).body) == {"done": True, "message": "scale to 3 done"}
        assert master.get_workers_statuses() == [WorkerStatus.STARTED] * 3
        old = {w.id for w in master.workers}
        report = result((await client.run("restart", {"target": "all"})).body)
        assert isinstance(report, dict) and report["workers"] == 3 and isinstance(report["seconds"], float)
        assert re.fullmatch(r"reloaded 3 workers in \d+\.\d\d s", str(report["message"])), report
        assert not old & {w.id for w in master.workers}
        assert [w["restarts"] for w in rows((await client.run("workers")).body)] == [1, 1, 1]

        victim = master.workers[1]
        assert (await client.run("restart", [str(victim.id)])).ok
        assert victim.id not in {w.id for w in master.workers} and [w.slot for w in master.workers] == [0, 1, 2]
        assert (await client.run("restart", ["12345"])).status == 400
        assert (await client.run("restart", ["some"])).status == 400

        victim = master.workers[2]
        assert (await client.run("shutdown", [str(victim.id), 5])).ok
        assert [w.slot for w in master.workers] == [0, 1]
        assert victim.pid is not None and not is_running(victim.pid)
        assert result((await client.run("health")).body) == {
            "healthy": False,
            "started": 2,
            "count": 3,
            "failed": 0,
            "pid": os.getpid(),
        }

        v2 = tmp_path / "v2.py"
        v2.write_text(WORKER.read_text())
        assert (await client.run("upgrade", ["all", str(v2), "30", "0.1"])).ok  # fills the empty slot too
        assert master.config.script == v2 and [w.slot for w in master.workers] == [0, 1, 2]
        assert (await client.run("upgrade", ["all", str(tmp_path / "missing.py")])).status == 400

        pids = [w.pid for w in master.workers]
        reply = await client.run("shutdown", ["all"])
        assert result(reply.body) == {"done": True, "message": "shutdown all done"}
        assert master.workers == [] and not any(pid and is_running(pid) for pid in pids)
        assert (await client.run("restart")).status == 409
        await master.supervise()  # returns: the master shut down


async def test_upgrade_failure_rolls_back_and_reports(make_master: MasterBuilder, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import sys\nsys.exit('broken.py: refusing to start')\n")
    master = make_master(count=2)
    async with served(master, tmp_path) as (server, client):
        before = [w.pid for w in master.workers]
        reply = await client.run("upgrade", ["all", str(broken)])
        assert reply.status == 500 and "rolled back" in reply.error
        assert isinstance(reply.body, dict) and reply.body["stderr_tail"] == "broken.py: refusing to start"
        assert [w.pid for w in master.workers] == before and master.config.script == WORKER
        assert (await client.run("upgrade", ["3", str(broken)])).status == 400  # one master, one script
        await master.graceful_shutdown()


async def test_custom_commands_override_and_disable(make_master: MasterBuilder, tmp_path: Path) -> None:
    master = make_master(count=1)

    @master.command("greet")
    def greet(name: str, times: int = 1, shout: bool = False, pause: float | None = None) -> str:
        """Greet NAME.

        Says hello TIMES times.
        """
        text = " ".join([f"hello {name}"] * times)
        return text.upper() if shout else text

    async def health() -> dict[str, JSON]:
        return {"healthy": True, "queue": 0}

    master.command("health", health, help="App health.")
    master.command("boom", lambda: 1 / 0)
    master.command("odd", lambda: {1, 2})
    master.command("refuse", _refuse)
    master.commands.disable("exit")
    with pytest.raises(ValueError):
        master.command("Bad Name", greet)
    with pytest.raises(TypeError):
        master.command("typed", _listy)

    async with served(master, tmp_path, start=False) as (server, client):
        assert result((await client.run("greet", ["ann", "2", "yes"])).body) == "HELLO ANN HELLO ANN"
        assert result((await client.run("greet", {"name": "bo", "times": 1.0})).body) == "hello bo"
        assert result((await client.run("health")).body) == {"healthy": True, "queue": 0}
        greet_help = result((await client.request("GET", "/commands/greet")).body)
        assert isinstance(greet_help, dict) and greet_help["usage"] == "greet NAME [TIMES] [SHOUT] [PAUSE]"
        assert greet_help["summary"] == "Greet NAME." and "TIMES times" in str(greet_help["help"])
        bad: list[JSON] = [
            None,
            ["a", "b"],
            ["a", 1, True, 1.5, "x"],
            {"nom": "a"},
            {"name": 1},
            ["a", 1.5],
            ["a", 1, "maybe"],
            "a",
        ]
        for args in bad:
            reply = await client.run("greet", args)
            assert reply.status == 400 and reply.error.startswith("greet"), (args, reply)
        assert (await client.run("exit", ["now"])).status == 404
        assert "exit" not in [row["name"] for row in rows((await client.run("help")).body)]
        boom = await client.run("boom")
        assert boom.status == 500 and "ZeroDivisionError" in boom.error
        assert (await client.run("odd")).status == 500
        refused = await client.run("refuse")
        assert (refused.status, refused.error) == (400, "not today")
        master.commands.remove("health")
        assert result((await client.run("health")).body) == {
            "healthy": False,
            "started": 0,
            "count": 1,
            "failed": 0,
            "pid": os.getpid(),
        }
        assert result((await client.run("greet", ["still", "1"])).body) == "hello still"  # the server lived on


def _listy(items: list[str]) -> None:
    """Not a valid command: list parameters are not supported."""


def _refuse() -> None:
    raise CommandError("not today")


async def test_access_key_and_tcp(make_master: MasterBuilder, tmp_path: Path) -> None:
    master = make_master(count=1)
    with pytest.raises(ConfigError, match="access_key"):
        async with open_control_server(master, tcp="127.0.0.1:0"):
            pass  # pragma: no cover
    async with master, open_control_server(master, tcp="127.0.0.1:0", access_key=KEY) as server:
        assert server.url is not None and server.url.startswith("http://127.0.0.1:") and server.unix_path is None
        for key in (None, "", "wrong", KEY + "x"):
            reply = await ControlClient(url=server.url, key=key).run("health")
            assert reply.status == 401 and reply.error == "missing or wrong access key"
        assert (await ControlClient(url=server.url, key=KEY).run("health")).ok
        document = await ControlClient(url=server.url).request("GET", "/openapi.json")  # public
        assert document.body == openapi_document() == json.loads(OPENAPI.read_text()), (
            "docs/openapi.json is stale: python -m drover_py._control.openapi > docs/openapi.json"
        )


async def test_healthz_probe_needs_no_key_and_says_only_healthy_or_not(make_master: MasterBuilder) -> None:
    master = make_master(count=2)
    log = EventLog(master)
    async with master, open_control_server(master, tcp="127.0.0.1:0", access_key=KEY) as server:
        assert server.url is not None
        probe = ControlClient(url=server.url)  # no key, as a load balancer or kubelet
        before = await probe.request("GET", "/healthz")
        assert (before.status, before.body) == (503, {"healthy": False})  # not started yet
        await master.start()
        ready = await probe.request("GET", "/healthz")
        assert (ready.status, ready.body) == (200, {"healthy": True})
        victim = master.workers[0]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        await log.wait_for("worker-exit")
        degraded = await probe.request("GET", "/healthz")
        assert (degraded.status, degraded.body) == (503, {"healthy": False})
        assert (await probe.request("POST", "/healthz")).status == 405
        assert (await probe.request("GET", "/healthz?master=nope")).status == 404
        assert (await probe.run("health")).status == 401  # the detailed command still needs the key
        await master.graceful_shutdown()


async def test_unix_socket_key_is_optional_and_enforced_when_set(make_master: MasterBuilder, tmp_path: Path) -> None:
    async with served(make_master(count=1), tmp_path, start=False, access_key=KEY) as (server, client):
        assert (await client.run("health")).ok
        assert (await ControlClient(unix=str(server.unix_path)).run("health")).status == 401
        status, reply = await raw(
            tmp_path / "ctl.sock", b"GET /masters HTTP/1.1\r\nHost: x\r\nAuthorization: Basic abc\r\n\r\n"
        )
        assert status == 401 and b"www-authenticate: Bearer" in reply


async def test_malformed_and_wrong_requests(make_master: MasterBuilder, tmp_path: Path) -> None:
    master = make_master(count=1)
    async with served(master, tmp_path, start=False, max_body=1024, request_timeout=2) as (server, client):
        sock = tmp_path / "ctl.sock"
        assert (await raw(sock, b"\x00\x01garbage\r\n\r\n"))[0] == 400
        assert (await raw(sock, b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n"))[0] == 431
        big = b"[" + b"1," * 1000 + b"1]"
        assert (
            await raw(sock, b"POST /commands/help HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(big) + big)
        )[0] == 413
        assert (await raw(sock, b"POST /commands/help HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{nope"))[0] == 400
        assert (await raw(sock, b"POST /commands/help HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n42"))[0] == 400
        status, reply = await raw(sock, b"DELETE /commands/workers HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 405 and b"allow: GET, POST" in reply
        assert (await raw(sock, b"POST /masters HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"))[0] == 405
        assert (await raw(sock, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == 404
        assert (await raw(sock, b"GET /commands/workers?master=other HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == 404
        # a request that never completes is answered 408 after request_timeout
        assert (await raw(sock, b"POST /commands/help HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n[1", eof=False))[
            0
        ] == 408
        # keep-alive: two requests on one connection, both answered
        status, reply = await raw(
            sock,
            b"GET /commands/health HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /masters HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        assert status == 200 and reply.count(b"HTTP/1.1 200") == 2
        assert (await client.run("health")).ok  # the server is still serving


async def test_concurrent_commands(make_master: MasterBuilder, tmp_path: Path) -> None:
    master = make_master(count=1)
    gate = anyio.Event()
    calls: list[int] = []

    @master.command("wait")
    async def wait(n: int) -> int:
        calls.append(n)
        await gate.wait()
        return n

    @master.command("release")
    def release() -> None:
        gate.set()

    async with served(master, tmp_path) as (server, client):
        replies: dict[int, JSON] = {}

        async def call(n: int) -> None:
            replies[n] = result((await client.run("wait", [n])).body)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for n in range(10):
                    tg.start_soon(call, n)
                while len(calls) < 10:  # every call is in its handler at once
                    health = await client.run("health")
                    assert health.ok
                assert (await client.run("release")).ok
        assert replies == {n: n for n in range(10)}
        await master.graceful_shutdown()


async def test_several_masters_start_and_exit(make_master: MasterBuilder, tmp_path: Path) -> None:
    one, two = make_master(count=1), make_master(count=1, env={"TEST_TAG": "two"}, stop_timeout=7.0)
    async with one, two, open_control_server({"one": one, "two": two}, unix=tmp_path / "ctl.sock") as server:
        await one.start()
        client = ControlClient(unix=str(tmp_path / "ctl.sock"))
        assert (await client.run("health")).status == 400  # which one?
        assert result((await client.run("health", master="one")).body) is not None
        assert (await client.run("health", master="three")).status == 404
        started = await client.run("start", [str(WORKER), 1, "extra"], master="two")
        assert result(started.body) == {"done": True, "master": "extra", "count": 1}
        listing = rows((await client.request("GET", "/masters")).body)
        assert [(m["name"], m["started"]) for m in listing] == [("one", 1), ("two", 0), ("extra", 1)]
        assert (await client.run("start", [str(WORKER), 1, "extra"], master="one")).status == 400  # name taken
        [extra_pid] = [w["pid"] for w in rows((await client.run("workers", master="extra")).body)]
        # a master started by 'start SCRIPT' has the options of the master that started it
        extra = server.masters["extra"]
        assert (extra.config.env, extra.config.stop_timeout) == (two.config.env, 7.0)
        assert (await client.run("shutdown", master="extra")).ok
        assert isinstance(extra_pid, int) and not is_running(extra_pid)
        assert "extra" not in server.masters
        [pid] = [w.pid for w in one.workers]
        assert result((await client.run("exit", ["now"], master="two")).body) == {
            "done": True,
            "message": "every master was shut down hard",
        }
        with anyio.fail_after(5):
            await server.wait_exit()
        assert pid is not None and not is_running(pid) and one.workers == []
        assert (await client.run("exit", ["later"], master="one")).status == 400


async def test_event_stream(make_master: MasterBuilder, tmp_path: Path) -> None:
    master = make_master(count=1)
    async with served(master, tmp_path) as (server, client):
        async with await anyio.connect_unix(tmp_path / "ctl.sock") as stream:
            await stream.send(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            seen = b""
            with anyio.fail_after(15):
                while b": connected" not in seen:
                    seen += await stream.receive()
                assert b"content-type: text/event-stream" in seen
                assert (await client.run("restart", ["all"])).ok
                while b"event: worker-retired" not in seen:
                    seen += await stream.receive()
        events = [json.loads(line[6:]) for line in seen.decode().splitlines() if line.startswith("data: ")]
        assert {"event": "worker-started", "master": "worker", "args": [master.workers[0].id]} in events
        assert any(e["event"] == "status-changed" and e["args"][1] == "STOPPING" for e in events)
        await master.graceful_shutdown()


async def test_a_worker_exit_event_carries_the_workers_last_stderr_lines(
    make_master: MasterBuilder, tmp_path: Path
) -> None:
    master = make_master(count=1)
    async with served(master, tmp_path) as (server, client):
        async with await anyio.connect_unix(tmp_path / "ctl.sock") as stream:
            await stream.send(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            seen = b""
            with anyio.fail_after(15):
                while b": connected" not in seen:
                    seen += await stream.receive()
                # the replacement says one line on stderr and exits with code 5 once started
                await master.graceful_reload(env={**master.config.env, "TEST_BEHAVIOUR": "exit_after_start=5"})
                while not (exits := [e for e in data_lines(seen) if e["event"] == "worker-exit"]):
                    seen += await stream.receive()
        [exit_event] = exits
        assert exit_event["args"][0] == "exited with code 5" and exit_event["stderr_tail"] == "exiting with code 5"
        await master.graceful_shutdown()


async def test_socket_file_is_taken_over_only_when_stale(make_master: MasterBuilder, tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    master = make_master(count=1)
    async with open_control_server(master, unix=path):
        with pytest.raises(BindError, match="another process"):
            async with open_control_server(master, unix=path):
                pass  # pragma: no cover
    assert not path.exists()  # removed on close
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a killed process leaves
    async with open_control_server(master, unix=path) as server:
        assert (await ControlClient(unix=str(path)).run("help")).ok and server.unix_path == path
    path.write_text("not a socket")
    with pytest.raises(BindError, match="not a socket"):
        async with open_control_server(master, unix=path):
            pass  # pragma: no cover
    with pytest.raises(ConfigError):
        async with open_control_server(master):
            pass  # pragma: no cover
