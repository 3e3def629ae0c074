"""The Kafka source/sink contract, run against a real broker for each client."""

from __future__ import annotations

import logging
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import connectors.kafka._common as kafka_common
from connectors.base import Record, Sink, Source, TransactionalSink, send_many
from connectors.exceptions import ConnectorError, OutputsLostError, ProducerFencedError
from connectors.kafka import CLIENTS, KafkaAdmin, open_sink, open_source

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CODECS = ("gzip", "snappy", "lz4", "zstd")


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def admin(kafka_bootstrap: str) -> Iterator[KafkaAdmin]:
    a = KafkaAdmin(kafka_bootstrap)
    yield a
    a.close()


@pytest.fixture
def closing() -> Iterator[Callable[[Any], Any]]:
    """``closing(obj)`` returns obj and closes it at teardown (newest first)."""
    opened: list[Any] = []

    def keep(obj: Any) -> Any:
        opened.append(obj)
        return obj

    yield keep
    for obj in reversed(opened):
        try:
            obj.close()
        except Exception as exc:  # already closed, or broken on purpose by the test
            logging.getLogger(__name__).debug("closing %r: %s", obj, exc)


def _poll_until(
    source: Source, want: int, timeout_s: float = 60.0, max_records: int = 37
) -> list[Record]:
    """Poll until at least ``want`` records arrived (whole batches, so maybe a few more)."""
    got: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        batch = source.poll(max_records=max_records, timeout_ms=500)
        keys = [(r.topic, r.partition, r.offset) for r in batch]
        assert keys == sorted(keys), "a poll's records must come sorted"
        got.extend(batch)
    assert len(got) >= want, f"only {len(got)} of {want} records within {timeout_s} s"
    return got


def _poll_until_value(source: Source, value: bytes, timeout_s: float = 60.0) -> list[Record]:
    """Every record up to and including the first whose value is ``value``."""
    got: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got.extend(source.poll(max_records=100, timeout_ms=500))
        if any(r.value == value for r in got):
            return got
    pytest.fail(f"{value!r} not read within {timeout_s} s; read {[r.value for r in got]}")


def _next_offsets(records: list[Record]) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for r in records:
        out[(r.topic, r.partition)] = max(out.get((r.topic, r.partition), 0), r.offset + 1)
    return out


def _produce(
    client: str, bootstrap: str, topic: str, n: int, seed: int, options: dict | None = None
) -> list[tuple[bytes, bytes, tuple[tuple[str, bytes], ...]]]:
    rng = random.Random(seed)
    sent = []
    sink = open_sink(client, bootstrap, options=options)
    assert isinstance(sink, Sink) and sink.transactional is False
    for i in range(n):
        key = f"key-{rng.randrange(50)}".encode()
        headers = (("seq", str(i).encode()), ("trace", rng.randbytes(4)))
        value = f"value-{i}-{'x' * rng.randrange(40)}".encode()
        sink.send(topic, value, key=key, headers=list(headers))
        sent.append((key, value, headers))
    sink.flush(timeout_s=30)
    sink.close()
    return sent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- records --------------------------------------------------------------------------------


def test_values_keys_and_headers_round_trip(
    client: str, kafka_bootstrap: str, topic_factory: Callable[..., str], closing: Callable
) -> None:
    topic = topic_factory(partitions=3)
    sent = _produce(client, kafka_bootstrap, topic, 300, seed=5)
    source = closing(open_source(client, kafka_bootstrap, [topic], f"g-{topic}"))
    assert isinstance(source, Source)
    got = _poll_until(source, 300)
    assert len(got) == 300
    assert sorted((r.key, r.value, r.headers) for r in got) == sorted(sent)
    # a key always lands on one partition, and partitions keep the send order
    partition_of: dict[bytes | None, set[int]] = {}
    for r in got:
        partition_of.setdefault(r.key, set()).add(r.partition)
    assert all(len(parts) == 1 for parts in partition_of.values())
    for p in range(3):
        mine = sorted((r for r in got if r.partition == p), key=lambda r: r.offset)
        assert [r.offset for r in mine] == list(range(len(mine)))
        seqs = [int(dict(r.headers)["seq"]) for r in mine]
        assert seqs == sorted(seqs)
    assert all(r.timestamp_ms is not None and r.timestamp_ms > 1_600_000_000_000 for r in got)


