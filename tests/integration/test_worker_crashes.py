"""`driftline worker` against the real broker and Redis, SIGKILLed and restarted: the final
model is bit-identical to an uninterrupted run, and a read_committed reader of the
predictions topic sees every event id exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.kafka import KafkaAdmin, open_sink, open_source
from connectors.redis_store import RedisStore
from learners import checks
from learners.registry import make_learner
from stream.events import Event
from stream.snapshot import open_snapshot, read_header
from stream.synth import sea_stream

pytestmark = pytest.mark.integration

KEY = "k" * 32
CASES = [
    # learner, events, checkpoint every, kills
    ("river:tree.HoeffdingTreeClassifier", 200_000, 15_000, 5),
    ("driftmoe", 200_000, 15_000, 5),
    ("driftmoe-ht-data", 20_000, 1_500, 5),
]


def _env(kafka: str, redis: str, client: str, learner: str, pipeline: str, topic: str, every: int) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "REDIS_URL": redis,
        "DRIFTLINE_SNAPSHOT_KEY": KEY,
        "DRIFTLINE_KAFKA_CLIENT": client,
        "DRIFTLINE_LEARNER": learner,
        "DRIFTLINE_PIPELINE": pipeline,
        "DRIFTLINE_EVENTS_TOPIC": topic,
        "DRIFTLINE_PREDICTIONS_TOPIC": f"{pipeline}-predictions",
        "DRIFTLINE_ALERTS_TOPIC": f"{pipeline}-alerts",
        "DRIFTLINE_DEAD_LETTER_TOPIC": f"{pipeline}-dead",
        "DRIFTLINE_CHECKPOINT_EVERY_EVENTS": str(every),
        "DRIFTLINE_LEASE_TTL_S": "2",
    }


def _seed_topic(kafka: str, client: str, topic: str, n: int, seed: int, part: slice = slice(None)) -> None:
    """``n`` seeded SEA events, an abrupt drift every third of them, on a new topic (only
    ``part`` of them, in order; a later call with the next part continues the topic)."""
    admin = KafkaAdmin(kafka)
    admin.create_topics([topic], 1)
    admin.close()
    sink = open_sink(client, kafka)
    events = list(enumerate(sea_stream(n, seed, n // 3)))[part]
    for i, (x, y) in events:
        sink.send(topic, Event(id=f"e{i}", x=x, y=y).to_json())
    sink.flush(60)
    sink.close()


def _worker(env: dict[str, str], events: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "worker", "--no-http", "--events", str(events)],
        env=env, stdout=log.open("a"), stderr=subprocess.STDOUT,
    )


def _wait(cond: Callable[[], bool], timeout_s: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.1)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"{what} within {timeout_s} s; worker log:\n{tail}")


def _events_seen(store: RedisStore, pipeline: str) -> int:
    latest = store.load_latest(pipeline)
    return read_header(latest[1]).events_seen if latest else 0


def _read_committed_ids(kafka: str, client: str, topic: str, n: int) -> list[str]:
    import json

    source = open_source(client, kafka, [topic], f"reader-{topic}-{random.random()}")
    got: list[str] = []
    deadline = time.monotonic() + 120
    try:
        while len(got) < n and time.monotonic() < deadline:
            got.extend(json.loads(r.value)["id"] for r in source.poll(5000, 500))
        # anything past n would be a duplicate: read a little longer to catch one
        end = time.monotonic() + 2
        while time.monotonic() < end:
            got.extend(json.loads(r.value)["id"] for r in source.poll(5000, 200))
    finally:
        source.close()
    return got


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
@pytest.mark.parametrize(("learner", "n", "every", "kills"), CASES, ids=[c[0] for c in CASES])
def test_sigkills_leave_the_model_as_one_uninterrupted_run(
    tmp_path, kafka_bootstrap, redis_url, unique_name, client, learner, n, every, kills
):
    topic = unique_name("crash")
    _seed_topic(kafka_bootstrap, client, topic, n, 11)

    store = RedisStore(redis_url)
    rng = random.Random(f"{learner}-{client}")
    log = tmp_path / "worker.log"
    crashed = unique_name("crashed")
    env = _env(kafka_bootstrap, redis_url, client, learner, crashed, topic, every)
    for threshold in sorted(rng.sample(range(every, n - every), kills)):
        proc = _worker(env, n, log)
        _wait(lambda t=threshold: _events_seen(store, crashed) >= t, 600, f"a snapshot past {threshold}", proc, log)
        # past the snapshot, at a seeded random point: learned work is lost and redone
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    proc = _worker(env, n, log)
    assert proc.wait(900) == 0, log.read_text()[-3000:]

    straight = unique_name("straight")
    ref = _worker(_env(kafka_bootstrap, redis_url, client, learner, straight, topic, every), n, tmp_path / "straight.log")
    assert ref.wait(900) == 0, (tmp_path / "straight.log").read_text()[-3000:]

    header_a, state_a = open_snapshot(store.load_latest(crashed)[1], KEY.encode())
    header_b, state_b = open_snapshot(store.load_latest(straight)[1], KEY.encode())
    assert header_a.events_seen == header_b.events_seen == n
    assert header_a.offsets == header_b.offsets
    # exact: the same learner on the same micro-batches, in processes on one machine
    checks.assert_state_equal(state_a["learner"], state_b["learner"])
    assert state_a["metrics"] == state_b["metrics"] and state_a["counters"]["events"] == n
    a, b = make_learner(learner, {}, 0), make_learner(learner, {}, 0)
    a.load_state_dict(state_a["learner"])
    b.load_state_dict(state_b["learner"])
    probe = [x for x, _ in sea_stream(200, 99, 10**9)]
    # exact: the same learner on the same micro-batches, in processes on one machine and kernel
    assert a.predict_proba_many(probe) == b.predict_proba_many(probe)

    ids = _read_committed_ids(kafka_bootstrap, client, f"{crashed}-predictions", n)
    assert len(ids) == n and set(ids) == {f"e{i}" for i in range(n)}
    store.close()


def test_a_standby_takes_over_within_ten_seconds_and_a_stale_writer_is_refused(
    tmp_path, kafka_bootstrap, redis_url, unique_name
):
    from connectors.exceptions import StaleFencingTokenError
    from connectors.redis_store import RedisLease

    learner, n, every = "river:tree.HoeffdingTreeClassifier", 60_000, 5_000
    topic = unique_name("failover")
    # the topic's rest comes once the active worker is dead: however fast it learns, it
    # cannot finish before the standby waits and it is killed
    head = 3 * every
    _seed_topic(kafka_bootstrap, "confluent", topic, n, 12, slice(0, head))

    store = RedisStore(redis_url)
    name = unique_name("leased")
    env = _env(kafka_bootstrap, redis_url, "confluent", learner, name, topic, every)
    env["DRIFTLINE_LEASE_TTL_S"] = "5"
    lease = RedisLease(redis_url, name)
    active = _worker(env, n, tmp_path / "active.log")
    _wait(lambda: (lease.holder() or "").split(":")[1:2] == [str(active.pid)], 60, "the first worker holding the lease", active, tmp_path / "active.log")
    standby = _worker(env, n, tmp_path / "standby.log")
    _wait(lambda: "standby" in (tmp_path / "standby.log").read_text(), 60, "the second worker on standby", standby, tmp_path / "standby.log")
    _wait(lambda: _events_seen(store, name) >= 2 * every, 300, "two snapshots", active, tmp_path / "active.log")
    old_token = store.fence(name)

    active.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    active.wait(10)
    _wait(lambda: (lease.holder() or "").split(":")[1:2] == [str(standby.pid)], 30, "the standby holding the lease", standby, tmp_path / "standby.log")
    took_over_s = time.monotonic() - killed_at
    assert took_over_s <= 10.0, took_over_s
    _seed_topic(kafka_bootstrap, "confluent", topic, n, 12, slice(head, None))
    assert standby.wait(600) == 0, (tmp_path / "standby.log").read_text()[-3000:]

    # the dead worker's token is stale now: a write with it changes nothing
    latest = store.load_latest(name)
    with pytest.raises(StaleFencingTokenError, match="older than"):
        store.save(name, latest[1], fencing_token=old_token)
    with pytest.raises(StaleFencingTokenError, match="no fencing token"):
        store.save(name, latest[1])
    assert store.load_latest(name)[0] == latest[0]

    straight = unique_name("unleased")
    ref = _worker(_env(kafka_bootstrap, redis_url, "confluent", learner, straight, topic, every), n, tmp_path / "straight.log")
    assert ref.wait(600) == 0
    _, a = open_snapshot(store.load_latest(name)[1], KEY.encode())
    _, b = open_snapshot(store.load_latest(straight)[1], KEY.encode())
    # exact: the same learner on the same micro-batches, in processes on one machine
    checks.assert_state_equal(a["learner"], b["learner"])
    assert a["counters"]["events"] == b["counters"]["events"] == n
    lease.close()
    store.close()


def _redis_server(port: int, data: Path) -> subprocess.Popen:
    import shutil

    proc = subprocess.Popen(
        [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--appendonly", "yes",
         "--appendfsync", "always", "--save", "", "--dir", str(data)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    import redis

    client = redis.Redis(port=port, socket_connect_timeout=1)
    _wait(lambda: _pings(client), 30, "redis-server answering", proc)
    return proc


def _pings(client) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_a_ten_second_redis_outage_mid_stream_changes_nothing(tmp_path, kafka_bootstrap, unique_name):
    import socket

    learner, n, every = "driftmoe", 200_000, 10_000
    topic = unique_name("outage")
    _seed_topic(kafka_bootstrap, "confluent", topic, n, 13)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "redis"
    data.mkdir()
    redis_proc = _redis_server(port, data)
    url = f"redis://127.0.0.1:{port}/0"
    store = RedisStore(url)
    name = unique_name("outage")
    log = tmp_path / "worker.log"
    worker = _worker(_env(kafka_bootstrap, url, "confluent", learner, name, topic, every), n, log)
    try:
        _wait(lambda: _events_seen(store, name) >= every, 300, "a first snapshot", worker, log)
        redis_proc.terminate()
        redis_proc.wait(10)
        down_until = time.monotonic() + 10.0
        while time.monotonic() < down_until:
            assert worker.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        redis_proc = _redis_server(port, data)
        assert worker.wait(600) == 0, log.read_text()[-3000:]
        header, crashed = open_snapshot(store.load_latest(name)[1], KEY.encode())
        assert crashed["counters"]["checkpoint_failures"] >= 1, "the outage was not felt"
        straight = unique_name("no-outage")
        ref = _worker(_env(kafka_bootstrap, url, "confluent", learner, straight, topic, every), n, tmp_path / "ref.log")
        assert ref.wait(600) == 0, (tmp_path / "ref.log").read_text()[-3000:]
        _, b = open_snapshot(store.load_latest(straight)[1], KEY.encode())
        # exact: the same learner on the same micro-batches, in processes on one machine
        checks.assert_state_equal(crashed["learner"], b["learner"])
        assert header.events_seen == n
    finally:
        worker.kill()
        redis_proc.terminate()
        store.close()


def test_a_broker_restart_mid_stream_changes_nothing(tmp_path, redis_url, unique_name):
    """The broker SIGKILLed under an open transaction and started again on its data."""
    from connectors import services

    # long enough that the broker dies mid-stream, not after the worker finished: the
    # learner does about 60,000 events a second here
    learner, n, every = "driftmoe", 200_000, 10_000
    state_dir = tmp_path / "kafka-state"
    kafka = services.up_kafka(state_dir)
    try:
        topic = unique_name("restart")
        _seed_topic(kafka, "confluent", topic, n, 17)
        store = RedisStore(redis_url)
        name = unique_name("restart")
        log = tmp_path / "worker.log"
        env = _env(kafka, redis_url, "confluent", learner, name, topic, every)
        worker = _worker(env, n, log)
        try:
            _wait(lambda: _events_seen(store, name) >= every, 300, "a first snapshot", worker, log)
            assert _events_seen(store, name) < n  # the broker goes down mid-stream
            assert services.restart_kafka(state_dir, kill=True, down_s=3.0) == kafka
            assert worker.wait(600) == 0, log.read_text()[-3000:]
        finally:
            worker.kill()
        header, restarted = open_snapshot(store.load_latest(name)[1], KEY.encode())
        assert header.events_seen == n
        straight = unique_name("no-restart")
        ref = _worker(_env(kafka, redis_url, "confluent", learner, straight, topic, every), n, tmp_path / "ref.log")
        assert ref.wait(600) == 0, (tmp_path / "ref.log").read_text()[-3000:]
        _, b = open_snapshot(store.load_latest(straight)[1], KEY.encode())
        # exact: the same learner on the same micro-batches, in processes on one machine
        checks.assert_state_equal(restarted["learner"], b["learner"])
        ids = _read_committed_ids(kafka, "confluent", f"{name}-predictions", n)
        assert len(ids) == n and len(set(ids)) == n
        store.close()
    finally:
        services.down(state_dir)
