"""Alerts end to end on the real Kafka and Redis: `driftline produce` a stream with a known
drift → `driftline worker` → a `driftline serve` replica. The drift alert arrives on the
replica's SSE, in its GET /v1/alerts, on the alerts topic and at a webhook receiver, with
state, severity and count; when the producer stops, a stall alert follows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from bench.child import Child
from connectors.kafka import open_source

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

KEY = "a" * 32
N, DRIFT_EVERY = 15_000, 5000


def _until(what, check, timeout_s=120.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class _Hook(BaseHTTPRequestHandler):
    got: list[dict] = []  # noqa: RUF012 - one receiver per test

    def do_POST(self):
        type(self).got.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def _sse(url: str, into: list[dict], stop: threading.Event) -> None:
    try:
        with httpx.Client(timeout=httpx.Timeout(10, read=None)) as client, client.stream("GET", url) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    into.append(json.loads(line[6:]))
                if stop.is_set():
                    return
    except httpx.HTTPError:
        if not stop.is_set():  # the replica going away at the end is expected
            raise


def test_a_drift_reaches_sse_history_topic_and_webhook_and_a_stall_follows(tmp_path, kafka_bootstrap, redis_url, unique_name):
    pipeline = unique_name("al")
    topic = f"{pipeline}-events"
    _Hook.got = []
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    env = {
        **os.environ, "PYTHONUNBUFFERED": "1", "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "REDIS_URL": redis_url,
        "DRIFTLINE_SNAPSHOT_KEY": KEY, "DRIFTLINE_PIPELINE": pipeline, "DRIFTLINE_LEARNER": "river:tree.HoeffdingTreeClassifier",
        "DRIFTLINE_EVENTS_TOPIC": topic, "DRIFTLINE_PREDICTIONS_TOPIC": f"{pipeline}-predictions",
        "DRIFTLINE_ALERTS_TOPIC": f"{pipeline}-alerts", "DRIFTLINE_DEAD_LETTER_TOPIC": f"{pipeline}-dead",
        "DRIFTLINE_LABELS_TOPIC": f"{pipeline}-labels", "DRIFTLINE_ALERTS_STREAM_KEY": f"{pipeline}:alerts",
        "DRIFTLINE_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{hook.server_address[1]}/hook",
        "DRIFTLINE_ALERT_STALL_AFTER_S": "3", "DRIFTLINE_BATCH_SIZE": "64", "DRIFTLINE_CHECKPOINT_EVERY_EVENTS": "3000",
    }  # fmt: skip
    worker = Child(["worker", "--port", "0"], env, tmp_path / "worker.log")
    replica = Child(["serve", "--pipelines", pipeline, "--port", "0", "--poll", "1"], env, tmp_path / "replica.log")
    stop = threading.Event()
    try:
        worker.port()
        rport = replica.port()
        sse: list[dict] = []
        threading.Thread(target=_sse, args=(f"http://127.0.0.1:{rport}/v1/alerts/stream", sse, stop), daemon=True).start()
        produce = subprocess.run(
            [sys.executable, "-m", "stream.cli", "produce", "--stream", "sea", "--drift", "sudden", "--drift-every", str(DRIFT_EVERY),
             "--events", str(N), "--seed", "1", "--topic", topic, "--rate", "5000"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert produce.returncode == 0 and f"sent {N:,} event(s) to {topic}" in produce.stdout, produce.stdout + produce.stderr
        assert "not found" not in produce.stdout + produce.stderr

        def drift_in(items):
            return [a for a in items if a["kind"] == "drift" and a["state"] in ("drift", "resolved") and a["last_event_index"] >= DRIFT_EVERY]

        hooked = _until("the drift alert at the webhook", lambda: drift_in(_Hook.got))[0]
        assert hooked["pipeline"] == pipeline and hooked["detector"] == "adwin" and hooked["signal"] == "loss"
        assert hooked["severity"] in ("low", "medium", "high", "critical") and hooked["count"] >= 1
        assert hooked["loss_after"] > hooked["loss_before"] and hooked["topic"] == topic and hooked["offset"] >= DRIFT_EVERY - 1000
        streamed = _until("the drift alert on SSE", lambda: [a for a in drift_in(sse) if a["id"] == hooked["id"]])
        assert streamed[0] == next(a for a in _Hook.got if (a["id"], a["revision"]) == (streamed[0]["id"], streamed[0]["revision"]))
        with httpx.Client(base_url=f"http://127.0.0.1:{rport}", timeout=10) as http:
            listed = http.get("/v1/alerts", params={"pipeline": pipeline, "kind": "drift"}).json()["alerts"]
        mine = next(a for a in listed if a["id"] == hooked["id"])
        assert mine["revision"] >= hooked["revision"] and {"state", "severity", "count"} <= set(mine)

        stall = _until("the stall alert", lambda: [a for a in _Hook.got if a["kind"] == "stall"], timeout_s=60)[0]
        # no stall while the worker waited for the producer's first event; one after its last
        assert (stall["state"], stall["pipeline"], stall["event_index"]) == ("stall", pipeline, N)
        assert stall["message"].startswith("no event for")
        _until("the stall on SSE", lambda: [a for a in sse if a["kind"] == "stall"], timeout_s=30)

        source = open_source("confluent", kafka_bootstrap, [f"{pipeline}-alerts"], f"{pipeline}-check")
        on_topic: list[dict] = []

        def read_topic():
            on_topic.extend(json.loads(r.value) for r in source.poll(500, 500))
            return [a for a in on_topic if (a["id"], a["revision"]) == (hooked["id"], hooked["revision"])]

        assert _until("the drift alert on the topic", read_topic, timeout_s=60)[0] == hooked
        source.close()
    finally:
        stop.set()
        replica.stop()
        assert worker.stop() == 0, "\n".join(worker.lines[-30:])
        hook.shutdown()
