"""The command line's parser: the options of serve, run, up, ctl and systemd-unit, and their defaults from the environment."""

from __future__ import annotations

import argparse
import os

from ..serve._options import BACKENDS, DEFAULT_BIND, INTERFACES, LOG_LEVELS, ServeOptions

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
    from .._config.options import KILL_TIMEOUT, OUTPUT_MODES, START_TIMEOUT, STOP_TIMEOUT  # the defaults have one home
    from .._log import FORMAT_ENV, FORMATS

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
    from .._log import FORMAT_ENV, FORMATS

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
