"""A `driftline worker` and two `driftline serve` replicas side by side on the real Kafka
and Redis: predictions keep coming from the replicas while the worker learns, with no
failed request, and each replica's version advances with the worker's snapshots."""

from __future__ import annotations

import json
import os
import time

import httpx
import pytest

from bench.child import Child
from connectors.kafka import KafkaAdmin, open_sink, open_source
from connectors.redis_store import RedisStore
from stream.events import Event
from stream.synth import sea_stream

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

KEY = "s" * 32
API_KEY = "replica-test-key-0123456789"
N = 60_000
PROBE = {"x0": 9.0, "x1": 9.0, "x2": 1.0}


def _seed(kafka: str, topic: str) -> None:
    admin = KafkaAdmin(kafka)
    admin.create_topics([topic], 1)
    admin.close()
    sink = open_sink("confluent", kafka)
    for i, (x, y) in enumerate(sea_stream(N, 11, N // 3)):
        sink.send(topic, Event(id=f"e{i}", x=x, y=y).to_json())
    sink.flush(60)
    sink.close()


def test_two_replicas_follow_a_learning_worker_with_no_failed_request(tmp_path, kafka_bootstrap, redis_url, unique_name):
    pipeline = unique_name("rep")
    topic = f"{pipeline}-events"
    _seed(kafka_bootstrap, topic)
    env = {
        **os.environ, "PYTHONUNBUFFERED": "1", "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "REDIS_URL": redis_url,
        "DRIFTLINE_SNAPSHOT_KEY": KEY, "DRIFTLINE_API_KEYS": API_KEY, "DRIFTLINE_PIPELINE": pipeline,
        "DRIFTLINE_LEARNER": "river:tree.HoeffdingTreeClassifier", "DRIFTLINE_EVENTS_TOPIC": topic,
        "DRIFTLINE_PREDICTIONS_TOPIC": f"{pipeline}-predictions", "DRIFTLINE_ALERTS_TOPIC": f"{pipeline}-alerts",
        "DRIFTLINE_DEAD_LETTER_TOPIC": f"{pipeline}-dead", "DRIFTLINE_LABELS_TOPIC": f"{pipeline}-labels",
        "DRIFTLINE_CHECKPOINT_EVERY_EVENTS": "2500",
    }  # fmt: skip
    replicas = [Child(["serve", "--pipelines", pipeline, "--port", "0", "--poll", "1"], env, tmp_path / f"replica{i}.log") for i in range(2)]
    worker = None
    try:
        ports = [r.port() for r in replicas]
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=10) for p in ports]
        for c in clients:
            assert c.get("/readyz").status_code == 503  # nothing learned yet
        worker = Child(["worker", "--port", "0", "--events", str(N)], env, tmp_path / "worker.log")
        worker.port()  # listening: the worker is past start-up
        deadline = time.monotonic() + 120
        while not all(c.get("/readyz").status_code == 200 for c in clients):
            assert time.monotonic() < deadline, "replicas never became ready:\n" + "\n".join(worker.lines[-20:])
            time.sleep(0.1)

        seen: list[list[int]] = [[], []]
        failures: list[str] = []
        while worker.proc.poll() is None:
            for i, c in enumerate(clients):
                r = c.post(f"/v1/models/{pipeline}/predict", json={"x": PROBE})
                if r.status_code != 200:
                    failures.append(f"replica {i}: {r.status_code} {r.text}")
                    continue
                body = r.json()
                seen[i].append(body["version"])
                assert body["y"] == 1 and body["events_seen"] > 0 and body["offsets"][f"{topic}:0"] > 0
        assert worker.proc.wait(timeout=60) == 0, "\n".join(worker.lines[-30:])
        assert not failures, failures[:5]

        store = RedisStore(redis_url)
        last = store.versions(pipeline)[-1]
        for i, c in enumerate(clients):
            assert seen[i] == sorted(seen[i]), f"replica {i} went back in version"
            assert len(set(seen[i])) >= 3, f"replica {i} saw versions {sorted(set(seen[i]))}: no swap during the run"
            deadline = time.monotonic() + 10
            while (m := c.get(f"/v1/models/{pipeline}").json())["snapshot_version"] != last:
                assert time.monotonic() < deadline, (m, last)
                time.sleep(0.1)
            assert m["events_seen"] == N and m["offsets"] == {f"{topic}:0": N}
            r = c.post(f"/v1/models/{pipeline}/predict", params={"min_version": m["version"] + 1}, json={"x": PROBE})
            assert r.status_code == 409
        versions = clients[0].get(f"/v1/models/{pipeline}/versions").json()["versions"]
        assert [v["snapshot_version"] for v in versions] == sorted(v["snapshot_version"] for v in versions)

        # a replica forwards labels to the labels topic, with a key only
        assert clients[1].post(f"/v1/models/{pipeline}/labels", json={"id": "e1", "y": 1}).status_code == 401
        r = clients[1].post(f"/v1/models/{pipeline}/labels", json={"id": "e1", "y": 1}, headers={"Authorization": f"Bearer {API_KEY}"})
        assert r.status_code == 202, r.text
        source = open_source("confluent", kafka_bootstrap, [f"{pipeline}-labels"], f"{pipeline}-check")
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            got = [rec.value for rec in source.poll(10, 500)]
        source.close()
        assert [json.loads(v) for v in got] == [{"pipeline": pipeline, "id": "e1", "y": 1}]

        metrics = clients[0].get("/metrics").text
        assert f'driftline_model_events_seen{{pipeline="{pipeline}"}} {float(N)}' in metrics
        assert f'driftline_consumer_lag{{pipeline="{pipeline}"}} 0.0' in metrics
    finally:
        for p in [*replicas, *([worker] if worker else [])]:
            p.stop()
    for r in replicas:
        assert r.proc.returncode == 0, "\n".join(r.lines[-20:])
