"""The reporter of the deployment example: a worker script that says how many visits there were.

Every ``$REPORT_EVERY`` seconds it prints the count from the migrated database, until
the master asks it to stop (the linear style of `drover_py.MessageBus`).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import anyio

from drover_py import MessageBus

DATABASE = Path(__file__).with_name("visits.db")


def count() -> int:
    with sqlite3.connect(DATABASE, timeout=5) as db:
        (visits,) = db.execute("SELECT count(*) FROM visits").fetchone()
    return int(visits)


async def report(every: float) -> None:
    while True:
        print(f"reporter: {count()} visits so far", flush=True)
        await anyio.sleep(every)


async def main() -> None:
    async with MessageBus() as mb:
        async with anyio.create_task_group() as tg:
            tg.start_soon(report, float(os.environ.get("REPORT_EVERY", "10")))
            await mb.send_started()
            await mb.wait_stop()  # "stop": no more reports
            tg.cancel_scope.cancel()
        await mb.send_stopped()
        await mb.wait_quit()
        await mb.send_shut_down()


if __name__ == "__main__":
    anyio.run(main)
