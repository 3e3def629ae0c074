from __future__ import annotations

import json
import re

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.events import Event, _explain, decode_event, decode_events
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


def test_a_poll_decoded_in_one_call_neither_merges_nor_splits_values():
    good = Event(id="g", x={"f": 1.5}, y=1).to_json()
    halves = [b'{"id": "a", "x": {"f": 1', b'"g": 2}}']  # one event, were they joined by a comma
    two = b'{"id": "b", "x": {"f": 1}}\n{"id": "c", "x": {"f": 1}}'  # two events on two lines
    pretty = b'{"id": "d",\n "x": {"f": 1}}'  # one event over two lines
    values = [good, *halves, two, pretty, b"", b"   ", good]
    out = decode_events(values)
    assert [type(o).__name__ for o in out] == ["Event", "EventError", "EventError", "EventError", "Event", "EventError", "EventError", "Event"]
    assert out[4] == Event(id="d", x={"f": 1.0})
    assert _plain(out) == _plain(decode_events([v])[0] for v in values)
    # and a poll of good events only, the one-call path, gives what the decoder gives each
    clean = [Event(id=f"e{i}", x={"f": float(i), "s": "x"}, y=i % 3).to_json() for i in range(50)]
    assert decode_events(clean) == [msgspec.json.decode(v, type=Event) for v in clean]


def _plain(decoded):
    return [o if isinstance(o, Event) else ("error", o.reason) for o in decoded]


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


@given(st.lists(bodies, min_size=1, max_size=6))
@settings(max_examples=200, deadline=None)
def test_a_poll_decodes_as_its_values_do_one_by_one(body_list):
    values = [json.dumps(b).encode() for b in body_list]
    assert _plain(decode_events(values)) == _plain(decode_events([v])[0] for v in values)


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


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"id": "a", "x": {"f": -Infinity}}', "x['f'] must be finite, got -inf"),
        (b'{"id": "a", "x": {"f": 1}, "y": [1]}', "'y' must be a class label (string, integer or bool), got [1]"),
        (b'{"id": "a", "x": {"f": 1}, "y": NaN}', "'y' must be a class label (string, integer or bool), got nan"),
        (b'{"id": "a", "x": {"f": 1}, "y": ' + b"9" * 400 + b"}", "'y' is an integer too large for a label"),
        (b'{"id": "a", "x": {"f": 1}, "y": 1152921504606846976}', "'y' is an integer too large for a label"),
        (b'{"id": "a", "x": {"f": 1}, "y": 1e300}', "'y' is an integer too large for a label"),
        (b'{"id": "a", "x": [1, 2]}', "'x' must be an object of feature -> value, got list"),
        (b'{"id": "a", "x": {"f": 1}, "key": null, "ts": "now"}', "'ts' must be epoch seconds, got 'now'"),
        (b'{"id": "a\\ud800", "x": {"f": 1}}', "'id' is not valid Unicode: it holds a lone surrogate escape"),
        (b'{"id": "a", "x": {"\\udc00": 1}}', "x: the feature name '\\udc00' is not valid Unicode"),
        (b'{"id": "a", "x": {"f": "\\ud800"}}', "x['f'] is not valid Unicode"),
        (b'{"id": "a", "x": {"f": 1}, "y": "\\ud800"}', "'y' is not valid Unicode"),
        (b'{"id": "a", "x": {"f": 1}, "key": "\\ud800"}', "'key' is not valid Unicode"),
        (b'{"id": "a", "x": {"f": 1}, "' + b"q" * 100 + b'": 1}', "unknown field(s) ['" + "q" * 100 + "']"),
        (b"", "not valid JSON"),
        (b'"just a string"', "event must be a JSON object, got str"),
        (b"null", "event must be a JSON object, got null"),
    ],
)
def test_rejects_labels_and_text_nothing_downstream_could_use(raw, reason):
    [out] = decode_events([raw])
    assert type(out) is EventError and reason in out.reason, out


def test_a_paired_surrogate_escape_is_one_character():
    assert decode_event(b'{"id": "\\ud83d\\ude00", "x": {"f": 1}}').id == "\U0001f600"


def test_integer_labels_keep_their_type_up_to_2_53():
    for raw_y, y in [(b"9007199254740992", 2**53), (b"-9007199254740992", -(2**53)), (b"9007199254740992.0", 2**53)]:
        ev = decode_event(b'{"id": "a", "x": {"f": 1}, "y": ' + raw_y + b"}")
        assert ev.y == y and type(ev.y) is int


def test_a_name_given_twice_keeps_its_last_value_on_both_paths():
    fast = b'{"id": "a", "x": {"f": 1, "f": 2}, "id": "b"}'
    slow = b'\xef\xbb\xbf' + fast  # a byte order mark: msgspec refuses it, the standard library reads it
    assert decode_event(fast) == decode_event(slow) == Event(id="b", x={"f": 2.0})


