"""The sans-I/O protocol: round trips, arbitrary splits, garbage, size limit."""

from __future__ import annotations

import json
import math
import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drover_py import ProtocolError
from drover_py._wire import metrics
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


# -- the "metrics" frame (worker -> master) ----------------------------------------------

METRIC_NAME = st.from_regex(r"[a-z_][a-z0-9_:]{0,20}", fullmatch=True).filter(lambda n: not n.startswith("drover_"))
LABEL_NAME = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(lambda n: n not in {"slot", "master", "le"})
NUMBER = st.integers(min_value=0, max_value=2**40) | st.floats(min_value=0, max_value=1e12, allow_nan=False)


@st.composite
def metric_batches(draw: st.DrawFn) -> tuple[list[metrics.Declaration], dict[str, list[list[object]]]]:
    """Declarations and their series, as a worker's encoder gets them."""
    declare = []
    sections: dict[str, list[list[object]]] = {"counters": [], "gauges": [], "histograms": []}
    for name in draw(st.lists(METRIC_NAME, unique=True, max_size=5)):
        kind = draw(st.sampled_from(metrics.KINDS))
        labels = tuple(draw(st.lists(LABEL_NAME, unique=True, max_size=3)))
        buckets: tuple[float, ...] = ()
        if kind == metrics.HISTOGRAM:
            buckets = tuple(sorted(draw(st.sets(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=8))))
        declare.append(metrics.Declaration(name, kind, draw(st.text(max_size=30)), labels, buckets))
        for values in draw(st.lists(st.tuples(*[st.text(max_size=10)] * len(labels)), unique=True, max_size=4)):
            if kind == metrics.HISTOGRAM:
                counts = draw(st.lists(st.integers(0, 2**31), min_size=len(buckets) + 1, max_size=len(buckets) + 1))
                sections["histograms"].append([name, list(values), counts, draw(st.floats(-1e9, 1e9))])
            elif kind == metrics.COUNTER:
                sections["counters"].append([name, list(values), draw(NUMBER)])
            else:
                sections["gauges"].append(
                    [name, list(values), draw(st.floats(-1e12, 1e12) | st.integers(-(2**40), 2**40))]
                )
    return declare, sections


@settings(max_examples=EXAMPLES, deadline=None)
@given(batch=metric_batches(), limit=st.integers(min_value=200, max_value=metrics.FRAME_TARGET))
def test_metrics_frames_round_trip_in_frames_under_the_limit(
    batch: tuple[list[metrics.Declaration], dict[str, list[list[object]]]], limit: int
) -> None:
    declare, sections = batch
    frames, dropped = metrics.encode_frames(declare, sections, limit)
    assert dropped == 0
    decoder = proto.Decoder(proto.FROM_WORKER)
    got: list[metrics.MetricsBatch] = []
    for frame in frames:
        [data] = decoder.feed(frame)
        assert isinstance(data, proto.Data) and data.type == proto.METRICS and data.size == len(frame)
        batch_ = data.payload
        assert isinstance(batch_, metrics.MetricsBatch)
        entries = len(batch_.declare) + len(batch_.counters) + len(batch_.gauges) + len(batch_.histograms)
        assert len(frame) <= limit or entries == 1  # over the limit only for an entry that fills a frame alone
        got.append(batch_)
    assert [d for b in got for d in b.declare] == declare
    assert [[n, list(v), x] for b in got for n, v, x in b.counters] == sections["counters"]
    assert [[n, list(v), x] for b in got for n, v, x in b.gauges] == sections["gauges"]
    assert [[n, list(v), list(c), s] for b in got for n, v, c, s in b.histograms] == sections["histograms"]


