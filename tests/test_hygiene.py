"""Host hygiene: the workers' cwd and args, privilege drop, process titles, option errors."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

import drover_py
from drover_py import ConfigError, Master, MasterFactory, SpawnError
from drover_py._config.credentials import RunAs, resolve_run_as

from .conftest import APPS, BOTH_SPAWN_MODES, WORKER, MasterBuilder

OBSERVER = APPS / "hygiene_worker.py"


def cmdline(pid: int | str) -> list[str]:
    """Return the command line the kernel shows for ``pid`` (what ``ps`` prints)."""
    with open(f"/proc/{pid}/cmdline", "rb") as file:
        return [part for part in file.read().decode(errors="replace").split("\0") if part]


def proc_ids(pid: int) -> dict[str, list[int]]:
    """Return the Uid, Gid and Groups lines of /proc/PID/status as lists of ints."""
    found: dict[str, list[int]] = {}
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                found[key] = [int(part) for part in value.split()]
    return found


async def observe(master: Master, slot: int = 0) -> dict[str, Any]:
    """Return the "observe" answer of the worker in ``slot``."""
    [worker] = [w for w in master.workers if w.slot == slot]
    answer = await master.request(worker.id, "observe", timeout=10)
    assert isinstance(answer, dict)
    return answer


def has_setproctitle() -> bool:
    try:
        import setproctitle  # noqa: F401
    except ImportError:
        return False
    return True


needs_setproctitle = pytest.mark.skipif(not has_setproctitle(), reason="setproctitle is not installed")


# -- cwd and args, titles: both backends, both spawn modes ---------------------------------------


@pytest.mark.anyio
@BOTH_SPAWN_MODES
@needs_setproctitle
async def test_worker_runs_in_cwd_with_args_and_its_title(make_master: MasterBuilder, tmp_path: Path) -> None:
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    master = make_master(script=OBSERVER, count=2, cwd=workdir, args=["--port", "8000", "data/file.txt"])
    async with master:
        await master.start()
        seen = await observe(master, slot=1)
        pid = master.workers[1].pid
        assert pid is not None
        assert cmdline(pid) == ["drover-py worker 1: hygiene_worker.py"]
        await master.graceful_shutdown()
    assert seen["cwd"] == str(workdir)
    assert seen["argv"] == [str(OBSERVER), "--port", "8000", "data/file.txt"]
    assert seen["cmdline"] == ["drover-py worker 1: hygiene_worker.py"]
    assert seen["env"]["DROVER_PY_PROCTITLE"] is None  # not passed on to the worker's children


@pytest.mark.anyio
@BOTH_SPAWN_MODES
async def test_without_titles_the_worker_shows_its_command(make_master: MasterBuilder) -> None:
    before = cmdline("self")
    master = make_master(script=OBSERVER, count=1, proctitle=False)
    async with master:
        await master.start()
        seen = await observe(master)
        assert cmdline("self") == before
        await master.graceful_shutdown()
    assert seen["cwd"] == os.getcwd()
    assert seen["argv"] == [str(OBSERVER)]
    assert seen["env"]["DROVER_PY_PROCTITLE"] is None
    assert str(OBSERVER) in seen["cmdline"]  # exec: the script; preload: the template's command line


@pytest.mark.anyio
@needs_setproctitle
async def test_master_titles_follow_scale_combine_and_restore(make_master: MasterBuilder) -> None:
    from setproctitle import getproctitle

    original = getproctitle()
    first = make_master(script=OBSERVER, count=1)
    second = make_master(count=1, proctitle="api")
    async with first:
        assert getproctitle() == "drover-py master: hygiene_worker.py [1 worker]"
        async with second:
            assert getproctitle() == "drover-py master: hygiene_worker.py [1 worker], api [1 worker]"
            await second.start()
            assert cmdline(second.workers[0].pid or 0) == ["drover-py worker 0: api"]
            await first.scale(3)
            assert cmdline("self") == ["drover-py master: hygiene_worker.py [3 workers], api [1 worker]"]
            await second.graceful_shutdown()
        assert getproctitle() == "drover-py master: hygiene_worker.py [3 workers]"
    assert getproctitle() == original


# -- privilege drop (root only) ------------------------------------------------------------------


def _nobody() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("there is no user 'nobody' here")


@pytest.fixture(scope="module")
def python_for_nobody() -> tuple[str, dict[str, str]]:
    """Return an interpreter user nobody can run with drover_py, and the env it needs.

    The test's own interpreter first (a Python installed in a home directory only root
    can enter is out of nobody's reach), then every python3 of the same version on
    PATH, given this interpreter's packages. Skip, saying what was tried, if none works.
    """
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs the test to run as root")
    nobody = _nobody()
    packages = {str(Path(anyio.__file__).parent.parent), str(Path(drover_py.__file__).parent.parent)}
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(sorted(packages))}
    probe = "import sys, anyio, drover_py; open(sys.argv[1]).close(); print(sys.version_info[:2])"
    wanted = str(tuple(sys.version_info[:2]))  # what the probe prints
    tried: list[str] = []
    names = (f"python{sys.version_info[0]}.{sys.version_info[1]}", "python3")
    on_path = [os.path.join(d, n) for d in os.environ.get("PATH", "").split(os.pathsep) if d for n in names]
    for path in [sys.executable, *on_path]:
        if path in tried or not os.access(path, os.X_OK) or os.path.isdir(path):
            continue
        tried.append(path)
        try:
            result = subprocess.run(
                [path, "-c", probe, str(OBSERVER)],
                env=env,
                cwd="/",
                user=nobody.pw_uid,
                group=nobody.pw_gid,
                extra_groups=[nobody.pw_gid],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except OSError as exc:
            tried[-1] += f" ({exc.strerror})"
            continue
        if result.returncode == 0 and result.stdout.strip() == wanted:
            return path, env
        tried[-1] += f" (exit {result.returncode}: {result.stderr.strip().splitlines()[-1:] or result.stdout.strip()})"
    version = "{}.{}".format(*sys.version_info)
    pytest.skip(
        f"user nobody cannot run a Python {version} with drover_py and the test app here; tried: {'; '.join(tried)}"
    )


@pytest.mark.anyio
@BOTH_SPAWN_MODES
async def test_workers_drop_privileges_to_the_user(
    python_for_nobody: tuple[str, dict[str, str]], spawn_mode: str
) -> None:
    python, env = python_for_nobody
    nobody = _nobody()
    options: dict[str, Any] = {"start_timeout": 20.0, "stop_timeout": 10.0, "kill_timeout": 2.0}
    created = MasterFactory.create(
        script=OBSERVER,
        count=1,
        user="nobody",
        cwd="/",
        env={**env, "LOGNAME": "custom"},
        preload=spawn_mode == "preload",
        **options,
    )
    master = Master(attrs.evolve(created.config, python=python))
    groups = sorted(set(os.getgrouplist("nobody", nobody.pw_gid)))
    async with master:
        await master.start()
        pid = master.workers[0].pid
        assert pid is not None
        status = proc_ids(pid)
        seen = await observe(master)
        await master.graceful_shutdown()
    assert status["Uid"] == [nobody.pw_uid] * 4 and status["Gid"] == [nobody.pw_gid] * 4
    assert sorted(status["Groups"]) == groups
    assert seen["uids"] == [nobody.pw_uid] * 3 and seen["gids"] == [nobody.pw_gid] * 3
    assert seen["groups"] == groups
    assert seen["env"]["USER"] == "nobody" and seen["env"]["HOME"] == nobody.pw_dir
    assert seen["env"]["LOGNAME"] == "custom"  # env wins over the user's own
    assert seen["cwd"] == "/"


@pytest.mark.anyio
async def test_an_interpreter_the_user_cannot_run_is_a_clear_spawn_error(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs the test to run as root")
    _nobody()
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "python").symlink_to(sys.executable)
    created = MasterFactory.create(script=OBSERVER, count=1, user="nobody", start_timeout=20.0)
    master = Master(attrs.evolve(created.config, python=str(private / "python")))
    async with master:
        with pytest.raises(SpawnError, match=r"Permission denied \(uid \d+ must be able to reach and execute it"):
            await master.start()


# -- option errors --------------------------------------------------------------------------------


def create(**options: Any) -> Master:
    options.setdefault("script", WORKER)
    return MasterFactory.create(**options)


def _unused_id(exists: Any) -> int:
    number = 54321
    while True:
        try:
            exists(number)
        except KeyError:
            return number
        number += 1


@pytest.mark.parametrize(
    ("options", "option", "fragment"),
    [
        ({"cwd": "/nonexistent/dir"}, "cwd", "no such directory"),
        ({"cwd": WORKER}, "cwd", "not a directory"),
        ({"cwd": 42}, "cwd", "expected a path"),
        ({"user": "drover-py-no-such-user"}, "user", "unknown user 'drover-py-no-such-user'"),
        ({"group": "drover-py-no-such-group"}, "group", "unknown group 'drover-py-no-such-group'"),
        ({"user": True}, "user", "expected a user name or a numeric id"),
        ({"group": -1}, "group", "expected a group name or a numeric id"),
        ({"proctitle": ""}, "proctitle", "non-empty one-line name"),
        ({"proctitle": "a\nb"}, "proctitle", "non-empty one-line name"),
        ({"proctitle": 1}, "proctitle", "expected True, False"),
        ({"env": {"A": b"x"}}, "env", "decode it to str first"),
        ({"env": {"A": type("Bad", (), {"__str__": lambda self: 1 / 0})()}}, "env", "cannot be str.*ZeroDivisionError"),
        ({"env": {("A",): "x"}}, "env", "names must be str, not tuple"),
    ],
)
def test_bad_hygiene_options_name_the_option(options: dict[str, Any], option: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        create(**options)
    assert info.value.option == option


def test_cwd_is_resolved_to_an_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "app").mkdir()
    monkeypatch.chdir(tmp_path)
    assert create(cwd="app").config.cwd == tmp_path / "app"


def test_a_master_that_is_not_root_cannot_switch_user_or_group() -> None:
    root_group = grp.getgrgid(0).gr_name
    with pytest.raises(
        ConfigError, match=r"dropping privileges to user 'root' \(uid 0\) needs the master to run as root"
    ) as info:
        resolve_run_as("root", None, euid=1000, egid=1000)
    assert info.value.option == "user"
    with pytest.raises(ConfigError, match="switching workers to gid 0 needs the master to run as root") as info:
        resolve_run_as(None, root_group, euid=1000, egid=1000)
    assert info.value.option == "group"
    assert resolve_run_as(1000, 1000, euid=1000, egid=1000) is None  # its own ids: nothing to change


def test_user_and_group_resolve_like_initgroups() -> None:
    nobody = _nobody()
    run_as = resolve_run_as("nobody", None, euid=0, egid=0)
    assert run_as == RunAs(
        uid=nobody.pw_uid,
        gid=nobody.pw_gid,
        groups=tuple(os.getgrouplist("nobody", nobody.pw_gid)),
        name="nobody",
        home=nobody.pw_dir,
    )
    assert run_as.env() == {"USER": "nobody", "LOGNAME": "nobody", "HOME": nobody.pw_dir}
    assert resolve_run_as(str(nobody.pw_uid), 0, euid=0, egid=0) == attrs.evolve(
        run_as, gid=0, groups=tuple(os.getgrouplist("nobody", 0))
    )
    only_group = resolve_run_as(None, grp.getgrgid(0).gr_name, euid=0, egid=1)
    assert only_group == RunAs(uid=None, gid=0, groups=(0,)) and only_group.env() == {}


def test_a_numeric_uid_without_passwd_entry_needs_a_group() -> None:
    uid = _unused_id(pwd.getpwuid)
    with pytest.raises(ConfigError, match="no passwd entry.*group option"):
        resolve_run_as(uid, None, euid=0, egid=0)
    assert resolve_run_as(uid, 0, euid=0, egid=0) == RunAs(uid=uid, gid=0, groups=(0,))
