"""The event contract: decode and validate records' bytes.

Event: ``{"id": str, "x": {feature: number|string|bool}, "y": label?, "ts": number?,
"key": str?}``. Anything else raises (or, in a batch, returns) EventError with a reason for
the dead-letter topic.

Beyond JSON's types: numbers are finite (``NaN``, ``Infinity`` and ``1e400``, which
overflows, are refused); an integer label is at most 2**53 in magnitude (past that a
float64 holds it inexactly and not every JSON reader keeps it), and an integral float label
becomes the integer; strings are valid Unicode, since an escaped lone surrogate
(``"\\ud800"``) could not be written back out as UTF-8 (the worker publishes each
event's id); a name given twice in one object keeps its last value, as every JSON parser
does (the C decoder cannot see a duplicate, so both paths keep the last rather than one
refusing it).

The good path is msgspec decoding straight into the typed ``Event`` (types, unknown fields
and number ranges checked in C), then a few checks JSON types cannot say. Anything msgspec
refuses is decoded again with the standard library, only to find the reason in words
that name the field; the two paths accept the same events.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec

from learners.base import validate_x
from learners.exceptions import InvalidInputError
from stream.exceptions import EventError

EVENT_FIELDS = frozenset({"id", "x", "y", "ts", "key"})
MAX_FEATURES = 10_000
#: the largest integer label: float64 and every JSON reader hold integers exactly up to here
MAX_LABEL_INT = 2**53

# module level: msgspec resolves Event's postponed annotations from the module's names
LabelInt = Annotated[int, msgspec.Meta(ge=-MAX_LABEL_INT, le=MAX_LABEL_INT)]


class Event(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    id: str
    # numbers decode as floats: every learner reads a feature as a float, and a float
    # type makes the decoder refuse a number out of float64's range in C
    x: dict[str, bool | float | str]
    y: bool | LabelInt | float | str | None = None
    ts: float | None = None
    key: str | None = None

    def to_json(self) -> bytes:
        return _ENCODER.encode(self)


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Event)


def check_features(x: Any, where: str = "x") -> dict[str, float | int | str | bool]:
    if not isinstance(x, dict):
        raise EventError(f"'{where}' must be an object of feature -> value, got {_kind(x)}")
    if not x:
        raise EventError(f"'{where}' has no features")
    if len(x) > MAX_FEATURES:
        raise EventError(f"'{where}' has {len(x)} features; at most {MAX_FEATURES} are allowed")
    try:
        validate_x(x, where)
    except InvalidInputError as exc:
        raise EventError(str(exc)) from None
    return x


def check_label(y: Any, where: str = "y") -> Any:
    if isinstance(y, bool | str):
        return y
    if isinstance(y, int) or (isinstance(y, float) and math.isfinite(y) and y.is_integer()):
        if abs(y) > MAX_LABEL_INT:
            raise EventError(f"'{where}' is an integer too large for a label: at most 2**53 ({MAX_LABEL_INT}) in magnitude")
        return int(y)
    raise EventError(f"'{where}' must be a class label (string, integer or bool), got {_short(y)}")


def decode_event(raw: bytes, max_bytes: int = 1_000_000) -> Event:
    """Parse one record value into an Event, or raise EventError saying why not."""
    out = decode_events([raw], max_bytes)[0]
    if isinstance(out, EventError):
        raise out
    return out


def decode_events(values: Sequence[bytes], max_bytes: int = 1_000_000, task: str = "classification") -> list[Event | EventError]:
    """Decode a poll's record values: one Event or EventError per value, in order; never raises.

    For ``task="regression"`` the label is a target: any finite number (an integer becomes
    a float), never a string or a bool.
    """
    if task == "regression":
        return [ev if type(ev) is not Event else _as_target(ev) for ev in decode_events(values, max_bytes, "")]
    lenient = task == ""
    out: list[Event | EventError] | None = _decode_lines(values, max_bytes)  # type: ignore[assignment]
    if out is None:
        out = [_decode_one(raw, max_bytes) for raw in values]
    for i, ev in enumerate(out):
        if type(ev) is Event and (not ev.id or not ev.x or len(ev.x) > MAX_FEATURES or (type(ev.y) is float and not lenient)):
            out[i] = _finish(ev)
    return out


def _decode_one(raw: bytes, max_bytes: int) -> Event | EventError:
    """One value through the typed decoder, or the reason it is not an event."""
    if len(raw) > max_bytes:
        return EventError(f"event is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        return _DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _explain(raw)


def _decode_lines(values: Sequence[bytes], max_bytes: int) -> list[Event] | None:
    """All of a poll's values in one call of the C decoder, one value a line, if every one
    of them is a valid event; else None (the caller then decodes each on its own).

    A line is decoded on its own, so values cannot combine into other events; a value
    holding a newline, or none at all, would change the count of lines, so they go the
    one-by-one way.
    """
    if not values or max(map(len, values)) > max_bytes:
        return None
    joined = b"\n".join(values)
    if joined.count(b"\n") != len(values) - 1:
        return None
    try:
        decoded = _DECODER.decode_lines(joined)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return decoded if len(decoded) == len(values) else None


def _as_target(ev: Event) -> Event | EventError:
    y = ev.y
    if y is None or type(y) is float:
        return ev
    if isinstance(y, bool) or not isinstance(y, int):
        return EventError(f"'y' must be a number for a regression pipeline, got {_short(y)}")
    return msgspec.structs.replace(ev, y=float(y))


def _finish(ev: Event) -> Event | EventError:
    """The checks a JSON type cannot express, for the few events that need them."""
    if not ev.id:
        return EventError("'id' must be a non-empty string")
    try:
        check_features(ev.x)
        y = check_label(ev.y) if ev.y is not None else None
    except EventError as exc:
        return exc
    return msgspec.structs.replace(ev, y=y)


def _explain(raw: bytes) -> Event | EventError:
    """Why msgspec refused ``raw``, in the contract's words (or the event, if it is one)."""
    try:
        body = json.loads(raw)
    except UnicodeDecodeError as exc:
        return EventError(f"not valid JSON: not UTF-8 (byte {raw[exc.start]:#04x} at position {exc.start})")
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer past Python's digit limit
        return EventError(f"not valid JSON: {exc}")
    except RecursionError:
        return EventError("not valid JSON: nested too deeply")
    try:
        return _from_body(body)
    except EventError as exc:
        return exc


