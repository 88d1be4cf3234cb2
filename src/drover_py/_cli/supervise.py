"""``serve`` and ``run``: build the master from the options, serve it until it ends, report errors in one line."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import traceback
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import anyio

from .._exceptions import DroverError
from ..serve._options import DEFAULT_BIND, ServeOptions
from .options import (
    DEFAULT_SOCKET,
    EXIT_ADDRESS_IN_USE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RESTART_LIMIT,
    EXIT_START_FAILED,
    EXIT_USAGE,
    SOCKET_ENV,
)

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup


if TYPE_CHECKING:
    from .._supervise.master import Master


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
    from .._exceptions import BindError, ConfigError, OperationInterruptedError, RestartLimitError

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
    from .._exceptions import ConfigError

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
    from .._config.policies import RecyclePolicy, RestartPolicy

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
        from ..serve import create_master

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
    from .._supervise.factory import MasterFactory

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
    from .._control.signals import open_signal_handlers
    from .._supervise.progress import show_pending, show_progress

    master = _create_master(ns)
    async with master, AsyncExitStack() as stack:
        await stack.enter_async_context(open_signal_handlers(master, drain_delay=ns.drain_delay))
        where: list[str] = []
        if not ns.no_control:
            from .._control.server import open_control_server  # here: h11 and the rest only when used

            unix = ns.control or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
            server = await stack.enter_async_context(
                open_control_server(master, unix=unix, tcp=ns.control_tcp, access_key=key, metrics_tcp=ns.metrics_bind)
            )
            where = [f"unix:{server.unix_path}", *([server.url] if server.url else [])]
            if server.metrics_url is not None:
                where.append(f"metrics on {server.metrics_url}")
        async with show_progress(master, "starting"):
            await master.start()
        control = f"; control on {' and '.join(where)}" if where else ""
        print(f"drover-py: {await _describe(ns, master)}{control}", flush=True)
        await stack.enter_async_context(show_pending(master))
        async with anyio.create_task_group() as tg:
            if ns.action == "serve" and ns.reload:
                from ..serve._watch import watch_and_reload

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
    from ..serve._options import INFO_REQUEST

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
