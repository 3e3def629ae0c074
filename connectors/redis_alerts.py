"""The alert history as a capped Redis stream: every revision of every pipeline's alerts.

Workers ``XADD`` each revision with ``MAXLEN ~`` (the stream keeps about ``maxlen`` entries,
trimmed by whole nodes, which costs nothing per add); replicas answer ``GET /v1/alerts``
from it and ``driftline alerts --follow`` tails it with ``XREAD BLOCK``. An entry's id
(``<ms>-<n>``) is the cursor: SSE sends it as the event id, so a reconnecting client
resumes after the last revision it saw.
"""

from __future__ import annotations

from typing import Any

import redis

from connectors.redis_store import _connect, _unavailable_as
from stream.alerts import Alert, latest_alerts

__all__ = ["RedisAlertStream"]


class RedisAlertStream:
    def __init__(self, url: str, *, key: str = "driftline:alerts", maxlen: int = 10_000) -> None:
        self._url = url
        self.key = key
        self.maxlen = maxlen
        self._redis: redis.Redis = _connect(url)

    def append(self, alert: Alert) -> str:
        with _unavailable_as(self._url):
            entry = self._redis.xadd(self.key, {"alert": alert.to_json()}, maxlen=self.maxlen, approximate=True)
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    def read(self, after: str = "0-0", count: int = 100, block_ms: int | None = None) -> list[tuple[str, Alert]]:
        """Revisions after the entry id ``after`` (``"$"``: only new ones), oldest first."""
        with _unavailable_as(self._url):
            answer = self._redis.xread({self.key: after}, count=count, block=block_ms)
        return [(_id(i), Alert.from_dict(_decode(f))) for _, entries in answer or [] for i, f in entries]

    def history(self, count: int | None = None) -> list[tuple[str, Alert]]:
        count = count or self.maxlen
        with _unavailable_as(self._url):
            entries = self._redis.xrevrange(self.key, count=count)
        return [(_id(i), Alert.from_dict(_decode(f))) for i, f in reversed(entries)]

    # the AlertLog interface the HTTP routes read

    def since(self, after_id: int = -1, limit: int = 1000, **filters: Any) -> list[Alert]:
        return latest_alerts((a for _, a in self.history()), after_id, limit, **filters)

    def revisions(self, after: str = "0-0", limit: int = 1000) -> list[tuple[str, Alert]]:
        return self.read(after, limit)

    @property
    def total(self) -> int:
        return sum(1 for _, a in self.history() if a.revision == 0)

    @property
    def counts(self) -> dict[tuple[str, str, str, str], int]:
        """Revisions kept, by (pipeline, kind, state, severity), for Prometheus."""
        out: dict[tuple[str, str, str, str], int] = {}
        for _, a in self.history():
            key = (a.pipeline, a.kind, a.state, a.severity)
            out[key] = out.get(key, 0) + 1
        return out

    def last_id(self) -> str:
        with _unavailable_as(self._url):
            info = self._redis.xrevrange(self.key, count=1)
        return _id(info[0][0]) if info else "0-0"

    def close(self) -> None:
        self._redis.close()


def _id(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _decode(fields: dict[bytes, bytes]) -> dict[str, Any]:
    import json

    return json.loads(fields[b"alert"])
