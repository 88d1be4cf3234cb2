"""Control-plane commands: typed handlers, the per-master registry, argument binding.

A command is a plain function (sync or async) whose parameters are typed with ``str``,
``int``, ``float`` or ``bool`` (optionally ``| None``); its docstring is its help and its
return value, which must be JSON-serialisable, is the command's result. Arguments arrive
by position (a JSON array, or the words of a console line) or by name (a JSON object);
strings are converted for numeric and boolean parameters, so a console word "10" fills
an ``int`` parameter.
"""

from __future__ import annotations

import inspect
import re
import types
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar, Union, get_args, get_origin

import attrs

from ._compat import call_maybe_async
from ._exceptions import DroverError

#: A command handler: a function, sync or async, with typed parameters.
CommandHandler = Callable[..., object]
H = TypeVar("H", bound=CommandHandler)

#: A JSON value, as arguments arrive and results leave.
JSON = None | bool | int | float | str | Sequence["JSON"] | Mapping[str, "JSON"]

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_TYPES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class CommandError(DroverError):
    """A command cannot run as asked (bad arguments, bad target); answered with 400.

    Raise it from a custom command to answer the client with your message.
    """


@attrs.frozen
class Param:
    """One typed parameter of a command."""

    name: str
    #: JSON Schema type: "string", "integer", "number" or "boolean".
    type: str
    required: bool
    default: JSON = None

    def convert(self, command: str, value: object) -> JSON:
        """Return ``value`` as this parameter's type; raise CommandError if it is not."""
        where = f"{command}: argument {self.name!r}"
        if value is None and not self.required:
            return None
        if self.type == "string":
            if isinstance(value, str):
                return value
            raise CommandError(f"{where} must be a string, got {value!r}")
        if self.type == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
                return value.lower() in _TRUE
            raise CommandError(f"{where} must be a boolean, got {value!r}")
        if isinstance(value, str):
            try:
                value = int(value) if self.type == "integer" else float(value)
            except ValueError:
                raise CommandError(
                    f"{where} must be {'an integer' if self.type == 'integer' else 'a number'}, got {value!r}"
                ) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CommandError(f"{where} must be a number, got {value!r}")
        if self.type == "integer":
            if isinstance(value, float) and not value.is_integer():
                raise CommandError(f"{where} must be an integer, got {value!r}")
            return int(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise CommandError(f"{where} must be a finite number, got {value!r}")
        return float(value)

    def describe(self) -> dict[str, JSON]:
        """Return this parameter as JSON for help."""
        described: dict[str, JSON] = {"name": self.name, "type": self.type, "required": self.required}
        if not self.required:
            described["default"] = self.default
        return described


@attrs.frozen
class Command:
    """A named handler with its parameters and help."""

    name: str
    handler: CommandHandler
    params: tuple[Param, ...]
    #: The first line of the help.
    summary: str
    #: The whole help text.
    help: str

    def usage(self) -> str:
        """Return a one-line usage such as ``restart TARGET [TIMEOUT]``."""
        words = [self.name]
        for param in self.params:
            words.append(param.name.upper() if param.required else f"[{param.name.upper()}]")
        return " ".join(words)

    def describe(self) -> dict[str, JSON]:
        """Return this command as JSON for help."""
        return {
            "name": self.name,
            "usage": self.usage(),
            "summary": self.summary,
            "help": self.help,
            "params": [param.describe() for param in self.params],
        }

    def bind(self, args: object) -> dict[str, JSON]:
        """Return keyword arguments from a JSON array, object or None; raise CommandError."""
        if args is None:
            args = []
        given: dict[str, object] = {}
        if isinstance(args, list):
            if len(args) > len(self.params):
                raise CommandError(
                    f"{self.name}: expected at most {len(self.params)} argument(s), got {len(args)}; usage: {self.usage()}"
                )
            given = {param.name: value for param, value in zip(self.params, args)}
        elif isinstance(args, dict):
            known = {param.name for param in self.params}
            unknown = sorted(str(key) for key in args if key not in known)
            if unknown:
                raise CommandError(f"{self.name}: unknown argument(s) {', '.join(unknown)}; usage: {self.usage()}")
            given = dict(args)
        else:
            raise CommandError(f"{self.name}: arguments must be a JSON array or object, got {type(args).__name__}")
        bound: dict[str, JSON] = {}
        for param in self.params:
            if param.name in given:
                bound[param.name] = param.convert(self.name, given[param.name])
            elif param.required:
                raise CommandError(f"{self.name}: missing argument {param.name!r}; usage: {self.usage()}")
        return bound

    async def call(self, kwargs: Mapping[str, JSON]) -> object:
        """Run the handler with ``kwargs``, awaiting it if it is async."""
        return await call_maybe_async(self.handler, **kwargs)


def make_command(name: str, handler: CommandHandler, help: str | None = None) -> Command:
    """Build a `Command` from ``handler``'s signature and docstring.

    Raise ValueError for a bad name and TypeError for a parameter that is not typed
    ``str``, ``int``, ``float`` or ``bool`` (optionally ``| None``), or is variadic.
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"command name {name!r} must match {NAME_PATTERN.pattern}")
    if not callable(handler):
        raise TypeError(f"handler of command {name!r} must be callable, got {handler!r}")
    signature = inspect.signature(handler, eval_str=True)
    params = []
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"command {name!r}: variadic parameter {parameter.name!r} is not supported")
        kind = _json_type(name, parameter)
        required = parameter.default is inspect.Parameter.empty
        default = None if required else parameter.default
        if not required and not isinstance(default, (type(None), bool, int, float, str)):
            raise TypeError(f"command {name!r}: default of {parameter.name!r} must be a JSON scalar")
        params.append(Param(parameter.name, kind, required, default))
    text = inspect.cleandoc(help if help is not None else (handler.__doc__ or "")).strip() or f"The {name} command."
    return Command(name, handler, tuple(params), text.splitlines()[0], text)


def _json_type(command: str, parameter: inspect.Parameter) -> str:
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        return "string"
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            annotation = members[0]
    if isinstance(annotation, type) and annotation in _TYPES:
        return _TYPES[annotation]
    raise TypeError(
        f"command {command!r}: parameter {parameter.name!r} is typed {annotation!r}; use str, int, float or bool"
    )


class CommandRegistry:
    """The custom commands of one master, and the built-ins it disabled.

    A custom command with a built-in's name overrides it. Reach it as
    ``master.commands``; `Master.command` is the short form of `add`.
    """

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}
        self._disabled: set[str] = set()

    def add(self, name: str, handler: H, *, help: str | None = None) -> H:
        """Register ``handler`` as command ``name`` (replacing one of that name); return it."""
        self._commands[name] = make_command(name, handler, help)
        self._disabled.discard(name)
        return handler

    def remove(self, name: str) -> None:
        """Remove custom command ``name`` (a built-in it overrode comes back)."""
        self._commands.pop(name, None)

    def disable(self, *names: str) -> None:
        """Make commands ``names`` (built-in or custom) answer 404 as if they did not exist."""
        for name in names:
            self._commands.pop(name, None)
            self._disabled.add(name)

    def resolve(self, builtins: Mapping[str, Command]) -> dict[str, Command]:
        """Return every command in effect: built-ins, overridden and disabled as registered."""
        merged = {name: cmd for name, cmd in builtins.items() if name not in self._disabled}
        merged.update(self._commands)
        return dict(sorted(merged.items()))


def decorator(registry: CommandRegistry, name: str, help: str | None) -> Callable[[H], H]:
    """Return a decorator registering its function as command ``name``."""

    def register(handler: H) -> H:
        return registry.add(name, handler, help=help)

    return register