def test_seek_before_assignment_follows_stored_offsets_not_the_commit(
    client: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    admin: KafkaAdmin,
    closing: Callable,
) -> None:
    topic = topic_factory(partitions=3)
    group = f"g-{topic}"
    sent = _produce(client, kafka_bootstrap, topic, 300, seed=11)
    ends = admin.end_offsets(topic)
    assert sum(ends.values()) == 300 and all(n > 0 for n in ends.values())

    first = closing(open_source(client, kafka_bootstrap, [topic], group))
    assert first.committed() == {}  # nothing committed yet: every partition left out
    head = _poll_until(first, 180)
    stored = _next_offsets(head)
    # the commit lags the stored offsets, as it does behind a snapshot, and names two
    # of the three partitions only
    lagging = {tp: max(1, off - 25) for tp, off in sorted(stored.items())[:2]}
    first.commit(lagging)
    first.close()
    assert admin.committed(group, topic) == lagging

    second = closing(open_source(client, kafka_bootstrap, [topic], group))
    assert second.committed() == lagging  # before any assignment
    second.seek(stored)  # remembered, applied when the group assigns the partitions
    tail = _poll_until(second, 300 - len(head))
    tail.extend(second.poll(max_records=500, timeout_ms=500))
    second.commit(_next_offsets(head + tail))

    seen = [(r.partition, r.offset) for r in head + tail]
    assert len(seen) == len(set(seen)) == 300  # no duplicate, none missing
    assert sorted((r.key, r.value, r.headers) for r in head + tail) == sorted(sent)
    assert second.committed() == admin.committed(group, topic) == ends


def test_seek_after_assignment_rewinds_and_validates(
    client: str, kafka_bootstrap: str, topic_factory: Callable[..., str], closing: Callable
) -> None:
    topic = topic_factory(partitions=1)
    _produce(client, kafka_bootstrap, topic, 10, seed=2)
    source = closing(open_source(client, kafka_bootstrap, topic, f"g-{topic}"))
    first = _poll_until(source, 10)
    assert [r.offset for r in first] == list(range(10))
    assert source.assignment() == [(topic, 0)]
    source.seek({(topic, 0): 4})
    again = _poll_until(source, 6, timeout_s=20)
    assert [r.offset for r in again] == [4, 5, 6, 7, 8, 9]
    with pytest.raises(ValueError, match="not among"):
        source.seek({("elsewhere", 0): 0})
    with pytest.raises(ValueError, match=">= 0"):
        source.seek({(topic, 0): -1})


def test_rebalance_neither_replays_nor_skips(
    client: str, kafka_bootstrap: str, topic_factory: Callable[..., str], closing: Callable
) -> None:
    topic = topic_factory(partitions=2)
    group = f"g-{topic}"
    _produce(client, kafka_bootstrap, topic, 2000, seed=3)
    a = closing(open_source(client, kafka_bootstrap, [topic], group))
    got = _poll_until(a, 20, max_records=10)
    # a second member joins: the group takes a partition away from `a` ...
    b = closing(open_source(client, kafka_bootstrap, [topic], group))
    deadline = time.monotonic() + 60
    while not (len(a.assignment()) == 1 and len(b.assignment()) == 1):
        assert time.monotonic() < deadline, "the second member never got a partition"
        got.extend(a.poll(max_records=1, timeout_ms=100))
        b.poll(max_records=1, timeout_ms=100)
    # ... and gives it back when that member leaves; nothing was committed, so only the
    # remembered positions keep `a` from starting that partition over
    b.close()
    deadline = time.monotonic() + 60
    while len(got) < 2000 or len(a.assignment()) < 2:
        assert time.monotonic() < deadline, f"read {len(got)} of 2000"
        got.extend(a.poll(max_records=500, timeout_ms=200))
    got.extend(a.poll(max_records=500, timeout_ms=200))
    seen = [(r.partition, r.offset) for r in got]
    assert len(seen) == len(set(seen)) == 2000


def test_a_rejected_record_is_reported_at_flush_and_the_sink_recovers(
    client: str, kafka_bootstrap: str, topic_factory: Callable[..., str], closing: Callable
) -> None:
    topic = topic_factory(partitions=1)
    # the client would refuse this size itself; raising its limit lets the broker reject it
    sink = closing(open_sink(client, kafka_bootstrap, options={"message.max.bytes": 4_000_000}))
    sink.send(topic, b"x" * 2_000_000)
    with pytest.raises(ConnectorError, match="not delivered"):
        sink.flush(timeout_s=30)
    sink.send(topic, b"small")
    sink.flush(timeout_s=30)
    source = closing(open_source(client, kafka_bootstrap, topic, f"g-{topic}"))
    assert [r.value for r in _poll_until(source, 1)] == [b"small"]


