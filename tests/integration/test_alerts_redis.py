"""Alert revisions in a capped Redis stream: what the pipeline relays, what `driftline alerts` prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis

from connectors.directory import DirectoryStore
from connectors.memory import InMemoryLog
from connectors.redis_alerts import RedisAlertStream
from learners.registry import make_learner
from stream.alerts import Alert, AlertLog
from stream.config import load_settings
from stream.events import Event
from stream.runtime import Pipeline
from stream.service import alert_relay
from stream.synth import sea_stream

pytestmark = pytest.mark.integration

LEARNER = "river:tree.HoeffdingTreeClassifier"


def _alert(i: int, pipeline: str = "p", severity: str = "high", revision: int = 0) -> Alert:
    return Alert(
        id=i, pipeline=pipeline, detector="adwin", signal="loss", event_index=i, event_id=f"e{i}", topic="events",
        partition=0, offset=i, ts=1.0 + i, loss_before=0.1, loss_after=0.3, window=1000, model_version=1,
        severity=severity, revision=revision, updated_ts=1.0 + i,
    )  # fmt: skip


def test_the_stream_keeps_revisions_in_order_capped_and_lists_the_latest(redis_url, unique_name):
    stream = RedisAlertStream(redis_url, key=unique_name("alerts"), maxlen=100)
    first = stream.append(_alert(0))
    stream.append(_alert(0, revision=1, severity="critical"))
    stream.append(_alert(1, severity="low"))
    assert [(a.id, a.revision) for _, a in stream.read(first)] == [(0, 1), (1, 0)]
    assert [(a.id, a.revision, a.severity) for a in stream.since()] == [(0, 1, "critical"), (1, 0, "low")]
    assert [a.id for a in stream.since(severity="high")] == [0] and stream.total == 2
    for i in range(2, 600):
        stream.append(_alert(i))
    length = redis.Redis.from_url(redis_url).xlen(stream.key)
    assert 100 <= length < 600  # MAXLEN ~ trims whole nodes: about the cap, never below it
    assert stream.history()[-1][1].id == 599


def test_a_pipeline_relays_every_revision_to_redis_as_to_the_topic(redis_url, unique_name, tmp_path):
    key = unique_name("alerts")
    settings = load_settings(learner=LEARNER, pipeline="rel", batch_timeout_ms=1, redis_url=redis_url, alerts_stream_key=key)
    log = InMemoryLog()
    sink = log.producer()
    for i, (x, y) in enumerate(sea_stream(30_000, 7, 20_000)):
        sink.send("events", Event(id=f"e{i}", x=x, y=y).to_json())
    pipe = Pipeline(settings, lambda: make_learner(LEARNER, {}, 0), log.consumer(["events"], "g"), log.producer(),
                    DirectoryStore(tmp_path), b"k" * 32, alerts=AlertLog(), clock=lambda: 0.0)  # fmt: skip
    pipe.alerts.subscribe(alert_relay(settings, redis=True))
    pipe.run(max_events=30_000)
    pipe.alerts.close()
    consumer = log.consumer(["alerts"], "reader")
    topic = [json.loads(r.value) for r in consumer.poll(1000, 1)]
    kept = [a.to_dict() for _, a in RedisAlertStream(redis_url, key=key).history()]
    assert len(topic) >= 3 and kept == topic  # exact: the same records, serialised once each
    assert {a["state"] for a in kept} >= {"drift", "resolved"}


def test_alerts_follow_prints_new_revisions_filtered(redis_url, unique_name):
    key = unique_name("alerts")
    stream = RedisAlertStream(redis_url, key=key)
    stream.append(_alert(0, severity="critical"))  # history: printed first
    env = {**os.environ, "REDIS_URL": redis_url, "DRIFTLINE_ALERTS_STREAM_KEY": key, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "alerts", "--follow", "--pipeline", "p", "--min-severity", "high", "--json", "--max", "3"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # the follower may start before or after these: it reads the stream from its start
        stream.append(_alert(1, severity="low"))
        stream.append(_alert(2, pipeline="other"))
        stream.append(_alert(3, severity="high"))
        stream.append(_alert(3, severity="critical", revision=1))
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    got = [json.loads(line) for line in out.splitlines()]
    assert [(a["id"], a["revision"], a["severity"]) for a in got] == [(0, 0, "critical"), (3, 0, "high"), (3, 1, "critical")]


def test_alerts_without_redis_says_what_to_set():
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DRIFTLINE_REDIS_URL")}
    env["PYTHONPATH"] = os.getcwd()
    done = subprocess.run([sys.executable, "-m", "stream.cli", "alerts"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "REDIS_URL is required" in done.stdout
