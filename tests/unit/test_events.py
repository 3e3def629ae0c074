from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.events import Event, decode_event, decode_events
from stream.exceptions import EventError


def test_decodes_a_full_event():
    raw = b'{"id": "a1", "x": {"f": 1.5, "c": "red", "b": true}, "y": 1, "ts": 1700000000, "key": "k"}'
    ev = decode_event(raw)
    assert ev == Event(id="a1", x={"f": 1.5, "c": "red", "b": True}, y=1, ts=1700000000, key="k")
    assert decode_event(ev.to_json()) == ev


def test_integral_float_label_becomes_int():
    assert decode_event(b'{"id": "a", "x": {"f": 1}, "y": 2.0}').y == 2


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'{"x": {"f": 1}}', "'id' must be a non-empty string"),
        (b'{"id": "a"}', "'x' must be an object"),
        (b'{"id": "a", "x": {}}', "'x' has no features"),
        (b'{"id": "a", "x": {"f": [1]}}', "x['f'] must be a number, string or bool, got list"),
        (b'{"id": "a", "x": {"f": NaN}}', "x['f'] must be finite"),
        (b'{"id": "a", "x": {"f": Infinity}}', "x['f'] must be finite"),
        (b'{"id": "a", "x": {"f": 1}, "y": 0.5}', "'y' must be a class label"),
        (b'{"id": "a", "x": {"f": 1}, "y": {"a": 1}}', "'y' must be a class label"),
        (b'{"id": "a", "x": {"f": 1}, "extra": 1}', "unknown field(s) ['extra']"),
        (b'{"id": "a", "x": {"f": 1}, "ts": "now"}', "'ts' must be epoch seconds"),
        (b'{"id": "a", "x": {"f": 1}, "key": 5}', "'key' must be a string"),
    ],
)
def test_rejects_with_a_reason(raw, reason):
    with pytest.raises(EventError) as info:
        decode_event(raw)
    assert reason in info.value.reason


def test_oversized_event_is_rejected_before_parsing():
    raw = json.dumps({"id": "a", "x": {"f": 1.0}, "pad": "z" * 200}).encode()
    with pytest.raises(EventError, match=r"event is \d+ bytes; the limit is 100"):
        decode_event(raw, max_bytes=100)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"id": "a", "x": {"f": ' + b"9" * 400 + b"}}", "x['f'] is an integer of 400 digits, too large for a float"),
        (b'{"id": "a", "x": {"f": ' + b"9" * 5000 + b"}}", "not valid JSON: Exceeds the limit"),
        (b'{"id": "a", "x": {"f": 1e400}}', "x['f'] must be finite, got inf"),
        (b'{"id": "a", "x": {"f": "\xff"}}', "not valid JSON: not UTF-8 (byte 0xff at position 24)"),
        (b'{"id": "a", "x": {"f": {"g": 1}}}', "x['f'] must be a number, string or bool, got dict"),
        (b'{"id": "a", "x": {"f": null}}', "x['f'] must be a number, string or bool, got NoneType"),
        (b'{"id": "", "x": {"f": 1}}', "'id' must be a non-empty string"),
        (b'{"id": 7, "x": {"f": 1}}', "'id' must be a non-empty string"),
        (b'{"id": "a", "x": {"f": 1}, "ts": 1e400}', "'ts' must be epoch seconds, got inf"),
        (b'{"id": "a", "x": {"f": 1}, "ts": true}', "'ts' must be epoch seconds, got True"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON: nested too deeply"),
        (b'{"id": "a", "x": {"f": 1}', "not valid JSON"),
    ],
)
def test_rejects_what_breaks_parsers_with_a_reason(raw, reason):
    [out] = decode_events([raw])
    assert isinstance(out, EventError) and reason in out.reason, out
    with pytest.raises(EventError, match=re.escape(reason)):
        decode_event(raw)


def test_a_batch_decodes_each_value_in_order_and_never_raises():
    good = Event(id="g", x={"f": 1.5, "s": "red", "b": False}, y="yes", ts=1.0, key="k")
    values = [good.to_json(), b"nope", b'{"id": "a", "x": {"f": 1}, "y": 3.0}', b"x" * 200]
    out = decode_events(values, max_bytes=100)
    assert out[0] == good
    assert isinstance(out[1], EventError) and out[1].reason.startswith("not valid JSON")
    assert out[2] == Event(id="a", x={"f": 1.0}, y=3)
    assert isinstance(out[3], EventError) and out[3].reason == "event is 200 bytes; the limit is 100"


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=5))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=8)
bodies = st.dictionaries(st.sampled_from(["id", "x", "y", "ts", "key", "other"]), json_values, max_size=5) | json_values


@given(bodies)
@settings(max_examples=300, deadline=None)
def test_the_batch_and_the_one_event_paths_agree_and_never_raise(body):
    raw = json.dumps(body).encode()
    [batch] = decode_events([raw])
    try:
        one = decode_event(raw)
    except EventError as exc:
        assert isinstance(batch, EventError) and batch.reason == exc.reason
    else:
        assert batch == one


features = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.one_of(st.booleans(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)),
    min_size=1, max_size=6,
)


@given(st.text(min_size=1, max_size=10), features, st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=4)))
@settings(max_examples=200, deadline=None)
def test_a_valid_event_round_trips(event_id, x, y):
    ev = Event(id=event_id, x=x, y=y)
    assert decode_event(ev.to_json()) == ev
