"""The sans-I/O protocol: round trips, arbitrary splits, garbage, size limit."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drover_py import ProtocolError
from drover_py._wire import protocol as proto

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
        (b"[1,2]\n", "not an object with a string 'type'"),
        (b'{"type":"started","x":1}\n', "has no keys but 'type'"),
        (b'{"type":7}\n', "not an object with a string 'type'"),
        (b'{"type":"message"}\n', "'message' frame has the keys"),
        (b'{"type":"message","data":1,"x":2}\n', "'message' frame has the keys"),
        (b'{"type":"request","id":-1,"name":"a","data":1}\n', "'id' must be an int"),
        (b'{"type":"request","id":true,"name":"a","data":1}\n', "'id' must be an int"),
        (b'{"type":"request","id":1,"name":"","data":1}\n', "'name' must be a non-empty str"),
        (b'{"type":"response","id":1,"error":"boom"}\n', "'error' must be"),
        (b'{"type":"response","id":1,"data":1,"error":{"type":"E","message":"m"}}\n', "'response' frame"),
        (b'{"type":"credit","bytes":0}\n', "credit must be an int >= 1"),
        (b'{"type":"credit","n":32}\n', "'credit' frame has the keys"),  # the earlier form, counted in frames
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


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    messages=st.lists(st.sampled_from(ALL_TYPES), max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
)
def test_any_split_of_a_valid_stream_yields_the_same_messages(messages: list[str], cuts: list[int]) -> None:
    stream = b"".join(proto.encode(m) for m in messages)
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    decoder = proto.Decoder(frozenset(ALL_TYPES))
    decoded: list[str | proto.Data] = []
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


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(payload=JSON, request_id=st.integers(min_value=0, max_value=2**53 - 1), name=st.text(min_size=1, max_size=50))
def test_conversation_frames_round_trip(payload: object, request_id: int, name: str) -> None:
    decoder = proto.Decoder(proto.TO_WORKER)
    stream = (
        proto.encode_message(payload)
        + proto.encode_request(request_id, name, payload)
        + proto.encode_response(request_id, payload)
        + proto.encode_error(request_id, "ValueError", name)
        + proto.encode_credit(request_id % 1000 + 1)
        + proto.encode(proto.STOP)
    )
    message, request, response, error, credit, stop = decoder.feed(stream)
    assert isinstance(message, proto.Data) and message.type == proto.MESSAGE and message.payload == payload
    assert isinstance(request, proto.Data) and (request.id, request.name, request.payload) == (
        request_id,
        name,
        payload,
    )
    assert isinstance(response, proto.Data) and (response.id, response.payload, response.error) == (
        request_id,
        payload,
        None,
    )
    assert isinstance(error, proto.Data) and error.error == ("ValueError", name)
    assert isinstance(credit, proto.Data) and credit.n == request_id % 1000 + 1
    assert stop == proto.STOP
    # each data frame knows its length, newline included: what it costs in credit
    sizes = [len(proto.encode_message(payload)), len(proto.encode_request(request_id, name, payload))]
    assert [message.size, request.size] == sizes


def _message_frames(payload: object, variant: int) -> bytes:
    """A message frame as we encode it, or as another encoder might, or broken."""
    if variant == 0:
        return proto.encode_message(payload)
    text = json.dumps(payload, ensure_ascii=variant != 1)
    if variant == 1:  # raw UTF-8, not escaped
        return ('{"type":"message","data":' + text + "}\n").encode("utf-8", "surrogatepass")
    if variant == 2:  # spaces
        return ('{"type": "message", "data": ' + text + " }\n").encode()
    if variant == 3:  # junk after the payload
        return ('{"type":"message","data":' + text + ",1}\n").encode()
    return ('{"type":"message","data":' + text + ',"data":1}\n').encode()  # duplicate key: the last counts


def _reference(frame: bytes) -> object:
    """What one message frame decodes to, by json.loads; raise ValueError if it is not one."""
    obj = json.loads(frame)
    if not isinstance(obj, dict) or set(obj) != {"type", "data"} or obj["type"] != "message":
        raise ValueError("not a message frame")
    return obj["data"]


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    frames=st.lists(st.tuples(JSON, st.integers(min_value=0, max_value=4)), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=6),
)
def test_message_frames_decode_as_json_does_in_any_split(frames: list[tuple[object, int]], cuts: list[int]) -> None:
    # The decoder takes the ASCII frames of a read at once; it must agree with json.loads
    # frame by frame, whatever the split, for frames of other encoders and broken ones too.
    encoded = [_message_frames(payload, variant) for payload, variant in frames]
    expected: list[tuple[object, int]] = []
    for frame in encoded:
        try:
            expected.append((_reference(frame), len(frame)))
        except ValueError:
            break
    stream = b"".join(encoded)
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    decoder = proto.Decoder(proto.TO_MASTER)
    decoded: list[tuple[object, int]] = []
    try:
        for start, end in zip(bounds, bounds[1:]):
            for data in decoder.feed(stream[start:end]):
                assert isinstance(data, proto.Data) and data.type == proto.MESSAGE
                decoded.append((data.payload, data.size))
        decoder.feed(b"")
    except ProtocolError:
        assert len(expected) < len(encoded)  # a frame json.loads refuses too
    else:
        assert len(expected) == len(encoded)
    assert decoded == expected


def test_payload_that_is_not_json_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="message payload is not JSON-serialisable"):
        proto.encode_message({1, 2})
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        proto.encode_message(float("nan"))


def test_oversized_payload_is_refused_before_sending() -> None:
    with pytest.raises(ProtocolError, match="over the limit"):
        proto.encode_message("x" * proto.MAX_FRAME_SIZE)
    frame = proto.encode_message("x" * (proto.MAX_FRAME_SIZE - 100))
    assert len(frame) <= proto.MAX_FRAME_SIZE
    [data] = proto.Decoder(proto.TO_MASTER).feed(frame)
    assert isinstance(data, proto.Data) and data.payload == "x" * (proto.MAX_FRAME_SIZE - 100)


def test_long_error_text_is_cut_to_fit_a_frame() -> None:
    [data] = proto.Decoder(proto.TO_MASTER).feed(proto.encode_error(3, "RuntimeError", "y" * 10 * proto.MAX_FRAME_SIZE))
    assert isinstance(data, proto.Data) and data.error is not None and data.error[1].endswith("...")


def test_bad_request_name_is_refused() -> None:
    with pytest.raises(ValueError, match="request name"):
        proto.encode_request(1, "", None)


def test_too_deeply_nested_payload_is_refused_by_the_sender() -> None:
    payload: list[object] = []
    for _ in range(100_000):
        payload = [payload]
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        proto.encode_message(payload)


def test_deeply_nested_payload_is_a_protocol_error_not_a_crash() -> None:
    nested = b"[" * 30_000 + b"]" * 30_000
    for frame in (
        b'{"type":"message","data":' + nested + b"}\n",
        b'{"type":"request","id":1,"name":"a","data":' + nested + b"}\n",
    ):
        with pytest.raises(ProtocolError, match="malformed"):
            proto.Decoder(proto.TO_MASTER).feed(frame)
