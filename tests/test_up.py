"""`drover-py up` in a subprocess: a file of apps started in dependency order, stopped in reverse.

The workers (tests/apps/deploy_worker.py) and the once apps (tests/apps/deploy_once.py)
append lines to one record file as they go, so the order of the file is the order of the
events. The tests wait on the command's output and on ``ctl`` replies, never on time.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process

from drover_py._control.client import ControlClient

from .conftest import APPS
from .helpers import is_running, kill_on_exit

pytestmark = pytest.mark.anyio
WORKER = APPS / "deploy_worker.py"
ONCE = APPS / "deploy_once.py"


def app(name: str, record: Path, *, script: Path = WORKER, lines: str = "", **env: str) -> str:
    """Return the table of app ``name`` running ``script`` (one worker unless ``lines`` say), recording in ``record``."""
    variables = ", ".join(
        f"{key} = {json.dumps(value)}" for key, value in {"APP": name, "TEST_RECORD": str(record), **env}.items()
    )
    if "workers" not in lines and script == WORKER:
        lines = f"workers = 1\n{lines}"
    return f"[apps.{name}]\nscript = {json.dumps(str(script))}\nstop_timeout = 10\n{lines}\nenv = {{ {variables} }}\n\n"


def events(record: Path) -> list[tuple[str, str, int]]:
    """Return the (event, app, pid) lines of the record file, in order."""
    rows = []
    for line in record.read_text().splitlines():
        event, name, _, pid = line.split(" ")
        rows.append((event, name, int(pid)))
    return rows


def index(rows: list[tuple[str, str, int]], event: str, name: str) -> list[int]:
    return [i for i, (e, n, _) in enumerate(rows) if e == event and n == name]


class Output:
    """The stdout of a ``drover-py up`` subprocess, read as far as a test needs it."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.text = ""

    async def wait_for(self, pattern: str) -> re.Match[str]:
        """Read until a complete line matches ``pattern``; return the match."""
        assert self.process.stdout is not None
        regex = re.compile(f"^{pattern}$", re.MULTILINE)
        with anyio.fail_after(30):
            while (found := regex.search(self.text[: self.text.rfind("\n") + 1])) is None:
                self.text += (await self.process.stdout.receive()).decode()
        return found


