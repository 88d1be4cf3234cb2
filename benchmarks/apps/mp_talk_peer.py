"""The reference peer of the custom-message benchmark: multiprocessing.Pipe connections.

BENCH_CHANNEL="<read fd>,<write fd>" are the child ends of two
``multiprocessing.Pipe(duplex=False)`` pairs. Commands (tuples) from the parent:
("echo", n): send back the next n objects (the parent's round trips);
("rtt", n): time n send+recv round trips to the parent, send back [p50, p99] in ns;
("flood", n): send n objects, then wait for the parent's ack; send back the seconds;
("sink", n): receive n objects, then send back n. Ends at end of stream.
"""

from __future__ import annotations

import os
import time
from multiprocessing.connection import Connection

PAYLOAD = {"n": 1}
read_fd, write_fd = (int(x) for x in os.environ["BENCH_CHANNEL"].split(","))
receiver, sender = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
try:
    while True:
        command, n = receiver.recv()
        if command == "echo":
            for _ in range(n):
                sender.send(receiver.recv())
        elif command == "rtt":
            rtts = []
            for _ in range(n):
                t0 = time.perf_counter_ns()
                sender.send(PAYLOAD)
                receiver.recv()
                rtts.append(time.perf_counter_ns() - t0)
            rtts.sort()
            sender.send([rtts[n // 2], rtts[min(n - 1, n * 99 // 100)]])
        elif command == "flood":
            start = time.perf_counter()
            for _ in range(n):
                sender.send(PAYLOAD)
            receiver.recv()
            sender.send(time.perf_counter() - start)
        else:
            for _ in range(n):
                receiver.recv()
            sender.send(n)
except EOFError:
    pass
