"""A worker that writes a lot of output, cut at odd places, for the output capture tests.

CHATTY is a comma-separated list: lines=N (lines "w<slot>:<i>:xxx...x$" on stdout),
size=S (x's per line), extras (a 40 KiB line, a line of binary junk, two lines on stderr,
and an unterminated last line written just before the worker exits).
"""

from __future__ import annotations

import os
import threading

from drover_py import SyncMessageBus

OPTIONS = dict(item.partition("=")[::2] for item in os.environ.get("CHATTY", "").split(",") if item)
SLOT = os.environ["DROVER_PY_SLOT"]


def write(fd: int, data: bytes, step: int = 997) -> None:
    """Write in odd-sized pieces, so the master's reads cut lines anywhere."""
    view = memoryview(data)
    for start in range(0, len(view), step):
        os.write(fd, view[start : start + step])


def main() -> None:
    size = int(OPTIONS.get("size", "100"))
    lines = b"".join(f"w{SLOT}:{i}:".encode() + b"x" * size + b"$\n" for i in range(int(OPTIONS.get("lines", "0"))))
    write(1, lines)
    if "extras" in OPTIONS:
        write(1, b"L" * 40_000 + b"\n")
        write(1, b"junk:\xff\xfe\x00\x1b[31m\n")
        write(2, f"e{SLOT}:first\ne{SLOT}:second\n".encode())
    with SyncMessageBus() as mb:

        def on_quit() -> None:
            if "extras" in OPTIONS:
                os.write(1, f"tail{SLOT}-without-newline".encode())
            mb.send_shut_down()
            os._exit(0)

        mb.on("quit", on_quit)
        mb.send_started()
        threading.Event().wait()  # the reader thread answers stop and quit


if __name__ == "__main__":
    main()
