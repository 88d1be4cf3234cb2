"""A worker that leaves an orphan: it double-forks a short sleeper (argv names it: ORPHAN_MARKER), then serves."""

from __future__ import annotations

import os
import subprocess
import sys

import anyio

from drover_py import MessageBus


def double_fork() -> None:
    child = os.fork()
    if child == 0:  # the middle process: start the sleeper, then leave it an orphan
        sleeper = "import time; time.sleep(0.5)"  # sync-ok: the orphan's lifetime, not a wait
        subprocess.Popen([sys.executable, "-c", sleeper, os.environ["ORPHAN_MARKER"]])
        os._exit(0)
    os.waitpid(child, 0)


async def main() -> None:
    async with MessageBus() as mb:
        double_fork()
        await mb.send_started()
        await mb.wait_stop()
        await mb.send_stopped()
        await mb.wait_quit()
        await mb.send_shut_down()


anyio.run(main)