def _from_body(body: Any) -> Event:
    if not isinstance(body, dict):
        raise EventError(f"event must be a JSON object, got {_kind(body)}")
    unknown = set(body) - EVENT_FIELDS
    if unknown:
        raise EventError(f"unknown field(s) {sorted(unknown)}; an event has only {sorted(EVENT_FIELDS)}")
    event_id = body.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise EventError("'id' must be a non-empty string")
    x = check_features(body.get("x"))
    y = body.get("y")
    if y is not None:
        y = check_label(y)
    ts = body.get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float) or not _finite(ts)):
        raise EventError(f"'ts' must be epoch seconds, got {_short(ts)}")
    key = body.get("key")
    if key is not None and not isinstance(key, str):
        raise EventError(f"'key' must be a string, got {_kind(key)}")
    _check_unicode(event_id, x, y, key)
    # only reached for what msgspec refused and the contract allows: a body with a UTF-8
    # byte order mark, or in UTF-16 or UTF-32, which the standard library detects; keep the
    # two paths' answers the same by returning what msgspec would have
    return Event(id=event_id, x={k: float(v) if type(v) is int else v for k, v in x.items()}, y=y, ts=None if ts is None else float(ts), key=key)


def _check_unicode(event_id: str, x: dict[str, Any], y: Any, key: str | None) -> None:
    # only the standard library lets a lone surrogate escape through, and only as far as here
    def bad(text: str) -> bool:
        try:
            text.encode()
        except UnicodeEncodeError:
            return True
        return False

    lone = "is not valid Unicode: it holds a lone surrogate escape"
    if bad(event_id):
        raise EventError(f"'id' {lone}")
    for k, v in x.items():
        if bad(k):
            raise EventError(f"x: the feature name {k!r} {lone}")
        if isinstance(v, str) and bad(v):
            raise EventError(f"x[{k!r}] {lone}")
    if isinstance(y, str) and bad(y):
        raise EventError(f"'y' {lone}")
    if key is not None and bad(key):
        raise EventError(f"'key' {lone}")


def _finite(v: int | float) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
