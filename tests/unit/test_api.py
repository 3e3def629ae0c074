"""The HTTP API in-process (FastAPI's TestClient) over a board holding a seeded model."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from learners.registry import make_learner
from stream.alerts import Alert, AlertLog
from stream.api import create_app
from stream.runtime import ModelBoard, ServedModel
from stream.synth import sea_stream

LEARNER = "river:tree.HoeffdingTreeClassifier"
PROBE = [{"x0": 9.0, "x1": 9.0, "x2": 1.0}, {"x0": 1.0, "x1": 1.0, "x2": 5.0}, {"x0": 5.0, "x1": 3.0, "x2": 5.0}]


def _alert(i: int) -> Alert:
    return Alert(
        id=i, pipeline="default", detector="adwin", signal="loss", event_index=1000 * i, event_id=f"e{i}",
        topic="events", partition=0, offset=1000 * i, ts=1.0 + i, loss_before=0.1, loss_after=0.3,
        window=1000, model_version=i,
    )  # fmt: skip


@pytest.fixture(scope="module")
def model():
    m = make_learner(LEARNER, {}, 0)
    events = list(sea_stream(3000, 5, 10**9))
    m.learn_many([x for x, _ in events], [y for _, y in events])
    return m


@pytest.fixture
def client(model):
    board = ModelBoard()
    board.publish(ServedModel("default", LEARNER, 7, 3000, model, {"accuracy": 0.9}))
    log = AlertLog(maxlen=3)
    for i in range(5):
        log.append(_alert(i))
    app = create_app(board, log, max_rows=4, max_body_bytes=10_000, status=lambda: {"events": 3000})
    return TestClient(app)


def test_predicts_one_row_as_the_model_does(client, model):
    r = client.post("/v1/models/default/predict", json={"x": PROBE[0]})
    assert r.status_code == 200, r.text
    proba = model.predict_proba_one(PROBE[0])
    assert r.json() == {"y": model.predict_one(PROBE[0]), "proba": {str(k): v for k, v in proba.items()}, "version": 7}


def test_predicts_a_batch_in_order(client, model):
    r = client.post("/v1/models/default/predict", json={"rows": PROBE})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == 7
    assert [p["y"] for p in body["predictions"]] == model.predict_many(PROBE)
    assert body["predictions"][0]["y"] == 1 and body["predictions"][1]["y"] == 0


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


def test_health_and_models(client):
    assert client.get("/healthz").json() == {"status": "ok", "models": ["default"], "events": 3000}
    assert client.get("/v1/models").json() == {
        "models": [{"name": "default", "learner": LEARNER, "version": 7, "events_seen": 3000, "metrics": {"accuracy": 0.9}}]
    }


def test_alerts_page_by_id_from_the_bounded_history(client):
    body = client.get("/v1/alerts").json()
    # five raised, three kept
    assert body["total"] == 5 and [a["id"] for a in body["alerts"]] == [2, 3, 4]
    assert body["alerts"][0] == _alert(2).to_dict()
    assert [a["id"] for a in client.get("/v1/alerts", params={"after": 2, "limit": 1}).json()["alerts"]] == [3]
    assert client.get("/v1/alerts", params={"after": 4}).json()["alerts"] == []
    r = client.get("/v1/alerts", params={"limit": 0})
    assert r.status_code == 422 and "limit" in r.json()["detail"]
