"""The runtime on the real edges: Kafka in and out, snapshots in Redis."""

from __future__ import annotations

import json

import pytest

from connectors.kafka.kafka_python import KafkaPythonSink as KafkaSink
from connectors.kafka.kafka_python import KafkaPythonSource as KafkaSource
from connectors.redis_store import RedisStore
from learners.registry import make_learner
from stream.config import load_settings
from stream.events import Event
from stream.runtime import Pipeline
from stream.snapshot import open_snapshot, read_header
from stream.synth import sea_stream

pytestmark = pytest.mark.integration

KEY = b"integration-key-0123456789abcdef"
FAST = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def _produce(bootstrap, topic, start, stop, seed=11):
    sink = KafkaSink(bootstrap)
    for i, (x, y) in enumerate(sea_stream(stop, seed, 1500)):
        if i >= start:
            sink.send(topic, Event(id=f"e{i}", x=x, y=y).to_json(), key=f"k{i % 7}".encode())
    sink.flush()
    sink.close()


def _pipeline(bootstrap, redis_url, namespace, topic, learner, group):
    settings = load_settings(
        pipeline="kr",
        learner=learner,
        events_topic=topic,
        predictions_topic=f"{topic}-pred",
        alerts_topic=f"{topic}-alerts",
        dead_letter_topic=f"{topic}-dlq",
        batch_size=64,
        batch_timeout_ms=200,
        checkpoint_every_events=1000,
        seed=3,
    )
    return Pipeline(
        settings,
        lambda: make_learner(learner, make_learner_params(learner), 3),
        KafkaSource(bootstrap, [topic], group, extra_config=FAST),
        KafkaSink(bootstrap),
        RedisStore(redis_url, namespace=namespace),
        KEY,
    )


def make_learner_params(name):
    return {"n_experts": 4} if name == "driftmoe" else {}


def _read_all(bootstrap, topic, group):
    source = KafkaSource(bootstrap, [topic], group, extra_config=FAST)
    out, idle = [], 0
    while idle < 5:
        batch = source.poll(5000, 1000)
        idle = 0 if batch else idle + 1
        out.extend(json.loads(r.value) for r in batch)
    source.close()
    return out


@pytest.mark.parametrize("learner", ["river:tree.HoeffdingTreeClassifier", "driftmoe"])
def test_checkpoint_in_redis_restores_bit_identical_predictions(
    kafka_bootstrap, redis_url, topic_factory, unique_name, learner
):
    topic = topic_factory(partitions=3)
    _produce(kafka_bootstrap, topic, 0, 3000)
    ns, group = unique_name("ns"), unique_name("g")
    first = _pipeline(kafka_bootstrap, redis_url, ns, topic, learner, group)
    first.run(max_events=3000)
    assert first.counters.events == 3000 and first.counters.dead_letters == 0

    store = RedisStore(redis_url, namespace=ns)
    version, blob = store.load_latest("kr")
    header = read_header(blob)
    assert header.events_seen == 3000 and sum(header.offsets.values()) == 3000
    assert sorted(header.offsets) == [f"{topic}:{p}" for p in range(3)]
    _, state = open_snapshot(blob, KEY)
    assert state["counters"]["events"] == 3000

    probe = [x for x, _ in sea_stream(300, 99, 10**9)]
    second = _pipeline(kafka_bootstrap, redis_url, ns, topic, learner, group)
    assert second.restore() and second.snapshot_version == version
    assert second.learner.predict_many(probe) == first.learner.predict_many(probe)
    # exact: the state was restored bit for bit, then the same computation ran
    assert second.learner.predict_proba_many(probe) == first.learner.predict_proba_many(probe)
    for p in (first, second):
        p.source.close()


def test_restored_runtime_resumes_at_the_stored_offsets(kafka_bootstrap, redis_url, topic_factory, unique_name):
    topic = topic_factory(partitions=3)
    _produce(kafka_bootstrap, topic, 0, 2000)
    ns, group = unique_name("ns"), unique_name("g")
    learner = "river:tree.HoeffdingTreeClassifier"

    first = _pipeline(kafka_bootstrap, redis_url, ns, topic, learner, group)
    first.run(max_events=2000)
    first.source.close()
    committed = first.offsets

    _produce(kafka_bootstrap, topic, 2000, 3500)
    second = _pipeline(kafka_bootstrap, redis_url, ns, topic, learner, group)
    assert second.restore()
    assert second.offsets == committed
    second.run(max_events=3500)
    second.source.close()
    assert second.counters.events == 3500

    # every event was predicted (and learned) exactly once across both runs
    ids = [p["id"] for p in _read_all(kafka_bootstrap, f"{topic}-pred", unique_name("reader"))]
    assert len(ids) == 3500 and set(ids) == {f"e{i}" for i in range(3500)}
    # the group's committed offsets are those of the last snapshot
    _, blob = RedisStore(redis_url, namespace=ns).load_latest("kr")
    assert read_header(blob).events_seen == 3500 and sum(read_header(blob).offsets.values()) == 3500