def test_a_rejected_record_in_a_transaction_loses_it_clearly_and_the_sink_goes_on(
    client: str, kafka_bootstrap: str, topic_factory: Callable[..., str], closing: Callable
) -> None:
    topic = topic_factory(partitions=1)
    sink = closing(
        open_sink(client, kafka_bootstrap, transactional_id=f"driftline-{topic}", options={"message.max.bytes": 4_000_000})
    )
    sink.send(topic, b"lost-small")
    sink.send(topic, b"x" * 2_000_000)
    with pytest.raises(OutputsLostError):
        sink.flush(timeout_s=30)
        sink.commit_transaction({}, None)
    # librdkafka may lose the next transaction too (the sequence gap costs an epoch bump);
    # the caller's answer is the same: produce again
    for _ in range(3):
        try:
            sink.send(topic, b"kept")
            sink.send(topic, b"end")
            sink.commit_transaction({}, None)
            break
        except OutputsLostError:
            continue
    else:
        pytest.fail("no transaction committed after the lost one")
    source = closing(open_source(client, kafka_bootstrap, topic, f"g-{topic}"))
    assert [r.value for r in _poll_until_value(source, b"end")] == [b"kept", b"end"]


@pytest.mark.parametrize("partitions", [1, 2])
def test_send_many_keeps_order_and_keys(
    client: str, kafka_bootstrap: str, topic_factory: Callable[..., str], closing: Callable, partitions: int
) -> None:
    # one partition: the confluent sink names it and skips the partitioner; two: the
    # partitioner places each key, always on the same partition
    topic = topic_factory(partitions=partitions)
    values = [f"v{i}".encode() for i in range(400)]
    keys = [None if i % 7 == 0 else f"k{i % 5}".encode() for i in range(400)]
    sink = closing(open_sink(client, kafka_bootstrap))
    send_many(sink, topic, values[:150], keys[:150])
    send_many(sink, topic, values[150:], keys[150:])
    sink.flush(timeout_s=30)
    source = closing(open_source(client, kafka_bootstrap, [topic], f"g-{topic}"))
    got = _poll_until(source, 400)
    assert sorted((r.value, r.key) for r in got) == sorted(zip(values, keys, strict=True))
    for p in range(partitions):
        mine = [int(r.value[1:]) for r in sorted(got, key=lambda r: r.offset) if r.partition == p]
        assert mine == sorted(mine)
    partition_of: dict[bytes, set[int]] = {}
    for r in got:
        if r.key is not None:
            partition_of.setdefault(r.key, set()).add(r.partition)
    assert len(partition_of) == 5 and all(len(parts) == 1 for parts in partition_of.values())
    if partitions == 2:
        assert {r.partition for r in got} == {0, 1}


def test_a_source_without_metadata_gives_the_same_records_less_their_timestamps_and_headers(
    client: str, kafka_bootstrap: str, topic_factory: Callable[..., str], closing: Callable
) -> None:
    topic = topic_factory(partitions=2)
    sent = _produce(client, kafka_bootstrap, topic, 120, seed=9)
    full = _poll_until(closing(open_source(client, kafka_bootstrap, [topic], f"g1-{topic}")), 120)
    bare = _poll_until(closing(open_source(client, kafka_bootstrap, [topic], f"g2-{topic}", metadata=False)), 120)
    assert any(r.headers for r in full) and all(r.timestamp_ms is not None for r in full)
    assert all(r.headers == () and r.timestamp_ms is None for r in bare)
    strip = lambda r: (r.topic, r.partition, r.offset, r.value, r.key)  # noqa: E731
    assert sorted(map(strip, bare)) == sorted(map(strip, full)) and len(sent) == 120


