"""The sans-I/O protocol: round trips, arbitrary splits, garbage, size limit."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drover_py import ProtocolError
from drover_py import _protocol as proto

EXAMPLES = int(os.environ.get("DROVER_PY_FUZZ_EXAMPLES", "300"))
ALL_TYPES = sorted(proto.TO_MASTER | proto.TO_WORKER)


def test_encode_is_one_json_line() -> None:
    frame = proto.encode(proto.STARTED)
    assert frame.endswith(b"\n") and frame.count(b"\n") == 1
    assert json.loads(frame) == {"type": "started"}


def test_decoder_yields_messages_in_order() -> None:
    decoder = proto.Decoder(proto.TO_MASTER)
    data = proto.encode(proto.STARTED) + proto.encode(proto.STOPPED) + proto.encode(proto.SHUT_DOWN)
    assert decoder.feed(data) == [proto.STARTED, proto.STOPPED, proto.SHUT_DOWN]
    assert decoder.pending == 0


def test_partial_frame_waits_for_the_rest() -> None:
    decoder = proto.Decoder(proto.TO_MASTER)
    frame = proto.encode(proto.STARTED)
    assert decoder.feed(frame[:5]) == []
    assert decoder.pending == 5
    assert decoder.feed(frame[5:]) == [proto.STARTED]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"not json\n", "malformed"),
        (b"\xff\xfe\n", "malformed"),
        (b"[1,2]\n", "exactly the key 'type'"),
        (b'{"type":"started","x":1}\n', "exactly the key 'type'"),
        (b'{"type":7}\n', "unknown message type"),
        (b'{"type":"reboot"}\n', "unknown message type 'reboot'"),
        (b'{"type":"stop"}\n', "unknown message type 'stop'"),  # master-bound only
    ],
)
def test_invalid_frames_raise_protocol_error(data: bytes, fragment: str) -> None:
    decoder = proto.Decoder(proto.TO_MASTER)
    with pytest.raises(ProtocolError, match=fragment):
        decoder.feed(data)


def test_decoder_stays_broken_after_an_error() -> None:
    decoder = proto.Decoder(proto.TO_MASTER)
    with pytest.raises(ProtocolError):
        decoder.feed(b"garbage\n")
    with pytest.raises(ProtocolError):
        decoder.feed(proto.encode(proto.STARTED))


def test_valid_frames_before_an_invalid_one_are_delivered_first() -> None:
    decoder = proto.Decoder(proto.TO_MASTER)
    assert decoder.feed(proto.encode(proto.STARTED) + b"junk\n" + proto.encode(proto.STOPPED)) == [proto.STARTED]
    assert isinstance(decoder.error, ProtocolError)
    with pytest.raises(ProtocolError, match="malformed"):
        decoder.feed(b"")


def test_oversized_frame_is_rejected_without_waiting_for_its_end() -> None:
    decoder = proto.Decoder(proto.TO_MASTER, max_size=64)
    with pytest.raises(ProtocolError, match="exceeds the limit of 64"):
        decoder.feed(b"x" * 64)


def test_oversized_complete_frame_is_rejected() -> None:
    decoder = proto.Decoder(proto.TO_MASTER, max_size=16)
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decoder.feed(b'{"type":"started"}\n')


def test_frame_of_exactly_the_limit_is_accepted() -> None:
    frame = proto.encode(proto.STARTED)
    assert proto.Decoder(proto.TO_MASTER, max_size=len(frame)).feed(frame) == [proto.STARTED]


def test_parse_channel_round_trip_and_errors() -> None:
    assert proto.parse_channel(proto.format_channel(5, 9)) == (5, 9)
    for bad in ["", "5", "a,b", "5,5", "-1,3"]:
        with pytest.raises(ValueError):
            proto.parse_channel(bad)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    messages=st.lists(st.sampled_from(ALL_TYPES), max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
)
def test_any_split_of_a_valid_stream_yields_the_same_messages(messages: list[str], cuts: list[int]) -> None:
    stream = b"".join(proto.encode(m) for m in messages)
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    decoder = proto.Decoder(frozenset(ALL_TYPES))
    decoded: list[str] = []
    for start, end in zip(bounds, bounds[1:]):
        decoded.extend(decoder.feed(stream[start:end]))
    assert decoded == messages
    assert decoder.pending == 0


@settings(max_examples=EXAMPLES, deadline=None)
@given(chunks=st.lists(st.binary(max_size=200), max_size=10))
def test_arbitrary_bytes_yield_messages_or_protocol_error(chunks: list[bytes]) -> None:
    decoder = proto.Decoder(proto.TO_MASTER, max_size=128)
    try:
        for chunk in chunks:
            for message in decoder.feed(chunk):
                assert message in proto.TO_MASTER
    except ProtocolError:
        pass
