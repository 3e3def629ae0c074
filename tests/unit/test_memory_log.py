from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from connectors.base import Sink, Source
from connectors.exceptions import ConnectorError
from connectors.memory import InMemoryLog, partition_for_key


def _fixed_clock() -> float:
    return 1_700_000_000.0


def test_clients_satisfy_the_protocols() -> None:
    log = InMemoryLog()
    assert isinstance(log.producer(), Sink)
    assert isinstance(log.consumer(["t"], "g"), Source)


def test_offsets_start_at_zero_and_are_dense_per_partition() -> None:
    log = InMemoryLog(clock=_fixed_clock)
    log.create_topic("t", 2)
    placed = [log.append("t", f"v{i}".encode(), partition=i % 2) for i in range(6)]
    assert placed == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)]
    assert log.end_offsets("t") == {("t", 0): 3, ("t", 1): 3}


def test_same_key_same_partition_and_stable_across_processes() -> None:
    log = InMemoryLog()
    log.create_topic("t", 5)
    keys = [f"user-{i}".encode() for i in range(50)]
    first = [log.append("t", b"x", key=k)[0] for k in keys]
    again = [log.append("t", b"y", key=k)[0] for k in keys]
    assert first == again
    assert len(set(first)) == 5  # 50 keys spread over every partition
    # Python's hash() is salted per process; the partitioner must not be.
    code = (
        "from connectors.memory import partition_for_key;"
        "print([partition_for_key(f'user-{i}'.encode(), 5) for i in range(50)])"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"PYTHONHASHSEED": "123", "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    assert other.stdout.strip() == str(first)
    assert partition_for_key(b"user-0", 5) == first[0]


def test_keyless_records_rotate_over_partitions() -> None:
    log = InMemoryLog()
    log.create_topic("t", 3)
    assert [log.append("t", b"v")[0] for _ in range(6)] == [0, 1, 2, 0, 1, 2]


def test_first_send_creates_topic_with_default_partitions() -> None:
    log = InMemoryLog(default_partitions=4)
    log.producer().send("new", b"v", key=b"k")
    assert log.topics() == {"new": 4}
    assert sum(log.end_offsets("new").values()) == 1


def test_create_topic_is_idempotent_but_refuses_another_partition_count() -> None:
    log = InMemoryLog()
    log.create_topic("t", 3)
    log.create_topic("t", 3)
    with pytest.raises(ValueError, match="3 partitions, not 2"):
        log.create_topic("t", 2)
    with pytest.raises(ValueError, match="partitions"):
        log.create_topic("u", 0)


def test_send_rejects_non_bytes() -> None:
    sink = InMemoryLog().producer()
    with pytest.raises(TypeError, match="value must be bytes"):
        sink.send("t", "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key must be bytes"):
        sink.send("t", b"v", key="k")  # type: ignore[arg-type]


def test_poll_reads_everything_once_in_deterministic_round_robin() -> None:
    log = InMemoryLog(clock=_fixed_clock)
    log.create_topic("t", 3)
    for p in range(3):
        for i in range(4):
            log.append("t", f"{p}-{i}".encode(), partition=p)
    src = log.consumer(["t"], "g")
    batches = [[(r.partition, r.offset) for r in src.poll(3, 0)] for _ in range(5)]
    assert batches == [
        [(0, 0), (0, 1), (0, 2)],
        [(1, 0), (1, 1), (1, 2)],
        [(2, 0), (2, 1), (2, 2)],
        [(0, 3), (1, 3), (2, 3)],
        [],
    ]
    rec = log.consumer(["t"], "other").poll(1, 0)[0]
    assert (rec.topic, rec.value, rec.key, rec.timestamp_ms) == (
        "t",
        b"0-0",
        None,
        1_700_000_000_000,
    )


def test_seeded_stream_consumed_exactly_once_with_commit_and_resume() -> None:
    rng = random.Random(7)
    log = InMemoryLog()
    log.create_topic("events", 3)
    sink = log.producer()
    sent = [(f"k{rng.randrange(20)}".encode(), f"v{i}".encode()) for i in range(200)]
    for key, value in sent:
        sink.send("events", value, key=key)

    first = log.consumer(["events"], "g")
    seen = []
    while len(seen) < 120:
        seen.extend(first.poll(rng.randrange(1, 17), 0))
    offsets = {}
    for r in seen:
        offsets[(r.topic, r.partition)] = r.offset + 1
    first.commit(offsets)
    first.close()
    assert log.committed("g") == offsets

    second = log.consumer(["events"], "g")
    rest = []
    while batch := second.poll(50, 0):
        rest.extend(batch)
    got = [(r.partition, r.offset) for r in seen + rest]
    assert len(got) == len(set(got)) == 200
    assert sorted(r.value for r in seen + rest) == sorted(v for _, v in sent)
    # Per partition, offsets arrive in order with no gap.
    for p in range(3):
        offs = [o for q, o in got if q == p]
        assert offs == list(range(len(offs)))


def test_seek_overrides_committed_and_validates() -> None:
    log = InMemoryLog()
    log.create_topic("t", 2)
    for i in range(10):
        log.append("t", str(i).encode(), partition=0)
    src = log.consumer("t", "g")
    src.commit({("t", 0): 2})
    src.seek({("t", 0): 7})
    assert [r.offset for r in src.poll(10, 0)] == [7, 8, 9]
    assert src.position(("t", 0)) == 10
    with pytest.raises(ValueError, match="not among"):
        src.seek({("other", 0): 0})
    with pytest.raises(ValueError, match=">= 0"):
        src.seek({("t", 0): -1})
    with pytest.raises(ValueError, match="out of range"):
        src.seek({("t", 5): 0})


def test_new_consumer_starts_from_committed_offset() -> None:
    log = InMemoryLog()
    for i in range(5):
        log.append("t", str(i).encode())
    log.consumer("t", "g").commit({("t", 0): 3})
    assert [r.value for r in log.consumer("t", "g").poll(10, 0)] == [b"3", b"4"]
    assert [r.offset for r in log.consumer("t", "fresh").poll(10, 0)] == [0, 1, 2, 3, 4]


def test_poll_waits_for_data_from_another_thread() -> None:
    log = InMemoryLog()
    log.create_topic("t", 1)
    src = log.consumer("t", "g")
    t = threading.Timer(0.05, lambda: log.append("t", b"late"))
    t.start()
    started = time.monotonic()
    records = src.poll(10, 5_000)
    waited = time.monotonic() - started
    t.join()
    assert [r.value for r in records] == [b"late"]
    assert waited < 2.0


def test_poll_times_out_empty_and_close_wakes_poller() -> None:
    log = InMemoryLog()
    src = log.consumer("t", "g")
    started = time.monotonic()
    assert src.poll(10, 50) == []
    assert time.monotonic() - started >= 0.04

    errors: list[BaseException] = []

    def blocked_poll() -> None:
        try:
            src.poll(10, 10_000)
        except ConnectorError as exc:
            errors.append(exc)

    th = threading.Thread(target=blocked_poll)
    th.start()
    # close only once the poller waits on the log's condition, so the close must wake it
    # (a close before the poll starts would pass without waking anything)
    deadline = time.monotonic() + 30
    while not log._appended._waiters:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the poller never blocked"
        time.sleep(0.005)
    src.close()
    th.join(timeout=2)
    assert not th.is_alive()
    assert len(errors) == 1


def test_concurrent_producers_lose_nothing() -> None:
    log = InMemoryLog()
    log.create_topic("t", 4)

    def produce(n: int) -> None:
        sink = log.producer()
        for i in range(500):
            sink.send("t", f"{n}-{i}".encode(), key=f"{n}-{i}".encode())

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(log.end_offsets("t").values()) == 2000
    values = [r.value for r in log.consumer("t", "g").poll(5000, 0)]
    assert len(set(values)) == 2000


def test_closed_clients_refuse_work() -> None:
    log = InMemoryLog()
    sink = log.producer()
    sink.close()
    with pytest.raises(ConnectorError, match="closed"):
        sink.send("t", b"v")
    src = log.consumer("t", "g")
    src.close()
    with pytest.raises(ConnectorError, match="closed"):
        src.poll(1, 0)


def test_retention_drops_old_records_but_offsets_go_on():
    log = InMemoryLog(retention=10)
    sink = log.producer()
    reader = log.consumer(["t"], "late")
    for i in range(25):
        sink.send("t", str(i).encode())
    assert log.end_offsets("t") == {("t", 0): 25}
    # a consumer behind retention resumes at the oldest record kept
    got = reader.poll(100, 10)
    assert [r.offset for r in got] == list(range(10, 25))
    assert [r.value for r in got] == [str(i).encode() for i in range(10, 25)]
    sink.send("t", b"25")
    assert [(r.offset, r.value) for r in reader.poll(100, 10)] == [(25, b"25")]


def test_retention_must_be_positive():
    with pytest.raises(ValueError, match="retention must be >= 1"):
        InMemoryLog(retention=0)
