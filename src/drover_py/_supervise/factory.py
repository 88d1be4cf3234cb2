"""`MasterFactory`: the one way to build a `Master` from user options."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from .._config.credentials import resolve_run_as
from .._config.options import BACKLOG, KILL_TIMEOUT, START_TIMEOUT, STOP_TIMEOUT, UNIX_MODE, MasterConfig, default_count
from .._config.policies import RecyclePolicy, RestartPolicy
from .master import Master


class MasterFactory:
    """Build masters, as drover's ``MasterFactory.create(options)`` does."""

    def __init__(self) -> None:
        raise TypeError("MasterFactory is not instantiated; call MasterFactory.create(...)")

    @staticmethod
    def create(
        *,
        script: str | os.PathLike[str],
        count: int | None = None,
        env: Mapping[str, object] | None = None,
        args: Sequence[str] = (),
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
        bind: Sequence[str] = (),
        backlog: int = BACKLOG,
        unix_mode: int = UNIX_MODE,
        preload: bool | Sequence[str] = False,
        output: str = "inherit",
    ) -> Master:
        """Validate the options and return a new, not yet started `Master`.

        ``script`` must be an existing file; it runs as ``sys.executable script *args``.
        ``count`` defaults to the number of CPUs. ``env`` is merged over ``os.environ``
        for every worker, values ``str()``-ed. ``start_timeout`` bounds the wait for
        "started"; ``stop_timeout`` bounds a worker's whole graceful stop, after which it
        gets SIGTERM and, ``kill_timeout`` seconds later, SIGKILL for its process group.

        ``cwd`` is the workers' working directory (an existing directory; default: the
        master's); relative paths in ``args`` are the script's to resolve from there.
        ``user`` and ``group`` (names or numeric ids, resolved now) make workers drop
        privileges before the script runs: the user's supplementary groups (as
        ``initgroups``), then the gid (``group``, else the user's primary group), then
        the uid; HOME, USER and LOGNAME become the user's unless ``env`` sets them. That
        needs a master running as root, unless the ids are the master's own. Sockets of
        ``bind`` are created by the master, so privileged ports still work.
        ``proctitle`` sets process titles when setproctitle is installed (the
        ``drover-py[proctitle]`` extra; silently skipped otherwise): ``drover-py master:
        app.py [4 workers]`` for this process while the master is open, ``drover-py
        worker 2: app.py`` for the worker in slot 2. A str replaces "app.py"; False
        leaves both titles alone.

        ``heartbeat_timeout`` turns on liveness checks: every worker's bus then sends a
        heartbeat from its event loop every third of that time, and a started worker
        silent for ``heartbeat_timeout`` seconds (frozen, or its loop blocked) is
        terminated and reported with ``reason.detail`` saying so.

        ``restart`` is an optional `RestartPolicy`: without it, your "worker-exit"
        handler decides what happens to a crashed worker (drover's rule). ``recycle`` is
        an optional `RecyclePolicy` replacing workers past a maximum age or memory.

        ``bind`` lists listening sockets the master creates when it opens (``async
        with master``) and every worker inherits (see `inherited_sockets`), kept open
        across reloads, scaling and restarts, closed when the master closes:
        "127.0.0.1:8000", "[::1]:8000" (port 0 picks a free port; read
        ``master.sockets``), "unix:/run/app.sock" (created with ``unix_mode``),
        "fd://3" (adopt an open socket), "systemd" (the sockets of systemd socket
        activation). ``backlog`` is their listen() backlog.

        ``preload`` turns on preload mode (see the preload page of the docs): a template process imports
        ahead, once, what every worker needs, and each worker is forked from it in a few
        milliseconds instead of starting a new interpreter. ``True`` preloads the
        modules the script imports unconditionally at its top level (found without
        running it); a list of module names preloads exactly those. A module that fails
        to import or starts a thread makes the spawn fail with `PreloadError`.

        ``output`` says where workers' stdout and stderr go: "inherit" (the master's
        own, as by default in any subprocess), "prefix" (captured and written through
        the master one whole line at a time, prefixed with the script, slot, worker id
        and pid, so lines of different workers never interleave mid-line) or "log"
        (captured, each line a structlog event bound with ``stream``, ``worker_id``,
        ``slot`` and ``pid``). Captured output never blocks a worker: lines that come
        faster than they can be written are dropped beyond a 1 MiB buffer and counted.

        Raise `ConfigError` (a `ValueError` and `TypeError`) naming the bad option.
        """
        config = MasterConfig(  # converts and checks every option (ConfigError names a bad one)
            script=script,
            count=default_count() if count is None else count,
            env={} if env is None else env,
            args=args,
            cwd=cwd,
            run_as=resolve_run_as(user, group),
            proctitle=proctitle,
            start_timeout=start_timeout,
            stop_timeout=stop_timeout,
            kill_timeout=kill_timeout,
            restart=restart,
            recycle=recycle,
            bind=bind,
            backlog=backlog,
            unix_mode=unix_mode,
            preload=preload,
            output=output,
            heartbeat_timeout=heartbeat_timeout,
        )
        return Master(config)
