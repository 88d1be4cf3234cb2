"""The ``drover-py`` command line: ``serve`` an app, ``run`` a script as a cluster, ``up`` a file of apps, ``ctl`` a running one.

Exit codes of ``ctl``: 0 ok, 1 the command failed (``health``: unhealthy), 2 bad usage,
3 cannot connect, 4 unauthorized (missing or wrong key). ``serve`` and ``run`` exit 0
after a shutdown, 1 when the workers cannot start, 2 on bad usage or a wrong option, 3 when
the restart policy gave up, 4 when an address of ``--bind`` is in use, 130 when interrupted;
so does ``up`` (1: an app could not start or a ``once`` app failed; 2: the file is not valid).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, TextIO

import anyio

from ._exceptions import DroverError
from .serve._options import BACKENDS, DEFAULT_BIND, INTERFACES, LOG_LEVELS, ServeOptions

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup


if TYPE_CHECKING:
    from ._commands import JSON
    from ._control.client import ControlClient
    from ._supervise.master import Master

#: Environment variable the access key is read from (kept out of ``ps``), for ``run``,
#: ``serve`` and ``ctl``; never handed on to workers.
KEY_ENV = "DROVER_PY_KEY"
#: Environment variable naming the control socket, for ``run`` and ``ctl``.
SOCKET_ENV = "DROVER_PY_SOCKET"
DEFAULT_SOCKET = "drover-py.sock"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONNECT, EXIT_UNAUTHORIZED = 0, 1, 2, 3, 4
#: ``serve`` and ``run``: a worker could not start (1), a bad option (2), the restart
#: policy gave up (3), an address or control socket in use (4), interrupted (130).
EXIT_START_FAILED, EXIT_RESTART_LIMIT, EXIT_ADDRESS_IN_USE, EXIT_INTERRUPTED = 1, 3, 4, 130


def _add_master_options(parser: argparse.ArgumentParser, *, default_bind: str | None = None) -> None:
    """Add the options ``run`` and ``serve`` share: workers, sockets, control, policies."""
    from ._config.options import KILL_TIMEOUT, OUTPUT_MODES, START_TIMEOUT, STOP_TIMEOUT  # the defaults have one home
    from ._log import FORMAT_ENV, FORMATS

    where = f" (default: {default_bind})" if default_bind else ""
    parser.add_argument("-w", "--workers", type=int, default=None, help="number of workers (default: CPU count)")
    parser.add_argument(
        "-b",
        "--bind",
        action="append",
        default=[],
        metavar="ADDR",
        help=f"listening socket every worker inherits: HOST:PORT, unix:PATH, fd://N, systemd (repeatable){where}",
    )
    modules = (
        "; --preload=MOD,MOD imports these instead of the script's top-level imports" if default_bind is None else ""
    )
    parser.add_argument(
        "--preload",
        action="store_true",
        help=f"fork workers from a template process that imported the code once (fast start and reload){modules}",
    )
    parser.add_argument(
        "--control", default=None, metavar="PATH", help=f"control socket (default: ${SOCKET_ENV} or ./{DEFAULT_SOCKET})"
    )
    parser.add_argument(
        "--control-tcp", default=None, metavar="HOST:PORT", help="also serve the control API on TCP (needs a key)"
    )
    parser.add_argument("--no-control", action="store_true", help="serve no control API")
    parser.add_argument(
        "--init",
        action="store_true",
        help="run a minimal init in front of the master that reaps orphans and forwards signals (automatic as PID 1)",
    )
    parser.add_argument(
        "--drain-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="on SIGTERM, answer /healthz with 503 and keep serving this long before the graceful shutdown",
    )
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default=None,
        help=f"the supervisor's own log lines on stderr: {', '.join(FORMATS)} (default: ${FORMAT_ENV} or console)",
    )
    parser.add_argument(
        "--metrics-bind",
        default=None,
        metavar="HOST:PORT",
        help="also serve GET /metrics (Prometheus) on this address, without a key, for scrapers",
    )
    parser.add_argument("--key", default=None, help=f"access key (better: ${KEY_ENV}, not visible in ps)")
    parser.add_argument(
        "--restart",
        choices=["off", "on-failure", "always"],
        default="on-failure",
        help="restart crashed workers (default: on-failure)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=START_TIMEOUT,
        metavar="S",
        help=f"seconds a worker has to start (default: {START_TIMEOUT:g})",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=STOP_TIMEOUT,
        metavar="S",
        help=f"seconds a worker has for its graceful stop (default: {STOP_TIMEOUT:g})",
    )
    parser.add_argument(
        "--kill-timeout",
        type=float,
        default=KILL_TIMEOUT,
        metavar="S",
        help=f"seconds from SIGTERM to SIGKILL when a graceful stop ran out (default: {KILL_TIMEOUT:g})",
    )
    parser.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=None,
        metavar="S",
        help="replace a worker whose event loop was silent this long (default: off)",
    )
    parser.add_argument(
        "--max-age",
        type=float,
        default=None,
        metavar="S",
        help="recycle each worker after about this long (the replacement first; default: never)",
    )
    parser.add_argument(
        "--max-rss",
        type=int,
        default=None,
        metavar="BYTES",
        help="recycle a worker whose resident memory grew past this (default: never)",
    )
    parser.add_argument(
        "--output",
        choices=OUTPUT_MODES,
        default=OUTPUT_MODES[0],
        help=f"the workers' stdout and stderr: {', '.join(OUTPUT_MODES)} (default: {OUTPUT_MODES[0]})",
    )
    parser.add_argument("--cwd", default=None, metavar="DIR", help="working directory of the workers")
    parser.add_argument(
        "--user", default=None, help="run the workers as this user (name or uid; the master must be root)"
    )
    parser.add_argument(
        "--group", default=None, help="run the workers with this group (default: the user's primary group)"
    )
    parser.add_argument(
        "--no-proctitle", action="store_true", help="leave process titles alone (they need setproctitle)"
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="drover-py's debug logs, and the traceback behind an error (also $DROVER_PY_DEBUG=1)",
    )


def _add_serve_options(serve: argparse.ArgumentParser) -> None:
    """Add ``serve``'s own options; their defaults and choices are `ServeOptions`'."""
    serve.add_argument("app", metavar="MODULE:ATTR", help="the ASGI or WSGI app, e.g. main:app")
    serve.add_argument(
        "--backend",
        choices=BACKENDS,
        default=ServeOptions.backend,
        help=f"event loop: asyncio serves with uvicorn, trio with hypercorn (default: {ServeOptions.backend})",
    )
    serve.add_argument(
        "--app-dir",
        default=ServeOptions.app_dir,
        metavar="DIR",
        help="folder put first on sys.path to import the app (default: the current directory)",
    )
    serve.add_argument(
        "--factory", action="store_true", help="ATTR is a callable taking no argument that returns the app"
    )
    serve.add_argument(
        "--interface",
        choices=INTERFACES,
        default=ServeOptions.interface,
        help=f"the app's interface (default: {ServeOptions.interface}, said at start)",
    )
    serve.add_argument(
        "--root-path",
        default=ServeOptions.root_path,
        metavar="PATH",
        help="the ASGI root_path, for an app mounted below a path",
    )
    serve.add_argument(
        "--proxy-headers",
        action=argparse.BooleanOptionalAction,
        default=ServeOptions.proxy_headers,
        help="trust X-Forwarded-* from --forwarded-allow-ips (default: on)",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        default=ServeOptions.forwarded_allow_ips,
        metavar="IPS",
        help="comma-separated addresses trusted for proxy headers (default: 127.0.0.1)",
    )
    serve.add_argument(
        "--timeout-keep-alive",
        type=float,
        default=ServeOptions.timeout_keep_alive,
        metavar="S",
        help=f"close a keep-alive connection idle this long (default: {ServeOptions.timeout_keep_alive:g})",
    )
    serve.add_argument(
        "--limit-concurrency",
        type=int,
        default=ServeOptions.limit_concurrency,
        metavar="N",
        help="answer 503 beyond N connections or tasks per worker",
    )
    serve.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=ServeOptions.access_log,
        help="log every request (default: on)",
    )
    serve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=ServeOptions.log_level,
        help=f"the server's log level (default: {ServeOptions.log_level})",
    )
    serve.add_argument(
        "--max-requests",
        type=int,
        default=ServeOptions.max_requests,
        metavar="N",
        help="replace a worker after N requests (its replacement starts first)",
    )
    serve.add_argument(
        "--max-requests-jitter",
        type=int,
        default=ServeOptions.max_requests_jitter,
        metavar="J",
        help="add 0..J to each worker's --max-requests",
    )
    serve.add_argument(
        "--reload", action="store_true", help="reload the workers gracefully when a file changes (development)"
    )
    serve.add_argument(
        "--reload-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="folder to watch (repeatable; default: --app-dir)",
    )
    serve.add_argument(
        "--reload-include",
        action="append",
        default=[],
        metavar="GLOB",
        help="file names to watch (repeatable; default: *.py)",
    )
    serve.add_argument(
        "--reload-exclude", action="append", default=[], metavar="GLOB", help="file names to ignore (repeatable)"
    )


def _add_up(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``up``: the apps of a file (``drover.toml``), each with the options of ``run`` or ``serve``."""
    from ._log import FORMAT_ENV, FORMATS

    up = sub.add_parser(
        "up",
        help="run the apps of a deployment file (drover.toml), in dependency order",
        description="Start the apps of FILE ([apps.NAME] tables with the options of run or serve) in dependency order; run until SIGTERM/SIGINT, which stop them in reverse order (SIGHUP or 'ctl reload-config' applies a changed file).",
    )
    up.add_argument(
        "-c", "--config", default="drover.toml", metavar="FILE", help="the deployment file (default: ./drover.toml)"
    )
    up.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="event loop of the masters")
    up.add_argument(
        "--control", default=None, metavar="PATH", help=f"control socket (default: ${SOCKET_ENV} or ./{DEFAULT_SOCKET})"
    )
    up.add_argument(
        "--control-tcp", default=None, metavar="HOST:PORT", help="also serve the control API on TCP (needs a key)"
    )
    up.add_argument("--no-control", action="store_true", help="serve no control API")
    up.add_argument(
        "--drain-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="on SIGTERM, answer /healthz with 503 and keep serving this long before stopping the apps",
    )
    up.add_argument(
        "--init",
        action="store_true",
        help="run a minimal init in front that reaps orphans and forwards signals (automatic as PID 1)",
    )
    up.add_argument("--key", default=None, help=f"access key (better: ${KEY_ENV}, not visible in ps)")
    up.add_argument(
        "--metrics-bind", default=None, metavar="HOST:PORT", help="also serve GET /metrics (Prometheus) without a key"
    )
    up.add_argument(
        "--log-format",
        choices=FORMATS,
        default=None,
        help=f"the supervisor's own log lines on stderr (default: ${FORMAT_ENV} or console)",
    )
    up.add_argument("--debug", action="store_true", help="drover-py's debug logs, and the traceback behind an error")


