"""A deployment file: one ``[apps.NAME]`` table per app, checked whole before anything starts.

Pure: `parse_deployment` takes the file's text and the keys an app accepts (a `Schema`,
which the command line derives from the options of ``run`` and ``serve``, so that the
file and the command line never drift apart) and returns the apps in start order, or
raises `ConfigFileError` naming the file, the line where it can be found, the key path
and what was expected. tomllib gives no positions for values: the line of a key is
looked up in the text of its app's table.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Literal

import attrs

from .._exceptions import ConfigFileError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: The value a key takes: a boolean, an integer, a number, a string (of ``choices`` if
#: any), a list of strings, or ``modules`` (a boolean or a list of module names).
ValueKind = Literal["bool", "int", "float", "str", "strings", "modules"]
#: A service runs workers until shut down; a ``once`` app runs one process that must exit 0.
Kind = Literal["service", "once"]
KINDS: tuple[Kind, ...] = ("service", "once")
#: What an app runs: a worker script (as ``drover-py run``) or MODULE:ATTR (as ``serve``).
Program = Literal["script", "app"]
#: The keys of every app beside its options.
OWN_KEYS = ("kind", "depends_on", "env")
#: App names: they name masters in ``drover-py ctl --master NAME``.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@attrs.frozen
class Key:
    """A key of an app's table: its name and the value it takes."""

    name: str
    kind: ValueKind
    #: The strings it accepts, when it is a choice.
    choices: tuple[str, ...] = ()


@attrs.frozen
class Schema:
    """The keys an app's table accepts beside ``kind``, ``depends_on`` and ``env``.

    ``script``: the keys of an app that runs a script (``drover-py run``'s options);
    ``app``: of one that serves MODULE:ATTR (``drover-py serve``'s); ``once``: which of
    ``script``'s a ``kind = "once"`` app takes; ``elsewhere``: options of the commands
    that are no app's, each with the reason an error gives.
    """

    script: Mapping[str, Key]
    app: Mapping[str, Key]
    once: frozenset[str]
    elsewhere: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class AppSpec:
    """One app of the file, checked: what it runs, with which options, after which apps."""

    name: str
    kind: Kind
    program: Program
    #: The options the table sets (``script`` or ``app`` among them), by key, as written.
    options: Mapping[str, object]
    #: Variables of the ``env`` table, values as strings.
    env: Mapping[str, str]
    #: The apps that must be started (or, for a ``once`` app, done) before this one.
    depends_on: tuple[str, ...]

    def changed(self, other: AppSpec) -> list[str]:
        """Return the keys whose values differ in ``other`` (``depends_on`` counts too)."""
        keys = [key for key in dict.fromkeys([*self.options, *other.options]) if self._get(key) != other._get(key)]
        keys += [key for key in ("kind", "env", "depends_on") if getattr(self, key) != getattr(other, key)]
        return keys

    def _get(self, key: str) -> object:
        return self.options.get(key)


@attrs.frozen
class DeploymentSpec:
    """The apps of a deployment file in start order (an app after those it depends on)."""

    #: The file as it was named.
    path: str
    apps: tuple[AppSpec, ...]
    #: Finds a key's line for errors found later (a script that does not exist...).
    at: Locator = attrs.field(eq=False, repr=False)


