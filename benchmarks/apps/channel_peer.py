"""The child side of the channel benchmark: echo frames back, or count them.

usage: channel_peer.py BACKEND IMPL MODE COUNT, with BENCH_CHANNEL="<read fd>,<write fd>".
IMPL is "drover" (drover_py._wire.channel) or "raw" (benchmarks/_alt_channels.py).
MODE "echo": send every frame back until end of stream. MODE "sink": receive COUNT
frames, send one frame back, then wait for end of stream. MODE "source": send COUNT
frames as fast as possible, then wait for end of stream.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _alt_channels import RawReader, RawWriter, Reader, Writer  # noqa: E402

from drover_py._env import parse_channel  # noqa: E402
from drover_py._wire import protocol as proto  # noqa: E402
from drover_py._wire.channel import ChannelReader, ChannelWriter  # noqa: E402

# A message type the protocol knows (so the decoder takes its fast path, as real traffic
# does), allowed in this direction by the Decoder built for the benchmark.
PING = proto.STOP
FRAME = proto.encode(PING)


async def main(impl: str, mode: str, count: int) -> None:
    read_fd, write_fd = parse_channel(os.environ["BENCH_CHANNEL"])
    if impl == "drover":
        reader: Reader = ChannelReader(read_fd, frozenset({PING}))
        writer: Writer = ChannelWriter(write_fd)
    else:
        reader, writer = RawReader(read_fd), RawWriter(write_fd)
    if mode == "echo":
        while await reader.receive() is not None:
            await writer.send(FRAME)
    elif mode == "source":
        for _ in range(count):
            await writer.send(FRAME)
        while await reader.receive() is not None:
            pass
    else:
        for _ in range(count):
            if await reader.receive() is None:
                raise SystemExit("stream ended early")
        await writer.send(FRAME)
        while await reader.receive() is not None:
            pass


anyio.run(main, sys.argv[2], sys.argv[3], int(sys.argv[4]), backend=sys.argv[1])
