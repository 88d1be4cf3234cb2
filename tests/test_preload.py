"""Preload mode: workers forked from a warm template process, on asyncio and trio.

The exec-mode guarantees in preload mode are checked by running tests/test_master.py and
part of tests/test_scale_reload.py in both spawn modes; these are the preload specifics.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

from drover_py import ConfigError, ExitReasons, Master, MasterFactory, PreloadError, ReloadError, WorkerStatus
from drover_py._spawn.preload import LOST_STATUS
from drover_py._spawn.template import script_imports

from .conftest import APPS, WORKER, MasterBuilder, children
from .helpers import EventLog, is_running, wait_process_gone

PROBE = APPS / "preload_probe.py"


def templates(master: Master) -> list[int]:
    """Return the pids of the live preload templates among this process's children.

    Forked workers show the template's command line too: those of ``master`` (which
    this process adopts when their template dies) are left out.
    """
    workers = {w.pid for w in master.workers}
    found: list[int] = []
    for pid, state in children().items():
        if pid in workers:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                argv = file.read().split(b"\0")
        except OSError:
            continue
        if state != "Z" and len(argv) > 1 and argv[1].endswith(b"/_spawn/template.py"):
            found.append(pid)
    return found


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as file:
        return int(file.read().rpartition(")")[2].split()[1])


def create(**options: Any) -> Master:
    options.setdefault("script", WORKER)
    options.setdefault("count", 2)
    options.setdefault("start_timeout", 20.0)
    options.setdefault("stop_timeout", 10.0)
    options.setdefault("kill_timeout", 2.0)
    return MasterFactory.create(**options)


# -- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(False, False), (True, True), ([], False), (["app", "app.models"], ("app", "app.models")), (("x",), ("x",))],
)
def test_preload_option(value: object, expected: object) -> None:
    assert create(preload=value).config.preload == expected


@pytest.mark.parametrize("value", ["app", ["1app"], ["app..models"], [".relative"], [3], None])
def test_bad_preload_option(value: object) -> None:
    with pytest.raises(ConfigError, match="option 'preload'"):
        create(preload=value)


def test_script_imports_are_the_unconditional_top_level_ones(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(
        "from __future__ import annotations\n"
        "import os, json as j\n"
        "from collections import abc\n"
        "from . import sibling\n"
        "from email.mime import *\n"
        "try:\n    import optional_thing\nexcept ImportError:\n    pass\n"
        "def main():\n    import inside_function\n"
        "import os\n"
    )
    assert script_imports(str(script)) == ["os", "json", "collections.abc", "email.mime"]


# -- forked workers --------------------------------------------------------------------

pytestmark = pytest.mark.anyio


#: What a worker finds at start-up that must not depend on the spawn mode.
SAME_IN_BOTH_MODES = ("probe_var", "sigchld_default", "sigint", "blocked", "argv", "name", "path0", "fd_kinds")
#: What a preloaded module did to the process at import: undone in a forked worker.
UNDONE_BY_THE_FORK = {"set_by_preload": None, "sigusr1_default": True, "root_handlers": 0}


async def run_probe(tmp_path: Path, preload: bool) -> tuple[dict[int, dict[str, Any]], list[str], int | None]:
    """Start 2 probe workers; return their facts by slot, the imports file, the template pid."""
    probe_dir = tmp_path / ("preload" if preload else "exec")
    probe_dir.mkdir()
    master = create(
        script=PROBE,
        args=["a1", "a2"],
        preload=["preload_marker", "anyio", "drover_py"] if preload else False,
        env={"PROBE_DIR": probe_dir, "PROBE_VAR": "x"},
        bind=["127.0.0.1:0"],
    )
    async with master:
        await master.start()
        [template] = templates(master) if preload else [None]
        address = list(master.sockets[0].getsockname())
        probes = {slot: json.loads((probe_dir / f"{slot}.json").read_text()) for slot in (0, 1)}
        for worker in master.workers:
            probe = probes[worker.slot]
            assert probe["pid"] == worker.pid == probe["sid"] == probe["pgid"]  # its own session
            assert probe["ppid"] == (template if preload else os.getpid())
            assert probe["sockets"] == [address]
        await master.graceful_shutdown()
    if template is not None:
        await wait_process_gone(template, 10)
    return probes, (probe_dir / "imports").read_text().split(), template


async def test_forked_worker_looks_like_an_exec_worker(tmp_path: Path) -> None:
    forked, imports, template = await run_probe(tmp_path, preload=True)
    execed, exec_imports, _ = await run_probe(tmp_path, preload=False)
    assert imports == [str(template)]  # imported once, ahead, by the template
    assert sorted(exec_imports) == sorted(str(p["pid"]) for p in execed.values())
    for slot in (0, 1):
        assert {k: forked[slot][k] for k in SAME_IN_BOTH_MODES} == {k: execed[slot][k] for k in SAME_IN_BOTH_MODES}
    assert {k: forked[0][k] for k in UNDONE_BY_THE_FORK} == UNDONE_BY_THE_FORK
    assert forked[0]["probe_var"] == "x" and forked[0]["blocked"] == []
    assert forked[0]["argv"] == [str(PROBE), "a1", "a2"] and forked[0]["path0"] == str(APPS)
    assert forked[0]["random"] != forked[1]["random"]


async def test_spawn_requests_wait_their_turn_when_the_template_lags(make_master: MasterBuilder) -> None:
    # Requests this big fill the template's socket buffer after one or two: the others
    # wait until it is writable, one at a time (anyio allows one waiter per socket).
    master = make_master(count=8, preload=["json"], env={"BIG1": "x" * 100_000, "BIG2": "y" * 100_000})
    async with master:
        await master.start()
        assert master.get_workers_statuses() == [WorkerStatus.STARTED] * 8
        await master.graceful_shutdown()


def maps_setproctitle(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as file:
        return "_setproctitle" in file.read()


@pytest.mark.parametrize("titles", [True, False])
async def test_template_imports_setproctitle_only_for_titles(make_master: MasterBuilder, titles: bool) -> None:
    pytest.importorskip("setproctitle")
    master = make_master(count=1, preload=["json"], proctitle=titles)
    async with master:
        await master.start()
        [template] = templates(master)
        # imported once, ahead, so a forked worker's title costs no import of its own
        assert maps_setproctitle(template) is titles
        [worker] = master.workers
        assert worker.pid is not None and maps_setproctitle(worker.pid) is titles
        await master.graceful_shutdown()


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("threaded_mod", r"preloaded module 'threaded_mod' started 1 thread\(s\): started-by-threaded-mod"),
        ("no_such_module_for_drover", r"cannot preload module 'no_such_module_for_drover': ModuleNotFoundError"),
    ],
)
async def test_template_failure_fails_start_with_a_preload_error(module: str, message: str) -> None:
    master = create(preload=[module])
    log = EventLog(master)
    async with master:
        for _ in range(2):  # each start tries a new template, and fails the same way
            with pytest.raises(PreloadError, match=message) as info:
                await master.start()
            assert info.value.reason is None and isinstance(info.value.__cause__, OSError)
            assert master.workers == []
    assert log.of("worker-exit") == [] and log.of("worker-started") == []


async def test_workers_outlive_their_template(make_master: MasterBuilder) -> None:
    master = make_master(count=2, preload=True)
    log = EventLog(master)
    async with master:
        await master.start()
        [template] = templates(master)
        os.kill(template, signal.SIGKILL)
        await wait_process_gone(template, 10)
        old = master.workers
        assert [w.status for w in old] == [WorkerStatus.STARTED] * 2
        assert all(w.pid is not None and is_running(w.pid) for w in old)
        new_id = await master.restart_worker_by_id(old[0].id)  # spawns from a new template
        [new_template] = templates(master)
        [new] = [w for w in master.workers if w.id == new_id]
        assert new.pid is not None and parent_of(new.pid) == new_template != template
        await master.graceful_shutdown()
    retired = dict((worker_id, reason) for reason, worker_id in log.exits("worker-retired"))
    lost = retired[old[0].id]  # its exit status died with the template
    assert isinstance(lost, ExitReasons.AbnormalExit) and lost.payload.code == LOST_STATUS
    assert log.of("worker-exit") == []


async def test_a_template_that_stops_answering_is_killed_and_replaced(make_master: MasterBuilder) -> None:
    master = make_master(count=1, preload=True, start_timeout=2)
    log = EventLog(master)
    async with master:
        await master.start()
        [template] = templates(master)
        os.kill(template, signal.SIGSTOP)  # alive, its socket open, but it answers nothing
        try:
            with anyio.fail_after(20):
                await master.scale(2)  # the spawn gives up on it after start_timeout
        finally:
            try:
                os.kill(template, signal.SIGCONT)
            except ProcessLookupError:
                pass
        await wait_process_gone(template, 10)
        [new_template] = templates(master)
        assert new_template != template
        [old, new] = sorted(master.workers, key=lambda w: w.id)
        assert [old.status, new.status] == [WorkerStatus.STARTED] * 2
        assert old.pid is not None and is_running(old.pid)  # workers outlive their template
        assert new.pid is not None and parent_of(new.pid) == new_template
        await master.graceful_shutdown()
    assert log.of("worker-exit") == []


async def test_reload_starts_a_new_template_and_retires_the_old(make_master: MasterBuilder) -> None:
    master = make_master(count=2, preload=True)
    async with master:
        await master.start()
        [old] = templates(master)
        await master.graceful_reload()  # same configuration, but the code on disk may have changed
        await wait_process_gone(old, 10)
        [new] = templates(master)
        assert all(w.pid is not None and parent_of(w.pid) == new for w in master.workers)
        await master.scale(3)  # same configuration, same template
        assert templates(master) == [new]
        assert all(w.pid is not None and parent_of(w.pid) == new for w in master.workers)
        await master.graceful_shutdown()
    await wait_process_gone(new, 10)


async def test_reload_whose_template_fails_rolls_back(tmp_path: Path) -> None:
    master = create(preload=["preload_marker"], env={"PROBE_DIR": tmp_path})
    async with master:
        await master.start()
        [template] = templates(master)
        before = master.workers
        with pytest.raises(ReloadError, match="cannot preload module 'preload_marker': KeyError"):
            await master.graceful_reload(env={})  # the module needs PROBE_DIR
        assert master.workers == before
        assert dict(master.config.env) == {"PROBE_DIR": str(tmp_path)}
        new_id = await master.restart_worker_by_id(before[0].id)
        [new] = [w for w in master.workers if w.id == new_id]
        assert new.pid is not None and parent_of(new.pid) == template
        await master.graceful_shutdown()


def children_of(pid: int) -> list[int]:
    """Return the pids of the live children of ``pid``."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as file:
            return [int(text) for text in file.read().split()]
    except OSError:
        return []


async def test_a_spawn_forks_itself_when_the_spare_is_gone(make_master: MasterBuilder) -> None:
    """The template forks each worker ahead (a spare); if that child died, the next spawn still succeeds."""
    master = make_master(count=1, preload=True)
    log = EventLog(master)
    async with master:
        await master.start()
        await master.scale(2)
        [template] = templates(master)
        workers = {w.pid for w in master.workers}
        with anyio.fail_after(10):  # the next spare comes once the template is idle: no event to wait on
            while not (spares := [pid for pid in children_of(template) if pid not in workers]):
                await anyio.sleep(0.01)  # sync-ok: polls for the spare, bounded by the fail_after
        [spare] = spares
        os.kill(spare, signal.SIGKILL)
        await wait_process_gone(spare, 10)
        await master.scale(4)
        assert [w.status for w in master.workers] == [WorkerStatus.STARTED] * 4
        assert all(w.pid is not None and parent_of(w.pid) == template for w in master.workers)
        await master.graceful_shutdown()
    await wait_process_gone(template, 10)
    assert log.of("worker-exit") == []  # a spare is nobody's worker: its death is not reported
