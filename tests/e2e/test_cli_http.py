"""`driftline run` as a user runs it: a subprocess, its terminal output, its HTTP API."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

DRIFTLINE = [sys.executable, "-m", "stream.cli"]
LEARNER = os.environ.get("DRIFTLINE_LEARNER", "driftmoe")


class Running:
    """A `driftline run` child whose output is collected line by line."""

    def __init__(self, args: list[str], cwd: Path):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [*DRIFTLINE, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := re.search(pattern, line):
                    return m
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r}; output:\n" + "\n".join(self.lines[-40:]))

    def output(self) -> str:
        self._reader.join(timeout=10)
        return "\n".join(self.lines)


def test_sixty_thousand_events_alert_after_each_concept_change(tmp_path):
    out = tmp_path / "out.json"
    run = Running(
        ["run", "--events", "60000", "--drift-every", "20000", "--seed", "7", "--summary-json", str(out),
         "--state-dir", str(tmp_path / "state"), "--no-http"],
        tmp_path,
    )
    assert run.proc.wait(timeout=600) == 0, run.output()
    text = run.output()
    assert re.search(r"final: 60,000 events .* accuracy 0\.\d{4}", text), text
    summary = json.loads(out.read_text())
    assert summary["events"] == 60_000
    assert 0.7 < summary["accuracy"] < 1.0 and -1.0 <= summary["kappa"] <= 1.0
    for change in (20_000, 40_000):
        # an alert whose firings (the first, or a later one merged into it) follow the change
        hits = [a for a in summary["alerts"] if change - 2000 <= a["event_index"] and a["last_event_index"] < change + 2000]
        assert hits, f"no alert within 2,000 events after {change}: {summary['drift_points']}"
        h = hits[0]
        assert h["detector"] == "adwin" and h["state"] in ("drift", "resolved") and h["severity"] in ("medium", "high", "critical")
        assert re.search(rf"DRIFT +#{h['id']} default {h['severity']}  adwin on loss at event {h['event_index']:,}", text), text
    # every firing opened an alert or merged into one (the defaults raise every severity)
    drift = [a for a in summary["alerts"] if a["kind"] == "drift"]
    assert sum(a["count"] for a in drift) == len(summary["drift_points"])
    assert {a["event_index"] for a in drift} <= set(summary["drift_points"])
    assert list((tmp_path / "state" / "snapshots" / "default").glob("*.snap"))


def test_http_api_predicts_lists_alerts_and_rejects_bad_requests(tmp_path):
    run = Running(["run", "--rate", "3000", "--port", "0", "--state-dir", str(tmp_path / "state"), "--seed", "3"], tmp_path)
    try:
        port = int(run.wait_for(r"HTTP API on http://127\.0\.0\.1:(\d+)", 120).group(1))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            assert http.get("/healthz").json()["status"] == "ok"
            deadline = time.monotonic() + 120
            # the first served copy comes with the first micro-batch, after the API listens
            while not (m := http.get("/v1/models").json()["models"]) or m[0]["events_seen"] < 2000:
                assert time.monotonic() < deadline, m
                time.sleep(0.2)
            assert m[0]["name"] == "default" and m[0]["learner"] == LEARNER and m[0]["version"] > 0

            one = http.post("/v1/models/default/predict", json={"x": {"x0": 9.0, "x1": 9.0, "x2": 1.0}})
            assert one.status_code == 200, one.text
            body = one.json()
            assert body["y"] in (0, 1) and set(body["proba"]) <= {"0", "1"}
            assert abs(sum(body["proba"].values()) - 1.0) < 1e-6 and isinstance(body["version"], int)
            # far above every SEA threshold: class 1 under every concept
            assert body["y"] == 1

            rows = [{"x0": 0.1, "x1": 0.2, "x2": 5.0}, {"x0": 9.5, "x1": 9.9, "x2": 5.0}, {"x0": 5.0, "x1": 5.0, "x2": 5.0}]
            many = http.post("/v1/models/default/predict", json={"rows": rows}).json()
            assert len(many["predictions"]) == 3 and [p["y"] for p in many["predictions"][:2]] == [0, 1]

            alerts = http.get("/v1/alerts").json()
            assert set(alerts) == {"alerts", "total"} and alerts["total"] == len(alerts["alerts"])

            bad = {
                # a string where the model saw numbers: a new category for the neural
                # learner's feature space; River's trees cannot take it, so 422
                "type change": ({"x": {"x0": "NaN"}}, 200 if LEARNER == "driftmoe" else 422),
                "list": ({"x": {"x0": [1, 2]}}, 422),
                "both": ({"x": {"x0": 1}, "rows": [{"x0": 1}]}, 422),
                "neither": ({}, 422),
                "empty rows": ({"rows": []}, 422),
                "extra": ({"x": {"x0": 1}, "foo": 1}, 422),
            }
            for name, (payload, code) in bad.items():
                r = http.post("/v1/models/default/predict", json=payload)
                assert r.status_code == code, (name, r.text)
                if code == 422:
                    assert r.json()["detail"], name
            r = http.post("/v1/models/default/predict", json={"x": {"x0": [1, 2]}})
            assert "x['x0'] must be a number, string or bool" in r.json()["detail"]
            r = http.post("/v1/models/default/predict", json={"rows": [{"x0": 1}, {"x0": {}}]})
            assert r.status_code == 422 and "rows[1]['x0']" in r.json()["detail"]
            r = http.post("/v1/models/default/predict", content=b"{not json", headers={"content-type": "application/json"})
            assert r.status_code == 422 and "JSON" in r.json()["detail"]
            r = http.post("/v1/models/nope/predict", json={"x": {"x0": 1}})
            assert r.status_code == 404 and "no model named 'nope'" in r.json()["detail"]
            r = http.post("/v1/models/default/predict", json={"rows": [{"x0": 1.0}] * 10_001})
            assert r.status_code == 413 and "at most 10000" in r.json()["detail"]
    finally:
        run.proc.send_signal(signal.SIGINT)
        code = run.proc.wait(timeout=60)
    text = run.output()
    assert code == 0, text
    assert "final:" in text
    assert list((tmp_path / "state" / "snapshots" / "default").glob("*.snap"))