def test_utf16_and_a_byte_order_mark_are_read_as_the_standard_library_reads_them():
    ev = Event(id="é", x={"f": 1.5, "s": "ü"}, y=1)
    body = json.dumps({"id": "é", "x": {"f": 1.5, "s": "ü"}, "y": 1}, ensure_ascii=False)
    assert decode_events([body.encode("utf-16"), body.encode("utf-8-sig"), body.encode("utf-32")]) == [ev, ev, ev]


def _same(a: object, b: object) -> bool:
    """Equal, and with numbers of the same type (1 == 1.0 would hide a path's conversion)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, EventError):
        return a.reason == b.reason
    if isinstance(a, Event):
        return _same(msgspec.structs.asdict(a), msgspec.structs.asdict(b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b or (a != a and b != b)


# JSON text the generators below splice in: what msgspec refuses and the standard library
# reads (NaN, Infinity, surrogates, huge numbers) besides ordinary values
odd_numbers = st.sampled_from(
    ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "-0", "-0.0", "2.0", "9" * 30, "-" + "9" * 400,
     "9007199254740992", "9007199254740993", "18446744073709551616", "1E2", "0.5"]
)
odd_strings = st.sampled_from(['"\\ud800"', '"\\ud83d\\ude00"', '""', '"a"', '"\\u0000"', '"é"'])


def _text(value: object) -> st.SearchStrategy[str]:
    return st.just(json.dumps(value))


json_text = st.recursive(
    st.one_of(odd_numbers, odd_strings, json_scalars.flatmap(_text)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda items: "[" + ",".join(items) + "]"),
        st.lists(st.tuples(st.sampled_from(['"f"', '"g"', '"\\ud800"', '""']), inner), max_size=3).map(
            lambda pairs: "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"
        ),
    ),
    max_leaves=8,
)

def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"


def _mostly(good: st.SearchStrategy[str], odd: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``good`` four times in five."""
    return st.integers(0, 4).flatmap(lambda i: good if i else odd)


# mostly well-formed events with an odd part here and there, so that both paths get past
# the first checks and the whole contract is exercised
good_number = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**60), 2**60)).map(json.dumps)
good_string = st.text(max_size=4).map(json.dumps)
feature_text = _mostly(
    st.one_of(good_number, good_string, st.sampled_from(["true", "false"])), st.one_of(odd_numbers, odd_strings, json_text)
)
feature_name = _mostly(st.text(max_size=3).map(json.dumps), st.sampled_from(['"\\udc00"', '"\\ud83d\\ude00"']))
x_text = st.lists(st.tuples(feature_name, feature_text), min_size=1, max_size=4).map(_object)
field_text = {
    '"id"': _mostly(st.text(min_size=1, max_size=4).map(json.dumps), st.one_of(odd_strings, json_text)),
    '"x"': _mostly(x_text, json_text),
    '"y"': _mostly(st.one_of(st.integers(-3, 3).map(str), good_string), st.one_of(odd_numbers, odd_strings, json_text)),
    '"ts"': _mostly(good_number, st.one_of(odd_numbers, json_text)),
    '"key"': _mostly(good_string, st.one_of(odd_strings, json_text)),
    '"other"': json_text,
}
optional = st.lists(st.sampled_from(['"y"', '"ts"', '"key"', '"y"', '"ts"', '"key"', '"other"']), max_size=3, unique=True)
event_text = st.tuples(optional, st.integers(0, 9)).flatmap(
    # one time in ten the event lacks its x
    lambda spec: st.tuples(*(st.tuples(st.just(k), field_text[k]) for k in ['"id"', '"x"'][: 1 + (spec[1] > 0)] + spec[0]))
).map(lambda pairs: _object(list(pairs)))


@given(st.one_of(event_text, json_text).map(str.encode))
@settings(max_examples=600, deadline=None)
def test_the_fast_path_agrees_with_the_standard_library_path(raw):
    """Everything msgspec accepts, the reference path accepts as the same event; every
    refusal carries the reference path's reason."""
    [fast] = decode_events([raw])
    assert _same(fast, _explain(raw)), (raw, fast, _explain(raw))


@given(st.binary(max_size=60) | event_text.map(str.encode).flatmap(
    lambda raw: st.integers(0, max(0, len(raw) - 1)).map(lambda cut: raw[:cut])
))
@settings(max_examples=400, deadline=None)
def test_arbitrary_bytes_and_truncated_documents_never_raise(raw):
    [out] = decode_events([raw])
    assert type(out) is EventError or type(out) is Event
    assert _same(out, _explain(raw))


labels = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=6))


@given(
    st.text(min_size=1, max_size=10),
    features,
    labels,
    st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
    st.one_of(st.none(), st.text(max_size=6)),
)
@settings(max_examples=300, deadline=None)
def test_every_field_round_trips_with_its_type(event_id, x, y, ts, key):
    ev = Event(id=event_id, x=x, y=y, ts=ts, key=key)
    [out] = decode_events([ev.to_json()])
    assert _same(out, ev)
