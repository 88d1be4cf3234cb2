"""The deployment file of ``drover-py up``: its keys are the command line's, its errors one line each.

`load_deployment` checks the whole file before anything starts; these tests need no
event loop, except the last ones, which open a `Deployment` (asyncio and trio).
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import anyio
import pytest

from drover_py import BindError, ConfigError, ConfigFileError, DeploymentError, load_deployment
from drover_py._cli.options import _add_master_options, _add_serve_options
from drover_py._config.file import dotted
from drover_py._deploy.options import DEVELOPMENT, PROCESS_WIDE, schema

from .conftest import APPS

WORKER = APPS / "deploy_worker.py"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "drover.toml"
    path.write_text(text.replace("WORKER", str(WORKER)))
    return path


def test_the_keys_of_an_app_are_the_long_options_of_run_and_serve() -> None:
    """A new option of run or serve is a key of the file at once: both read the same parsers."""
    for program, add in (("script", _add_master_options), ("app", _add_serve_options)):
        parser = argparse.ArgumentParser()
        add(parser)
        longs = {o[2:].replace("-", "_") for a in parser._actions for o in a.option_strings[:2] if o.startswith("--")}
        expected = longs - {"help", *PROCESS_WIDE, *DEVELOPMENT} - {f"no_{name}" for name in longs}
        keys = schema().script if program == "script" else schema().app
        assert expected <= set(keys), expected - set(keys)
    assert {"script", "args", "workers", "bind", "restart", "start_timeout", "preload"} <= set(schema().script)
    assert {"app", "interface", "backend", "max_requests", "proxy_headers", "bind"} <= set(schema().app)
    assert schema().script["workers"].kind == "int" and schema().script["stop_timeout"].kind == "float"
    assert schema().app["log_level"].choices[:2] == ("critical", "error")


def test_apps_come_in_start_order_with_their_masters_built(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[apps.web]
script = "WORKER"
args = ["--port", "8000"]
workers = 3
depends_on = ["migrate", "cache"]
env = { PORT = 8000, MODE = "prod" }
restart = "off"
start_timeout = 5
kill_timeout = 2
heartbeat_timeout = 9
max_age = 3600
max_rss = 500_000_000
output = "prefix"

[apps.migrate]
kind = "once"
script = "WORKER"
cwd = "."

[apps.cache]
script = "WORKER"
preload = ["json"]
""",
    )
    deployment = load_deployment(path)
    assert [(app.name, app.kind, app.depends_on) for app in deployment.apps] == [
        ("migrate", "once", ()),
        ("cache", "service", ()),
        ("web", "service", ("migrate", "cache")),
    ]
    migrate, cache, web = deployment.apps
    assert migrate.master is None and migrate.config.cwd == tmp_path
    assert list(deployment.masters) == ["cache", "web"] and deployment.masters["web"] is web.master
    assert web.config.count == 3 and web.config.args == ("--port", "8000") and web.config.restart is None
    assert web.config.env == {"PORT": "8000", "MODE": "prod"} and web.config.start_timeout == 5.0
    assert web.config.stop_timeout == 30.0  # the command line's default, from its parser
    assert (web.config.kill_timeout, web.config.heartbeat_timeout, web.config.output) == (2.0, 9.0, "prefix")
    assert web.config.recycle is not None and (web.config.recycle.max_age, web.config.recycle.max_rss) == (
        3600,
        500_000_000,
    )
    assert cache.config.recycle is None and cache.config.output == "inherit"
    assert cache.config.preload == ("json",)