def _parser() -> tuple[argparse.ArgumentParser, dict[str, list[str]]]:
    """Return the parser, and the repeatable options' values from the environment by ``dest``."""
    parser = argparse.ArgumentParser(
        prog="drover-py",
        description="Serve an ASGI/WSGI app or run a Python script as a supervised cluster of workers, or command a running one.",
        epilog=f"Every option of run and serve can also come from the environment: {OPTION_ENV_PREFIX}<OPTION>, e.g. {OPTION_ENV_PREFIX}WORKERS=4.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="{serve,run,up,ctl,systemd-unit}")

    serve = sub.add_parser(
        "serve",
        help="serve an ASGI or WSGI app (MODULE:ATTR) with N workers",
        description="Serve the ASGI or WSGI app MODULE:ATTR with N workers until SIGTERM/SIGINT (SIGHUP reloads with zero downtime, SIGTTIN/SIGTTOU scale).",
    )
    _add_serve_options(serve)
    _add_master_options(serve, default_bind=DEFAULT_BIND)

    run = sub.add_parser(
        "run",
        help="run SCRIPT as a cluster of workers",
        description="Run SCRIPT as a cluster of workers until SIGTERM/SIGINT (SIGHUP reloads, SIGTTIN/SIGTTOU scale). Arguments after -- go to every worker.",
    )
    run.add_argument("script", help="the worker script (it uses drover_py.MessageBus)")
    run.add_argument("args", nargs="*", help="arguments passed to every worker (after --)")
    run.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="event loop of the master")
    # --preload=MODULES, rewritten by main(): a bare --preload never takes the script as its value
    run.add_argument("--preload-modules", default=None, metavar="MODULES", help=argparse.SUPPRESS)
    _add_master_options(run)
    from_env = {dest: values for command in (serve, run) for dest, values in _defaults_from_env(command).items()}
    _add_up(sub)

    ctl = sub.add_parser(
        "ctl",
        help="send a command to a running master (no command: interactive console)",
        description="Send COMMAND to a running master and print the result; without COMMAND, read commands line by line from stdin. Exit codes: 0 ok, 1 command failed, 2 bad usage, 3 cannot connect, 4 unauthorized.",
    )
    where = ctl.add_mutually_exclusive_group()
    where.add_argument(
        "--socket", default=None, metavar="PATH", help=f"control socket (default: ${SOCKET_ENV} or ./{DEFAULT_SOCKET})"
    )
    where.add_argument("--url", default=None, help="control URL, e.g. http://127.0.0.1:9000")
    ctl.add_argument("--key", default=None, help=f"access key (better: ${KEY_ENV})")
    ctl.add_argument("--master", default=None, help="name of the master when the process serves several")
    ctl.add_argument("--json", action="store_true", help="print the raw JSON reply")
    ctl.add_argument("--timeout", type=float, default=120.0, metavar="S", help="seconds to wait for the reply")
    ctl.add_argument(
        "command",
        nargs="?",
        help="e.g. workers, health, help, restart all, scale 4; ctl's own: open (the status page), watch (a live table)",
    )
    ctl.add_argument("words", nargs=argparse.REMAINDER, help="the command's arguments")

    unit = sub.add_parser(
        "systemd-unit",
        help="print a systemd service (and socket) unit for a serve or run command",
        description="Print a Type=notify systemd service unit that runs drover-py with the arguments after --, e.g. drover-py systemd-unit --name web --socket 0.0.0.0:8000 -- serve app:app -w 4. TimeoutStopSec covers --drain-delay, --stop-timeout and the kill.",
    )
    unit.add_argument("--name", default="drover-app", help="the unit's name (default: drover-app)")
    unit.add_argument("--description", default=None, help="the unit's description")
    unit.add_argument("--user", default=None, help="run the master as this user (User=)")
    unit.add_argument("--working-directory", default=None, metavar="DIR", help="default: the current directory")
    unit.add_argument(
        "--socket",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="also a socket unit listening here (repeatable); the master adopts it with --bind systemd",
    )
    unit.add_argument("--output-dir", default=None, metavar="DIR", help="write NAME.service (and NAME.socket) here")
    unit.add_argument("arguments", nargs=argparse.REMAINDER, help="-- then the arguments of drover-py serve or run")
    return parser, from_env


