"""`driftline worker --config` against the real broker and Redis: three pipelines in one
process (inline labels, labels on their own topic arriving up to 5,000 events late, a
regressor) with exact counters and the states of pipelines run alone; crash equivalence
with delayed labels; three workers sharing six pipelines, one SIGKILLed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Producer

from connectors.kafka import KafkaAdmin
from connectors.redis_store import RedisLease, RedisStore
from learners import checks
from stream.events import Event
from stream.join import encode_label
from stream.snapshot import open_snapshot, read_header
from stream.synth import delayed_labels, sea_stream
from tests.unit.test_join import reference_counts

pytestmark = pytest.mark.integration

KEY = "k" * 32
BATCH = 256


def _env(kafka: str, redis: str) -> dict[str, str]:
    return {
        **os.environ, "PYTHONUNBUFFERED": "1", "KAFKA_BOOTSTRAP_SERVERS": kafka, "REDIS_URL": redis,
        "DRIFTLINE_SNAPSHOT_KEY": KEY, "DRIFTLINE_LEASE_TTL_S": "2",
    }  # fmt: skip


def _produce(kafka: str, topics: list[str], records: list[tuple]) -> None:
    """(topic, value, timestamp ms[, headers]) in order, one partition each, timestamps as given."""
    admin = KafkaAdmin(kafka)
    admin.create_topics(topics, 1)
    admin.close()
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 20, "enable.idempotence": True})
    for topic, value, ts, *headers in records:
        while True:
            try:
                producer.produce(topic, value, timestamp=ts, headers=headers[0] if headers else None)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0


def _delayed(kafka: str, events: str, labels: str, n: int, seed: int) -> list[tuple[str, int, int]]:
    """Events without labels, and their labels on another topic 0-5,000 events late."""
    schedule = delayed_labels(n, seed, max_delay=5_000, missing=0.02, duplicated=0.01, unknown=0.005)
    stream = list(sea_stream(n, seed, n // 2))
    base = int(time.time() * 1000) - 10 * n  # recent: the broker's retention goes by timestamps
    out = []
    for kind, i, t in schedule:
        if kind == "event":
            out.append((events, Event(id=f"e{i}", x=stream[i][0]).to_json(), base + t))
        else:
            out.append((labels, encode_label(f"e{i}" if kind == "label" else f"nobody{i}", stream[i][1]), base + t))
    _produce(kafka, [events, labels], out)
    return schedule


def _inline_records(topic: str, n: int, seed: int, regression: bool = False) -> list[tuple]:
    stream = sea_stream(n, seed, n // 2)
    base = int(time.time() * 1000) - 10 * n
    out = []
    for i, (x, y) in enumerate(stream):
        target = round(x["x0"] * 2.0 - x["x1"] + float(y), 4) if regression else y
        out.append((topic, Event(id=f"e{i}", x=x, y=target).to_json(), base + i))
    return out


def _inline(kafka: str, topic: str, n: int, seed: int, regression: bool = False) -> None:
    _produce(kafka, [topic], _inline_records(topic, n, seed, regression))


def _pipeline(name: str, events: str, learner: str, **extra) -> dict:
    spec = {"name": name, "events_topic": events, "learner": {"name": learner}, "batch_size": BATCH, **extra}
    return spec


def _config(path: Path, pipelines: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"pipelines": pipelines}))
    return path


def _worker(env: dict[str, str], config: Path, events: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "worker", "--config", str(config), "--no-http", "--events", str(events)],
        env=env, stdout=log.open("a"), stderr=subprocess.STDOUT,
    )


def _wait(cond, timeout_s: float, what: str, logs: list[Path] = ()) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    tails = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in logs if p.exists())
    raise AssertionError(f"{what} within {timeout_s} s\n{tails}")


def _state(store: RedisStore, name: str) -> tuple:
    header, state = open_snapshot(store.load_latest(name)[1], KEY.encode())
    return header, state


def _same(a: dict, b: dict) -> None:
    # exact: the same learner on the same micro-batches and labels, in processes on one machine
    checks.assert_state_equal(a["learner"], b["learner"])
    assert a["metrics"] == b["metrics"] and a["join"] == b["join"]  # exact: plain data, same operations
    assert a["counters"]["events"] == b["counters"]["events"] and a["counters"]["labelled"] == b["counters"]["labelled"]


def _finished(procs: list[subprocess.Popen], logs: list[Path], timeout_s: float = 300) -> None:
    for p, log in zip(procs, logs, strict=True):
        try:
            p.wait(timeout_s)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGUSR1)  # the worker prints its threads' stacks
            time.sleep(1)
            p.kill()
            p.wait()
        assert p.returncode == 0, log.read_text()[-6000:]


def test_three_pipelines_in_one_worker_count_exactly_and_learn_as_alone(tmp_path, kafka_bootstrap, redis_url, unique_name):
    n, ttl = 10_000, 4_000
    inline, ev, lab, reg = (unique_name(p) for p in ("inline", "late-ev", "late-lab", "reg"))
    _inline(kafka_bootstrap, inline, n, 1)
    schedule = _delayed(kafka_bootstrap, ev, lab, n, 2)
    _inline(kafka_bootstrap, reg, n, 3, regression=True)

    def specs(suffix: str) -> list[dict]:
        return [
            _pipeline(f"{inline}{suffix}", inline, "river:tree.HoeffdingTreeClassifier"),
            _pipeline(
                f"{ev}{suffix}", ev, "driftmoe", labels_topic=lab,
                labels={"ttl_events": ttl, "delay_ms": 0, "remember": 1_000_000},
            ),
            _pipeline(f"{reg}{suffix}", reg, "river:linear_model.LinearRegression", task="regression"),
        ]

    env = _env(kafka_bootstrap, redis_url)
    together = _worker(env, _config(tmp_path / "three.yaml", specs("-together")), n, tmp_path / "together.log")
    alone = [
        _worker(env, _config(tmp_path / f"alone{i}.yaml", [spec]), n, tmp_path / f"alone{i}.log")
        for i, spec in enumerate(specs("-alone"))
    ]
    _finished([together, *alone], [tmp_path / "together.log", *(tmp_path / f"alone{i}.log" for i in range(3))])

    store = RedisStore(redis_url)
    want, waiting = reference_counts(schedule, n, BATCH, 0, ttl)
    for spec_t, spec_a in zip(specs("-together"), specs("-alone"), strict=True):
        header, a = _state(store, spec_t["name"])
        _, b = _state(store, spec_a["name"])
        assert header.events_seen == n
        _same(a, b)
    _, late = _state(store, f"{ev}-together")
    counts = late["join"]["counts"]
    assert {k: counts[k] for k in ("on_time", "late", "duplicate", "unknown", "expired")} == {
        k: want[k] for k in ("on_time", "late", "duplicate", "unknown", "expired")
    }
    assert len(late["join"]["waiting"]) == waiting + n % BATCH
    _state(store, f"{reg}-together")  # the regressor wrote its snapshot
    summary = read_header(store.load_latest(f"{reg}-together")[1]).metrics
    assert set(summary) >= {"mae", "rmse", "r2", "rolling_mae", "rolling_rmse", "rolling_r2"}
    assert summary["r2"] > 0.5, summary  # it learned the target
    _, inl = _state(store, f"{inline}-together")
    assert inl["counters"]["labelled"] == n and inl["join"] is None
    store.close()


def test_sigkills_with_delayed_labels_leave_the_state_of_one_uninterrupted_run(tmp_path, kafka_bootstrap, redis_url, unique_name):
    n, every, kills = 12_000, 1_500, 5
    ev, lab = unique_name("crash-ev"), unique_name("crash-lab")
    _delayed(kafka_bootstrap, ev, lab, n, 4)
    labels = {"ttl_events": 3_000, "delay_ms": 0, "remember": 1_000_000}
    crashed, straight = unique_name("crashed"), unique_name("straight")
    env = _env(kafka_bootstrap, redis_url)
    cfg_c = _config(tmp_path / "c.yaml", [_pipeline(crashed, ev, "river:tree.HoeffdingTreeClassifier", labels_topic=lab, labels=labels, checkpoint={"every_events": every})])
    cfg_s = _config(tmp_path / "s.yaml", [_pipeline(straight, ev, "river:tree.HoeffdingTreeClassifier", labels_topic=lab, labels=labels, checkpoint={"every_events": every})])
    ref = _worker(env, cfg_s, n, tmp_path / "straight.log")

    store = RedisStore(redis_url)
    rng = random.Random(9)
    log = tmp_path / "crashed.log"

    def seen() -> int:
        latest = store.load_latest(crashed)
        return read_header(latest[1]).events_seen if latest else 0

    for threshold in sorted(rng.sample(range(every, n - every, 500), kills)):
        proc = _worker(env, cfg_c, n, log)
        _wait(lambda t=threshold, p=proc: seen() >= t or p.poll() is not None, 120, f"a snapshot past {threshold}", [log])
        time.sleep(rng.uniform(0.0, 0.3))  # past the snapshot: learned work is lost and redone
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    _finished([_worker(env, cfg_c, n, log), ref], [log, tmp_path / "straight.log"])
    _, a = _state(store, crashed)
    _, b = _state(store, straight)
    _same(a, b)
    assert a["counters"]["events"] == n and a["join"]["counts"]["late"] > 0 and a["join"]["counts"]["on_time"] > 0
    store.close()


def test_three_workers_share_six_pipelines_and_a_dead_ones_move_within_ten_seconds(tmp_path, kafka_bootstrap, redis_url, unique_name):
    n = 10_000
    topics = [unique_name(f"share{i}") for i in range(6)]
    records = [_inline_records(topic, n, 10 + i) for i, topic in enumerate(topics)]
    # the first half now, the rest once a worker is dead: no worker can finish its pipelines
    # before the spread is seen and the kill lands, however fast it learns
    for topic, rec in zip(topics, records, strict=True):
        _produce(kafka_bootstrap, [topic], rec[: n // 2])
    names = [unique_name(f"p{i}") for i in range(6)]
    shared = _config(tmp_path / "six.yaml", [
        _pipeline(name, topic, "river:tree.HoeffdingTreeClassifier", checkpoint={"every_events": 2_000})
        for name, topic in zip(names, topics, strict=True)
    ])  # fmt: skip
    env = _env(kafka_bootstrap, redis_url)
    logs = [tmp_path / f"w{i}.log" for i in range(3)]
    workers = [_worker(env, shared, n, log) for log in logs]
    leases = [RedisLease(redis_url, name) for name in names]

    def holders() -> list[int | None]:
        pids = []
        for lease in leases:
            h = lease.holder()
            pids.append(int(h.split(":")[1]) if h else None)
        return pids

    # spread: every pipeline held, each worker holding two
    _wait(lambda: sorted(holders().count(w.pid) for w in workers) == [2, 2, 2], 60, "six pipelines spread over three workers", logs)
    victim = workers[0]
    theirs = [name for name, pid in zip(names, holders(), strict=True) if pid == victim.pid]
    victim.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    victim.wait(10)
    survivors = {w.pid for w in workers[1:]}
    _wait(
        lambda: all(pid in survivors for name, pid in zip(names, holders(), strict=True) if name in theirs),
        10, "the dead worker's pipelines taken by the others", logs,
    )  # fmt: skip
    moved_s = time.monotonic() - killed_at
    assert moved_s <= 10.0, moved_s
    for topic, rec in zip(topics, records, strict=True):
        _produce(kafka_bootstrap, [topic], rec[n // 2 :])
    _finished(workers[1:], logs[1:])

    alone = _config(tmp_path / "alone.yaml", [
        _pipeline(f"{name}-ref", topic, "river:tree.HoeffdingTreeClassifier", checkpoint={"every_events": 2_000})
        for name, topic in zip(names, topics, strict=True)
    ])  # fmt: skip
    _finished([_worker(env, alone, n, tmp_path / "ref.log")], [tmp_path / "ref.log"])
    store = RedisStore(redis_url)
    for name in names:
        header, a = _state(store, name)
        _, b = _state(store, f"{name}-ref")
        assert header.events_seen == n
        # exact: the same learner on the same micro-batches, in processes on one machine
        checks.assert_state_equal(a["learner"], b["learner"])
        assert a["metrics"] == b["metrics"]  # exact: plain data, same operations
    for lease in leases:
        lease.close()
    store.close()


def test_dead_letters_are_listed_and_replayed_as_their_original_bytes(tmp_path, kafka_bootstrap, unique_name, capsys):
    from connectors.base import Record
    from connectors.kafka import open_source
    from stream.cli import main
    from stream.dead_letters import dead_letter_headers

    dead, fixed = unique_name("dead"), unique_name("fixed")
    original = [b'{"id": "a", "x": {"f": NaN}}', b"\xff\xfe not utf-8"]
    # as the pipeline writes them: the original bytes, and why as headers
    records = [
        (dead, v, int(time.time() * 1000), dead_letter_headers("p", Record("ev", 0, i, v), f"reason {i}", "invalid_event"))
        for i, v in enumerate(original)
    ]
    _produce(kafka_bootstrap, [dead, fixed], records)
    assert main(["dead-letters", dead, "--bootstrap-servers", kafka_bootstrap]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "p ev[0]@0: reason 0" in out and "p ev[0]@1: reason 1" in out and "2 dead letter(s)" in out
    assert main(["dead-letters", dead, "--replay", "--to", fixed, "--reason", "reason 1", "--bootstrap-servers", kafka_bootstrap]) == 0
    source = open_source("confluent", kafka_bootstrap, [fixed], unique_name("r"))
    got: list[bytes] = []
    _wait(lambda: got.extend(r.value for r in source.poll(10, 200)) or got, 30, "the replayed event")
    source.close()
    assert got == [original[1]]