@pytest.mark.parametrize("batched", [False, True])
def test_a_full_confluent_queue_is_waited_out_not_lost(
    batched: bool, kafka_bootstrap: str, topic_factory: Callable[..., str], closing: Callable
) -> None:
    topic = topic_factory(partitions=1)
    # a queue of 5 overflows (BufferError inside the client) many times over 500 sends
    sink = closing(
        open_sink("confluent", kafka_bootstrap, options={"queue.buffering.max.messages": 5, "linger.ms": 20})
    )
    if batched:
        for lo in range(0, 500, 64):
            chunk = [str(i).encode() for i in range(lo, min(lo + 64, 500))]
            sink.send_many(topic, chunk, [None] * len(chunk))
    else:
        for i in range(500):
            sink.send(topic, str(i).encode())
    sink.flush(timeout_s=30)
    source = closing(open_source("confluent", kafka_bootstrap, topic, f"g-{topic}"))
    assert [r.value for r in _poll_until(source, 500, max_records=500)] == [
        str(i).encode() for i in range(500)
    ]


# -- options ---------------------------------------------------------------------------------


def test_options_are_passed_verbatim_or_refused_by_name(kafka_bootstrap: str) -> None:
    with pytest.raises(ConnectorError, match=r"sasl\.oauthbearer\.method"):
        open_source("kafka-python", kafka_bootstrap, "t", "g", options={"sasl.oauthbearer.method": "oidc"})
    with pytest.raises(ConnectorError, match=r"sasl\.oauthbearer\.method"):
        open_sink("kafka-python", kafka_bootstrap, options={"sasl.oauthbearer.method": "oidc"})
    # librdkafka gets the option itself, and refuses a misspelt one
    with pytest.raises(ConnectorError, match=r"no\.such\.option"):
        open_sink("confluent", kafka_bootstrap, options={"no.such.option": "1"})
    with pytest.raises(ValueError, match="unknown Kafka client"):
        open_sink("aiokafka", kafka_bootstrap)


def test_a_transactional_confluent_sink_lingers_unless_told_otherwise(kafka_bootstrap: str, closing: Callable[[Any], Any]) -> None:
    from connectors.kafka.confluent import PRODUCER_DEFAULTS, TRANSACTIONAL_LINGER_MS

    tag = uuid.uuid4().hex[:8]
    plain = closing(open_sink("confluent", kafka_bootstrap))
    lingering = closing(open_sink("confluent", kafka_bootstrap, transactional_id=f"linger-{tag}"))
    told = closing(open_sink("confluent", kafka_bootstrap, transactional_id=f"told-{tag}", options={"linger.ms": 7}))
    assert plain._config["linger.ms"] == PRODUCER_DEFAULTS["linger.ms"] == 5
    assert lingering._config["linger.ms"] == TRANSACTIONAL_LINGER_MS == 50
    assert told._config["linger.ms"] == 7


# -- transactions ----------------------------------------------------------------------------


def test_committed_transactions_are_read_once_and_move_the_group_offsets(
    client: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    admin: KafkaAdmin,
    closing: Callable,
) -> None:
    events, outputs = topic_factory(partitions=2), topic_factory(partitions=2)
    group = f"g-{events}"
    _produce(client, kafka_bootstrap, events, 120, seed=8)
    source = closing(open_source(client, kafka_bootstrap, [events], group))
    sink = closing(open_sink(client, kafka_bootstrap, transactional_id=f"driftline-{events}"))
    assert isinstance(sink, TransactionalSink) and sink.transactional is True

    read: list[Record] = []
    commits = 0
    deadline = time.monotonic() + 60
    while len(read) < 120:
        assert time.monotonic() < deadline, f"read {len(read)} of 120"
        batch = source.poll(max_records=50, timeout_ms=500)
        if not batch:
            continue
        for r in batch:
            sink.send(outputs, b"out:" + r.value, key=r.key, headers=[("from", str(r.offset).encode())])
        read.extend(batch)
        sink.commit_transaction(_next_offsets(read), source)
        commits += 1
    assert commits >= 2
    expected = _next_offsets(read)
    assert admin.committed(group, events) == expected == admin.end_offsets(events)
    assert source.committed() == expected

    reader = closing(open_source(client, kafka_bootstrap, [outputs], f"reader-{outputs}"))
    out = _poll_until(reader, 120)
    out.extend(reader.poll(max_records=500, timeout_ms=500))
    assert sorted(r.value for r in out) == sorted(b"out:" + r.value for r in read)


