"""The alert record and the bounded, thread-safe alert history."""

from __future__ import annotations

import json
import threading

from stream.alerts import Alert, AlertLog


def _alert(i: int) -> Alert:
    return Alert(
        id=i, pipeline="p", detector="adwin", signal="loss", event_index=10 * i, event_id=f"e{i}",
        topic="events", partition=0, offset=10 * i, ts=100.0 + i, loss_before=0.125, loss_after=0.5,
        window=1000, model_version=3,
    )  # fmt: skip


def test_json_carries_every_field_compactly():
    raw = _alert(1).to_json()
    assert b" " not in raw
    assert json.loads(raw) == {
        "id": 1, "pipeline": "p", "detector": "adwin", "signal": "loss", "event_index": 10, "event_id": "e1",
        "topic": "events", "partition": 0, "offset": 10, "ts": 101.0, "loss_before": 0.125, "loss_after": 0.5,
        "window": 1000, "model_version": 3, "kind": "drift", "state": "drift", "severity": "low", "count": 1,
        "revision": 0, "last_event_index": -1, "resolved_index": None, "updated_ts": 0.0, "error_now": None,
        "message": "",
    }  # fmt: skip
    assert Alert.from_dict({**json.loads(raw), "added_later": 1}) == _alert(1)


def test_history_is_bounded_but_the_total_counts_everything():
    log = AlertLog(maxlen=4)
    for i in range(10):
        log.append(_alert(i))
    assert len(log) == 10 and log.total == 10
    assert [a.id for a in log.since()] == [6, 7, 8, 9]


def test_since_pages_by_id_oldest_first():
    log = AlertLog()
    for i in range(6):
        log.append(_alert(i))
    assert [a.id for a in log.since(1, 2)] == [2, 3]
    assert [a.id for a in log.since(3)] == [4, 5]
    assert log.since(5) == []


def test_concurrent_appends_lose_nothing():
    log = AlertLog(maxlen=100_000)

    def add(base: int) -> None:
        for i in range(2000):
            log.append(_alert(base + i))

    threads = [threading.Thread(target=add, args=(k * 10_000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.total == 8000
    assert sorted(a.id for a in log.since(-1, 100_000)) == sorted(k * 10_000 + i for k in range(4) for i in range(2000))
