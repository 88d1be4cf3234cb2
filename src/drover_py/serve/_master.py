"""Master side of serving: build a `Master` whose workers serve an app by import string."""

from __future__ import annotations

import dataclasses
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .._checks import check_seconds
from .._config.options import BACKLOG, KILL_TIMEOUT, START_TIMEOUT, STOP_TIMEOUT, UNIX_MODE
from .._config.policies import RecyclePolicy, RestartPolicy
from .._exceptions import ConfigError
from .._supervise.factory import MasterFactory
from .._supervise.master import Master
from ._options import DEFAULT_BIND, RECYCLE_REQUEST, ServeOptions

#: The program every worker runs (a folder of its own: see its docstring).
WORKER_SCRIPT = Path(__file__).with_name("_bin") / "drover_py_serve_worker.py"


def create_master(
    app: str | ServeOptions,
    *,
    count: int | None = None,
    bind: Sequence[str] = (DEFAULT_BIND,),
    env: Mapping[str, object] | None = None,
    preload: bool = False,
    cwd: str | os.PathLike[str] | None = None,
    user: str | int | None = None,
    group: str | int | None = None,
    proctitle: bool | str = True,
    start_timeout: float = START_TIMEOUT,
    stop_timeout: float = STOP_TIMEOUT,
    kill_timeout: float = KILL_TIMEOUT,
    restart: RestartPolicy | None = None,
    heartbeat_timeout: float | None = None,
    recycle: RecyclePolicy | None = None,
    backlog: int = BACKLOG,
    unix_mode: int = UNIX_MODE,
    output: str = "inherit",
) -> Master:
    """Return a new, not yet started `Master` whose workers serve ``app``.

    ``app`` is an import string (``"main:app"``) or `ServeOptions` for the finer
    settings (``factory``, ``interface``, ``backend``, ``max_requests``...). The other
    options are `MasterFactory.create`'s, with ``bind`` defaulting to
    ``127.0.0.1:8000``. ``preload=True`` imports the app's module and its server once,
    in a template process, and forks every worker from it.

    The module is looked for now, so a misspelt name is a `ConfigError`; an error inside
    the module shows when the workers import it (``start()`` raises `WorkerStartError`,
    exit code 3). A worker that answered ``max_requests`` requests is replaced the way
    `Master.restart_worker_by_id` does, the replacement first.
    """
    options = app if isinstance(app, ServeOptions) else ServeOptions(app=app)
    if options.drain_timeout == ServeOptions.drain_timeout:  # the default: most of the stop's deadline
        options = dataclasses.replace(options, drain_timeout=0.9 * check_seconds("stop_timeout", stop_timeout))
    check_importable(options)
    master = MasterFactory.create(
        script=WORKER_SCRIPT,
        count=count,
        env={**(env or {}), **worker_env(options)},
        cwd=cwd,
        user=user,
        group=group,
        proctitle=options.app if proctitle is True else proctitle,
        start_timeout=start_timeout,
        stop_timeout=stop_timeout,
        kill_timeout=kill_timeout,
        restart=restart,
        heartbeat_timeout=heartbeat_timeout,
        recycle=recycle,
        bind=bind,
        backlog=backlog,
        unix_mode=unix_mode,
        preload=preload_modules(options) if preload else False,
        output=output,
    )
    master.handle(RECYCLE_REQUEST, lambda worker_id, payload: master.restart_worker_soon(worker_id))
    return master


def worker_env(options: ServeOptions) -> dict[str, str]:
    """Return what a worker's environment needs: the options, and the app's folder on the path.

    ``PYTHONPATH`` carries ``app_dir`` so that a preload template finds the app too.
    """
    path = os.environ.get("PYTHONPATH")
    return {**options.to_env(), "PYTHONPATH": options.app_dir + (os.pathsep + path if path else "")}


def preload_modules(options: ServeOptions) -> list[str]:
    """Return the modules a template imports for ``options``: the app's, then its server (`_warm`)."""
    return [options.module, "drover_py.serve._warm"]


def check_importable(options: ServeOptions) -> None:
    """Raise `ConfigError` unless the app's top-level module and the server can be found.

    Nothing is imported: the app's code runs only in the workers.
    """
    top = options.module.split(".")[0]
    if (
        importlib.machinery.PathFinder.find_spec(top, [options.app_dir, *sys.path]) is None
        and top not in sys.builtin_module_names
    ):
        raise ConfigError(
            "app", f"no module named {top!r} in {options.app_dir} (run from the app's folder, or set --app-dir)"
        )
    server = "uvicorn" if options.backend == "asyncio" else "hypercorn"
    for needed in (server, "waitress"):
        if importlib.util.find_spec(needed) is None:
            raise ConfigError("backend", f"serving needs {needed}: pip install 'drover-py[serve]'")
