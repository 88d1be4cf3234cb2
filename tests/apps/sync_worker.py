"""A synchronous worker (no event loop) using SyncMessageBus; records like worker.py."""

from __future__ import annotations

import os
import threading

from drover_py import SyncMessageBus

RECORD = os.environ.get("TEST_RECORD")


def record(event: str) -> None:
    if RECORD:
        with open(RECORD, "a") as file:
            file.write(f"{os.getpid()} {event} {os.environ.get('DROVER_PY_SLOT')}\n")


serving = threading.Event()
with SyncMessageBus() as mb:

    def on_stop() -> None:
        record("stop")
        serving.clear()
        mb.send_stopped()

    mb.on("stop", on_stop)
    serving.set()
    record("started")  # before sending: the master may answer at once
    mb.send_started()
    mb.wait_quit()
    record("quit")
    mb.send_shut_down()
record("exit")
