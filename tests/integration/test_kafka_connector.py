from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable

import pytest

from connectors.base import Record, Sink, Source
from connectors.exceptions import ConnectorError
from connectors.kafka import KafkaAdmin, KafkaSink, KafkaSource

pytestmark = pytest.mark.integration

N_RECORDS = 300


def _poll_until(source: KafkaSource, want: int, timeout_s: float = 60.0) -> list[Record]:
    """Poll until at least ``want`` records arrived (whole batches, so maybe a few more)."""
    got: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        got.extend(source.poll(max_records=37, timeout_ms=500))
    assert len(got) >= want, f"only {len(got)} of {want} records within {timeout_s} s"
    return got


def _next_offsets(records: list[Record]) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for r in records:
        out[(r.topic, r.partition)] = max(out.get((r.topic, r.partition), 0), r.offset + 1)
    return out


@pytest.fixture
def admin(kafka_bootstrap: str) -> KafkaAdmin:
    a = KafkaAdmin(kafka_bootstrap)
    yield a
    a.close()


def _produce(kafka_bootstrap: str, topic: str, seed: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    sent = [
        (f"key-{rng.randrange(1000)}".encode(), f"value-{i}".encode()) for i in range(N_RECORDS)
    ]
    sink = KafkaSink(kafka_bootstrap)
    assert isinstance(sink, Sink)
    for key, value in sent:
        sink.send(topic, value, key=key)
    sink.flush(timeout_s=30)
    sink.close()
    return sent


def test_exactly_once_across_commit_and_seek_to_stored_offsets(
    kafka_bootstrap: str, topic_factory: Callable[..., str], admin: KafkaAdmin
) -> None:
    topic = topic_factory(partitions=3)
    group = f"g-{topic}"
    sent = _produce(kafka_bootstrap, topic, seed=11)
    ends = admin.end_offsets(topic)
    assert sorted(ends) == [(topic, 0), (topic, 1), (topic, 2)]
    assert sum(ends.values()) == N_RECORDS
    assert all(n > 0 for n in ends.values())

    first = KafkaSource(kafka_bootstrap, [topic], group)
    assert isinstance(first, Source)
    head = _poll_until(first, 180)
    # Within one poll, records come sorted by (topic, partition, offset).
    keys = [(r.topic, r.partition, r.offset) for r in head]
    assert len(keys) == len(set(keys))
    stored = _next_offsets(head)
    # The committed offsets lag the stored ones, as they do behind a snapshot: the
    # restored consumer must follow the stored offsets, not the group's commit.
    lagging = _next_offsets(head[:60])
    first.commit(lagging)
    first.close()
    assert admin.committed(group, topic) == lagging

    second = KafkaSource(kafka_bootstrap, [topic], group)
    second.seek(stored)  # before any assignment: remembered, applied on assignment
    tail = _poll_until(second, N_RECORDS - len(head))
    tail.extend(second.poll(max_records=500, timeout_ms=1000))
    second.commit(_next_offsets(head + tail))
    second.close()

    seen = [(r.partition, r.offset) for r in head + tail]
    assert len(seen) == len(set(seen)) == N_RECORDS  # no duplicate, none missing
    for p in range(3):
        offsets = sorted(o for q, o in seen if q == p)
        assert offsets == list(range(ends[(topic, p)]))
    assert sorted((r.key, r.value) for r in head + tail) == sorted(sent)
    assert admin.committed(group, topic) == ends


def test_same_key_goes_to_one_partition_and_timestamps_are_set(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=3)
    sink = KafkaSink(kafka_bootstrap)
    for i in range(20):
        sink.send(topic, str(i).encode(), key=b"same")
    sink.flush()
    sink.close()
    source = KafkaSource(kafka_bootstrap, topic, f"g-{topic}")
    records = _poll_until(source, 20)
    source.close()
    assert len({r.partition for r in records}) == 1
    assert [r.value for r in records] == [str(i).encode() for i in range(20)]
    assert all(r.timestamp_ms is not None and r.timestamp_ms > 1_600_000_000_000 for r in records)


def test_seek_after_assignment_rewinds(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=1)
    sink = KafkaSink(kafka_bootstrap)
    for i in range(10):
        sink.send(topic, str(i).encode())
    sink.flush()
    sink.close()
    source = KafkaSource(kafka_bootstrap, topic, f"g-{topic}")
    first = _poll_until(source, 10)
    assert [r.offset for r in first] == list(range(10))
    assert source.assignment() == [(topic, 0)]
    source.seek({(topic, 0): 4})
    again = _poll_until(source, 6, timeout_s=20)
    source.close()
    assert [r.offset for r in again] == [4, 5, 6, 7, 8, 9]


def test_seek_validates(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(partitions=1)
    source = KafkaSource(kafka_bootstrap, topic, f"g-{topic}")
    try:
        with pytest.raises(ValueError, match="not among"):
            source.seek({("elsewhere", 0): 0})
        with pytest.raises(ValueError, match=">= 0"):
            source.seek({(topic, 0): -1})
    finally:
        source.close()


def test_admin_create_topics_is_idempotent(
    admin: KafkaAdmin, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("admin")
    admin.create_topics([name], partitions=4)
    admin.create_topics([name], partitions=4)
    assert admin.partitions(name) == [0, 1, 2, 3]
    assert admin.end_offsets(name) == {(name, p): 0 for p in range(4)}
    assert admin.committed(f"never-{name}") == {}
    assert admin.wait_ready(timeout_s=10)["brokers"]


def test_wait_ready_gives_up_within_its_timeout() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    admin = KafkaAdmin(f"127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(ConnectorError, match="not ready within 2 s"):
        admin.wait_ready(timeout_s=2)
    assert time.monotonic() - started < 6
    admin.close()


def test_sink_reports_a_rejected_record_at_flush_and_recovers(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=1)
    # The client would refuse this size itself; raising its limit lets the broker reject it.
    sink = KafkaSink(kafka_bootstrap, extra_config={"max_request_size": 4_000_000})
    sink.send(topic, b"x" * 2_000_000)
    with pytest.raises(ConnectorError, match="not delivered"):
        sink.flush(timeout_s=30)
    sink.send(topic, b"small")
    sink.flush(timeout_s=30)
    sink.close()
    source = KafkaSource(kafka_bootstrap, topic, f"g-{topic}")
    records = _poll_until(source, 1)
    source.close()
    assert [r.value for r in records] == [b"small"]
