"""The master -> child environment contract (`drover_py._env`): pure, and one copy of it."""

from __future__ import annotations

import importlib.util

import pytest

from drover_py import _env
from drover_py._spawn.preload import TEMPLATE_PROGRAM


def test_a_workers_variables_and_its_templates_environment() -> None:
    env = _env.worker_vars(channel=(5, 9), slot=2, worker_id=7, sockets=(3, 4), heartbeat=1.5)
    assert env == {
        "DROVER_PY_CHANNEL": "5,9", "DROVER_PY_SLOT": "2", "DROVER_PY_WORKER_ID": "7", "DROVER_PY_SOCKETS": "3,4",
        "DROVER_PY_HEARTBEAT": "1.5",
    }  # fmt: skip
    assert _env.worker_vars(channel=(5, 9), slot=0, worker_id=1).keys() == {
        "DROVER_PY_CHANNEL",
        "DROVER_PY_SLOT",
        "DROVER_PY_WORKER_ID",
    }
    worker = {"HOME": "/home/app", "APP_SETTING": "x", **env, _env.PROCTITLE_ENV: "drover-py worker 2: app.py"}
    assert _env.template_env(worker) == {"HOME": "/home/app", "APP_SETTING": "x"}
    assert set(_env.FD_ENV) <= set(_env.PER_WORKER)


def test_values_parse_back() -> None:
    assert _env.parse_channel(_env.format_channel(5, 9)) == (5, 9)
    for bad in ["", "5", "a,b", "5,5", "-1,3"]:
        with pytest.raises(ValueError):
            _env.parse_channel(bad)
    assert _env.parse_sockets(
        _env.worker_vars(channel=(5, 9), slot=0, worker_id=1, sockets=(3, 4))["DROVER_PY_SOCKETS"]
    ) == [3, 4]
    assert _env.parse_sockets("") == []


def test_the_template_programs_copy_is_the_contracts() -> None:
    # the template runs by path and imports nothing of drover-py: it keeps a copy
    spec = importlib.util.spec_from_file_location("drover_py_template_program", TEMPLATE_PROGRAM)
    assert spec is not None and spec.loader is not None
    program = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(program)
    assert program.PROCTITLE_ENV == _env.PROCTITLE_ENV
