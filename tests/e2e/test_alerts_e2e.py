"""Alerts end to end on the real Kafka and Redis: `driftline produce` a stream with a known
drift → `driftline worker` → two `driftline serve` replicas. Predictions are asked of both
replicas while the worker learns: none fails and each replica's version advances. The drift
alert arrives on each replica's SSE, in each one's GET /v1/alerts, on the alerts topic and at
a webhook receiver, with state, severity and count; when the producer stops, a stall alert
follows, on the webhook and on both replicas."""

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
from connectors.redis_store import RedisStore
from stream.alerts import SEVERITIES

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

KEY = "a" * 32
N, DRIFT_EVERY = 15_000, 5000
PROBE = {"x0": 9.0, "x1": 9.0, "x2": 1.0}  # x0 + x1 above every SEA threshold: class 1 under each concept


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


class _Predictions:
    """Predictions asked of one replica one after another, from its first ready answer until
    ``stop``: every answer kept, every failed request (an error status or no answer) counted."""

    def __init__(self, base_url: str, pipeline: str, stop: threading.Event):
        self.base_url, self.path, self.stop = base_url, f"/v1/models/{pipeline}/predict", stop
        self.answers: list[dict] = []
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as c:
            try:
                while not self.stop.is_set() and c.get("/readyz").status_code != 200:  # 503 until its first snapshot
                    self.stop.wait(0.05)
                # a snapshot taken by time before the first micro-batch was learned (the worker
                # waited long for its first events) serves a model that knows no class yet
                while not self.stop.is_set() and c.get(self.path.removesuffix("/predict")).json()["version"] < 1:
                    self.stop.wait(0.05)
            except httpx.HTTPError as exc:
                self.failures.append(f"readyz: {exc!r}")
                return
            while not self.stop.is_set():
                try:
                    r = c.post(self.path, json={"x": PROBE})
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if r.status_code == 200:
                    self.answers.append(r.json())
                else:
                    self.failures.append(f"{r.status_code} {r.text}")
                self.stop.wait(0.01)  # pacing only: leave the two cores to the worker


