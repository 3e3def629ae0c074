"""Delayed labels on the in-process log: the merge rule's counters, computed again here by a
plain reference, and crash equivalence with the join buffer in the snapshot."""

from __future__ import annotations

from collections import Counter

import pytest

from connectors.directory import DirectoryStore
from connectors.memory import InMemoryLog
from learners import checks
from learners.registry import make_learner
from stream.config import load_settings
from stream.events import Event
from stream.exceptions import EventError
from stream.join import LabelJoin, decode_label, encode_label, send_label
from stream.runtime import Pipeline
from stream.snapshot import open_snapshot
from stream.synth import delayed_labels, sea_stream

KEY = b"0123456789abcdef0123456789abcdef"
LEARNER = "river:tree.HoeffdingTreeClassifier"


def reference_counts(schedule, n, batch, delay_ms, ttl_events):
    """The merge rule of stream.join written out plainly, for event i at time i ms."""
    labels = [(t, kind, i) for kind, i, t in schedule if kind != "event"]
    waiting: dict = {}
    resolved: dict = {}
    c: Counter = Counter()
    nxt = 0
    for k in range(batch, n + 1, batch):
        for i in range(k - batch, k):
            waiting[i] = True
        cutoff = k - 1 - delay_ms  # stream time: the newest event's timestamp
        while nxt < len(labels) and labels[nxt][0] <= cutoff:
            _, kind, i = labels[nxt]
            nxt += 1
            key = i if kind == "label" else ("unknown", i)
            if key in waiting:
                del waiting[key]
                resolved[key] = "joined"
                c["on_time"] += 1
            elif resolved.get(key) == "joined":
                c["duplicate"] += 1
            elif resolved.get(key) == "expired":
                c["late"] += 1
            else:
                c["unknown"] += 1
        for i in sorted(waiting):
            if k - (i + 1) < ttl_events:
                break
            del waiting[i]
            resolved[i] = "expired"
            c["expired"] += 1
    return c, len(waiting)


