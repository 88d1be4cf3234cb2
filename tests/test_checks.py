"""Checks that gate a deploy: `Master.run_check`, ``ctl test``, and reloads that roll back when their check fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from drover_py import ExitReasons, ReloadError, WorkerSnapshot, WorkerStatus

from .conftest import WORKER, MasterBuilder
from .helpers import kill_on_exit
from .test_cli import ctl, read_line

pytestmark = pytest.mark.anyio

PASS = """import os
print("checking", os.environ["TEST_TAG"], os.getcwd() == os.environ["EXPECT_CWD"])
print("workers", os.environ.get("DROVER_PY_CHECK_WORKERS", "none"))
"""
FAIL = """import sys
for n in range(30):
    print("check line", n)
sys.exit(3)
"""
HANG = """import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("hanging", flush=True)
time.sleep(60)  # sync-ok: a check that never ends; the master stops it
"""


def scripts(folder: Path) -> dict[str, Path]:
    paths = {}
    for name, text in (("pass", PASS), ("fail", FAIL), ("hang", HANG)):
        paths[name] = folder / f"{name}.py"
        paths[name].write_text(text)
    return paths


async def test_run_check_passes_fails_and_times_out(make_master: MasterBuilder, tmp_path: Path) -> None:
    checks = scripts(tmp_path)
    master = make_master(count=1, env={"TEST_TAG": "v1", "EXPECT_CWD": str(tmp_path)}, cwd=tmp_path, kill_timeout=1)
    async with master:
        passed = await master.run_check(checks["pass"], timeout=20)
        assert passed.passed and isinstance(passed.reason, ExitReasons.NormalExit)
        assert passed.output == "checking v1 True\nworkers none"  # the workers' env and cwd
        assert str(passed).startswith("check passed in ")
        failed = await master.run_check(checks["fail"], timeout=20)
        assert not failed.passed and isinstance(failed.reason, ExitReasons.AbnormalExit)
        assert failed.reason.payload.code == 3 and str(failed) == "check failed: exited with code 3"
        assert failed.output.splitlines() == [f"check line {n}" for n in range(10, 30)]  # the last 20 lines
        hung = await master.run_check(checks["hang"], timeout=0.5)
        assert not hung.passed and hung.reason is None and hung.output == "hanging"
        assert str(hung) == "check timed out after 0.5 s"


async def test_a_reload_whose_check_fails_rolls_back(make_master: MasterBuilder, tmp_path: Path) -> None:
    checks = scripts(tmp_path)
    master = make_master(count=2, env={"TEST_TAG": "v1", "EXPECT_CWD": str(tmp_path)}, cwd=tmp_path)
    async with master:
        await master.start()
        before = master.workers
        with pytest.raises(ReloadError, match="the reload's check failed: exited with code 3") as info:
            await master.graceful_reload(env={**master.config.env, "TEST_TAG": "v2"}, check=checks["fail"])
        assert info.value.stderr_tail.endswith("check line 29")  # the check's output
        assert info.value.report is not None and info.value.report.check is False
        assert [w.id for w in master.workers] == [w.id for w in before]  # the old ones were kept
        assert master.config.env["TEST_TAG"] == "v1"

        report = await master.graceful_reload(env={**master.config.env, "TEST_TAG": "v2"}, check=checks["pass"])
        assert report.check is True and master.config.env["TEST_TAG"] == "v2"
        # the check ran with the new workers named, before the old ones retired
        new = report.slots[0]
        assert new.new_pid is not None

        seen: list[list[int]] = []

        async def refuse(workers: list[WorkerSnapshot]) -> bool:
            seen.append([w.id for w in workers])
            assert all(w.status is WorkerStatus.STARTED for w in workers)
            return False

        current = [w.id for w in master.workers]
        with pytest.raises(ReloadError, match="the reload's check returned False"):
            await master.graceful_reload(check=refuse)
        assert len(seen) == 1 and not set(seen[0]) & set(current)
        assert [w.id for w in master.workers] == current
        await master.graceful_shutdown()


async def test_ctl_test_and_upgrade_with_a_check(tmp_path: Path, anyio_backend: str) -> None:
    checks = scripts(tmp_path)
    sock = tmp_path / "ctl.sock"
    v2 = tmp_path / "worker_v2.py"
    v2.write_text(WORKER.read_text())
    command = [sys.executable, "-m", "drover_py", "run", str(WORKER), "-w", "1", "--control", str(sock)]
    env = {**os.environ, "DROVER_PY_KEY": "cli-key", "TEST_TAG": "v1", "EXPECT_CWD": str(tmp_path)}
    process = await anyio.open_process(
        [*command, "--backend", anyio_backend], env=env, stdout=subprocess.PIPE, cwd=tmp_path
    )
    async with kill_on_exit(process):
        await read_line(process, "drover-py:")
        ok = await ctl(sock, "test", str(checks["pass"]))
        assert ok.returncode == 0 and b"checking v1 True" in ok.stdout, ok.stderr
        bad = await ctl(sock, "test", str(checks["fail"]), "10")
        assert bad.returncode == 1
        err = bad.stderr.decode().splitlines()
        assert err[-2] == "check line 29" and err[-1] == "drover-py ctl: test failed: check failed: exited with code 3"
        refused = await ctl(sock, "upgrade", "all", str(v2), "--check", str(checks["fail"]))
        assert refused.returncode == 1 and b"rolled back" in refused.stderr, refused.stderr
        listing = await ctl(sock, "--json", "workers")
        assert len(json.loads(listing.stdout)["result"]) == 1
        done = await ctl(sock, "upgrade", "all", str(v2), "--check", str(checks["pass"]))
        assert done.returncode == 0 and b"reloaded 1 worker" in done.stdout, done.stderr
        assert (await ctl(sock, "shutdown", "all")).returncode == 0
        with anyio.fail_after(30):
            assert await process.wait() == 0
