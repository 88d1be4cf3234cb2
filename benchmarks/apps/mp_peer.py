"""The child side of the channel benchmark with multiprocessing.Pipe connections.

usage: mp_peer.py MODE COUNT, with BENCH_CHANNEL="<read fd>,<write fd>": the fds of the
child ends of two ``multiprocessing.Pipe(duplex=False)`` pairs made by the parent.
MODE "echo": send every object back until end of stream. MODE "sink": receive COUNT
objects, send one back, then wait for end of stream. MODE "source": send COUNT objects,
then wait for end of stream.
"""

from __future__ import annotations

import os
import sys
from multiprocessing.connection import Connection

read_fd, write_fd = (int(x) for x in os.environ["BENCH_CHANNEL"].split(","))
receiver, sender = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
mode, count = sys.argv[1], int(sys.argv[2])
try:
    if mode == "echo":
        while True:
            sender.send(receiver.recv())
    elif mode == "source":
        for _ in range(count):
            sender.send({"type": "stop"})
        while True:
            receiver.recv()
    else:
        for _ in range(count):
            obj = receiver.recv()
        sender.send(obj)
        while True:
            receiver.recv()
except EOFError:
    pass
