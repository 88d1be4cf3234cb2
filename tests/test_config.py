"""MasterFactory.create validates options and names the bad one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs
import pytest

from drover_py import ConfigError, Master, MasterConfig, MasterFactory

from .conftest import WORKER


def create(**options: Any) -> Master:
    options.setdefault("script", WORKER)
    return MasterFactory.create(**options)


def test_defaults() -> None:
    master = create()
    config = master.config
    assert config.script == WORKER.resolve()
    assert config.count == (os.cpu_count() or 1)
    assert config.start_timeout == 30.0 and config.stop_timeout == 30.0 and config.kill_timeout == 5.0
    assert dict(config.env) == {}


def test_the_config_checks_itself_on_evolve_and_when_built_directly() -> None:
    config = create(count=2).config
    with pytest.raises(ConfigError, match="start_timeout"):
        attrs.evolve(config, start_timeout=-1)
    with pytest.raises(ConfigError, match="script"):
        attrs.evolve(config, script="no-such-script.py")
    with pytest.raises(ConfigError, match="count"):
        MasterConfig(script=WORKER, count=0)
    assert attrs.evolve(config, count=3, env={"N": 1}).env == {"N": "1"}  # converted as by the factory


def test_env_values_are_stringified() -> None:
    master = create(env={"PORT": 1934, "RATIO": 0.5, "NAME": "x", "PATH_LIKE": Path("/a")})
    assert dict(master.config.env) == {"PORT": "1934", "RATIO": "0.5", "NAME": "x", "PATH_LIKE": "/a"}


def test_config_is_frozen() -> None:
    master = create(count=2)
    with pytest.raises(AttributeError):
        master.config.count = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "option", "fragment"),
    [
        ({"script": "/nonexistent/app.py"}, "script", "no such file"),
        ({"script": 42}, "script", "expected a path"),
        ({"script": Path(__file__).parent}, "script", "not a regular file"),
        ({"count": 0}, "count", "must be >= 1"),
        ({"count": -3}, "count", "must be >= 1"),
        ({"count": 2.0}, "count", "expected an int"),
        ({"count": True}, "count", "expected an int"),
        ({"count": "4"}, "count", "expected an int"),
        ({"env": ["PORT"]}, "env", "expected a mapping"),
        ({"env": {1: "x"}}, "env", "invalid variable name"),
        ({"env": {"A=B": "x"}}, "env", "invalid variable name"),
        ({"env": {"A": None}}, "env", "is None"),
        ({"env": {"A": "x\0y"}}, "env", "NUL"),
        ({"args": "--flag"}, "args", "list of strings"),
        ({"args": ["--n", 3]}, "args", "must be a str"),
        ({"start_timeout": 0}, "start_timeout", "> 0"),
        ({"stop_timeout": -1.0}, "stop_timeout", "> 0"),
        ({"kill_timeout": float("inf")}, "kill_timeout", "finite"),
        ({"kill_timeout": float("nan")}, "kill_timeout", "finite"),
        ({"start_timeout": "30"}, "start_timeout", "expected seconds"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, Any], option: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        create(**options)
    assert info.value.option == option
    assert repr(option) in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


def test_unknown_option_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="cuont"):
        create(cuont=3)
