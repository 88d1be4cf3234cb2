"""A worker that answers the request "observe" with what it sees of its host environment.

The answer: cwd, argv, real/effective/saved uid and gid, supplementary groups, HOME,
USER, LOGNAME, whether the title variable is still set, and its own command line as the
kernel shows it. Stop and quit get the bus's default handlers. Writes no file, so it
works as an unprivileged user.
"""

from __future__ import annotations

import os
import sys

import anyio

from drover_py import MessageBus


def observe(payload: object) -> dict[str, object]:
    with open("/proc/self/cmdline", "rb") as file:
        cmdline = file.read().decode(errors="replace")
    return {
        "cwd": os.getcwd(),
        "argv": sys.argv,
        "uids": list(os.getresuid()),
        "gids": list(os.getresgid()),
        "groups": sorted(os.getgroups()),
        "env": {name: os.environ.get(name) for name in ("HOME", "USER", "LOGNAME", "DROVER_PY_PROCTITLE")},
        "cmdline": [part for part in cmdline.split("\0") if part],
    }


async def main() -> None:
    async with MessageBus() as mb:
        mb.handle("observe", observe)
        await mb.send_started()
        await anyio.sleep_forever()  # the default "quit" handler ends the process


anyio.run(main)