def test_aborted_fenced_and_abandoned_transactions_are_never_read(
    client: str, kafka_bootstrap: str, topic_factory: Callable[..., str], closing: Callable
) -> None:
    topic = topic_factory(partitions=1)
    txn_id = f"driftline-{topic}"
    first = closing(open_sink(client, kafka_bootstrap, transactional_id=txn_id))
    for i in range(5):
        first.send(topic, f"aborted-{i}".encode())
    first.flush(timeout_s=30)  # written to the log, so that the abort has work to do
    first.abort_transaction()
    first.send(topic, b"committed-1")
    first.commit_transaction({}, None)
    first.send(topic, b"open-when-fenced")
    first.flush(timeout_s=30)

    # a second producer with the same id fences the first and aborts what it left open
    second = closing(open_sink(client, kafka_bootstrap, transactional_id=txn_id))
    with pytest.raises(ProducerFencedError):
        first.send(topic, b"from-the-zombie")
        first.commit_transaction({}, None)
    # a sink closed without committing leaves nothing readable behind
    third = open_sink(client, kafka_bootstrap, transactional_id=f"{txn_id}-other")
    third.send(topic, b"closed-uncommitted")
    third.flush(timeout_s=30)
    third.close()
    second.send(topic, b"committed-2")
    second.send(topic, b"end")
    second.commit_transaction({}, None)

    committed = closing(open_source(client, kafka_bootstrap, topic, f"rc-{topic}"))
    values = [r.value for r in _poll_until_value(committed, b"end")]
    assert values == [b"committed-1", b"committed-2", b"end"]
    # the others were written, only hidden: a read_uncommitted reader sees them
    uncommitted = closing(
        open_source(client, kafka_bootstrap, topic, f"ru-{topic}", options={"isolation.level": "read_uncommitted"})
    )
    raw = {r.value for r in _poll_until_value(uncommitted, b"end")}
    assert {b"aborted-0", b"aborted-4", b"open-when-fenced", b"closed-uncommitted"} <= raw


_KILLED_PRODUCER = """
import sys, time
from connectors.kafka import open_sink
client, bootstrap, topic, txn_id = sys.argv[1:5]
sink = open_sink(client, bootstrap, transactional_id=txn_id)
for i in range(3):
    sink.send(topic, f"killed-{i}".encode())
sink.flush(timeout_s=30)
print("sent", flush=True)
time.sleep(600)
"""


def test_a_transaction_left_open_by_a_killed_producer_is_never_read(
    client: str, kafka_bootstrap: str, topic_factory: Callable[..., str], closing: Callable
) -> None:
    topic = topic_factory(partitions=1)
    txn_id = f"driftline-{topic}"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_PRODUCER, client, kafka_bootstrap, topic, txn_id],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "sent"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    # the restarted producer's init_transactions aborts what the dead one left open
    sink = closing(open_sink(client, kafka_bootstrap, transactional_id=txn_id))
    sink.send(topic, b"after-restart")
    sink.commit_transaction({}, None)
    reader = closing(open_source(client, kafka_bootstrap, topic, f"rc-{topic}"))
    assert [r.value for r in _poll_until_value(reader, b"after-restart")] == [b"after-restart"]


def test_a_non_transactional_sink_refuses_transaction_calls(
    client: str, kafka_bootstrap: str, closing: Callable
) -> None:
    sink = closing(open_sink(client, kafka_bootstrap))
    assert sink.transactional is False
    with pytest.raises(ConnectorError, match="not transactional"):
        sink.commit_transaction({}, None)
    with pytest.raises(ConnectorError, match="not transactional"):
        sink.abort_transaction()


# -- codecs ------------------------------------------------------------------------------------


def test_every_codec_from_either_producer_is_read(
    client: str, kafka_bootstrap: str, topic_factory: Callable[..., str], closing: Callable
) -> None:
    expected: dict[str, list[bytes]] = {}
    for producer in CLIENTS:
        for codec in CODECS:
            topic = topic_factory(partitions=1, prefix=f"{codec}-{producer}")
            sent = _produce(
                producer, kafka_bootstrap, topic, 40, seed=len(expected), options={"compression.type": codec}
            )
            expected[topic] = [value for _key, value, _headers in sent]
    source = closing(open_source(client, kafka_bootstrap, list(expected), f"g-codecs-{client}"))
    got = _poll_until(source, sum(len(v) for v in expected.values()), max_records=500)
    for topic, values in expected.items():
        assert [r.value for r in got if r.topic == topic] == values, topic


