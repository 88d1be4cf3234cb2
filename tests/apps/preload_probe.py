"""A worker that writes what it found at start-up to $PROBE_DIR/<slot>.json, then serves.

Used to check that a worker forked from a preload template looks like one started by
exec: its own session, environment, fds, signal dispositions, argv, path, random state.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys

import anyio
import preload_marker  # type: ignore[import-not-found]  # noqa: F401  (preloaded by the tests)

from drover_py import MessageBus, inherited_sockets

PROBE_DIR = os.environ["PROBE_DIR"]


def facts() -> dict[str, object]:
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the fd that listed the directory, closed by now
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "sid": os.getsid(0),
        "pgid": os.getpgid(0),
        "fd_kinds": sorted(target.partition(":[")[0] for target in fds.values()),
        "channel": os.environ.get("DROVER_PY_CHANNEL"),
        "sockets": [s.getsockname() for s in inherited_sockets()],
        "socket_fds": [s.fileno() for s in inherited_sockets()],
        "set_by_preload": os.environ.get("SET_BY_PRELOAD"),
        "probe_var": os.environ.get("PROBE_VAR"),
        "sigusr1_default": signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL,
        "sigchld_default": signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL,
        "sigint": {signal.default_int_handler: "python", signal.SIG_IGN: "ignored", signal.SIG_DFL: "default"}.get(
            signal.getsignal(signal.SIGINT), "other"
        ),
        "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "argv": sys.argv,
        "path0": sys.path[0],
        "name": __name__,
        "random": random.random(),
        "root_handlers": len(__import__("logging").getLogger().handlers),
    }


async def main() -> None:
    found = facts()
    async with MessageBus() as mb:
        with open(os.path.join(PROBE_DIR, f"{mb.slot}.json"), "w") as file:
            json.dump(found, file)
        await mb.send_started()
        await anyio.sleep_forever()


anyio.run(main)
