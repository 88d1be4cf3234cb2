"""An app's table holds the options of ``drover-py run`` (``script = ...``) or ``serve`` (``app = ...``).

What a table accepts, and each key's type and default, is read from the parsers of those
two commands, and each app's master is built by the function they use, from an
`argparse.Namespace` made of the table: the file and the command line cannot drift
apart. Options that belong to the process (``--control``...) are ``drover-py up``'s own.
"""

from __future__ import annotations

import argparse
import copy
import functools
import re
from pathlib import Path

from .._cli.options import _add_master_options, _add_serve_options
from .._cli.supervise import _create_master
from .._config.file import AppSpec, Key, Locator, Schema, ValueKind
from .._exceptions import ConfigError, ConfigFileError
from .._supervise.master import Master
from ..serve._options import DEFAULT_BIND

#: Options of ``run`` and ``serve`` that belong to the ``drover-py up`` process, not to an app.
PROCESS_WIDE = ("control", "control_tcp", "no_control", "key", "metrics_bind", "log_format", "debug")
#: ``serve --reload`` and its options: for developing one app.
DEVELOPMENT = ("reload", "reload_dir", "reload_include", "reload_exclude")
#: The keys of a ``kind = "once"`` app: one process, run to its end.
ONCE = frozenset({"script", "args", "cwd", "user", "group", "start_timeout", "stop_timeout"})
#: Keys naming files or folders: relative to the deployment file's folder (``app_dir``
#: too, whose default "." is that folder).
PATHS = ("script", "cwd", "app_dir")
#: Options of the library that the file (as the command line) names otherwise.
FILE_NAMES = {"count": "workers"}


def _parser(program: str) -> argparse.ArgumentParser:
    """Return a parser of the options ``run`` (program "script") or ``serve`` ("app") share with the file."""
    parser = argparse.ArgumentParser(add_help=False)
    if program == "app":
        _add_serve_options(parser)
        _add_master_options(parser, default_bind=DEFAULT_BIND)
    else:
        _add_master_options(parser)
    return parser


def _key_name(action: argparse.Action) -> str:
    longs = [option for option in action.option_strings if option.startswith("--")]
    return longs[0][2:].replace("-", "_") if longs else action.dest


def _key(name: str, action: argparse.Action) -> Key:
    kind: ValueKind
    if action.nargs == 0:  # a flag: --preload, --no-proctitle, --access-log/--no-access-log
        kind = "bool"
    elif isinstance(action, argparse._AppendAction):
        kind = "strings"
    elif action.type is int:
        kind = "int"
    elif action.type is float:
        kind = "float"
    else:
        kind = "str"
    return Key(name, kind, tuple(str(choice) for choice in action.choices or ()))


@functools.cache
def schema() -> Schema:
    """Return the keys an app's table accepts, read from the options of ``run`` and ``serve``."""
    programs: dict[str, dict[str, Key]] = {}
    for program in ("script", "app"):
        keys = {}
        for action in _parser(program)._actions:
            name = _key_name(action)
            if name not in PROCESS_WIDE and name not in DEVELOPMENT:
                keys[name] = _key(name, action)
        programs[program] = keys
    programs["script"].update(
        script=Key("script", "str"), args=Key("args", "strings"), preload=Key("preload", "modules")
    )
    elsewhere = {
        name: f"an option of drover-py up itself (--{name.replace('_', '-')}), not of an app" for name in PROCESS_WIDE
    }
    elsewhere.update(
        {name: "an option of drover-py serve for development, not of drover-py up" for name in DEVELOPMENT}
    )
    elsewhere["backend"] = (
        'the event loop of a script\'s master is drover-py up\'s (--backend); backend = "trio" is for app = "MODULE:ATTR"'
    )
    return Schema(
        script={name: programs["script"][name] for name in sorted(programs["script"])},
        app={name: programs["app"][name] for name in sorted(programs["app"])},
        once=ONCE,
        elsewhere=elsewhere,
    )


def namespace(spec: AppSpec, base: Path) -> argparse.Namespace:
    """Return the app's options as ``run`` or ``serve`` would have parsed them; paths from ``base``."""
    parser = _parser(spec.program)
    ns = argparse.Namespace(**{a.dest: copy.copy(a.default) for a in parser._actions})
    ns.action = "run" if spec.program == "script" else "serve"
    if spec.program == "script":
        ns.args, ns.preload_modules = [], None
    if spec.kind == "once":
        ns.workers = 1
    for key, value in spec.options.items():
        if key == "preload" and isinstance(value, list):
            ns.preload, ns.preload_modules = False, ",".join(value) or None
        else:
            setattr(ns, key, list(value) if isinstance(value, list) else value)
    for key in PATHS:
        if getattr(ns, key, None) is not None:
            setattr(ns, key, str(base / Path(getattr(ns, key)).expanduser()))
    return ns


def build(spec: AppSpec, base: Path, at: Locator) -> tuple[argparse.Namespace, Master]:
    """Return the app's options and its master (not started), built as ``run``/``serve`` build theirs.

    Raise `ConfigFileError` naming the key of a value the master refuses (a script that
    does not exist, ``workers = 0``, an unknown user...).
    """
    ns = namespace(spec, base)
    try:
        return ns, _create_master(ns, env=spec.env)
    except ConfigFileError:
        raise
    except ConfigError as exc:
        raise _located(exc, spec, at) from None


def _located(error: ConfigError, spec: AppSpec, at: Locator) -> ConfigFileError:
    key = FILE_NAMES.get(error.option, error.option)
    keys = schema().script if spec.program == "script" else schema().app
    message = re.sub(
        r"--([a-z][a-z-]*)", lambda m: m[1].replace("-", "_"), str(error)
    )  # options as the file names them
    if key in keys or key == "env":
        return at.error(["apps", spec.name, key], message.removeprefix(f"option {error.option!r}: "))
    return at.error(["apps", spec.name], message)
