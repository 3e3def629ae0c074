"""Drift alerts: the record people watch, kept in a bounded history and sent to a topic."""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Alert:
    id: int
    pipeline: str
    detector: str
    signal: str
    event_index: int
    event_id: str
    topic: str
    partition: int
    offset: int
    ts: float
    loss_before: float
    loss_after: float
    window: int
    model_version: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()


class AlertLog:
    """Thread-safe bounded history; readers poll by id so none is missed between polls."""

    def __init__(self, maxlen: int = 10_000):
        self._items: deque[Alert] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.total = 0

    def append(self, alert: Alert) -> None:
        with self._lock:
            self._items.append(alert)
            self.total += 1

    def since(self, after_id: int = -1, limit: int = 1000) -> list[Alert]:
        with self._lock:
            return [a for a in self._items if a.id > after_id][:limit]

    def __len__(self) -> int:
        return self.total
