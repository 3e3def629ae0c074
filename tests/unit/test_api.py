"""The HTTP API in-process (FastAPI's TestClient) over a board holding a seeded model."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from connectors.memory import InMemoryLog
from learners.registry import make_learner
from stream.alerts import Alert, AlertLog
from stream.api import create_app
from stream.runtime import ModelBoard, ServedModel
from stream.synth import sea_stream

LEARNER = "river:tree.HoeffdingTreeClassifier"
PROBE = [{"x0": 9.0, "x1": 9.0, "x2": 1.0}, {"x0": 1.0, "x1": 1.0, "x2": 5.0}, {"x0": 5.0, "x1": 3.0, "x2": 5.0}]
KEY = "k" * 24
OFFSETS = {"events:0": 3000}


def _alert(i: int, pipeline: str = "default", detector: str = "adwin") -> Alert:
    return Alert(
        id=i, pipeline=pipeline, detector=detector, signal="loss", event_index=1000 * i, event_id=f"e{i}",
        topic="events", partition=0, offset=1000 * i, ts=1.0 + i, loss_before=0.1, loss_after=0.3,
        window=1000, model_version=i, severity="medium" if i == 3 else "low",
        state="resolved" if i == 4 else "drift", updated_ts=1.0 + i,
    )  # fmt: skip


@pytest.fixture(scope="module")
def model():
    m = make_learner(LEARNER, {}, 0)
    events = list(sea_stream(3000, 5, 10**9))
    m.learn_many([x for x, _ in events], [y for _, y in events])
    return m


def _served(model, version: int = 7, name: str = "default") -> ServedModel:
    return ServedModel(name, LEARNER, version, 3000, model, {"accuracy": 0.9}, dict(OFFSETS), time.time() - 2.0, 3)


@pytest.fixture
def log():
    log = InMemoryLog(default_partitions=1)
    log.create_topic("labels", 1)
    return log


@pytest.fixture
def board(model):
    board = ModelBoard()
    board.publish(_served(model, 6))
    board.publish(_served(model, 7))
    return board


@pytest.fixture
def client(board, log):
    alerts = AlertLog(maxlen=3)
    for i in range(5):
        alerts.append(_alert(i, detector="ddm" if i == 3 else "adwin"))
    status = lambda: {"pipeline": "default", "events": 3000, "dead_letters_by_kind": {"invalid_event": 2}, "checkpoint_age_s": 1.5}  # noqa: E731
    app = create_app(
        board, alerts, max_rows=4, max_body_bytes=10_000, status=status, api_keys=[KEY.encode(), b"other-key-0123456789"],
        labels_sink=log.producer(), lag=lambda: {"default": 42},
    )  # fmt: skip
    return TestClient(app)


def test_predicts_one_row_as_the_model_does(client, model):
    r = client.post("/v1/models/default/predict", json={"x": PROBE[0]})
    assert r.status_code == 200, r.text
    proba = model.predict_proba_one(PROBE[0])
    assert r.json() == {
        "y": model.predict_one(PROBE[0]), "proba": {str(k): v for k, v in proba.items()},
        "version": 7, "events_seen": 3000, "offsets": OFFSETS,
    }  # fmt: skip


def test_predicts_a_batch_in_order(client, model):
    r = client.post("/v1/models/default/predict", json={"rows": PROBE})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == 7 and body["offsets"] == OFFSETS
    assert [p["y"] for p in body["predictions"]] == model.predict_many(PROBE)
    assert body["predictions"][0]["y"] == 1 and body["predictions"][1]["y"] == 0


def test_min_version_ahead_of_the_served_model_is_a_409(client):
    assert client.post("/v1/models/default/predict", params={"min_version": 7}, json={"x": PROBE[0]}).status_code == 200
    r = client.post("/v1/models/default/predict", params={"min_version": 8}, json={"x": PROBE[0]})
    assert r.status_code == 409 and r.json()["detail"] == "model 'default' is at version 7, behind min_version 8; retry shortly"


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"x": {"x0": [1, 2]}}, 422, "x['x0'] must be a number, string or bool, got list"),
        ({"rows": [PROBE[0], {"x0": None}]}, 422, "rows[1]['x0'] must be a number, string or bool, got NoneType"),
        ({"x": {}}, 422, "'x' has no features"),
        ({"rows": []}, 422, "'rows' is empty"),
        ({"x": PROBE[0], "rows": PROBE}, 422, "send exactly one of 'x'"),
        ({"x": PROBE[0], "colour": 1}, 422, "colour"),
        ({"rows": PROBE * 2}, 413, "'rows' has 6 rows; at most 4 per request"),
    ],
)
def test_bad_requests_are_4xx_naming_the_field(client, body, status, detail):
    r = client.post("/v1/models/default/predict", json=body)
    assert r.status_code == status, r.text
    assert detail in r.json()["detail"]


def test_a_400_digit_integer_is_a_422_not_a_500(client):
    raw = b'{"x": {"x0": ' + b"9" * 400 + b"}}"
    r = client.post("/v1/models/default/predict", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"] == "x['x0'] is an integer of 400 digits, too large for a float"


def test_a_body_over_the_limit_is_refused_before_reading(client):
    r = client.post("/v1/models/default/predict", content=b"{" + b" " * 20_000 + b"}", headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit is 10000" in r.json()["detail"]


def test_an_unknown_model_is_404_naming_the_known_ones(client):
    r = client.post("/v1/models/nope/predict", json={"x": PROBE[0]})
    assert r.status_code == 404 and r.json()["detail"] == "no model named 'nope'; models: default"
    assert client.get("/v1/models/nope").status_code == 404
    assert client.get("/v1/models/nope/versions").status_code == 404


def test_health_and_models(client):
    assert client.get("/healthz").json() == {
        "status": "ok", "models": ["default"], "pipeline": "default", "events": 3000,
        "dead_letters_by_kind": {"invalid_event": 2}, "checkpoint_age_s": 1.5,
    }  # fmt: skip
    assert client.get("/readyz").json() == {"status": "ready", "models": {"default": 7}}
    assert client.get("/v1/models").json() == {
        "models": [{"name": "default", "learner": LEARNER, "version": 7, "events_seen": 3000, "metrics": {"accuracy": 0.9}}]
    }


def test_not_ready_until_a_model_is_loaded():
    c = TestClient(create_app(ModelBoard(), AlertLog()))
    assert c.get("/healthz").status_code == 200
    r = c.get("/readyz")
    assert r.status_code == 503 and r.json() == {"detail": "not ready: no model loaded yet"}


def test_one_model_in_detail_with_its_drift_state(client):
    body = client.get("/v1/models/default").json()
    assert 1.5 < body["age_s"] < 60
    assert {k: body[k] for k in ("name", "learner", "version", "events_seen", "offsets", "snapshot_version")} == {
        "name": "default", "learner": LEARNER, "version": 7, "events_seen": 3000, "offsets": OFFSETS, "snapshot_version": 3,
    }  # fmt: skip
    # three kept of five raised; the last is the drift state
    assert body["drift"] == {"alerts": 3, "last_alert": _alert(4).to_dict()}


def test_versions_list_what_was_served_oldest_first(client):
    body = client.get("/v1/models/default/versions").json()
    assert body["name"] == "default" and [v["version"] for v in body["versions"]] == [6, 7]
    assert body["versions"][1]["offsets"] == OFFSETS and body["versions"][1]["learner"] == LEARNER


def test_alerts_page_by_id_from_the_bounded_history(client):
    body = client.get("/v1/alerts").json()
    # five raised, three kept
    assert body["total"] == 5 and [a["id"] for a in body["alerts"]] == [2, 3, 4]
    assert body["alerts"][0] == _alert(2).to_dict()
    assert [a["id"] for a in client.get("/v1/alerts", params={"after": 2, "limit": 1}).json()["alerts"]] == [3]
    assert client.get("/v1/alerts", params={"after": 4}).json()["alerts"] == []
    r = client.get("/v1/alerts", params={"limit": 0})
    assert r.status_code == 422 and "limit" in r.json()["detail"]


def test_alerts_filter_by_field_and_time(client):
    ids = lambda **q: [a["id"] for a in client.get("/v1/alerts", params=q).json()["alerts"]]  # noqa: E731
    assert ids(detector="ddm") == [3]
    assert ids(detector="adwin", pipeline="default") == [2, 4]
    assert ids(pipeline="other") == []
    assert ids(since=4.0) == [3, 4]  # updated_ts = 1 + id
    assert ids(detector="adwin", limit=1) == [2]
    assert ids(severity="medium") == [3] and ids(severity="low") == [2, 3, 4]  # a minimum
    assert ids(state="resolved") == [4] and ids(state="drift") == [2, 3]
    r = client.get("/v1/alerts", params={"severity": "huge"})
    assert r.status_code == 422 and "severity: choose one of low, medium, high, critical" in r.json()["detail"]


def test_labels_need_a_key(client, log):
    body = {"id": "e1", "y": 1}
    r = client.post("/v1/models/default/labels", json=body)
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["detail"] and r.headers["www-authenticate"] == "Bearer"
    r = client.post("/v1/models/default/labels", json=body, headers={"Authorization": "Bearer " + "x" * 24})
    assert r.status_code == 401 and r.json()["detail"] == "the API key is not one of this server's keys"
    r = client.post("/v1/models/default/labels", json=body, headers={"Authorization": f"Basic {KEY}"})
    assert r.status_code == 401
    assert log.consumer(["labels"], "check").poll(10, 50) == []


def test_labels_are_forwarded_to_the_labels_topic(client, log):
    auth = {"Authorization": f"Bearer {KEY}"}
    r = client.post("/v1/models/default/labels", json={"id": "e1", "y": 1}, headers=auth)
    assert r.status_code == 202 and r.json() == {"accepted": 1, "topic": "labels"}
    r = client.post("/v1/models/default/labels", json={"labels": [{"id": "e2", "y": "b"}, {"id": "e3", "y": True}]}, headers=auth)
    assert r.status_code == 202 and r.json()["accepted"] == 2
    got = log.consumer(["labels"], "check").poll(10, 50)
    assert [json.loads(rec.value) for rec in got] == [
        {"pipeline": "default", "id": "e1", "y": 1}, {"pipeline": "default", "id": "e2", "y": "b"},
        {"pipeline": "default", "id": "e3", "y": True},
    ]  # fmt: skip
    assert [rec.key for rec in got] == [b"e1", b"e2", b"e3"]
    for bad, detail in [
        ({"id": "e1"}, "needs both 'id' and 'y'"),
        ({"labels": []}, "'labels' is empty"),
        ({"id": "e1", "y": 2**60}, "too large for a label"),
        ({"id": "e1", "y": 1.5}, "y"),
    ]:
        r = client.post("/v1/models/default/labels", json=bad, headers=auth)
        assert r.status_code == 422 and detail in r.json()["detail"], (bad, r.text)


def test_labels_without_a_topic_to_forward_to_are_a_409(board):
    c = TestClient(create_app(board, AlertLog(), api_keys=[KEY.encode()]))
    r = c.post("/v1/models/default/labels", json={"id": "e1", "y": 1}, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 409 and "forwards no labels" in r.json()["detail"]


def test_reads_can_be_closed_by_configuration(board):
    c = TestClient(create_app(board, AlertLog(), api_keys=[KEY.encode()], open_reads=False))
    for path in ("/v1/models", "/v1/alerts", "/metrics"):
        assert c.get(path).status_code == 401, path
        assert c.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200, path
    assert c.post("/v1/models/default/predict", json={"x": PROBE[0]}).status_code == 401
    assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200


def test_prometheus_metrics(client):
    for _ in range(3):
        client.post("/v1/models/default/predict", json={"x": PROBE[0]})
    client.post("/v1/models/default/predict", json={"rows": PROBE})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    lines = set(r.text.splitlines())
    for line in (
        'driftline_model_version{pipeline="default"} 7.0',
        'driftline_model_events_seen{pipeline="default"} 3000.0',
        'driftline_predict_seconds_count{pipeline="default"} 4.0',
        'driftline_predict_rows_sum{pipeline="default"} 6.0',
        'driftline_events_total{pipeline="default"} 3000.0',
        'driftline_dead_letters_total{pipeline="default",reason="invalid_event"} 2.0',
        'driftline_checkpoint_age_seconds{pipeline="default"} 1.5',
        'driftline_alerts_total{kind="drift",pipeline="default",severity="low",state="drift"} 3.0',
        'driftline_alerts_total{kind="drift",pipeline="default",severity="medium",state="drift"} 1.0',
        'driftline_alerts_total{kind="drift",pipeline="default",severity="low",state="resolved"} 1.0',
        'driftline_consumer_lag{pipeline="default"} 42.0',
    ):
        assert line in lines, (line, r.text)


def test_openapi_documents_every_route(client):
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) >= {
        "/healthz", "/readyz", "/metrics", "/v1/models", "/v1/models/{name}", "/v1/models/{name}/versions",
        "/v1/models/{name}/predict", "/v1/models/{name}/labels", "/v1/alerts",
    }  # fmt: skip
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_the_fast_path_and_the_documented_route_answer_alike(client, monkeypatch):
    path = "/v1/models/default/predict"
    for body in ({"x": PROBE[0]}, {"rows": PROBE}, {"x": PROBE[1], "id": "q1"}):
        fast = client.post(path, params={"min_version": 7}, json=body)
        # a query parameter the fast path does not know sends the request on to the route
        routed = client.post(path, params={"min_version": 7, "via": "route"}, json=body)
        assert fast.status_code == routed.status_code == 200
        assert fast.content == routed.content  # exact: the same bytes from the same function
    import stream.api.routes.predict as route

    def broken(*args):
        raise RuntimeError("the route was called")

    monkeypatch.setattr(route, "answer", broken)
    assert client.post(path, json={"x": PROBE[0]}).status_code == 200  # answered in front of FastAPI
    with pytest.raises(RuntimeError, match="the route was called"):
        client.post(path, params={"via": "route"}, json={"x": PROBE[0]})
    # what the fast path cannot take still gets the route's errors
    r = client.post(path, json={"x": {"x0": [1]}})
    assert r.status_code == 422 and "x['x0'] must be a number, string or bool, got list" in r.json()["detail"]
