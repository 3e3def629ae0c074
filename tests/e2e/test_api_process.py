"""`driftline run` with DRIFTLINE_API_PROCESS: the HTTP API answers from a child process
that follows the learning process's model, progress and alerts, and forwards labels."""

from __future__ import annotations

import os
import time

import httpx
import psutil
import pytest

from bench.child import Child

pytestmark = pytest.mark.e2e

API_KEY = "process-test-key-0123456789"


def test_the_api_in_a_child_process_follows_the_learning(tmp_path):
    env = {
        **os.environ, "PYTHONUNBUFFERED": "1", "DRIFTLINE_API_PROCESS": "true", "DRIFTLINE_API_KEYS": API_KEY,
        "DRIFTLINE_LEARNER": "river:tree.HoeffdingTreeClassifier",
    }  # fmt: skip
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    run = Child(["run", "--rate", "3000", "--port", "0", "--state-dir", str(tmp_path / "s"), "--seed", "2"], env)
    proc, lines = run.proc, run.lines
    try:
        deadline = time.monotonic() + 120
        port = run.port()
        listeners = [c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port and c.status == "LISTEN"]
        assert listeners and proc.pid not in listeners and all(psutil.Process(p).ppid() == proc.pid for p in listeners)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            while http.get("/readyz").status_code != 200 or http.get("/healthz").json().get("events", 0) < 3000:
                assert time.monotonic() < deadline, "\n".join(lines[-30:])
                time.sleep(0.1)
            first = http.post("/v1/models/default/predict", json={"x": {"x0": 9.0, "x1": 9.0, "x2": 1.0}}).json()
            assert first["y"] == 1 and first["events_seen"] > 0
            # the child's copy and progress move on with the learning
            while http.post("/v1/models/default/predict", json={"x": {"x0": 9.0, "x1": 9.0, "x2": 1.0}}).json()["version"] <= first["version"]:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert 'driftline_events_total{pipeline="default"}' in http.get("/metrics").text
            r = http.post("/v1/models/default/labels", json={"id": "e1", "y": 1}, headers={"Authorization": f"Bearer {API_KEY}"})
            assert r.status_code == 202 and r.json() == {"accepted": 1, "topic": "labels"}
            assert http.post("/v1/models/default/labels", json={"id": "e1", "y": 1}).status_code == 401
    finally:
        code = run.stop()
    text = "\n".join(lines)
    assert code == 0, text
    assert "final:" in text and "API process gone" not in text
