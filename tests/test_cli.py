"""`drover-py run` in a subprocess, commanded by `drover-py ctl` subprocesses, on asyncio and trio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process

from drover_py._cli.ctl import render

from .conftest import WORKER
from .helpers import is_running, kill_on_exit

pytestmark = pytest.mark.anyio
KEY = "cli-key"
CONSOLE_SCRIPT = Path(sys.executable).with_name("drover-py")


async def read_line(process: Process, prefix: str) -> str:
    """Return the first line the process prints on stdout that starts with ``prefix``."""
    assert process.stdout is not None
    buffer = b""
    with anyio.fail_after(30):
        while True:
            while b"\n" in buffer:
                line, _, buffer = buffer.partition(b"\n")
                if line.decode().startswith(prefix):
                    return line.decode()
            buffer += await process.stdout.receive()


async def ctl(
    sock: Path, *words: str, key: str | None = KEY, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "DROVER_PY_KEY"}
    if key is not None:
        env["DROVER_PY_KEY"] = key
    with anyio.fail_after(30):
        return await anyio.run_process(
            [sys.executable, "-m", "drover_py", "ctl", "--socket", str(sock), *words], input=stdin, env=env, check=False
        )


async def test_run_and_ctl(tmp_path: Path, anyio_backend: str) -> None:
    sock = tmp_path / "ctl.sock"
    command = [
        sys.executable,
        "-m",
        "drover_py",
        "run",
        str(WORKER),
        "-w",
        "2",
        "--control",
        str(sock),
        "--control-tcp",
        "127.0.0.1:0",
        "--backend",
        anyio_backend,
        "--stop-timeout",
        "10",
    ]
    with open(tmp_path / "stderr.txt", "wb") as stderr:
        process = await anyio.open_process(
            command, env={**os.environ, "DROVER_PY_KEY": KEY}, stdout=subprocess.PIPE, stderr=stderr, cwd=tmp_path
        )
    async with kill_on_exit(process):
        ready = await read_line(process, "drover-py:")
        assert ready.startswith("drover-py: 2 workers of worker.py started; control on unix:")
        url = ready.rsplit(" ", 1)[1]
        assert url.startswith("http://127.0.0.1:")

        listing = await ctl(sock, "workers")
        assert listing.returncode == 0, listing.stderr
        header, *lines = listing.stdout.decode().splitlines()
        assert header.split() == ["ID", "SLOT", "PID", "STATUS", "UPTIME", "RESTARTS", "RSS", "EXIT_REASON"]
        assert [line.split()[3] for line in lines] == ["STARTED", "STARTED"]
        pids = [int(line.split()[2]) for line in lines]
        for pid in pids:  # the key never reaches a worker
            assert b"DROVER_PY_KEY" not in Path(f"/proc/{pid}/environ").read_bytes()
        assert KEY.encode() not in (tmp_path / "stderr.txt").read_bytes()

        health = await ctl(sock, "--json", "health")
        assert health.returncode == 0 and json.loads(health.stdout)["result"]["healthy"] is True

        denied = await ctl(sock, "health", key=None)
        assert denied.returncode == 4 and denied.stderr.decode().startswith("drover-py ctl: unauthorized")
        failed = await ctl(sock, "scale", "zero")
        assert (
            failed.returncode == 1
            and "scale failed: scale: argument 'count' must be an integer" in failed.stderr.decode()
        )
        unknown = await ctl(sock, "bogus")
        assert unknown.returncode == 1 and "unknown command 'bogus'" in unknown.stderr.decode()
        nowhere = await ctl(tmp_path / "nowhere.sock", "health")
        assert nowhere.returncode == 3 and nowhere.stderr.decode().startswith("drover-py ctl: cannot connect to")

        with anyio.fail_after(30):
            over_tcp = await anyio.run_process(
                [str(CONSOLE_SCRIPT), "ctl", "--url", url, "--key", KEY, "scale", "3"], check=False
            )
        assert over_tcp.returncode == 0, over_tcp.stderr
        assert over_tcp.stdout.decode().split() == ["done:", "True", "message:", "scale", "to", "3", "done"]

        console = await ctl(sock, stdin=b"health\n\nhelp scale\nbogus 'unclosed\nbogus\nworkers\nquit\nhealth\n")
        out, err = console.stdout.decode(), console.stderr.decode()
        assert console.returncode == 0, err
        assert "healthy: True" in out and "usage: scale COUNT [TIMEOUT]" in out and out.count("STARTED") == 3
        assert "No closing quotation" in err and "unknown command 'bogus'" in err
        assert out.count("healthy:") == 1  # nothing after "quit"

        bye = await ctl(sock, "shutdown", "all")
        assert bye.returncode == 0, bye.stderr
        with anyio.fail_after(30):
            assert await process.wait() == 0
        assert await read_line(process, "drover-py:") == "drover-py: shut down"
        assert not any(is_running(pid) for pid in pids)
        assert not sock.exists()


async def test_run_as_the_readme_writes_it_and_health_fails_when_a_slot_is_down(tmp_path: Path) -> None:
    # options after the script, worker arguments after --, the worker count from
    # $DROVER_PY_WORKERS; a slot that crashed (no restart) makes `ctl health` exit 1
    sock = tmp_path / "ctl.sock"
    command = [
        sys.executable,
        "-m",
        "drover_py",
        "run",
        str(WORKER),
        "--control",
        str(sock),
        "--restart",
        "off",
        "--stop-timeout",
        "10",
        "--no-proctitle",
        "--",
        "--app-flag",
        "value",
    ]
    env = {**os.environ, "DROVER_PY_KEY": KEY, "DROVER_PY_WORKERS": "2", "TEST_BEHAVIOUR": "exit_after_start@1=5"}
    process = await anyio.open_process(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    async with kill_on_exit(process):
        ready = await read_line(process, "drover-py:")
        assert ready.startswith("drover-py: 2 workers of worker.py started")
        listing = await ctl(sock, "--json", "workers")
        rows = json.loads(listing.stdout)["result"]
        first = next(row for row in rows if row["slot"] == 0)
        argv = Path(f"/proc/{first['pid']}/cmdline").read_bytes().split(b"\0")
        assert argv[-3:] == [b"--app-flag", b"value", b""]
        with anyio.fail_after(20):
            while True:  # the crash of slot 1 comes right after its "started"
                health = await ctl(sock, "health")
                if health.returncode != 0:
                    break
                await anyio.sleep(0.05)  # sync-ok: ctl is polled from outside, as a probe would; bounded by fail_after
        assert health.returncode == 1 and "healthy: False" in health.stdout.decode()
        bye = await ctl(sock, "shutdown", "all")
        assert bye.returncode == 0, bye.stderr
        with anyio.fail_after(30):
            assert await process.wait() == 0


async def test_run_refuses_a_missing_script(tmp_path: Path) -> None:
    with anyio.fail_after(30):
        result = await anyio.run_process(
            [sys.executable, "-m", "drover_py", "run", str(tmp_path / "missing.py"), "--no-control"],
            check=False,
            cwd=tmp_path,
        )
    # a bad option: exit code 2, one line naming it as the user typed it, no traceback
    assert result.returncode == 2 and b"no such file" in result.stderr
    assert result.stderr.decode().startswith("drover-py run: SCRIPT: ") and b"Traceback" not in result.stderr
    # --debug ($DROVER_PY_DEBUG=1): the traceback behind the error too, then the same line
    with anyio.fail_after(30):
        debug = await anyio.run_process(
            [sys.executable, "-m", "drover_py", "run", str(tmp_path / "missing.py"), "--no-control"],
            check=False, cwd=tmp_path, env={**os.environ, "DROVER_PY_DEBUG": "1"},
        )  # fmt: skip
    err = debug.stderr.decode()
    assert debug.returncode == 2 and "Traceback (most recent call last)" in err
    assert err.splitlines()[-1] == result.stderr.decode().splitlines()[-1]


async def test_run_refuses_an_unknown_user(tmp_path: Path) -> None:
    with anyio.fail_after(30):
        result = await anyio.run_process(
            [sys.executable, "-m", "drover_py", "run", str(WORKER), "--no-control", "--user", "drover-py-no-such-user"],
            check=False,
            cwd=tmp_path,
        )
    assert result.returncode == 2 and b"--user: unknown user 'drover-py-no-such-user'" in result.stderr


async def test_run_preload_takes_modules_only_after_an_equals_sign(tmp_path: Path) -> None:
    async def run(*options: str, behaviour: str = "") -> subprocess.CompletedProcess[bytes]:
        command = [sys.executable, "-m", "drover_py", "run", *options, "-w", "1", "--no-control", "--restart", "off"]
        with anyio.fail_after(30):
            return await anyio.run_process(
                command, env={**os.environ, "TEST_BEHAVIOUR": behaviour}, check=False, cwd=tmp_path
            )

    # --preload=MODULES: the template imports those (a missing one fails the start, named)
    missing = await run("--preload=json,drover_py_no_such_module", str(WORKER))
    err = missing.stderr.decode()
    assert missing.returncode == 1 and "drover_py_no_such_module" in err.splitlines()[-1], err
    assert "Traceback" not in err
    # a bare --preload does not take the script as its value; the worker's own last lines
    # of stderr come through before the one line that says what failed
    crashed = await run("--preload", str(WORKER), behaviour="crash_boot")
    *said, last = crashed.stderr.decode().splitlines()
    assert crashed.returncode == 1
    assert last.startswith("drover-py run: worker ") and last.endswith("exited with code 3 before it sent 'started'")
    assert said[-1] == "crash_boot: giving up before 'started'" and "boot line 25" in said


def test_render_tables_and_mappings() -> None:
    assert render(None) == "ok"
    assert render("text") == "text"
    assert render([{"id": 1, "rss": 3 * 2**20, "uptime": 1.25}, {"id": 22, "extra": [1]}]).splitlines() == [
        "ID  RSS   UPTIME  EXTRA",
        "1   3.0M  1.2     -",
        "22  -     -       [1]",
    ]
    assert render({"a": 1, "long": None}) == "a:    1\nlong: -"
    assert render([1, 2]) == "[1, 2]"