# -- bounds ------------------------------------------------------------------------------------


def test_an_unreachable_broker_fails_poll_within_the_bound(
    client: str, caplog: pytest.LogCaptureFixture, closing: Callable
) -> None:
    give_up_s = 2.0
    started = time.monotonic()
    source = closing(
        open_source(client, f"127.0.0.1:{_free_port()}", "t", "g", stall_warn_s=0.5, give_up_s=give_up_s)
    )
    with (
        caplog.at_level(logging.WARNING, logger="connectors.kafka"),
        pytest.raises(ConnectorError, match="no answer from the broker"),
    ):
        while time.monotonic() - started < give_up_s + 20:
            assert source.poll(max_records=10, timeout_ms=200) == []
    elapsed = time.monotonic() - started
    # it kept trying until the bound, and gave up soon after it
    assert give_up_s * 0.9 <= elapsed < give_up_s + 8
    assert any("retrying" in rec.getMessage() for rec in caplog.records)


def test_records_flow_and_idle_is_no_stall_with_tight_bounds(
    client: str, kafka_bootstrap: str, topic_factory: Callable[..., str], closing: Callable
) -> None:
    topic = topic_factory(partitions=1)
    source = closing(
        open_source(client, kafka_bootstrap, topic, f"g-{topic}", stall_warn_s=0.5, give_up_s=1.5)
    )
    # longer than give_up_s without a record: the broker answers, so it is only idle
    idle_until = time.monotonic() + 3.0
    while time.monotonic() < idle_until:
        assert source.poll(max_records=10, timeout_ms=200) == []
    sent = _produce(client, kafka_bootstrap, topic, 50, seed=4)
    assert [r.value for r in _poll_until(source, 50)] == [value for _k, value, _h in sent]


def test_a_poll_stuck_in_the_client_ends_the_process(
    client: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    closing: Callable,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = topic_factory(partitions=1)
    source = closing(
        open_source(client, kafka_bootstrap, topic, f"g-{topic}", stall_warn_s=0.2, give_up_s=0.6)
    )
    release = threading.Event()
    exits: list[int] = []

    def fake_exit(status: int) -> None:  # the real one would end the test run
        exits.append(status)
        release.set()

    class Stuck:
        """The client as seen when its poll never returns."""

        def __init__(self, real: Any) -> None:
            self._real = real

        def __getattr__(self, name: str) -> Any:
            return getattr(self._real, name)

        def consume(self, *args: Any, **kwargs: Any) -> list:
            release.wait(30)
            return []

        def poll(self, *args: Any, **kwargs: Any) -> dict:
            release.wait(30)
            return {}

    monkeypatch.setattr(kafka_common.os, "_exit", fake_exit)
    real = source._consumer
    source._consumer = Stuck(real)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="connectors.kafka"):
        assert source.poll(max_records=10, timeout_ms=100) == []
    source._consumer = real
    assert exits and set(exits) == {kafka_common.STUCK_EXIT_STATUS} == {70}
    assert time.monotonic() - started < 10
    critical = [rec for rec in caplog.records if rec.levelno == logging.CRITICAL]
    assert critical and "stuck inside the Kafka client" in critical[0].getMessage()
    assert "release.wait" in critical[0].getMessage()  # the stack shows where it hangs


def test_kafka_python_reads_every_codec_without_extra_setup() -> None:
    """kafka-python's codec module finds each library it needs for reading."""
    from kafka import codec

    assert codec.has_gzip() and codec.has_snappy() and codec.has_lz4() and codec.has_zstd()


@pytest.mark.parametrize("metadata", [True, False])
def test_a_source_of_two_topics_names_each_records_topic(
    client: str, kafka_bootstrap: str, topic_factory: Callable[..., str], closing: Callable, metadata: bool
) -> None:
    first, second = topic_factory(partitions=2), topic_factory(partitions=1)
    sent_first = _produce(client, kafka_bootstrap, first, 60, seed=1)
    sent_second = _produce(client, kafka_bootstrap, second, 40, seed=2)
    source = closing(open_source(client, kafka_bootstrap, [first, second], f"g-{first}", metadata=metadata))
    got = _poll_until(source, 100)
    assert sorted(r.value for r in got if r.topic == first) == sorted(v for _, v, _ in sent_first)
    assert sorted(r.value for r in got if r.topic == second) == sorted(v for _, v, _ in sent_second)