#: Options of ``run`` and ``serve`` read from the environment: ``--max-requests`` from
#: ``DROVER_PY_MAX_REQUESTS`` (as ``UVICORN_*`` and ``GUNICORN_CMD_ARGS`` do for theirs).
OPTION_ENV_PREFIX = "DROVER_PY_"
#: Options that have an environment variable of their own, or none.
_NOT_FROM_ENV = {"--key", "--control", "--help"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _defaults_from_env(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Take each option's default from ``DROVER_PY_<OPTION>`` when that is set.

    Return the values of repeatable options instead (argparse would add the command
    line's to a default list; these apply only when the command line gives none).
    """
    repeatable: dict[str, list[str]] = {}
    for action in parser._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        if not longs or longs[0] in _NOT_FROM_ENV:
            continue
        name = OPTION_ENV_PREFIX + longs[0][2:].upper().replace("-", "_")
        text = os.environ.get(name)
        if text is None:
            continue
        try:
            value = _env_value(action, text)
        except ValueError as exc:
            parser.error(f"${name}: {exc}")
        if isinstance(value, list):
            repeatable[action.dest] = value
        else:
            action.default = value
    return repeatable


def _env_value(action: argparse.Action, text: str) -> object:
    if action.nargs == 0:  # a flag: store_true, or --x/--no-x
        if text.lower() not in (*_TRUE, *_FALSE):
            raise ValueError(f"expected one of {', '.join(_TRUE + _FALSE)}, got {text!r}")
        value: object = text.lower() in _TRUE
        return value if action.const is not False else not value
    if isinstance(action, argparse._AppendAction):
        return text.replace(",", " ").split()
    value = action.type(text) if callable(action.type) else text
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"expected one of {', '.join(map(str, action.choices))}, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (``python -m drover_py`` exits with it)."""
    words = list(sys.argv[1:] if argv is None else argv)
    passed: list[str] = []
    if words[:1] == ["run"] and "--" in words:  # everything after -- goes to the workers
        cut = words.index("--")
        words, passed = words[:cut], words[cut + 1 :]
    if words[:1] == ["run"]:
        words = [f"--preload-modules={w.partition('=')[2]}" if w.startswith("--preload=") else w for w in words]
    parser, from_env = _parser()
    ns = parser.parse_args(words)
    for dest, values in from_env.items():
        if getattr(ns, dest, None) == []:  # the command line gave none: the environment's
            setattr(ns, dest, values)
    if ns.action == "run":
        ns.args = [*ns.args, *passed]
    if ns.action == "systemd-unit":
        return _systemd_unit(parser, ns)
    key = ns.key or os.environ.pop(KEY_ENV, None) or None  # never handed on to workers
    os.environ.pop(KEY_ENV, None)
    if ns.action in ("run", "serve", "up"):
        if ns.no_control and ns.metrics_bind:
            parser.error("--metrics-bind is served by the control server: drop --no-control")
        if ns.debug:
            os.environ["DROVER_PY_DEBUG"] = "1"  # before any logger is made (the workers' too)
        if ns.log_format:
            from ._log import FORMAT_ENV

            os.environ[FORMAT_ENV] = ns.log_format
        from . import _pid1

        if _pid1.wanted(ns.init):
            code = _pid1.run_under_init()
            if code is not None:
                return code  # the init: the master's exit code
        if ns.action == "up":
            from ._deploy.up import up

            return up(ns, key)
        return _supervise(ns, key)
    return _ctl(ns, key)


# -- systemd-unit ---------------------------------------------------------------------------


def _systemd_unit(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> int:
    from . import _units

    arguments = ns.arguments[1:] if ns.arguments[:1] == ["--"] else ns.arguments
    if not arguments or arguments[0] not in ("serve", "run"):
        parser.error("systemd-unit: give the drover-py command after --, e.g. -- serve app:app -w 4")
    inner = parser.parse_args(arguments)  # a wrong option of serve or run is refused here, as there
    if ns.socket:
        if any(word == "--bind" or word.startswith("--bind=") for word in arguments):
            parser.error("systemd-unit: with --socket, systemd owns the addresses: drop --bind")
        arguments = [*arguments, "--bind", "systemd"]
    description = ns.description or f"drover-py {shlex.join(arguments[:2])}"
    directory = os.path.abspath(ns.working_directory or os.getcwd())
    seconds = _units.stop_seconds(inner.drain_delay, inner.stop_timeout, inner.kill_timeout)
    units = {
        f"{ns.name}.service": _units.service_unit(
            name=ns.name,
            arguments=arguments,
            description=description,
            working_directory=directory,
            user=ns.user,
            stop_timeout_sec=seconds,
            socket=bool(ns.socket),
        )
    }
    if ns.socket:
        units[f"{ns.name}.socket"] = _units.socket_unit(name=ns.name, description=description, addresses=ns.socket)
    for filename, text in units.items():
        if ns.output_dir is None:
            print(text)
        else:
            path = os.path.join(ns.output_dir, filename)
            with open(path, "w") as file:
                file.write(text)
            print(f"drover-py systemd-unit: wrote {path}")
    return EXIT_OK


# -- run and serve ------------------------------------------------------------------------


def _supervise(ns: argparse.Namespace, key: str | None) -> int:
    return run_reported(ns, lambda: anyio.run(_supervise_async, ns, key, backend=ns.backend), _exit_code)


def run_reported(ns: argparse.Namespace, main: Callable[[], int], exit_code: Callable[[BaseException], int]) -> int:
    """Run ``main`` (an ``anyio.run`` of ``serve``, ``run`` or ``up``); return its exit code.

    drover-py's own errors become one line each on stderr (``--debug``: the traceback
    first) and the exit code ``exit_code`` gives the first; any other error is a bug and
    goes up with its traceback.
    """
    try:
        return main()
    except (DroverError, BaseExceptionGroup) as exc:
        errors = _leaves(exc)
        if not all(isinstance(error, DroverError) for error in errors):
            raise
        if ns.debug:
            traceback.print_exception(exc)
        for error in dict.fromkeys(_as_typed(error) for error in errors):
            print(f"drover-py {ns.action}: {error}", file=sys.stderr)
        return exit_code(errors[0])
    except KeyboardInterrupt:  # a Ctrl-C before the handlers were installed
        print(f"drover-py {ns.action}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _exit_code(error: BaseException) -> int:
    """Return the documented exit code of ``serve``/``run`` for ``error``."""
    from ._exceptions import BindError, ConfigError, OperationInterruptedError, RestartLimitError

    for kind, code in (
        (ConfigError, EXIT_USAGE),
        (RestartLimitError, EXIT_RESTART_LIMIT),
        (BindError, EXIT_ADDRESS_IN_USE),
        (OperationInterruptedError, EXIT_INTERRUPTED),
    ):
        if isinstance(error, kind):
            return code
    return EXIT_START_FAILED


#: Options of the library named otherwise on the command line.
_CLI_NAMES = {"count": "--workers", "script": "SCRIPT", "app": "MODULE:ATTR", "args": "worker arguments"}


def _as_typed(error: BaseException) -> str:
    """Return ``error``'s text, a `ConfigError` naming the option as the user typed it."""
    from ._exceptions import ConfigError

    if isinstance(error, ConfigError):
        name = _CLI_NAMES.get(error.option, "--" + error.option.replace("_", "-"))
        return str(error).replace(f"option {error.option!r}", name, 1)
    return str(error)


def _leaves(exc: BaseException) -> list[BaseException]:
    """Return the exceptions inside ``exc`` (itself, unless it is a group)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _create_master(ns: argparse.Namespace, *, env: Mapping[str, str] | None = None) -> Master:
    """Build the master of ``run`` or ``serve`` from their options (``up`` too, with each app's ``env``)."""
    from ._config.policies import RecyclePolicy, RestartPolicy

    recycle = (
        None if ns.max_age is None and ns.max_rss is None else RecyclePolicy(max_age=ns.max_age, max_rss=ns.max_rss)
    )
    common = {
        "count": ns.workers,
        "env": env,
        "restart": None if ns.restart == "off" else RestartPolicy(when=ns.restart),
        "start_timeout": ns.start_timeout,
        "stop_timeout": ns.stop_timeout,
        "kill_timeout": ns.kill_timeout,
        "heartbeat_timeout": ns.heartbeat_timeout,
        "recycle": recycle,
        "output": ns.output,
        "cwd": ns.cwd,
        "user": ns.user,
        "group": ns.group,
    }
    if ns.action == "serve":
        from .serve import create_master

        options = ServeOptions(
            app=ns.app,
            interface=ns.interface,
            factory=ns.factory,
            app_dir=ns.app_dir,
            backend=ns.backend,
            root_path=ns.root_path,
            proxy_headers=ns.proxy_headers,
            forwarded_allow_ips=ns.forwarded_allow_ips,
            timeout_keep_alive=ns.timeout_keep_alive,
            limit_concurrency=ns.limit_concurrency,
            access_log=ns.access_log,
            log_level=ns.log_level,
            max_requests=ns.max_requests,
            max_requests_jitter=ns.max_requests_jitter,
        )
        return create_master(
            options,
            bind=ns.bind or [DEFAULT_BIND],
            preload=ns.preload,
            proctitle=False if ns.no_proctitle else True,
            **common,
        )
    from ._supervise.factory import MasterFactory

    modules = [name.strip() for name in (ns.preload_modules or "").split(",") if name.strip()]
    return MasterFactory.create(
        script=ns.script,
        args=ns.args,
        bind=ns.bind,
        preload=modules or ns.preload or ns.preload_modules is not None,
        proctitle=not ns.no_proctitle,
        **common,
    )


async def _supervise_async(ns: argparse.Namespace, key: str | None) -> int:
    from ._control.signals import open_signal_handlers
    from ._supervise.progress import show_pending, show_progress

    master = _create_master(ns)
    async with master, AsyncExitStack() as stack:
        await stack.enter_async_context(open_signal_handlers(master, drain_delay=ns.drain_delay))
        where: list[str] = []
        if not ns.no_control:
            from ._control.server import open_control_server  # here: h11 and the rest only when used

            unix = ns.control or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
            server = await stack.enter_async_context(
                open_control_server(master, unix=unix, tcp=ns.control_tcp, access_key=key, metrics_tcp=ns.metrics_bind)
            )
            where = [f"unix:{server.unix_path}", *([server.url] if server.url else [])]
            if server.metrics_address is not None:
                host, port = server.metrics_address
                where.append(f"metrics on http://{f'[{host}]' if ':' in host else host}:{port}/metrics")
        async with show_progress(master, "starting"):
            await master.start()
        control = f"; control on {' and '.join(where)}" if where else ""
        print(f"drover-py: {await _describe(ns, master)}{control}", flush=True)
        await stack.enter_async_context(show_pending(master))
        async with anyio.create_task_group() as tg:
            if ns.action == "serve" and ns.reload:
                from .serve._watch import watch_and_reload

                tg.start_soon(
                    watch_and_reload, master, ns.reload_dir or [ns.app_dir], ns.reload_include, ns.reload_exclude
                )
            await master.supervise()
            tg.cancel_scope.cancel()
    print("drover-py: shut down", flush=True)
    return EXIT_OK


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


async def _describe(ns: argparse.Namespace, master: Master) -> str:
    """Return the line that says what started."""
    workers = _plural(master.config.count, "worker")
    if ns.action == "run":
        return f"{workers} of {master.config.script.name} started"
    from .serve._options import INFO_REQUEST

    how = ""
    try:  # the worker says which interface it found and which server runs it
        info = await master.request(master.workers[0].id, INFO_REQUEST, timeout=5)
    except DroverError:  # gone meanwhile: the line goes without it
        info = None
    if isinstance(info, dict):
        how = f" ({str(info.get('interface', '')).upper()}, {info.get('server')})"
    urls = ", ".join(_url(sock) for sock in master.sockets)
    return f"serving {ns.app}{how} with {workers} on {urls}"


def _url(sock: socket.socket) -> str:
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{address}"
    host = f"[{address[0]}]" if sock.family == socket.AF_INET6 else address[0]
    return f"http://{host}:{address[1]}"


# -- ctl ----------------------------------------------------------------------------------


def _ctl(ns: argparse.Namespace, key: str | None) -> int:
    from ._control.client import ControlClient  # here: serving needs no client (a start imports less)

    client = ControlClient(
        unix=None if ns.url else (ns.socket or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET),
        url=ns.url,
        key=key,
        timeout=ns.timeout,
    )
    if ns.command in ("open", "watch"):
        return _live(client, ns)
    if ns.command is not None:
        return _one(client, ns, [ns.command, *ns.words], sys.stdout)
    interactive = sys.stdin.isatty()
    code = EXIT_OK
    while True:
        if interactive:
            print("drover-py> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            return code
        try:
            words = shlex.split(line)
        except ValueError as exc:
            print(f"drover-py ctl: {exc}", file=sys.stderr)
            continue
        if not words:
            continue
        if words in (["quit"], ["bye"]):
            return code
        code = _one(client, ns, words, sys.stdout)
        if code == EXIT_CONNECT:
            return code  # the master is gone: nothing more to pipe to


def _live(client: ControlClient, ns: argparse.Namespace) -> int:
    """Run ``ctl open`` (the status page) or ``ctl watch`` (a live table) until Ctrl-C."""
    from ._control.client import ControlConnectError
    from ._control.live import ControlRefused, parse_live, run_live

    options = parse_live(ns.command, ns.words)
    try:
        anyio.run(run_live, client, options, ns.master, render)
    except KeyboardInterrupt:  # before the signal handlers were installed
        pass
    except ControlConnectError as exc:
        print(f"drover-py ctl {ns.command}: {exc}", file=sys.stderr)
        return EXIT_CONNECT
    except ControlRefused as exc:
        print(f"drover-py ctl {ns.command}: {exc}", file=sys.stderr)
        return EXIT_UNAUTHORIZED if exc.status == 401 else EXIT_FAILED
    return EXIT_OK


def _one(client: ControlClient, ns: argparse.Namespace, words: list[str], out: TextIO) -> int:
    from ._control.client import ControlConnectError, ControlReply

    command, args = words[0], words[1:]

    async def run() -> ControlReply:
        named = await _named(client, command, args, ns.master)
        return await client.run(command, named if named is not None else (list(args) or None), master=ns.master)

    try:
        reply: ControlReply = anyio.run(run)
    except ControlConnectError as exc:
        print(f"drover-py ctl: {exc}", file=sys.stderr)
        return EXIT_CONNECT
    if ns.json:
        print(json.dumps(reply.body, indent=2), file=out)
    if reply.status == 401:
        print(f"drover-py ctl: unauthorized: {reply.error}", file=sys.stderr)
        return EXIT_UNAUTHORIZED
    if not reply.ok:
        said = [reply.body.get(k) for k in ("output", "stderr_tail")] if isinstance(reply.body, dict) else []
        for text in said:  # what the check or the failed worker printed last, above the one line
            if isinstance(text, str) and text:
                print(text, file=sys.stderr)
        print(f"drover-py ctl: {command} failed: {reply.error}", file=sys.stderr)
        return EXIT_FAILED
    result = reply.body.get("result") if isinstance(reply.body, dict) else reply.body
    if not ns.json:
        print(render(result), file=out)
    if isinstance(result, dict) and result.get("healthy") is False:
        return EXIT_FAILED  # `ctl health` in a probe or a script: unhealthy is a failure
    return EXIT_OK


async def _named(client: ControlClient, command: str, args: list[str], master: str | None) -> JSON:
    """Return ``args`` by name when some are given as ``--name VALUE``, else None (by position).

    The positional ones take the command's parameters in order (its help says which).
    """
    if not any(word.startswith("--") for word in args):
        return None
    described = await client.request("GET", f"/commands/{command}", master=master)
    result = described.body.get("result") if isinstance(described.body, dict) else None
    if not described.ok or not isinstance(result, dict) or not isinstance(result.get("params"), list):
        return None  # the server's reply to the call says what is wrong
    order = [str(p["name"]) for p in result["params"] if isinstance(p, dict)]
    named: dict[str, JSON] = {}
    positional: list[str] = []
    words = iter(args)
    for word in words:
        if not word.startswith("--"):
            positional.append(word)
            continue
        name, equals, value = word[2:].partition("=")
        named[name.replace("-", "_")] = value if equals else next(words, "")
    free = [name for name in order if name not in named]
    if len(positional) > len(free):
        return None  # too many: the server says so
    named.update(zip(free, positional))
    return named


def render(value: JSON) -> str:
    """Return a command's result as readable text: a table, ``key: value`` lines, or text."""
    if value is None:
        return "ok"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
        rows = [row for row in value if isinstance(row, dict)]
        columns: list[str] = []
        for row in rows:
            columns += [str(k) for k in row if str(k) not in columns]
        cells = [[_cell(column, row.get(column)) for column in columns] for row in rows]
        widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
        lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip()]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in cells]
        return "\n".join(lines)
    if isinstance(value, dict):
        if "usage" in value and "help" in value:
            return f"usage: {value['usage']}\n\n{value['help']}"
        width = max((len(str(k)) for k in value), default=0)
        return "\n".join(f"{str(k) + ':':<{width + 1}} {_cell(str(k), v)}" for k, v in value.items())
    return json.dumps(value)


def _cell(column: str, value: JSON) -> str:
    if value is None:
        return "-"
    if column == "rss" and isinstance(value, int) and not isinstance(value, bool):
        return f"{value / 2**20:.1f}M"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)