def test_a_drift_reaches_two_replicas_history_topic_and_webhook_and_a_stall_follows(tmp_path, kafka_bootstrap, redis_url, unique_name):
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
        "DRIFTLINE_ALERT_STALL_AFTER_S": "3", "DRIFTLINE_BATCH_SIZE": "64", "DRIFTLINE_CHECKPOINT_EVERY_EVENTS": "1500",
    }  # fmt: skip
    worker = Child(["worker", "--port", "0"], env, tmp_path / "worker.log")
    replicas = [Child(["serve", "--pipelines", pipeline, "--port", "0", "--poll", "1"], env, tmp_path / f"replica{i}.log") for i in range(2)]
    stop, stop_predicting = threading.Event(), threading.Event()
    clients: list[httpx.Client] = []
    try:
        worker.port()
        urls = [f"http://127.0.0.1:{r.port()}" for r in replicas]
        clients = [httpx.Client(base_url=u, timeout=10) for u in urls]
        for c in clients:
            assert c.get("/readyz").status_code == 503  # nothing produced, so nothing learned yet
        sse: list[list[dict]] = [[], []]
        for u, into in zip(urls, sse, strict=True):
            threading.Thread(target=_sse, args=(f"{u}/v1/alerts/stream", into, stop), daemon=True).start()
        predictions = [_Predictions(u, pipeline, stop_predicting) for u in urls]
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
        assert hooked["severity"] in SEVERITIES and hooked["count"] >= 1
        assert hooked["loss_after"] > hooked["loss_before"] and hooked["topic"] == topic and hooked["offset"] >= DRIFT_EVERY - 1000
        for i, got in enumerate(sse):
            streamed = _until(f"the drift alert on replica {i}'s SSE", lambda got=got: [a for a in drift_in(got) if a["id"] == hooked["id"]])
            assert streamed[0] == next(a for a in _Hook.got if (a["id"], a["revision"]) == (streamed[0]["id"], streamed[0]["revision"]))

        stall = _until("the stall alert", lambda: [a for a in _Hook.got if a["kind"] == "stall"], timeout_s=60)[0]
        # no stall while the worker waited for the producer's first event; one after its last
        assert (stall["state"], stall["pipeline"], stall["event_index"]) == ("stall", pipeline, N)
        assert stall["message"].startswith("no event for")
        for i, got in enumerate(sse):
            assert _until(f"the stall on replica {i}'s SSE", lambda got=got: [a for a in got if a["kind"] == "stall"], timeout_s=30)[0] == stall

        # the stall was sent after every revision of every drift alert: each replica's history
        # holds the last revision of each, as the webhook got it
        newest: dict[int, dict] = {}
        for a in _Hook.got:
            if a["kind"] == "drift" and a["revision"] >= newest.get(a["id"], {"revision": -1})["revision"]:
                newest[a["id"]] = a
        for i, c in enumerate(clients):
            listed = c.get("/v1/alerts", params={"pipeline": pipeline, "kind": "drift"}).json()["alerts"]
            assert listed == [newest[k] for k in sorted(newest)], f"replica {i}: {listed}"
            mine = next(a for a in listed if a["id"] == hooked["id"])
            assert mine["state"] in ("drift", "resolved") and mine["severity"] in SEVERITIES and mine["count"] >= hooked["count"]
            stalls = c.get("/v1/alerts", params={"pipeline": pipeline, "state": "stall"}).json()["alerts"]
            assert stalls == [stall], f"replica {i}: {stalls}"

        # both replicas serve the worker's last snapshot, all N events learned; then stop predicting
        store = RedisStore(redis_url)

        def caught_up():
            last = store.versions(pipeline)[-1]
            models = [c.get(f"/v1/models/{pipeline}").json() for c in clients]
            return models if all(m["snapshot_version"] == last and m["events_seen"] == N for m in models) else None

        models = _until("both replicas on the last snapshot", caught_up, timeout_s=30)
        for i, (p, m) in enumerate(zip(predictions, models, strict=True)):
            _until(
                f"an answer from replica {i}'s last version", lambda p=p, v=m["version"]: p.answers and p.answers[-1]["version"] == v, timeout_s=30
            )
        stop_predicting.set()
        for i, p in enumerate(predictions):
            p.thread.join(timeout=30)
            assert not p.failures, f"replica {i}: {len(p.failures)} failed request(s), first {p.failures[:3]}"
            versions = [a["version"] for a in p.answers]
            assert versions == sorted(versions), f"replica {i} went back in version"
            assert len(set(versions)) >= 3, f"replica {i} saw versions {sorted(set(versions))}: no swap during the run"
            seen = [a["events_seen"] for a in p.answers]
            assert seen == sorted(seen) and 0 < seen[0] < N and seen[-1] == N, f"replica {i}: events seen {seen[0]}..{seen[-1]}"
            assert all(a["y"] == 1 for a in p.answers), f"replica {i}: {[a for a in p.answers if a['y'] != 1][:3]}"
            assert sum(p.answers[-1]["offsets"].values()) == N

        source = open_source("confluent", kafka_bootstrap, [f"{pipeline}-alerts"], f"{pipeline}-check")
        on_topic: list[dict] = []

        def read_topic():
            on_topic.extend(json.loads(r.value) for r in source.poll(500, 500))
            return [a for a in on_topic if (a["id"], a["revision"]) == (hooked["id"], hooked["revision"])]

        assert _until("the drift alert on the topic", read_topic, timeout_s=60)[0] == hooked
        source.close()
    finally:
        stop.set()
        stop_predicting.set()
        for c in clients:
            c.close()
        for r in replicas:
            r.stop()
        assert worker.stop() == 0, worker.tail()
        hook.shutdown()
    for i, r in enumerate(replicas):
        assert r.proc.returncode == 0, f"replica {i}:\n{r.tail(20)}"
