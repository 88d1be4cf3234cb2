"""The frozen configuration of a master, the validators that build it, and the defaults.

`MasterConfig` converts and checks every field itself (also on ``attrs.evolve``), so a
configuration is valid however it was made; `MasterFactory.create`, the command line and
``serve`` take their defaults from the constants below.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from .._checks import check_count, check_seconds
from .._exceptions import ConfigError
from .binds import BindSpec, check_binds
from .policies import RecyclePolicy, RestartPolicy

if TYPE_CHECKING:
    from .credentials import RunAs

#: Where workers' output goes: the master's stdout (stderr passes through the master), or
#: captured and prefixed, or captured and logged.
OUTPUT_MODES = ("inherit", "prefix", "log")
#: Seconds a worker has to send "started", by default.
START_TIMEOUT = 30.0
#: Seconds a worker has for its whole graceful stop, by default.
STOP_TIMEOUT = 30.0
#: Seconds between SIGTERM and SIGKILL, by default.
KILL_TIMEOUT = 5.0
#: listen() backlog of the master's sockets, by default.
BACKLOG = 2048
#: Permissions of the Unix socket files the master creates, by default.
UNIX_MODE = 0o660


def _existing_path(option: str, value: object, what: str) -> Path:
    """Return ``value`` as a path that exists (user-expanded, not yet resolved)."""
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(option, f"expected a path (str or os.PathLike), got {type(value).__name__}")
    path = Path(os.fspath(value)).expanduser()
    if not path.exists():
        raise ConfigError(option, f"no such {what}: {str(path)!r}")
    return path


def check_script(value: object) -> Path:
    """Return ``value`` as an absolute path to an existing, readable file."""
    path = _existing_path("script", value, "file")
    if not path.is_file():
        raise ConfigError("script", f"not a regular file: {str(path)!r}")
    if not os.access(path, os.R_OK):
        raise ConfigError("script", f"file is not readable: {str(path)!r}")
    return path.resolve()


def check_env(value: object) -> dict[str, str]:
    """Return ``value`` as a dict of str to str; values are ``str()``-ed, keys must be names."""
    if not isinstance(value, Mapping):
        raise ConfigError("env", f"expected a mapping of names to values, got {type(value).__name__}")
    env: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise ConfigError("env", f"invalid variable name {key!r}: names must be str, not {type(key).__name__}")
        if not key or "=" in key or "\0" in key:
            raise ConfigError("env", f"invalid variable name {key!r}: must be non-empty, without '=' or NUL")
        if item is None:
            raise ConfigError("env", f"value of {key!r} is None (leave the key out instead)")
        if isinstance(item, (bytes, bytearray)):
            raise ConfigError("env", f"value of {key!r} is {type(item).__name__}: decode it to str first")
        try:
            text = str(item)
        except Exception as exc:
            raise ConfigError("env", f"value of {key!r} cannot be str()-ed: {type(exc).__name__}: {exc}") from exc
        if "\0" in text:
            raise ConfigError("env", f"value of {key!r} contains a NUL byte")
        env[key] = text
    return env


def check_args(value: object) -> tuple[str, ...]:
    """Return ``value`` (an iterable of str, not a str itself) as a tuple."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError("args", f"expected a list of strings, got {value!r}")
    args = tuple(value)
    for arg in args:
        if not isinstance(arg, str):
            raise ConfigError("args", f"every argument must be a str, got {arg!r}")
    return args


def check_cwd(value: object) -> Path:
    """Return ``value`` as the absolute path of an existing directory."""
    path = _existing_path("cwd", value, "directory")
    if not path.is_dir():
        raise ConfigError("cwd", f"not a directory: {str(path)!r}")
    return path.resolve()