def test_relative_paths_are_the_files_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "worker.py").write_text("")
    (tmp_path / "app" / "drover.toml").write_text('[apps.w]\nscript = "worker.py"\nworkers = 1\n')
    monkeypatch.chdir(tmp_path)
    [app] = load_deployment("app/drover.toml").apps
    assert app.config.script == tmp_path / "app" / "worker.py"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[apps.web]\nscript = 'WORKER'\nwrokers = 4\n",
            "drover.toml:3: apps.web.wrokers: unknown key; did you mean workers?",
        ),
        (
            "[apps.web]\nscript = 'WORKER'\nworkers = true\n",
            "drover.toml:3: apps.web.workers: expected an integer, got true",
        ),
        ("[apps.web]\nscript = 'WORKER'\nworkers = 0\n", "drover.toml:3: apps.web.workers: must be >= 1, got 0"),
        (
            "[apps.web]\nscript = 'WORKER'\nstart_timeout = '5'\n",
            'drover.toml:3: apps.web.start_timeout: expected a number, got "5"',
        ),
        (
            "[apps.web]\nscript = 'WORKER'\nbind = '127.0.0.1:80'\n",
            'drover.toml:3: apps.web.bind: expected an array of strings, got "127.0.0.1:80"',
        ),
        (
            "[apps.web]\nscript = 'WORKER'\nbind = [8000]\n",
            "drover.toml:3: apps.web.bind: expected an array of strings, got 8000 in it",
        ),
        (
            "[apps.web]\nscript = 'WORKER'\nrestart = 'sometimes'\n",
            'drover.toml:3: apps.web.restart: expected one of "off", "on-failure", "always", got "sometimes"',
        ),
        (
            "[apps.web]\nscript = 'WORKER'\nenv = { PORT = true }\n",
            "drover.toml:3: apps.web.env.PORT: expected a string or a number, got true",
        ),
        (
            "[apps.web]\nscript = 'WORKER'\nenv = 'PORT=1'\n",
            'drover.toml:3: apps.web.env: expected a table of variables (env = { PORT = "8000" }), got "PORT=1"',
        ),
        ("[apps.web]\nscript = 'missing.py'\n", "drover.toml:2: apps.web.script: no such file: 'TMP/missing.py'"),
        (
            "[apps.web]\nscript = 'WORKER'\ncontrol = 'x.sock'\n",
            "drover.toml:3: apps.web.control: an option of drover-py up itself (--control), not of an app",
        ),
        (
            "[apps.web]\nscript = 'WORKER'\ninterface = 'asgi'\n",
            'drover.toml:3: apps.web.interface: an option of an app that serves MODULE:ATTR (app = "..."), not of a script',
        ),
        (
            "[apps.web]\napp = 'main:app'\nreload = true\n",
            "drover.toml:3: apps.web.reload: an option of drover-py serve for development, not of drover-py up",
        ),
        (
            "[apps.web]\nscript = 'WORKER'\nkind = 'oneshot'\n",
            'drover.toml:3: apps.web.kind: expected "service" (the default) or "once", got "oneshot"',
        ),
        (
            "[apps.m]\nkind = 'once'\nscript = 'WORKER'\nworkers = 2\n",
            'drover.toml:4: apps.m.workers: not an option of a kind = "once" app (one process, run to its end); it takes args, cwd, group, script, start_timeout, stop_timeout, user',
        ),
        (
            "[apps.m]\nkind = 'once'\napp = 'main:app'\n",
            'drover.toml:3: apps.m.app: a kind = "once" app runs a script to its end: expected script = "FILE"',
        ),
        (
            "[apps.web]\nscript = 'WORKER'\napp = 'main:app'\n",
            'drover.toml:1: apps.web: expected script = "FILE" (as drover-py run) or app = "MODULE:ATTR" (as drover-py serve), not both',
        ),
        (
            "[apps.web]\nscript = 'WORKER'\ndepends_on = ['db']\n",
            'drover.toml:3: apps.web.depends_on: no app named "db"; the apps: web',
        ),
        (
            "[apps.web]\nscript = 'WORKER'\ndepends_on = ['web']\n",
            "drover.toml:3: apps.web.depends_on: a dependency cycle: web -> web",
        ),
        (
            "[apps.a]\nscript = 'WORKER'\ndepends_on = ['c']\n[apps.b]\nscript = 'WORKER'\ndepends_on = ['a']\n[apps.c]\nscript = 'WORKER'\ndepends_on = ['b']\n",
            "drover.toml:3: apps.a.depends_on: a dependency cycle: a -> c -> b -> a",
        ),
        (
            "[apps]\nweb = { script = 'WORKER', workers = '2' }\n",
            'drover.toml:2: apps.web.workers: expected an integer, got "2"',
        ),
        (
            "[apps.\"my app\"]\nscript = 'WORKER'\n",
            "drover.toml:1: apps.\"my app\": expected a name of letters, digits, '-', '_' and '.' (drover-py ctl --master NAME)",
        ),
        (
            "[apps.web]\nscript = 'WORKER'\nuser = 'drover-py-no-such-user'\n",
            "drover.toml:3: apps.web.user: unknown user 'drover-py-no-such-user'",
        ),
        ("title = 'shop'\n", "drover.toml:1: title: unknown key; the file holds one [apps.NAME] table per app"),
        ("# nothing yet\n", "drover.toml: no app: expected one [apps.NAME] table per app"),
        ("apps = 3\n", "drover.toml:1: apps: expected one [apps.NAME] table per app, got 3"),
        ("[apps.web]\nscript = 'WORKER'\nworkers =\n", "drover.toml:3:10: not valid TOML: Invalid value"),
    ],
    ids=lambda value: value.splitlines()[-1][:40] if "\n" in value else None,
)
def test_a_file_that_does_not_validate_is_one_line_naming_file_line_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigFileError) as caught:
        load_deployment(path)
    assert str(caught.value) == f"{path.parent}/{message}".replace("TMP", str(tmp_path))
    assert isinstance(caught.value, ConfigError) and caught.value.path == str(path)


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match=r"^nowhere\.toml: cannot read it: No such file or directory$"):
        load_deployment("nowhere.toml")


def test_key_paths_are_written_as_toml_writes_them() -> None:
    assert dotted(["apps", "web", "workers"]) == "apps.web.workers"
    assert dotted(["apps", "a.b", "env", "MY VAR"]) == 'apps."a.b".env."MY VAR"'


@pytest.mark.anyio
async def test_an_address_in_use_fails_before_any_app_starts(tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write(
            tmp_path,
            f"[apps.first]\nscript = 'WORKER'\nworkers = 1\nenv = {{ TEST_RECORD = '{record}' }}\n"
            f"[apps.web]\nscript = 'WORKER'\nworkers = 1\nbind = ['127.0.0.1:{port}']\n",
        )
        deployment = load_deployment(path)
        with pytest.raises(DeploymentError, match=rf"^web: cannot listen on 127\.0\.0\.1:{port}: ") as caught:
            with anyio.fail_after(30):
                async with deployment:
                    pass
    assert isinstance(caught.value.__cause__, BindError) and caught.value.app == "web"
    assert not record.exists()  # no worker of any app ran
