"""Hostile prediction bodies: each is a 4xx naming what is wrong, never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from learners.registry import make_learner
from stream.alerts import AlertLog
from stream.api import create_app
from stream.runtime import ModelBoard, ServedModel
from stream.synth import sea_stream

LEARNER = "river:tree.HoeffdingTreeClassifier"
BIG = b"9" * 400


@pytest.fixture(scope="module")
def client():
    model = make_learner(LEARNER, {}, 0)
    events = list(sea_stream(1000, 5, 10**9))
    model.learn_many([x for x, _ in events], [y for _, y in events])
    board = ModelBoard()
    board.publish(ServedModel("default", LEARNER, 1, len(events), model, {}))
    # raise_server_exceptions=False: a crash must show up as the 500 a client would get
    return TestClient(create_app(board, AlertLog(maxlen=3)), raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b'{"x": {"x0": ' + BIG + b"}}", 422, "x['x0'] is an integer of 400 digits, too large for a float"),
        (b'{"x": {"x0": -' + BIG + b"}}", 422, "x['x0'] is an integer of 400 digits, too large for a float"),
        (b'{"rows": [{"x0": 1}, {"x0": ' + BIG + b"}]}", 422, "rows[1]['x0'] is an integer of 400 digits"),
        (b'{"x": {"x0": NaN}}', 422, "x['x0'] must be finite, got nan"),
        (b'{"x": {"x0": -Infinity}}', 422, "x['x0'] must be finite, got -inf"),
        (b'{"x": {"x0": 1e400}}', 422, "x['x0'] must be finite, got inf"),
        (b'{"x": {"x0": [1]}}', 422, "x['x0'] must be a number, string or bool, got list"),
        (b'{"x": {"x0": {"a": 1}}}', 422, "x['x0'] must be a number, string or bool, got dict"),
        (b'{"x": {"x0": null}}', 422, "x['x0'] must be a number, string or bool"),
        (b'{"x": {}}', 422, "'x' has no features"),
        (b'{"x": {"x0": 1}, "y": 1}', 422, "y: Extra inputs are not permitted"),
        (b'{"x": {"x0": 1}', 422, "JSON decode error"),
        (b'{"x": {"x0": ' + b"9" * 5000 + b"}}", 400, "error parsing the body"),
        (b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "error parsing the body"),
        (b"\xff", 400, "error parsing the body"),
    ],
)
def test_a_bad_body_is_refused_with_a_reason(client, body, status, detail):
    r = client.post("/v1/models/default/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert detail in r.json()["detail"]


def test_an_integer_feature_within_float_range_is_answered(client):
    r = client.post("/v1/models/default/predict", json={"x": {"x0": 2**60, "x1": 5, "x2": 5}})
    assert r.status_code == 200, r.text
    assert r.json()["y"] in (0, 1)