def _fill(log, schedule, n, seed):
    """Events (without labels) and labels on two topics, each record stamped with its time."""
    now = [0.0]
    log._clock = lambda: now[0]
    sink = log.producer()
    stream = list(sea_stream(n, seed, n // 2))
    for kind, i, t in schedule:
        now[0] = t / 1000.0
        if kind == "event":
            sink.send("events", Event(id=f"e{i}", x=stream[i][0]).to_json())
        elif kind == "label":
            sink.send("labels", encode_label(f"e{i}", stream[i][1]))
        else:
            sink.send("labels", encode_label(f"nobody{i}", stream[i][1]))
    return stream


def _pipeline(log, store, group="g", **kw):
    settings = load_settings(
        learner=LEARNER, pipeline="j", batch_timeout_ms=1, labels_topic="labels", join_labels=True, label_delay_ms=0,
        label_remember=1_000_000, **kw,
    )
    return Pipeline(
        settings, lambda: make_learner(LEARNER, {}, 0), log.consumer(["events"], group), log.producer(),
        store, KEY, clock=lambda: 0.0, labels=log.consumer(["labels"], f"{group}-labels"),
    )


def test_counters_follow_the_merge_rule_exactly(tmp_path):
    n, batch, ttl = 12_000, 256, 3_000
    schedule = delayed_labels(n, 3, max_delay=5_000, missing=0.02, duplicated=0.01, unknown=0.005)
    log = InMemoryLog()
    _fill(log, schedule, n, 3)
    pipe = _pipeline(log, DirectoryStore(tmp_path), batch_size=batch, label_ttl_events=ttl)
    pipe.run(max_events=n)

    want, waiting = reference_counts(schedule, n, batch, 0, ttl)
    got = pipe.join.counts
    assert (got.on_time, got.late, got.duplicate, got.unknown, got.expired) == (
        want["on_time"], want["late"], want["duplicate"], want["unknown"], want["expired"]
    )
    assert pipe.join.waiting == waiting + n % batch  # the unfinished batch waits too
    # each kind occurs: the test would not notice a counter stuck at zero otherwise
    assert min(want["on_time"], want["late"], want["duplicate"], want["unknown"], want["expired"]) > 0
    # the joined labels were scored on the predictions as served, and learned
    assert pipe.counters.labelled == want["on_time"] == pipe.metrics.n
    assert 0.6 < pipe.metrics.summary()["accuracy"] < 1.0


def test_a_crash_anywhere_leaves_the_same_model_buffer_and_counters(tmp_path):
    n, batch = 9_000, 128
    schedule = delayed_labels(n, 4, max_delay=2_000, missing=0.02, duplicated=0.01, unknown=0.005)
    log = InMemoryLog()
    _fill(log, schedule, n, 4)
    kw = dict(batch_size=batch, label_ttl_events=1_500, checkpoint_every_events=700)

    straight = _pipeline(log, DirectoryStore(tmp_path / "a"), **kw)
    straight.run(max_events=n)

    store = DirectoryStore(tmp_path / "b")
    for crash_at in (1_000, 2_950, 5_111, 7_777):
        pipe = _pipeline(log, store, group="crashed", **kw)
        pipe.restore()
        while pipe.counters.events < crash_at:
            # polls of seeded odd sizes: how the stream is chopped must not matter
            pipe.step(min(37, crash_at - pipe.counters.events))
        del pipe  # a crash: no final checkpoint, the work since the last snapshot is lost
    pipe = _pipeline(log, store, group="crashed", **kw)
    pipe.restore()
    pipe.run(max_events=n)

    a = open_snapshot(store.load_latest("j")[1], KEY)[1]
    b = open_snapshot(DirectoryStore(tmp_path / "a").load_latest("j")[1], KEY)[1]
    # exact: the same learner on the same micro-batches and the same labels at the same boundaries
    checks.assert_state_equal(a["learner"], b["learner"])
    assert a["join"] == b["join"] and a["metrics"] == b["metrics"]  # exact: plain data, same operations
    assert a["counters"] == {**b["counters"], "checkpoints": a["counters"]["checkpoints"]}
    assert a["join"]["counts"]["late"] > 0 and a["join"]["counts"]["on_time"] > 0


def test_expired_events_learn_the_default_label_when_asked(tmp_path):
    n = 2_000
    schedule = [("event", i, i) for i in range(n)]  # no label ever comes
    log = InMemoryLog()
    _fill(log, schedule, n, 5)
    pipe = _pipeline(
        log, DirectoryStore(tmp_path), batch_size=100, label_ttl_events=500,
        label_on_expiry="learn_default", label_default=False,
    )
    pipe.run(max_events=n)
    assert pipe.join.counts.expired == 1_500 and pipe.join.counts.on_time == 0
    assert pipe.counters.labelled == 1_500 and pipe.metrics.n == 1_500
    assert pipe.learner.predict_one({"f0": 1.0, "f1": 1.0, "f2": 1.0}) is False


def test_the_stream_time_ttl_expires_events_by_their_timestamps(tmp_path):
    schedule = [("event", i, i * 10) for i in range(1_000)]  # 10 ms apart
    log = InMemoryLog()
    _fill(log, schedule, 1_000, 6)
    pipe = _pipeline(log, DirectoryStore(tmp_path), batch_size=100, label_ttl_events=10_000, label_ttl_s=2.0)
    pipe.run(max_events=1_000)
    # at the last boundary the stream time is 9990 ms: events older than 2 s (before 7990 ms) expired
    assert pipe.join.counts.expired == 799 and pipe.join.waiting == 201


def test_bad_labels_are_dead_letters_and_labels_decode_by_task():
    assert decode_label(b'{"id": "a", "y": 2}', "regression").y == 2.0
    assert decode_label(b'{"id": "a", "y": 2.0}', "classification").y == 2
    for raw, task, reason in [
        (b'{"id": "a"}', "classification", "not a label"),
        (b'{"id": "a", "y": 1, "z": 2}', "classification", "not a label"),
        (b'{"id": "", "y": 1}', "classification", "'id' must be"),
        (b'{"id": "a", "y": "b"}', "regression", "must be a number"),
        (b'{"id": "a", "y": 2.5}', "classification", "class label"),
    ]:
        with pytest.raises(EventError, match=reason):
            decode_label(raw, task)


def test_send_label_writes_what_the_pipeline_joins():
    log = InMemoryLog()
    send_label(log.producer(), "labels", "e7", "yes")
    [rec] = log.consumer(["labels"], "r").poll(10, 1)
    assert rec.value == b'{"id":"e7","y":"yes"}' and rec.key == b"e7"
    with pytest.raises(EventError):
        send_label(log.producer(), "labels", "", 1)
    join = LabelJoin(task="classification", ttl_events=10, ttl_s=1.0, delay_ms=0, remember=5)
    assert join.take(0).joined == []  # no labels topic: nothing to take


def test_a_dead_letter_carries_headers_naming_reason_source_and_pipeline(tmp_path):
    log = InMemoryLog()
    log.producer().send("events", b"{not json")
    pipe = _pipeline(log, DirectoryStore(tmp_path))
    pipe.step(10)
    [rec] = log.consumer(["dead-letter"], "r").poll(10, 1)
    headers = dict(rec.headers)
    assert headers["reason"].startswith(b"not valid JSON") and headers["pipeline"] == b"j"
    assert (headers["source.topic"], headers["source.partition"], headers["source.offset"]) == (b"events", b"0", b"0")
