from __future__ import annotations

import json

import pytest

from stream.events import Event, decode_event
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
