"""A worker that converses with its master, for the tests of messages and requests.

TALK is a comma-separated list of flags ("flag@N" applies only in slot N):
  sync          use SyncMessageBus (threads) instead of MessageBus
  trio          run on the trio backend (async bus only)
  hello         send {"hello": slot} right after "started"
  ask=NAME      after "started", request NAME from the master with payload {"n": slot}
                and send the outcome as {"asked": NAME, "result": ...} or {"asked": NAME, "error": [type, text]}
  flood         after "started", send {"flood": i} messages without end
  fairness      after "started", send messages until a task started before the first one
                ran, then send {"sends_before_another_task_ran": count} (async bus only)
  rawflood=N    after "started", write N message frames of 4 KiB of payload each straight to
                the channel (no credit)
Every message received is echoed back as {"echo": payload}. Requests answered:
  add {"a", "b"} -> a + b;  fail -> raises ValueError("bad input");
  slow {"seconds"} -> sleeps, then "late";  die -> the process exits with code 9 at once;
  relay {"name", "payload"} -> the answer of the master's handler for name.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import anyio

from drover_py import MessageBus, RemoteError, SyncMessageBus
from drover_py._env import CHANNEL_ENV, parse_channel
from drover_py._wire.protocol import encode_message

SLOT = os.environ.get("DROVER_PY_SLOT")
FLAGS: dict[str, str] = {}
for flag in filter(None, os.environ.get("TALK", "").split(",")):
    name, _, value = flag.partition("=")
    name, _, only = name.partition("@")
    if not only or only == SLOT:
        FLAGS[name] = value


def add(payload: dict[str, int]) -> int:
    return payload["a"] + payload["b"]


def fail(payload: object) -> None:
    raise ValueError("bad input")


def slow_sync(payload: dict[str, float]) -> str:
    time.sleep(payload["seconds"])  # a handler that takes its time
    return "late"


def die(payload: object) -> None:
    os._exit(9)


def write_raw(count: int) -> None:
    write_fd = parse_channel(os.environ[CHANNEL_ENV])[1]
    frame = encode_message({"raw": "x" * 4096})
    os.set_blocking(write_fd, True)
    for _ in range(count):
        os.write(write_fd, frame)


def timeout_of(payload: dict[str, Any]) -> dict[str, Any]:
    """The "relay" request's own timeout, if the master gave one (even a bad one)."""
    return {"timeout": payload["timeout"]} if "timeout" in payload else {}


def outcome(name: str, call: object) -> dict[str, object]:
    return {"asked": name, "result": call}


async def run_async() -> None:
    async with MessageBus() as mb:

        async def echo(payload: object) -> None:
            await mb.send({"echo": payload})

        async def slow(payload: dict[str, float]) -> str:
            await anyio.sleep(payload["seconds"])  # a handler that takes its time
            return "late"

        async def relay(payload: dict[str, object]) -> object:
            return await mb.request(str(payload["name"]), payload.get("payload"), **timeout_of(payload))

        mb.on("message", echo)
        mb.handle("add", add)
        mb.handle("fail", fail)
        mb.handle("slow", slow)
        mb.handle("die", die)
        mb.handle("relay", relay)
        await mb.send_started()
        if "hello" in FLAGS:
            await mb.send({"hello": int(SLOT or 0)})
        if "ask" in FLAGS:
            name = FLAGS["ask"]
            try:
                await mb.send(outcome(name, await mb.request(name, {"n": int(SLOT or 0)}, timeout=10)))
            except RemoteError as exc:
                await mb.send({"asked": name, "error": [exc.error_type, exc.remote_message]})
        if "rawflood" in FLAGS:
            write_raw(int(FLAGS["rawflood"]))
        if "fairness" in FLAGS:
            other_ran = anyio.Event()

            async def other() -> None:
                other_ran.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(other)
                sent = 0
                while not other_ran.is_set():
                    await mb.send({"fill": sent})
                    sent += 1
            await mb.send({"sends_before_another_task_ran": sent})
        if "flood" in FLAGS:
            i = 0
            while True:
                await mb.send({"flood": i})
                i += 1
        await anyio.sleep_forever()  # the bus's defaults answer stop and quit, then exit


def run_sync() -> None:
    with SyncMessageBus() as mb:
        mb.on("message", lambda payload: mb.send({"echo": payload}))
        mb.on("stop", mb.send_stopped)  # wait_quit() below: this worker answers both itself
        mb.handle("add", add)
        mb.handle("fail", fail)
        mb.handle("slow", slow_sync)
        mb.handle("die", die)
        mb.handle("relay", lambda payload: mb.request(payload["name"], payload.get("payload"), **timeout_of(payload)))
        mb.send_started()
        if "hello" in FLAGS:
            mb.send({"hello": int(SLOT or 0)})
        if "ask" in FLAGS:
            name = FLAGS["ask"]
            try:
                mb.send(outcome(name, mb.request(name, {"n": int(SLOT or 0)}, timeout=10)))
            except RemoteError as exc:
                mb.send({"asked": name, "error": [exc.error_type, exc.remote_message]})
        if "flood" in FLAGS:
            i = 0
            while True:
                mb.send({"flood": i})
                i += 1
        mb.wait_quit()
        mb.send_shut_down()


if __name__ == "__main__":
    if "sync" in FLAGS:
        run_sync()
        sys.exit(0)
    anyio.run(run_async, backend="trio" if "trio" in FLAGS else "asyncio")
