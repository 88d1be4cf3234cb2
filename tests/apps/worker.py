"""A configurable worker for the tests, driven by environment variables.

TEST_BEHAVIOUR is a comma-separated list of flags; "flag@N" applies only in slot N:
  crash_boot        write 25 numbered lines and a last one on stderr, exit with code 3 before "started"
  hang_boot         never send "started"
  ignore_stop       register a "stop" handler that never answers
  slow_stop=S       take S seconds to drain on "stop" before answering
  ignore_term       ignore SIGTERM
  exit_after_start=N  write "exiting with code N" on stderr and exit with code N right after "started"
  garbage           write a malformed frame on the channel after "started"
  oversized         write a frame larger than the limit after "started"
  close_channel     close the channel after "started" and keep running
  send=TYPE         write a raw frame {"type": TYPE} after "started" (e.g. out of order)
  grandchild        spawn a sleeping grandchild in the worker's process group
  trio              run on the trio backend
  default_handlers  register no handlers: use the bus's defaults
  gate=PATH         if PATH.armed exists at boot, send "started" only once PATH exists
  cgroup=DIR        move into the cgroup DIR (its cgroup.procs) before "started"
  eat_memory        on the message "eat", allocate memory until the kernel stops it
TEST_RECORD is a file to which the worker appends "<pid> <event> <slot>" lines.
TEST_TAG, if set, is recorded at boot as the event "tag:<TEST_TAG>".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import anyio

from drover_py import MessageBus
from drover_py._env import CHANNEL_ENV, parse_channel
from drover_py._wire.protocol import MAX_FRAME_SIZE


def parse_flags(text: str, slot: str | None) -> dict[str, str]:
    """Parse "name[@slot][=value],...": a flag with @slot applies only in that slot."""
    flags = {}
    for flag in filter(None, text.split(",")):
        name, _, value = flag.partition("=")
        name, _, only_slot = name.partition("@")
        if not only_slot or only_slot == slot:
            flags[name] = value
    return flags


FLAGS = parse_flags(os.environ.get("TEST_BEHAVIOUR", ""), os.environ.get("DROVER_PY_SLOT"))
RECORD = os.environ.get("TEST_RECORD")


def record(event: str) -> None:
    if RECORD:
        with open(RECORD, "a") as file:
            file.write(f"{os.getpid()} {event} {os.environ.get('DROVER_PY_SLOT')}\n")


def write_raw(data: bytes) -> None:
    write_fd = parse_channel(os.environ[CHANNEL_ENV])[1]
    os.set_blocking(write_fd, True)  # the bus made it non-blocking; write all of it
    with open(write_fd, "wb", closefd=False) as channel:
        channel.write(data)


async def main() -> None:
    if "ignore_term" in FLAGS:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "crash_boot" in FLAGS:
        record("crash")
        for n in range(1, 26):
            print(f"boot line {n}", file=sys.stderr)
        print("crash_boot: giving up before 'started'", file=sys.stderr)
        sys.exit(3)
    if os.environ.get("TEST_TAG"):
        record(f"tag:{os.environ['TEST_TAG']}")
    async with MessageBus() as mb:
        done = anyio.Event()

        async def on_stop() -> None:
            record("stop")
            if "ignore_stop" in FLAGS:
                return
            if "slow_stop" in FLAGS:
                await anyio.sleep(float(FLAGS["slow_stop"]))  # a drain that takes time
            await mb.send_stopped()

        async def on_quit() -> None:
            record("quit")
            await mb.send_shut_down()
            done.set()

        def eat(payload: object) -> None:
            hoard = []
            while payload == "eat":
                hoard.append(bytearray(8 * 1024 * 1024))  # zero-filled, so resident

        if "eat_memory" in FLAGS:
            mb.on("message", eat)
        if "default_handlers" not in FLAGS:
            mb.on("stop", on_stop)
            mb.on("quit", on_quit)
        if "grandchild" in FLAGS:
            child = subprocess.Popen(
                [sys.executable, "-c", "import time; time.sleep(600)"]  # sync-ok: a grandchild that lives until killed
            )
            record(f"grandchild:{child.pid}")
        record("boot")
        if "hang_boot" in FLAGS:
            await anyio.sleep_forever()
        if "gate" in FLAGS and os.path.exists(FLAGS["gate"] + ".armed"):
            while not os.path.exists(FLAGS["gate"]):  # the test opens the gate when it has seen enough
                await anyio.sleep(0.01)  # sync-ok: polls a condition (the master bounds it: start_timeout)
        if "cgroup" in FLAGS:
            with open(os.path.join(FLAGS["cgroup"], "cgroup.procs"), "w") as procs:
                procs.write(str(os.getpid()))
        record("started")  # before sending: the master may answer at once
        await mb.send_started()
        if "exit_after_start" in FLAGS:
            print(f"exiting with code {FLAGS['exit_after_start']}", file=sys.stderr, flush=True)
            os._exit(int(FLAGS["exit_after_start"]))
        if "garbage" in FLAGS:
            write_raw(b"\x00not json at all\n")
        if "oversized" in FLAGS:
            write_raw(b'{"type":"' + b"x" * MAX_FRAME_SIZE + b'"}\n')
        if "send" in FLAGS:
            write_raw(b'{"type":"' + FLAGS["send"].encode() + b'"}\n')
        if "close_channel" in FLAGS:
            read_fd, write_fd = parse_channel(os.environ[CHANNEL_ENV])
            os.close(write_fd)
        await done.wait()
    record("exit")


anyio.run(main, backend="trio" if "trio" in FLAGS else "asyncio")
