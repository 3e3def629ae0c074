"""The watching routes: SSE of alert revisions and metric samples, the dashboard's files."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from stream.alerts import AlertLog, AlertManager, AlertRules, Signal, Where
from stream.api import create_app
from stream.runtime import ModelBoard, ServedModel


def _events(body: str) -> list[dict]:
    out = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if fields:
            out.append({**fields, "data": json.loads(fields["data"])})
    return out


@pytest.fixture
def live():
    log = AlertLog()
    m = AlertManager("p", AlertRules(cooldown_events=500))
    for at, after in ((1000, 0.12), (1200, 0.4), (9000, 0.3)):
        for a in m.on_signal(Signal("adwin", at, 0.1, after, 1000), Where(f"e{at}", "events", 0, at, 3, ts=float(at))):
            log.append(a)
    board = ModelBoard()
    board.publish(ServedModel("p", "driftmoe", 7, 9100, model=None, metrics={"rolling_accuracy": 0.8, "labelled": 9100.0, "churn": 0.05, "router_e0": 0.75, "router_e3": 0.25}))
    status = lambda: {"pipeline": "p", "events": 9100, "dead_letters": 2, "checkpoint_age_s": 1.5}  # noqa: E731
    return TestClient(create_app(board, log, status=status)), log


def test_alert_stream_sends_every_revision_with_a_resumable_id(live):
    client, _ = live
    r = client.get("/v1/alerts/stream", params={"limit": 3})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    got = _events(r.text)
    assert [(e["id"], e["event"], e["data"]["id"], e["data"]["revision"], e["data"]["count"]) for e in got] == [
        ("1", "alert", 0, 0, 1), ("2", "alert", 0, 1, 2), ("3", "alert", 1, 0, 1)
    ]
    resumed = _events(client.get("/v1/alerts/stream", params={"limit": 1}, headers={"last-event-id": "2"}).text)
    assert [e["id"] for e in resumed] == ["3"]


def test_alert_stream_filters_and_waits_for_new_revisions(live):
    client, log = live
    import threading

    m = AlertManager("p", AlertRules())
    m.next_id = 5
    late = m.on_signal(Signal("adwin", 20_000, 0.1, 0.5, 1000), Where("e", "events", 0, 1, 3, ts=2e4))[0]
    threading.Timer(0.3, log.append, args=(late,)).start()
    got = _events(client.get("/v1/alerts/stream", params={"min_severity": "critical", "limit": 2}).text)
    assert [(e["data"]["id"], e["data"]["severity"]) for e in got] == [(0, "critical"), (5, "critical")]
    assert client.get("/v1/alerts/stream", params={"min_severity": "urgent"}).status_code == 422
    assert client.get("/v1/alerts/stream", headers={"last-event-id": "x; drop"}).status_code == 422


def test_metrics_stream_samples_models_and_progress(live):
    client, _ = live
    got = _events(client.get("/v1/metrics/stream", params={"limit": 2, "every": 0.1}).text)
    assert [e["id"] for e in got] == ["1", "2"] and {e["event"] for e in got} == {"sample"}
    sample = got[0]["data"]
    [model] = sample["models"]
    assert (model["name"], model["version"], model["events_seen"], model["metrics"]["churn"]) == ("p", 7, 9100, 0.05)
    assert model["router"] == {"0": 0.75, "3": 0.25} and "router_e0" not in model["metrics"]
    assert sample["status"] == {"pipeline": "p", "events": 9100, "dead_letters": 2, "checkpoint_age_s": 1.5}
    assert sample["alerts_total"] == 2
    assert client.get("/v1/metrics/stream", params={"every": 0}).status_code == 422


def test_the_dashboard_page_and_its_vendored_files_are_served(live):
    client, _ = live
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for src in ("/static/vendor/uPlot.iife.min.js", "/static/dashboard.js", "/static/vendor/uPlot.min.css", "/static/dashboard.css"):
        assert src in page.text
        assert client.get(src).status_code == 200
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from a CDN
    assert client.get("/static/vendor/uPlot.LICENSE").text.startswith("The MIT License")
    assert client.get("/static/../app.py").status_code == 404
