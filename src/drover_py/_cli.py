"""The ``drover-py`` command line: ``run`` a script as a cluster, ``ctl`` a running one.

Exit codes of ``ctl``: 0 ok, 1 the command failed, 2 bad usage, 3 cannot connect,
4 unauthorized (missing or wrong key). ``run`` exits 0 after a shutdown, 1 when the
workers cannot start or the restart policy gave up.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import TextIO

import anyio

from ._client import ControlClient, ControlConnectError, ControlReply
from ._commands import JSON
from ._control import KEY_ENV

#: Environment variable naming the control socket, for ``run`` and ``ctl``.
SOCKET_ENV = "DROVER_PY_SOCKET"
DEFAULT_SOCKET = "drover-py.sock"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONNECT, EXIT_UNAUTHORIZED = 0, 1, 2, 3, 4


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drover-py",
        description="Run a Python script as a supervised cluster of workers, or command a running one.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="{run,ctl}")

    run = sub.add_parser("run", help="run SCRIPT as a cluster of workers", description="Run SCRIPT as a cluster of workers until SIGTERM/SIGINT (SIGHUP reloads, SIGTTIN/SIGTTOU scale).")
    run.add_argument("script", help="the worker script (it uses drover_py.MessageBus)")
    run.add_argument("args", nargs="*", help="arguments passed to every worker (after --)")
    run.add_argument("-w", "--workers", type=int, default=None, help="number of workers (default: CPU count)")
    run.add_argument("-b", "--bind", action="append", default=[], metavar="ADDR", help="listening socket every worker inherits: HOST:PORT, unix:PATH, fd://N, systemd (repeatable)")
    run.add_argument("--control", default=None, metavar="PATH", help=f"control socket (default: ${SOCKET_ENV} or ./{DEFAULT_SOCKET})")
    run.add_argument("--control-tcp", default=None, metavar="HOST:PORT", help="also serve the control API on TCP (needs a key)")
    run.add_argument("--no-control", action="store_true", help="serve no control API")
    run.add_argument("--key", default=None, help=f"access key (better: ${KEY_ENV}, not visible in ps)")
    run.add_argument("--restart", choices=["off", "on-failure", "always"], default="on-failure", help="restart crashed workers (default: on-failure)")
    run.add_argument("--start-timeout", type=float, default=30.0, metavar="S")
    run.add_argument("--stop-timeout", type=float, default=30.0, metavar="S")
    run.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="event loop of the master")
    run.add_argument("--cwd", default=None, metavar="DIR", help="working directory of the workers")
    run.add_argument("--user", default=None, help="run the workers as this user (name or uid; the master must be root)")
    run.add_argument("--group", default=None, help="run the workers with this group (default: the user's primary group)")
    run.add_argument("--no-proctitle", action="store_true", help="leave process titles alone (they need setproctitle)")

    ctl = sub.add_parser("ctl", help="send a command to a running master (no command: interactive console)", description="Send COMMAND to a running master and print the result; without COMMAND, read commands line by line from stdin. Exit codes: 0 ok, 1 command failed, 2 bad usage, 3 cannot connect, 4 unauthorized.")
    where = ctl.add_mutually_exclusive_group()
    where.add_argument("--socket", default=None, metavar="PATH", help=f"control socket (default: ${SOCKET_ENV} or ./{DEFAULT_SOCKET})")
    where.add_argument("--url", default=None, help="control URL, e.g. http://127.0.0.1:9000")
    ctl.add_argument("--key", default=None, help=f"access key (better: ${KEY_ENV})")
    ctl.add_argument("--master", default=None, help="name of the master when the process serves several")
    ctl.add_argument("--json", action="store_true", help="print the raw JSON reply")
    ctl.add_argument("--timeout", type=float, default=120.0, metavar="S", help="seconds to wait for the reply")
    ctl.add_argument("command", nargs="?", help="e.g. workers, health, help, restart all, scale 4")
    ctl.add_argument("words", nargs=argparse.REMAINDER, help="the command's arguments")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (``python -m drover_py`` exits with it)."""
    ns = _parser().parse_args(argv)
    key = ns.key or os.environ.pop(KEY_ENV, None) or None  # never handed on to workers
    os.environ.pop(KEY_ENV, None)
    if ns.action == "run":
        return _run(ns, key)
    return _ctl(ns, key)


# -- run ----------------------------------------------------------------------------------


def _run(ns: argparse.Namespace, key: str | None) -> int:
    from ._exceptions import DroverError

    try:
        code: int = anyio.run(_run_async, ns, key, backend=ns.backend)
    except DroverError as exc:
        print(f"drover-py run: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:  # a second Ctrl-C before the handlers were installed
        return EXIT_FAILED
    return code


async def _run_async(ns: argparse.Namespace, key: str | None) -> int:
    from ._control import open_control_server
    from ._factory import MasterFactory
    from ._restart import RestartPolicy
    from ._signals import open_signal_handlers

    master = MasterFactory.create(
        script=ns.script,
        count=ns.workers,
        args=ns.args,
        bind=ns.bind,
        restart=None if ns.restart == "off" else RestartPolicy(when=ns.restart),
        start_timeout=ns.start_timeout,
        stop_timeout=ns.stop_timeout,
        cwd=ns.cwd,
        user=ns.user,
        group=ns.group,
        proctitle=not ns.no_proctitle,
    )
    async with master, AsyncExitStack() as stack:
        await stack.enter_async_context(open_signal_handlers(master))
        where: list[str] = []
        if not ns.no_control:
            unix = ns.control or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
            server = await stack.enter_async_context(
                open_control_server(master, unix=unix, tcp=ns.control_tcp, access_key=key)
            )
            where = [f"unix:{server.unix_path}", *([server.url] if server.url else [])]
        await master.start()
        control = f"; control on {' and '.join(where)}" if where else ""
        print(f"drover-py: {master.config.count} workers of {master.config.script.name} started{control}", flush=True)
        await master.supervise()
    print("drover-py: shut down", flush=True)
    return EXIT_OK


# -- ctl ----------------------------------------------------------------------------------


def _ctl(ns: argparse.Namespace, key: str | None) -> int:
    client = ControlClient(
        unix=None if ns.url else (ns.socket or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET),
        url=ns.url,
        key=key,
        timeout=ns.timeout,
    )
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


def _one(client: ControlClient, ns: argparse.Namespace, words: list[str], out: TextIO) -> int:
    command, args = words[0], words[1:]
    try:
        reply: ControlReply = anyio.run(lambda: client.run(command, list(args) or None, master=ns.master))
    except ControlConnectError as exc:
        print(f"drover-py ctl: {exc}", file=sys.stderr)
        return EXIT_CONNECT
    if ns.json:
        print(json.dumps(reply.body, indent=2), file=out)
    if reply.status == 401:
        print(f"drover-py ctl: unauthorized: {reply.error}", file=sys.stderr)
        return EXIT_UNAUTHORIZED
    if not reply.ok:
        print(f"drover-py ctl: {command} failed: {reply.error}", file=sys.stderr)
        return EXIT_FAILED
    if not ns.json:
        result = reply.body.get("result") if isinstance(reply.body, dict) else reply.body
        print(render(result), file=out)
    return EXIT_OK


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
