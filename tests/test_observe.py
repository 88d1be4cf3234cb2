"""What operators see: exit reasons named (the OOM killer), counts of exits, restarts and reloads."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from drover_py import ExitReasons, ReloadError, RestartPolicy, open_control_server

from .conftest import WORKER, MasterBuilder
from .helpers import EventLog, kill_on_exit
from .test_cli import ctl, read_line

pytestmark = pytest.mark.anyio

OOM_DETAIL = "killed by the out-of-memory killer"


def _cgroup_parent() -> tuple[Path, str] | None:
    """Return (folder for a new memory cgroup, the file of its limit), or None if there is none."""
    mounts: dict[str, Path] = {}
    with open("/proc/self/mountinfo") as file:
        for line in file:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype == "cgroup2":
                mounts.setdefault("v2", Path(fields[4]))
            elif fstype == "cgroup" and "memory" in fields[-1].split(","):
                mounts.setdefault("v1", Path(fields[4]))
    with open("/proc/self/cgroup") as file:
        own = dict(line.rstrip("\n").split(":", 2)[1:] for line in file)
    if "v1" in mounts and "memory" in own:
        return mounts["v1"] / own["memory"].lstrip("/"), "memory.limit_in_bytes"
    if "v2" in mounts and "" in own:  # the root's subtree control: the test's own cgroup may hold processes
        root = mounts["v2"]
        if "memory" in (root / "cgroup.controllers").read_text().split():
            (root / "cgroup.subtree_control").write_text("+memory")
            return root, "memory.max"
    return None


@pytest.fixture
def memory_cgroup() -> Iterator[Path]:
    """Make a memory cgroup limited to 64 MiB for a worker to move into; remove it afterwards."""
    if os.geteuid() != 0:
        pytest.skip("making a memory cgroup needs root")
    try:
        found = _cgroup_parent()
        if found is None:
            pytest.skip("no memory cgroup controller (v1 or v2) here")
        parent, limit = found
        folder = parent / f"drover-py-test-{os.getpid()}"
        folder.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot make a memory cgroup: {exc}")
    try:
        (folder / limit).write_text(str(64 * 1024 * 1024))
        yield folder
    finally:
        folder.rmdir()  # empty by now: the worker was killed and reaped


async def test_an_oom_kill_is_named(make_master: MasterBuilder, memory_cgroup: Path) -> None:
    master = make_master(count=1, behaviour=f"cgroup={memory_cgroup},eat_memory")
    log = EventLog(master)
    async with master:
        await master.start()
        [worker] = master.workers
        await master.send(worker.id, "eat")
        with anyio.fail_after(30):
            await log.wait_for("worker-exit")
        [(reason, worker_id)] = log.of("worker-exit")
        assert worker_id == worker.id
        assert isinstance(reason, ExitReasons.ExternalSignal) and reason.payload.signal is signal.SIGKILL
        assert reason.detail == OOM_DETAIL
        assert str(reason) == f"killed by SIGKILL ({OOM_DETAIL})"
        assert master.stats.exits == {("oom", False): 1}
        await master.graceful_shutdown()


async def test_a_kill_by_hand_is_not_named_oom(make_master: MasterBuilder) -> None:
    master = make_master(count=1, restart=RestartPolicy(delay=0, max_restarts=100))
    log = EventLog(master)
    async with master:
        await master.start()
        [worker] = master.workers
        assert worker.pid is not None
        os.kill(worker.pid, 9)
        with anyio.fail_after(30):
            await log.wait_for("worker-exit")
            replacement = await master.restart_worker_by_id(worker.id)  # waits for the automatic restart
        assert replacement != worker.id
        [(reason, _)] = log.of("worker-exit")
        assert isinstance(reason, ExitReasons.ExternalSignal) and reason.detail is None
        assert master.stats.exits == {("signal", False): 1}
        assert master.stats.restarts == 1
        assert master.stats.start_seconds.count == 2
        await master.graceful_shutdown()
    assert master.stats.exits == {("signal", False): 1, ("normal", True): 1}


KEY = "metrics-key"


async def scrape(address: tuple[str, int], path: str = "/metrics", key: str | None = None) -> tuple[int, str]:
    """GET ``path`` over a new connection; return the status and the body."""
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    request = f"GET {path} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n".encode()
    async with await anyio.connect_tcp(*address) as stream:
        await stream.send(request)
        reply = b""
        with anyio.fail_after(10):
            while True:
                try:
                    reply += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parse the Prometheus text format into {(sample name, labels without master): value}."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = frozenset((k, v) for k, v in sample.labels.items() if k != "master")
            found[sample.name, labels] = sample.value
    return found


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found[name, frozenset(labels.items())]


async def test_metrics_follow_starts_crashes_restarts_and_reloads(make_master: MasterBuilder) -> None:
    master = make_master(count=2, bind=["127.0.0.1:0"], restart=RestartPolicy(delay=0, max_restarts=100))
    log = EventLog(master)
    async with (
        master,
        open_control_server(master, tcp="127.0.0.1:0", access_key=KEY, metrics_tcp="127.0.0.1:0") as server,
    ):
        assert server.tcp_address is not None and server.metrics_address is not None
        status, text = await scrape(server.metrics_address)  # the scrapers' address: no key
        assert status == 200 and value(samples(text), "drover_workers", status="STARTED") == 0
        await master.start()
        assert (await scrape(server.tcp_address))[0] == 401  # the control address: the key, as for the rest
        status, text = await scrape(server.tcp_address, key=KEY)
        found = samples(text)
        assert status == 200 and value(found, "drover_workers", status="STARTED") == 2
        assert value(found, "drover_worker_rss_bytes", slot="0") > 1_000_000
        assert value(found, "drover_worker_uptime_seconds", slot="1") >= 0
        assert value(found, "drover_worker_start_seconds_count") == 2
        # the listener's accept queue: the test workers never accept, so connections wait
        [listener] = master.sockets
        host, port = listener.getsockname()[:2]
        async with AsyncExitStack() as waiting:
            for _ in range(3):
                await waiting.enter_async_context(await anyio.connect_tcp(host, port))
            found = samples((await scrape(server.metrics_address))[1])
        address = f"{host}:{port}"
        assert value(found, "drover_listen_queue_length", address=address) == 3
        assert value(found, "drover_listen_queue_limit", address=address) == master.config.backlog

        victim = master.workers[0]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        with anyio.fail_after(30):
            await log.wait_for("worker-exit")
            await master.restart_worker_by_id(victim.id)  # waits for the automatic restart
        await master.graceful_reload()
        with pytest.raises(ReloadError):
            await master.graceful_reload(env={**master.config.env, "TEST_BEHAVIOUR": "crash_boot@1"})
        found = samples((await scrape(server.metrics_address))[1])
        assert value(found, "drover_worker_exits_total", reason="signal", requested="false") == 1
        assert value(found, "drover_restarts_total") == 1
        assert value(found, "drover_reloads_total", outcome="success") == 1
        assert value(found, "drover_reloads_total", outcome="rolled_back") == 1
        assert value(found, "drover_reload_seconds_count") == 2
        # 2 retired by the reload; then slot 0's old worker, and its replacement rolled back
        assert value(found, "drover_worker_exits_total", reason="normal", requested="true") == 4
        assert value(found, "drover_worker_exits_total", reason="abnormal", requested="false") == 1  # the boot crash
        assert (await scrape(server.metrics_address, "/masters"))[0] == 404  # metrics only, there
        await master.graceful_shutdown()


async def test_log_format_json_writes_one_object_per_line(tmp_path: Path) -> None:
    env = {**os.environ, "TEST_BEHAVIOUR": "crash_boot"}
    argv = [sys.executable, "-m", "drover_py", "run", str(WORKER), "-w", "1", "--no-control"]
    with anyio.fail_after(60):
        result = await anyio.run_process([*argv, "--log-format", "json", "--debug"], check=False, cwd=tmp_path, env=env)
    assert result.returncode == 1
    objects = [json.loads(line) for line in result.stderr.decode().splitlines() if line.startswith("{")]
    spawned = [entry for entry in objects if entry["event"] == "spawned"]
    assert spawned, result.stderr.decode()
    assert {"worker_id", "pid", "slot", "level", "timestamp"} <= set(spawned[0])
    assert (spawned[0]["worker_id"], spawned[0]["slot"], spawned[0]["level"]) == (1, 0, "debug")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_log_format_logging_hands_records_to_the_stdlib_logger(
    make_master: MasterBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DROVER_PY_LOG_FORMAT", "logging")
    handler = _Records()
    logger = logging.getLogger("drover_py")
    logger.addHandler(handler)
    try:
        master = make_master(count=1, behaviour="exit_after_start=3")
        log = EventLog(master)
        async with master:
            await master.start()
            await log.wait_for("worker-exit")
            await master.graceful_shutdown()
    finally:
        logger.removeHandler(handler)
    [exited] = [r for r in handler.records if r.getMessage() == "exited unexpectedly"]
    assert exited.levelno == logging.WARNING
    fields = vars(exited)  # logging's "extra": the bound fields
    assert (fields["worker_id"], fields["slot"], fields["reason"]) == (1, 0, "exited with code 3")
    assert isinstance(fields["pid"], int)


async def test_a_reload_at_the_memory_limit_retires_each_old_worker_first(
    memory_cgroup: Path, tmp_path: Path, anyio_backend: str
) -> None:
    """Both a worker and its replacement would not fit: the old one goes first, and the report says so."""
    sock = tmp_path / "ctl.sock"
    join = 'echo $$ > "$1" && shift && exec "$@"'  # the master is born in the cgroup: it is charged there
    command = ["sh", "-c", join, "sh", str(memory_cgroup / "cgroup.procs"), sys.executable, "-m", "drover_py", "run"]
    command += [str(WORKER), "-w", "2"]
    command += ["--control", str(sock), "--no-proctitle", "--backend", anyio_backend]
    limit_file = next(
        memory_cgroup / name for name in ("memory.limit_in_bytes", "memory.max") if (memory_cgroup / name).exists()
    )
    usage_file = next(
        memory_cgroup / name for name in ("memory.usage_in_bytes", "memory.current") if (memory_cgroup / name).exists()
    )
    limit_file.write_text(str(1 << 40))  # no limit to start with
    process = await anyio.open_process(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    async with kill_on_exit(process):
        await read_line(process, "drover-py:")
        listing = json.loads((await ctl(sock, "--json", "workers", key=None)).stdout)["result"]
        rss = max(row["rss"] for row in listing)
        limit_file.write_text(str(int(usage_file.read_text()) + rss // 2))  # room for half a worker
        reply = await ctl(sock, "--json", "restart", "all", key=None)
        assert reply.returncode == 0, reply.stderr
        result = json.loads(reply.stdout)["result"]
        assert [s["retired_first"] for s in result["slots"]] == [True, True]
        assert [s["old_pid"] for s in result["slots"]] == [
            row["pid"] for row in sorted(listing, key=lambda r: r["slot"])
        ]
        limit_file.write_text(str(1 << 40))
        assert (await ctl(sock, "shutdown", "all", key=None)).returncode == 0
        with anyio.fail_after(30):
            assert await process.wait() == 0