def test_a_batch_too_big_for_one_frame_is_split_in_order() -> None:
    declare = [metrics.Declaration("jobs_total", metrics.COUNTER, "Jobs", ("queue",))]
    series: list[list[object]] = [["jobs_total", [f"queue-{i:04d}-" + "x" * 100], i] for i in range(1000)]
    frames, dropped = metrics.encode_frames(declare, {"counters": series})
    assert dropped == 0 and len(frames) > 5
    assert all(len(frame) <= metrics.FRAME_TARGET for frame in frames)
    decoder = proto.Decoder(proto.FROM_WORKER)
    batches = [data.payload for frame in frames for data in decoder.feed(frame) if isinstance(data, proto.Data)]
    assert all(isinstance(b, metrics.MetricsBatch) for b in batches) and len(batches) == len(frames)
    assert isinstance(batches[0], metrics.MetricsBatch) and batches[0].declare == tuple(declare)
    assert [c[2] for b in batches if isinstance(b, metrics.MetricsBatch) for c in b.counters] == list(range(1000))


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        (b'{"type":"metrics","other":[]}', "unknown keys"),
        (b'{"type":"metrics","declare":{}}', "'declare' must be a list of lists"),
        (b'{"type":"metrics","declare":[["a","counter","h"]]}', "a declaration is"),
        (b'{"type":"metrics","declare":[["9a","counter","h",[]]]}', "invalid metric name"),
        (b'{"type":"metrics","declare":[["drover_x","counter","h",[]]]}', "drover-py's own"),
        (b'{"type":"metrics","declare":[["a","summary","h",[]]]}', "unknown metric kind"),
        (b'{"type":"metrics","declare":[["a","counter",1,[]]]}', "help must be a str"),
        (b'{"type":"metrics","declare":[["a","counter","h",["slot"]]]}', "label name 'slot' is reserved"),
        (b'{"type":"metrics","declare":[["a","histogram","h",["le"],[1]]]}', "label name 'le' is reserved"),
        (b'{"type":"metrics","declare":[["a","counter","h",["x","x"]]]}', "label names repeat"),
        (b'{"type":"metrics","declare":[["a","counter","h",[],[1]]]}', "has buckets"),
        (b'{"type":"metrics","declare":[["a","histogram","h",[],[2,1]]]}', "must increase"),
        (b'{"type":"metrics","declare":[["a","histogram","h",[],[1,Infinity]]]}', "finite"),
        (b'{"type":"metrics","declare":[["a","gauge","h",[]],["a","gauge","h",[]]]}', "declared twice"),
        (b'{"type":"metrics","counters":[["a",[],-1]]}', "finite number >= 0"),
        (b'{"type":"metrics","counters":[["a",[],NaN]]}', "finite number >= 0"),
        (b'{"type":"metrics","counters":[["a",[],true]]}', "finite number >= 0"),
        (b'{"type":"metrics","gauges":[["a",[],"1"]]}', "must be a finite number"),
        (b'{"type":"metrics","gauges":[["a",[1],1]]}', "label values must be a list of str"),
        (b'{"type":"metrics","counters":[["a",[]]]}', "has 3 fields"),
        (b'{"type":"metrics","histograms":[["a",[],[1,-1],0]]}', "ints >= 0"),
        (b'{"type":"metrics","histograms":[["a",[],[],0]]}', "bucket counts must be a list"),
        (b'{"type":"metrics","declare":[["a","counter","h",["q"]]],"counters":[["a",[],1]]}', "does not fit"),
        (b'{"type":"metrics","declare":[["a","counter","h",[]]],"gauges":[["a",[],1]]}', "does not fit"),
        (b'{"type":"metrics","declare":[["a","histogram","h",[],[1]]],"histograms":[["a",[],[1],0]]}', "buckets"),
    ],
)
def test_invalid_metrics_frames_raise_protocol_error(frame: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(fragment)):
        proto.Decoder(proto.FROM_WORKER).feed(frame + b"\n")


def test_only_a_masters_decoder_takes_metrics_frames() -> None:
    frame = b'{"type":"metrics","counters":[]}\n'
    [data] = proto.Decoder(proto.FROM_WORKER).feed(frame)
    assert isinstance(data, proto.Data) and data.type == proto.METRICS
    for allowed in (proto.TO_WORKER, proto.TO_MASTER):
        with pytest.raises(ProtocolError, match="unknown message type 'metrics'"):
            proto.Decoder(allowed).feed(frame)


METRICS_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | METRIC_NAME
    | st.sampled_from(metrics.KINDS),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(["declare", "counters", "gauges", "histograms", "x"]), children, max_size=3)
    ),
    max_leaves=25,
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(body=st.dictionaries(st.sampled_from(["declare", "counters", "gauges", "histograms"]), METRICS_JSON, max_size=4))
def test_any_metrics_frame_is_a_batch_or_a_protocol_error(body: dict[str, object]) -> None:
    frame = (json.dumps({"type": "metrics", **body}) + "\n").encode()
    try:
        [data] = proto.Decoder(proto.FROM_WORKER).feed(frame)
    except ProtocolError:
        return
    assert isinstance(data, proto.Data) and isinstance(data.payload, metrics.MetricsBatch)
    batch = data.payload
    assert all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for _, _, v in batch.counters)
    assert all(math.isfinite(v) for _, _, v in batch.gauges)
