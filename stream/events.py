"""The event contract: decode and validate one record's bytes.

Event: ``{"id": str, "x": {feature: number|string|bool}, "y": label?, "ts": number?,
"key": str?}``. Anything else raises EventError with a reason for the dead-letter topic.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from learners.base import validate_x
from learners.exceptions import InvalidInputError
from stream.exceptions import EventError

EVENT_FIELDS = frozenset({"id", "x", "y", "ts", "key"})
MAX_FEATURES = 10_000


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    x: dict[str, float | int | str | bool]
    y: Any = None
    ts: float | None = None
    key: str | None = None

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"id": self.id, "x": self.x}
        if self.y is not None:
            body["y"] = self.y
        if self.ts is not None:
            body["ts"] = self.ts
        if self.key is not None:
            body["key"] = self.key
        return json.dumps(body, separators=(",", ":")).encode()


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
    if isinstance(y, bool | int | str):
        return y
    if isinstance(y, float) and math.isfinite(y) and y.is_integer():
        return int(y)
    raise EventError(f"'{where}' must be a class label (string, integer or bool), got {y!r}")


def decode_event(raw: bytes, max_bytes: int = 1_000_000) -> Event:
    """Parse one record value into an Event, or raise EventError saying why not."""
    if len(raw) > max_bytes:
        raise EventError(f"event is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventError(f"not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise EventError(f"event must be a JSON object, got {_kind(body)}")
    unknown = set(body) - EVENT_FIELDS
    if unknown:
        raise EventError(
            f"unknown field(s) {sorted(unknown)}; an event has only {sorted(EVENT_FIELDS)}"
        )
    event_id = body.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise EventError("'id' must be a non-empty string")
    x = check_features(body.get("x"))
    y = body.get("y")
    if y is not None:
        y = check_label(y)
    ts = body.get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts)):
        raise EventError(f"'ts' must be epoch seconds, got {ts!r}")
    key = body.get("key")
    if key is not None and not isinstance(key, str):
        raise EventError(f"'key' must be a string, got {_kind(key)}")
    return Event(id=event_id, x=x, y=y, ts=ts, key=key)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