async def open_up(tmp_path: Path, backend: str) -> tuple[Process, Output]:
    process = await anyio.open_process(
        [sys.executable, "-m", "drover_py", "up", "--backend", backend, "--control", str(tmp_path / "ctl.sock")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return process, Output(process)


async def ctl(tmp_path: Path, *words: str) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(30):
        return await anyio.run_process(
            [sys.executable, "-m", "drover_py", "ctl", "--socket", str(tmp_path / "ctl.sock"), *words], check=False
        )


async def finish(process: Process) -> tuple[int, str]:
    """Wait for the process to exit; return its exit code and its stderr."""
    assert process.stderr is not None
    with anyio.fail_after(30):
        code = await process.wait()
        err = b""
        async for chunk in process.stderr:
            err += chunk
    return code, err.decode()


async def test_up_starts_in_dependency_order_and_stops_in_reverse_on_sigint(tmp_path: Path, anyio_backend: str) -> None:
    record = tmp_path / "record.txt"
    (tmp_path / "drover.toml").write_text(
        app("web", record, lines='workers = 2\ndepends_on = ["migrate", "db"]')
        + app("migrate", record, script=ONCE, lines='kind = "once"')
        + app("db", record, lines="workers = 2")
    )
    process, out = await open_up(tmp_path, anyio_backend)
    async with kill_on_exit(process):
        ready = await out.wait_for(r"drover-py: up: 3 apps of drover.toml started; control on unix:.*")
        *first, last = out.text[: ready.start()].splitlines()  # migrate and db start together
        assert sorted(re.sub(r"in [\d.]+ s", "in T s", line) for line in first) == [
            "drover-py: db: 2 workers of deploy_worker.py started",
            "drover-py: migrate: done in T s",
        ]
        assert last == "drover-py: web: 2 workers of deploy_worker.py started"
        rows = events(record)
        # web's first worker ran only after db's last one said "started" and migrate was done
        assert min(index(rows, "spawned", "web")) > max(index(rows, "started", "db") + index(rows, "ran", "migrate"))

        listing = await ctl(tmp_path, "--master", "web", "--json", "workers")  # one server, the apps by name
        assert listing.returncode == 0, listing.stderr
        assert [row["status"] for row in json.loads(listing.stdout)["result"]] == ["STARTED", "STARTED"]
        masters = await ctl(tmp_path, "workers")
        assert masters.returncode == 1 and b"several masters are served" in masters.stderr

        pids = [pid for event, _, pid in rows if event == "started"]
        process.send_signal(signal.SIGINT)
        await out.wait_for("drover-py: shut down")
        code, err = await finish(process)
    assert code == 0, err
    assert re.findall(r"^drover-py: (\w+): shut down$", out.text, re.MULTILINE) == ["web", "db"]
    rows = events(record)
    # each web worker was asked to stop (gracefully) before any db worker was
    assert len(index(rows, "stopping", "web")) == 2 and len(index(rows, "stopping", "db")) == 2
    assert max(index(rows, "stopping", "web")) < min(index(rows, "stopping", "db"))
    assert not any(is_running(pid) for pid in pids)


async def test_up_a_failing_once_app_stops_what_started_and_exits_1(tmp_path: Path, anyio_backend: str) -> None:
    record = tmp_path / "record.txt"
    (tmp_path / "drover.toml").write_text(
        app("db", record, lines="workers = 2")
        + app("migrate", record, script=ONCE, lines='kind = "once"\ndepends_on = ["db"]', EXIT_CODE="3")
        + app("web", record, lines='depends_on = ["migrate"]')
    )
    process, out = await open_up(tmp_path, anyio_backend)
    async with kill_on_exit(process):
        code, err = await finish(process)
    assert code == 1
    assert err.splitlines()[-1] == 'drover-py up: migrate: exited with code 3; a kind = "once" app must exit 0'
    assert "deploy_once: failing with exit code 3" in err and "Traceback" not in err
    rows = events(record)
    assert [e for e, n, _ in rows if n != "db"] == ["ran"]  # web never ran
    assert (
        len(index(rows, "stopping", "db")) == 2
        and min(index(rows, "stopping", "db")) > index(rows, "ran", "migrate")[0]
    )


async def test_up_reload_config_adds_removes_reloads_and_restarts_apps(tmp_path: Path, anyio_backend: str) -> None:
    record = tmp_path / "record.txt"
    config = tmp_path / "drover.toml"
    config.write_text(app("a", record) + app("b", record) + app("c", record, lines='depends_on = ["b"]'))
    process, out = await open_up(tmp_path, anyio_backend)
    async with kill_on_exit(process):
        await out.wait_for("drover-py: up: 3 apps of drover.toml started; .*")
        first = {name: pid for event, name, pid in events(record) if event == "started"}

        # a: env changed -> graceful reload; b: workers changed -> stop and start; c: gone; d: new
        config.write_text(
            app("a", record, VERSION="2")
            + app("b", record, lines="workers = 2")
            + app("d", record, lines='depends_on = ["a"]')
        )
        reply = await ctl(tmp_path, "--json", "reload-config")
        assert reply.returncode == 0, reply.stderr
        assert json.loads(reply.stdout)["result"]["changes"] == [
            "removed c",
            "reloaded a (env changed)",
            "restarted b (stopped and started: workers changed)",
            "added d",
        ]
        assert await out.wait_for("drover-py: up: reload-config: removed c; reloaded a .*; added d")
        rows = events(record)
        assert [e for e, n, _ in rows if n == "a"][-3:] == ["spawned", "started:2", "stopping"]  # new one first
        assert max(index(rows, "stopping", "c")) < min(index(rows, "stopping", "b"))  # c depended on b
        assert len(index(rows, "started", "b")) == 3 and len(index(rows, "started", "d")) == 1
        gone = await ctl(tmp_path, "--master", "c", "workers")
        assert gone.returncode == 1 and b"no master named 'c'" in gone.stderr
        added = await ctl(tmp_path, "--master", "d", "--json", "workers")
        assert [row["status"] for row in json.loads(added.stdout)["result"]] == ["STARTED"]
        assert not any(is_running(first[name]) for name in "abc")

        # a file that does not validate changes nothing, and says why
        valid = config.read_text()
        config.write_text(valid.replace("workers = 2", 'workers = "two"'))
        line = valid.splitlines().index("workers = 2") + 1
        refused = await ctl(tmp_path, "reload-config")
        assert refused.returncode == 1
        assert refused.stderr.decode() == (
            f'drover-py ctl: reload-config failed: drover.toml:{line}: apps.b.workers: expected an integer, got "two"; nothing changed\n'
        )
        # a new version that cannot start is rolled back: the previous one serves on
        config.write_text(valid.replace('VERSION = "2"', 'VERSION = "3", CRASH = "1"'))
        failed = await ctl(tmp_path, "reload-config")
        assert failed.returncode == 1
        assert failed.stderr.decode().startswith(
            "drover-py ctl: reload-config failed: a: reload failed, the previous version runs on: "
        )
        assert [e for e, n, _ in events(record) if n == "a"][-1] == "crashed"
        again = await ctl(tmp_path, "--master", "a", "--json", "workers")
        [row] = json.loads(again.stdout)["result"]
        assert row["status"] == "STARTED" and row["pid"] == [p for e, n, p in events(record) if e == "started:2"][-1]

        # a new app that cannot start is stopped and left out; the others run on
        config.write_text(valid + app("e", record, CRASH="1"))
        crashed = await ctl(tmp_path, "reload-config")
        assert crashed.returncode == 1
        assert re.fullmatch(
            r"drover-py ctl: reload-config failed: e: worker \d+ \(slot 0\) of 'deploy_worker\.py' exited with code 3 before it sent 'started'; not started: e\n",
            crashed.stderr.decode(),
        ), crashed.stderr
        missing = await ctl(tmp_path, "--master", "e", "workers")
        assert missing.returncode == 1 and b"no master named 'e'" in missing.stderr

        # SIGHUP applies the file too
        config.write_text(valid.replace(app("d", record, lines='depends_on = ["a"]'), ""))
        process.send_signal(signal.SIGHUP)
        await out.wait_for("drover-py: up: reload-config: removed d")
        process.send_signal(signal.SIGTERM)
        await out.wait_for("drover-py: shut down")
        code, err = await finish(process)
    assert code == 0, err
    assert re.findall(r"^drover-py: (\w+): shut down$", out.text, re.MULTILINE)[-2:] in (["a", "b"], ["b", "a"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[apps.web]\nscript = "WORKER"\nworkers = "4"\n',
            'drover.toml:3: apps.web.workers: expected an integer, got "4"',
        ),
        (
            '[apps.a]\nscript = "WORKER"\ndepends_on = ["b"]\n\n[apps.b]\nscript = "WORKER"\ndepends_on = ["a"]\n',
            "drover.toml:3: apps.a.depends_on: a dependency cycle: a -> b -> a",
        ),
        (
            "[apps.web]\nworkers = 2\n",
            'drover.toml:1: apps.web: expected script = "FILE" (as drover-py run) or app = "MODULE:ATTR" (as drover-py serve)',
        ),
        ("[apps.web\n", "drover.toml:1:10: not valid TOML: Expected ']' at the end of a table declaration"),
    ],
)
def test_up_refuses_a_file_that_does_not_validate(tmp_path: Path, text: str, message: str) -> None:
    """Exit code 2 and one line: the file, the line (and column), the key path, what was expected."""
    (tmp_path / "drover.toml").write_text(text.replace("WORKER", str(WORKER)))
    result = subprocess.run(
        [sys.executable, "-m", "drover_py", "up"], cwd=tmp_path, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert result.stderr.decode() == f"drover-py up: {message}\n"
    assert not (tmp_path / "drover-py.sock").exists()


async def test_up_drains_every_app_on_sigterm_then_stops_them_in_reverse(tmp_path: Path, anyio_backend: str) -> None:
    record = tmp_path / "record.txt"
    (tmp_path / "drover.toml").write_text(app("web", record, lines='depends_on = ["db"]') + app("db", record))
    argv = [
        sys.executable,
        "-m",
        "drover_py",
        "up",
        "--backend",
        anyio_backend,
        "--control",
        str(tmp_path / "ctl.sock"),
    ]
    argv += ["--control-tcp", "127.0.0.1:0", "--key", "up-key", "--drain-delay", "2"]
    process = await anyio.open_process(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = Output(process)
    async with kill_on_exit(process):
        ready = await out.wait_for(
            r"drover-py: up: 2 apps of drover.toml started; control on unix:\S+ and (?P<url>\S+)"
        )
        probe, client = ControlClient(url=ready["url"]), ControlClient(url=ready["url"], key="up-key")
        assert (await probe.request("GET", "/healthz")).status == 200
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            while (await probe.request("GET", "/healthz")).status != 503:
                await anyio.sleep(0.02)  # sync-ok: a probe polls from outside; bounded by fail_after
        masters = await client.request("GET", "/masters")  # draining: every worker still serves
        assert masters.ok and isinstance(masters.body, dict) and isinstance(masters.body["result"], list)
        assert [m["started"] for m in masters.body["result"] if isinstance(m, dict)] == [1, 1]
        await out.wait_for("drover-py: shut down")
        code, err = await finish(process)
    assert code == 0, err
    assert re.findall(r"^drover-py: (\w+): shut down$", out.text, re.MULTILINE) == ["web", "db"]
