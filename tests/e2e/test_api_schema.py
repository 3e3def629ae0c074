"""schemathesis against the OpenAPI document of a running `driftline run`: requests drawn
from the schema of every route get no 5xx, only documented status codes and bodies that
match their schema; writes without a valid API key get 401."""

from __future__ import annotations

import collections
import os
import time
import zlib

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from bench.child import Child

pytestmark = pytest.mark.e2e

API_KEY = "schema-test-key-0123456789"
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance, checks.response_schema_conformance]
WRITES = {("POST", "/v1/models/{name}/labels")}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DRIFTLINE_API_KEYS": API_KEY, "DRIFTLINE_LEARNER": "river:tree.HoeffdingTreeClassifier"}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("REDIS_URL", None)
    state = tmp_path_factory.mktemp("schema")
    run = Child(["run", "--rate", "2000", "--port", "0", "--state-dir", str(state), "--seed", "5"], env)
    deadline = time.monotonic() + 120
    url = f"http://127.0.0.1:{run.port()}"
    while httpx.get(f"{url}/readyz").status_code != 200 or httpx.get(f"{url}/v1/models/default").json()["events_seen"] < 500:
        assert time.monotonic() < deadline, run.tail()
        time.sleep(0.1)
    yield url
    assert run.stop() == 0, run.tail()


def _operations(url: str):
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    # the Server-Sent Event streams never end by themselves; their own tests read them
    ops = [op for op in (result.ok() for result in schema.get_all_operations()) if not op.path.endswith("/stream")]
    assert {(op.method.upper(), op.path) for op in ops} >= WRITES | {("POST", "/v1/models/{name}/predict"), ("GET", "/metrics")}
    return ops


def test_every_route_keeps_to_its_schema_and_never_answers_5xx(base_url):
    seen: collections.Counter[tuple[str, int]] = collections.Counter()
    for op in _operations(base_url):
        _fuzz(op, seen)
    # the generated requests reached the model, not only the validators
    assert seen[("/v1/models/{name}/predict", 200)] > 0, seen
    assert seen[("/v1/models/{name}/labels", 202)] > 0, seen  # forwarded to the embedded log's labels topic
    assert not [k for k in seen if k[1] >= 500], seen


def _fuzz(op, seen: collections.Counter[tuple[str, int]]) -> None:
    @given(case=op.as_strategy())
    @settings(max_examples=20, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    def check(case):
        if case.path_parameters and "name" in case.path_parameters and zlib.crc32(repr(case.body).encode()) % 4:
            case.path_parameters["name"] = "default"  # mostly the model that exists, so the body is reached
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {API_KEY}"}
        response = case.call_and_validate(checks=CHECKS)
        seen[(op.path, response.status_code)] += 1

    check()


def test_writes_without_a_valid_key_are_401(base_url):
    for op in _operations(base_url):
        if (op.method.upper(), op.path) not in WRITES:
            continue

        @given(case=op.as_strategy())
        @settings(max_examples=15, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def check(case):
            case.path_parameters["name"] = "default"
            wrong = {"Authorization": "Bearer not-the-key-0123456789"} if zlib.crc32(repr(case.body).encode()) % 2 else {}
            case.headers = wrong
            response = case.call(headers=wrong)
            assert response.status_code == 401, (case.body, response.text)
            assert response.headers["www-authenticate"] == ["Bearer"]

        check()