class Locator:
    """Build `ConfigFileError` for a key path, with the line of the key in the text if it is found."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self._lines = text.splitlines()

    def error(self, key: Sequence[str], message: str) -> ConfigFileError:
        """Return the error for ``key`` (``("apps", "web", "workers")``): ``FILE:LINE: apps.web.workers: MESSAGE``."""
        return ConfigFileError(self.path, self.line(key), dotted(key), message)

    def syntax(self, exc: ValueError) -> ConfigFileError:
        """Return the error for a `tomllib.TOMLDecodeError`: its line and column, its message."""
        text = str(exc)
        line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        found = re.search(r" \(at line (\d+), column (\d+)\)$", text)
        if found is not None:
            text = text[: found.start()]
            line, column = line or int(found[1]), column or int(found[2])
        text = text.removesuffix(" (at end of document)")
        message = getattr(exc, "msg", text)
        return ConfigFileError(self.path, line, "", f"not valid TOML: {message}", column=column)

    def line(self, key: Sequence[str]) -> int | None:
        """Return the line (from 1) of ``key``, of its app's table if the key is not found, or None."""
        if not key:
            return None
        if key[0] != "apps" or len(key) == 1:
            return self._find(0, len(self._lines), key[0], header=True)
        table = self._table(key[1])
        if table is None:
            return self._find(0, len(self._lines), key[1], header=False)  # web = { ... } under [apps]
        if len(key) > 2:
            end = next((i for i in range(table + 1, len(self._lines)) if self._lines[i].lstrip().startswith("[")), None)
            found = self._find(table + 1, len(self._lines) if end is None else end, key[2], header=False)
            if found is not None:
                return found
        return table + 1

    def _table(self, name: str) -> int | None:
        """Return the index of the line ``[apps.NAME]``, or None."""
        pattern = re.compile(rf"^\s*\[\s*apps\s*\.\s*{_key_pattern(name)}\s*\]\s*(#.*)?$")
        return next((i for i, line in enumerate(self._lines) if pattern.match(line)), None)

    def _find(self, start: int, end: int, key: str, *, header: bool) -> int | None:
        pattern = re.compile(rf"^\s*{_key_pattern(key)}\s*[.=]" + (rf"|^\s*\[\s*{_key_pattern(key)}\s*[.\]]" * header))
        return next((i + 1 for i in range(start, end) if pattern.match(self._lines[i])), None)


def _key_pattern(key: str) -> str:
    quoted = re.escape(key)
    return f"(?:{quoted}|\"{quoted}\"|'{quoted}')"


def dotted(key: Sequence[str]) -> str:
    """Return a key path as TOML writes it: ``apps.web.workers``, ``apps."my app"``."""
    return ".".join(part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else json.dumps(part) for part in key)


