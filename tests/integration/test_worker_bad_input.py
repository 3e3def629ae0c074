"""10,000 malformed events of thirteen kinds among 100,000 good ones, written by both Kafka
clients with every compression codec: the worker dead-letters each bad one with its
reason, learns every good one, and never stops."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

import pytest

from connectors.kafka import KafkaAdmin, open_sink, open_source
from connectors.redis_store import RedisStore
from stream.dead_letters import DeadLetter, read_dead_letter
from stream.events import Event
from stream.snapshot import open_snapshot
from stream.synth import sea_stream

pytestmark = pytest.mark.integration

KEY = "k" * 32
MAX_BYTES = 4096
GOOD, BAD = 100_000, 10_000
PRODUCERS = [(c, z) for c in ("confluent", "kafka-python") for z in ("none", "gzip", "snappy", "lz4", "zstd")]

#: kind -> (raw bytes, a fragment its dead-letter reason must contain)
MALFORMED: dict[str, tuple[bytes, str]] = {
    "huge integer": (b'{"id": "b", "x": {"x0": ' + b"9" * 400 + b"}}", "x0"),
    "invalid utf-8": (b'{"id": "b", "x": {"x0": "\xff\xfe"}}', "UTF-8"),
    "too large": (b'{"id": "b", "x": {"x0": "' + b"a" * MAX_BYTES + b'"}}', "limit"),
    "NaN": (b'{"id": "b", "x": {"x0": NaN}}', "x0"),
    "Infinity": (b'{"id": "b", "x": {"x0": Infinity}}', "x0"),
    "list feature": (b'{"id": "b", "x": {"x0": [1, 2]}}', "x0"),
    "nested feature": (b'{"id": "b", "x": {"x0": {"a": 1}}}', "x0"),
    "missing id": (b'{"x": {"x0": 1.0}}', "id"),
    "not JSON": (b"x0=1.0", "JSON"),
    "unknown field": (b'{"id": "b", "x": {"x0": 1.0}, "colour": "red"}', "colour"),
    "empty x": (b'{"id": "b", "x": {}}', "x"),
    "label a list": (b'{"id": "b", "x": {"x0": 1.0}, "y": [1]}', "y"),
    "top-level array": (b'[{"id": "b"}]', "object"),
}


def test_bad_events_go_to_the_dead_letter_topic_and_the_rest_is_learned(tmp_path, kafka_bootstrap, redis_url, unique_name):
    rng = random.Random(21)
    kinds = sorted(MALFORMED)
    good = [Event(id=f"g{i}", x=x, y=y).to_json() for i, (x, y) in enumerate(sea_stream(GOOD, 21, 40_000))]
    bad = [(kinds[i % len(kinds)], MALFORMED[kinds[i % len(kinds)]][0]) for i in range(BAD)]
    stream: list[tuple[str | None, bytes]] = [(None, g) for g in good[:-1]] + bad
    rng.shuffle(stream)
    stream.append((None, good[-1]))  # the worker stops at its 100,000th good event

    topic = unique_name("bad-input")
    admin = KafkaAdmin(kafka_bootstrap)
    admin.create_topics([topic], 1)
    admin.close()
    # consecutive slices, each from another client and codec: one topic holds them all
    per = -(-len(stream) // len(PRODUCERS))
    for k, (client, codec) in enumerate(PRODUCERS):
        options = {} if codec == "none" else {"compression.type": codec}
        sink = open_sink(client, kafka_bootstrap, options=options)
        for _, value in stream[k * per : (k + 1) * per]:
            sink.send(topic, value)
        sink.flush(120)
        sink.close()

    store = RedisStore(redis_url)
    for client in ("confluent", "kafka-python"):
        pipeline = unique_name(f"bad-{client}")
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "REDIS_URL": redis_url, "DRIFTLINE_SNAPSHOT_KEY": KEY,
            "DRIFTLINE_KAFKA_CLIENT": client, "DRIFTLINE_LEARNER": "river:tree.HoeffdingTreeClassifier",
            "DRIFTLINE_PIPELINE": pipeline, "DRIFTLINE_EVENTS_TOPIC": topic,
            "DRIFTLINE_PREDICTIONS_TOPIC": f"{pipeline}-predictions", "DRIFTLINE_ALERTS_TOPIC": f"{pipeline}-alerts",
            "DRIFTLINE_DEAD_LETTER_TOPIC": f"{pipeline}-dead", "DRIFTLINE_MAX_EVENT_BYTES": str(MAX_BYTES),
        }  # fmt: skip
        log = tmp_path / f"{client}.log"
        proc = subprocess.run(
            [sys.executable, "-m", "stream.cli", "worker", "--no-http", "--events", str(GOOD)],
            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, timeout=900, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, log.read_text()[-3000:]

        _, state = open_snapshot(store.load_latest(pipeline)[1], KEY.encode())
        c = state["counters"]
        assert (c["records"], c["events"], c["labelled"], c["dead_letters"]) == (GOOD + BAD, GOOD, GOOD, BAD)

        source = open_source(client, kafka_bootstrap, [f"{pipeline}-dead"], unique_name("dlq-reader"))
        dead: list[DeadLetter] = []
        deadline = time.monotonic() + 120
        while len(dead) < BAD and time.monotonic() < deadline:
            dead.extend(read_dead_letter(r) for r in source.poll(5000, 500))
        source.close()
        assert len(dead) == BAD
        by_offset = {d.offset: d for d in dead}
        assert len(by_offset) == BAD
        for offset, (kind, value) in enumerate(stream):
            if kind is None:
                continue
            d = by_offset.pop(offset)
            assert d.value == value, kind  # the original bytes, as any Kafka tool can replay them
            assert MALFORMED[kind][1] in d.reason, (kind, d.reason)
            assert (d.pipeline, d.topic, d.partition, d.kind) == (pipeline, topic, 0, "invalid_event")
        assert by_offset == {}
    store.close()