def check_proctitle(value: object) -> bool | str:
    """Return ``value`` if it is a bool or a non-empty one-line name for process titles."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value.strip() or any(c in value for c in "\0\n\r"):
        raise ConfigError("proctitle", f"expected True, False or a non-empty one-line name, got {value!r}")
    return value


def check_preload(value: object) -> bool | tuple[str, ...]:
    """Return ``value`` as False (off), True (the script's imports) or module names."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError("preload", f"expected True, False or a list of module names, got {value!r}")
    modules = tuple(value)
    for name in modules:
        if not isinstance(name, str) or not all(part.isidentifier() for part in name.split(".")):
            raise ConfigError("preload", f"expected absolute module names such as 'app.models', got {name!r}")
    return modules or False


def check_unix_mode(value: object) -> int:
    """Return ``value`` if it is permission bits (0 .. 0o777)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise ConfigError("unix_mode", f"expected permission bits such as 0o660, got {value!r}")
    return value


def _restart_policy(value: object) -> RestartPolicy | None:
    if value is None or isinstance(value, RestartPolicy):
        return value
    raise ConfigError("restart", f"expected a RestartPolicy or None, got {value!r}")


def _recycle_policy(value: object) -> RecyclePolicy | None:
    if value is None or isinstance(value, RecyclePolicy):
        return value
    raise ConfigError("recycle", f"expected a RecyclePolicy or None, got {value!r}")


def _cwd(value: object) -> Path | None:
    return None if value is None else check_cwd(value)


def _start_timeout(value: object) -> float:
    return check_seconds("start_timeout", value)


def _stop_timeout(value: object) -> float:
    return check_seconds("stop_timeout", value)


def _kill_timeout(value: object) -> float:
    return check_seconds("kill_timeout", value)


def _heartbeat_timeout(value: object) -> float | None:
    return None if value is None else check_seconds("heartbeat_timeout", value)


def _backlog(value: object) -> int:
    return check_count(value, "backlog")


def check_output(value: object) -> str:
    """Return ``value`` if it is one of the output modes."""
    if value not in OUTPUT_MODES:
        raise ConfigError("output", f"expected one of {', '.join(map(repr, OUTPUT_MODES))}, got {value!r}")
    return str(value)


@attrs.frozen(kw_only=True)
class MasterConfig:
    """Validated options of one master (`ConfigError` names a bad one). Build it with `MasterFactory.create`."""

    #: Absolute path of the worker script, run as ``python script *args``.
    script: Path = attrs.field(converter=check_script)
    #: Number of worker slots.
    count: int = attrs.field(converter=check_count)
    #: Variables set in every worker on top of the master's ``os.environ``.
    env: Mapping[str, str] = attrs.field(factory=dict, converter=check_env)
    #: Command-line arguments after the script.
    args: tuple[str, ...] = attrs.field(default=(), converter=check_args)
    #: Working directory of the workers (absolute), or None for the master's.
    cwd: Path | None = attrs.field(default=None, converter=_cwd)
    #: The user and groups workers switch to before the script runs, or None.
    run_as: RunAs | None = None
    #: Process titles (with setproctitle): True, False, or the name to show for the script.
    proctitle: bool | str = attrs.field(default=True, converter=check_proctitle)
    #: Seconds a worker has to send "started".
    start_timeout: float = attrs.field(default=START_TIMEOUT, converter=_start_timeout)
    #: Seconds a worker has for its whole graceful stop (stop -> stopped -> quit -> exit).
    stop_timeout: float = attrs.field(default=STOP_TIMEOUT, converter=_stop_timeout)
    #: Seconds between SIGTERM and SIGKILL when a worker has to be terminated.
    kill_timeout: float = attrs.field(default=KILL_TIMEOUT, converter=_kill_timeout)
    #: Interpreter that runs the script.
    python: str = sys.executable
    #: Seconds without a heartbeat after which a started worker counts as frozen, or None.
    heartbeat_timeout: float | None = attrs.field(default=None, converter=_heartbeat_timeout)
    #: Built-in restart policy, or None to leave restarts to "worker-exit" handlers.
    restart: RestartPolicy | None = attrs.field(default=None, converter=_restart_policy)
    #: Recycling of old or oversized workers, or None.
    recycle: RecyclePolicy | None = attrs.field(default=None, converter=_recycle_policy)
    #: Listening sockets the master creates and every worker inherits, in order.
    bind: tuple[BindSpec, ...] = attrs.field(default=(), converter=check_binds)
    #: listen() backlog of those sockets.
    backlog: int = attrs.field(default=BACKLOG, converter=_backlog)
    #: Permissions of Unix socket files the master creates.
    unix_mode: int = attrs.field(default=UNIX_MODE, converter=check_unix_mode)
    #: Preload mode: False (exec every worker), True (fork from a template that imported
    #: the script's top-level imports), or the names of the modules the template imports.
    preload: bool | tuple[str, ...] = attrs.field(default=False, converter=check_preload)
    #: Where workers' stdout and stderr go: "inherit", "prefix" or "log".
    output: str = attrs.field(default="inherit", converter=check_output)

    def command(self) -> list[str]:
        """Return the argv of a worker."""
        return [self.python, str(self.script), *self.args]

    def display_name(self) -> str:
        """Return how messages name the workers' program: the title's name, else the script's."""
        return self.proctitle if isinstance(self.proctitle, str) else self.script.name

    def title_name(self) -> str | None:
        """Return the name process titles show for the script, or None if titles are off."""
        if self.proctitle is False:
            return None
        return self.script.name if self.proctitle is True else self.proctitle


def default_count() -> int:
    """Return the default worker count: the number of CPUs, at least 1."""
    return os.cpu_count() or 1