def shown(value: object) -> str:
    """Return ``value`` as the file writes it (``"4"``, ``true``), or what it is (an array, a table)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"  # a date or a time


def parse_deployment(text: str, path: str, schema: Schema) -> DeploymentSpec:
    """Return the apps of a deployment file's ``text`` in start order; raise `ConfigFileError`.

    ``path`` is the file as the user named it (errors begin with it). Checked: TOML
    syntax, unknown keys, the type of every value, ``kind``, ``script`` or ``app`` (one
    of them), ``env``, ``depends_on`` names and cycles. Whether a script exists, a port
    is free and so on is checked when the masters are built from it.
    """
    at = Locator(path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise at.syntax(exc) from None
    for key in data:
        if key != "apps":
            raise at.error([key], "unknown key; the file holds one [apps.NAME] table per app")
    tables = data.get("apps")
    if isinstance(tables, dict) and not tables or tables is None:
        raise at.error([], "no app: expected one [apps.NAME] table per app")
    if not isinstance(tables, dict):
        raise at.error(["apps"], f"expected one [apps.NAME] table per app, got {shown(tables)}")
    apps = {name: _app(at, name, table, schema) for name, table in tables.items()}
    for app in apps.values():
        for needed in app.depends_on:
            if needed not in apps:
                raise at.error(
                    ["apps", app.name, "depends_on"], f"no app named {json.dumps(needed)}; the apps: {', '.join(apps)}"
                )
    return DeploymentSpec(path, tuple(apps[name] for name in _start_order(at, apps)), at)


def _app(at: Locator, name: str, table: object, schema: Schema) -> AppSpec:
    where = ["apps", name]
    if not NAME.match(name):
        raise at.error(where, "expected a name of letters, digits, '-', '_' and '.' (drover-py ctl --master NAME)")
    if not isinstance(table, dict):
        raise at.error(where, f"expected a table [apps.{name}], got {shown(table)}")
    kind = table.get("kind", "service")
    if kind not in KINDS:
        raise at.error([*where, "kind"], f'expected "service" (the default) or "once", got {shown(kind)}')
    if ("script" in table) == ("app" in table):
        raise at.error(
            where,
            'expected script = "FILE" (as drover-py run) or app = "MODULE:ATTR" (as drover-py serve)'
            + (", not both" if "script" in table else ""),
        )
    program: Program = "script" if "script" in table else "app"
    if kind == "once" and program == "app":
        raise at.error([*where, "app"], 'a kind = "once" app runs a script to its end: expected script = "FILE"')
    keys = schema.script if program == "script" else schema.app
    options: dict[str, object] = {}
    for key, value in table.items():
        if key in OWN_KEYS:
            continue
        if key not in keys:
            raise at.error([*where, key], _unknown(key, program, schema))
        if kind == "once" and key not in schema.once:
            raise at.error(
                [*where, key],
                f'not an option of a kind = "once" app (one process, run to its end); it takes {", ".join(sorted(schema.once))}',
            )
        options[key] = _checked(at, [*where, key], keys[key], value)
    return AppSpec(
        name,
        kind,
        program,
        options,
        _env(at, [*where, "env"], table.get("env", {})),
        _depends_on(at, [*where, "depends_on"], table.get("depends_on", [])),
    )


def _unknown(key: str, program: Program, schema: Schema) -> str:
    if key in schema.elsewhere:
        return schema.elsewhere[key]
    other = schema.app if program == "script" else schema.script
    if key in other:
        return (
            'an option of an app that serves MODULE:ATTR (app = "..."), not of a script'
            if program == "script"
            else 'an option of an app that runs a script (script = "..."), not of app = "MODULE:ATTR"'
        )
    keys = [*(schema.script if program == "script" else schema.app), *OWN_KEYS]
    close = difflib.get_close_matches(key, keys, n=1)
    if close:
        return f"unknown key; did you mean {close[0]}?"
    command = "run" if program == "script" else "serve"
    return f"unknown key; an app takes kind, depends_on, env and the long options of drover-py {command} with underscores (--start-timeout: start_timeout)"


def _checked(at: Locator, key: list[str], spec: Key, value: object) -> object:
    """Return ``value`` if it is what ``spec`` takes; raise `ConfigFileError` saying what was expected."""
    expected = {
        "bool": "true or false",
        "int": "an integer",
        "float": "a number",
        "str": "a string",
        "strings": "an array of strings",
        "modules": "true, false or an array of module names",
    }[spec.kind]
    if spec.kind == "bool" or spec.kind == "modules" and isinstance(value, bool):
        ok = isinstance(value, bool)
    elif spec.kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif spec.kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif spec.kind == "str":
        ok = isinstance(value, str)
        if ok and spec.choices and value not in spec.choices:
            choices = ", ".join(json.dumps(choice) for choice in spec.choices)
            raise at.error(key, f"expected one of {choices}, got {shown(value)}")
    elif isinstance(value, list):
        wrong = next((item for item in value if not isinstance(item, str)), None)
        if wrong is not None:
            raise at.error(key, f"expected {expected}, got {shown(wrong)} in it")
        ok = True
    else:
        ok = False
    if not ok:
        raise at.error(key, f"expected {expected}, got {shown(value)}")
    return value


def _env(at: Locator, key: list[str], value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise at.error(key, f'expected a table of variables (env = {{ PORT = "8000" }}), got {shown(value)}')
    env: dict[str, str] = {}
    for name, item in value.items():
        if not name or "=" in name or "\0" in name:
            raise at.error([*key, name], "expected a variable name: not empty, without '='")
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise at.error([*key, name], f"expected a string or a number, got {shown(item)}")
        if isinstance(item, str) and "\0" in item:
            raise at.error([*key, name], "expected a string without NUL")
        env[name] = item if isinstance(item, str) else str(item)
    return env


def _depends_on(at: Locator, key: list[str], value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise at.error(key, f'expected an array of app names (depends_on = ["db"]), got {shown(value)}')
    return tuple(dict.fromkeys(value))


def _start_order(at: Locator, apps: Mapping[str, AppSpec]) -> list[str]:
    """Return the app names, each after those it depends on (else in file order); raise on a cycle."""
    order: list[str] = []
    state: dict[str, str] = {}  # "visiting" on the current path, "done" once placed

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name) :] + [name]
            raise at.error(["apps", cycle[0], "depends_on"], f"a dependency cycle: {' -> '.join(cycle)}")
        state[name] = "visiting"
        for needed in apps[name].depends_on:
            visit(needed, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in apps:
        visit(name, [])
    return order
