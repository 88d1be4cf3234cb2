"""Captured worker output: whole lines, prefixed or logged, never blocking a worker."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drover_py import ConfigError, MasterFactory
from drover_py._supervise.output import LineSplitter, Tail

from .conftest import APPS

CHATTY = APPS / "chatty_worker.py"
LINE = re.compile(rb"^\[chatty_worker\.py slot (\d) id (\d+) pid (\d+)\] (.*)$")
DROPPED = re.compile(rb"drover-py: dropped (\d+) lines")


def test_splitter_keeps_partial_lines_until_complete() -> None:
    splitter = LineSplitter(max_line=8)
    assert splitter.feed(b"ab") == []
    assert splitter.feed(b"c\nde\n\nf") == [b"abc", b"de", b""]
    assert splitter.feed(b"0123456789") == [b"f0123456"]  # cut at max_line
    assert splitter.flush() == b"789"
    assert splitter.flush() is None


@given(
    lines=st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=20),
    cuts=st.lists(st.integers(0, 1000)),
)
def test_any_cut_of_a_stream_gives_the_same_lines(lines: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    splitter = LineSplitter(max_line=64)
    out: list[bytes] = []
    for start, end in zip(bounds, bounds[1:]):
        out.extend(splitter.feed(stream[start:end]))
    assert out == lines and splitter.flush() is None


@given(lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30))
def test_tail_keeps_the_newest_lines_that_fit_its_bounds(lines: list[bytes]) -> None:
    tail = Tail(lines=5, size=64)
    for line in lines:
        tail.add(line)
    fit = 0  # how many of the newest lines fit in 5 lines and 64 bytes (the newest always does)
    while fit < min(5, len(lines)) and sum(map(len, lines[len(lines) - fit - 1 :])) <= 64:
        fit += 1
    kept = lines[len(lines) - fit :] if fit else []
    assert tail.text() == "\n".join(line.decode(errors="backslashreplace") for line in kept)


def test_tail_keeps_the_end_of_an_overlong_line() -> None:
    tail = Tail(lines=5, size=8)
    tail.add(b"first")
    tail.add(b"0123456789abcdef")
    assert tail.text() == "89abcdef"


def test_output_option_is_checked() -> None:
    with pytest.raises(ConfigError, match="output"):
        MasterFactory.create(script=CHATTY, output="tee")


def parse(stream: bytes) -> dict[str, list[bytes]]:
    """Return the captured lines by slot; fail on any line that is not whole and prefixed."""
    by_slot: dict[str, list[bytes]] = {}
    for raw in stream.split(b"\n"):
        match = LINE.match(raw)
        if match is None:
            assert not raw.startswith(b"[chatty"), f"malformed captured line {raw[:120]!r}"
            continue  # the master's own log lines
        by_slot.setdefault(match.group(1).decode(), []).append(match.group(4))
    return by_slot


@pytest.mark.anyio
@pytest.mark.parametrize("preload", [False, True], ids=["exec", "preload"])
async def test_two_chatty_workers_never_interleave_mid_line(
    capfdbinary: pytest.CaptureFixture[bytes], preload: bool
) -> None:
    count = 3000
    master = MasterFactory.create(
        script=CHATTY,
        count=2,
        output="prefix",
        env={"CHATTY": f"lines={count},size=300,extras"},
        stop_timeout=10,
        preload=preload,
    )
    async with master:
        await master.start()
        await master.graceful_shutdown()
    out, err = capfdbinary.readouterr()
    stdout, stderr = parse(out), parse(err)
    for slot in ("0", "1"):
        lines = stdout[slot]
        dropped = sum(int(m.group(1)) for line in stderr.get(slot, []) if (m := DROPPED.search(line)))
        numbered = [line for line in lines if line.startswith(f"w{slot}:".encode())]
        for line in numbered:  # whole lines of this worker only
            assert re.fullmatch(rb"w%s:\d+:x{300}\$" % slot.encode(), line), line[:80]
        indexes = [int(line.split(b":")[1]) for line in numbered]
        assert indexes == sorted(indexes)  # in order
        if dropped == 0:
            assert len(numbered) == count
            assert [len(line) for line in lines if line.startswith(b"L")] == [16384, 16384, 40000 - 32768]
            assert b"junk:\xff\xfe\x00\x1b[31m" in lines
            assert lines[-1] == f"tail{slot}-without-newline".encode()
            assert stderr[slot][:2] == [f"e{slot}:first".encode(), f"e{slot}:second".encode()]
        else:  # the policy: dropped lines are counted, never cut or mixed
            assert len(numbered) + dropped >= count


@pytest.mark.anyio
async def test_log_mode_binds_worker_fields(capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    master = MasterFactory.create(script=CHATTY, count=1, output="log", env={"CHATTY": "lines=3,size=5,extras"})
    async with master:
        await master.start()
        [worker] = master.workers
        await master.graceful_shutdown()
    _, err = capfdbinary.readouterr()
    logged = [line for line in err.split(b"\n") if b"w0:1:xxxxx$" in line]
    assert len(logged) == 1
    for field in (b"stream=stdout", f"worker_id={worker.id}".encode(), b"slot=0", f"pid={worker.pid}".encode()):
        assert field in logged[0]
    assert any(b"e0:second" in line and b"stream=stderr" in line for line in err.split(b"\n"))
    assert any(b"junk:\\xff\\xfe" in line for line in err.split(b"\n"))  # binary shown escaped


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_master_whose_stdout_is_not_read_never_blocks_its_worker(backend: str) -> None:
    lines = 40_000  # 8 MB: far beyond the master's stdout pipe and the sink's buffer
    control, theirs = socket.socketpair()
    with control:
        process = subprocess.Popen(
            [sys.executable, str(APPS / "output_master.py"), backend, str(theirs.fileno()), str(lines)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # the drop notice goes to stderr
            pass_fds=(theirs.fileno(),),
        )
        theirs.close()
        try:
            control.settimeout(30)
            # the worker wrote everything and sent "started" although nobody reads stdout
            assert control.recv(16) == b"ready\n"
            control.send(b"go")
            out, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0
    captured = parse(out)["0"]
    dropped = sum(int(m.group(1)) for line in captured if (m := DROPPED.search(line)))
    numbered = [line for line in captured if line.startswith(b"w0:")]
    assert dropped > 0 and len(numbered) + dropped == lines
