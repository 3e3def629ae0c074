"""The runtime loop on the in-process log and the directory store (no services)."""

from __future__ import annotations

import json

import pytest
from river import tree

from connectors.directory import DirectoryStore
from connectors.exceptions import StoreUnavailableError
from connectors.memory import InMemoryLog
from learners.registry import make_learner
from stream.config import load_settings
from stream.events import Event
from stream.runtime import ModelBoard, Pipeline
from stream.snapshot import open_snapshot
from stream.synth import sea_stream

KEY = b"0123456789abcdef0123456789abcdef"
LEARNER = "river:tree.HoeffdingTreeClassifier"


def _events(n, seed=7, drift_every=20_000):
    return [Event(id=f"e{i}", x=x, y=y) for i, (x, y) in enumerate(sea_stream(n, seed, drift_every))]


def _pipeline(log, store, clock=lambda: 0.0, **kw):
    # a frozen clock: only event counts trigger checkpoints, however slow the machine
    settings = load_settings(learner=LEARNER, pipeline="t", batch_timeout_ms=1, **kw)
    return Pipeline(
        settings,
        lambda: make_learner(LEARNER, {}, 0),
        log.consumer(["events"], "g"),
        log.producer(),
        store,
        KEY,
        clock=clock,
    )


def _feed(log, events, topic="events"):
    sink = log.producer()
    for ev in events:
        sink.send(topic, ev.to_json())


def _dead_letters(log) -> list:
    from stream.dead_letters import read_dead_letter

    consumer = log.consumer(["dead-letter"], "reader")
    out = []
    while batch := consumer.poll(10_000, 1):
        out.extend(read_dead_letter(r) for r in batch)
    return out


def _topic(log, topic):
    consumer = log.consumer([topic], "reader")
    out = []
    while batch := consumer.poll(10_000, 1):
        out.extend(json.loads(r.value) for r in batch)
    return out


@pytest.mark.parametrize("batch", [1, 64])
def test_is_prequential_per_micro_batch_and_matches_river(tmp_path, batch):
    events = _events(3000)
    log = InMemoryLog()
    _feed(log, events)
    pipe = _pipeline(log, DirectoryStore(tmp_path), batch_size=batch)
    pipe.run(max_events=3000)

    # the whole micro-batch is predicted before any of it is learned
    model, correct = tree.HoeffdingTreeClassifier(), 0
    for start in range(0, 3000, batch):
        chunk = events[start : start + batch]
        correct += sum(model.predict_one(ev.x) == ev.y for ev in chunk)
        for ev in chunk:
            model.learn_one(ev.x, ev.y)
    assert pipe.counters.events == 3000 and pipe.counters.labelled == 3000
    # exact: both sides are the same ratio of integer counts
    assert pipe.metrics.summary()["accuracy"] == correct / 3000
    preds = _topic(log, "predictions")
    assert [p["id"] for p in preds] == [f"e{i}" for i in range(3000)]


def test_bad_events_go_to_dead_letter_with_reason_and_nothing_stops(tmp_path):
    log = InMemoryLog()
    sink = log.producer()
    good = _events(10)
    for ev in good[:5]:
        sink.send("events", ev.to_json())
    sink.send("events", b"{not json")
    sink.send("events", b'{"id": "n", "x": {"a": NaN}, "y": 1}')
    for ev in good[5:]:
        sink.send("events", ev.to_json())
    pipe = _pipeline(log, DirectoryStore(tmp_path))
    pipe.run(max_events=10)

    dead = _dead_letters(log)
    assert [(d.offset, d.reason[:14], d.kind) for d in dead] == [(5, "not valid JSON", "invalid_event"), (6, "x['a'] must be", "invalid_event")]
    assert [d.value for d in dead] == [b"{not json", b'{"id": "n", "x": {"a": NaN}, "y": 1}']  # the original bytes
    assert {(d.pipeline, d.topic, d.partition) for d in dead} == {("t", "events", 0)}
    assert pipe.counters.events == 10 and pipe.counters.dead_letters == 2
    assert pipe.offsets == {("events", 0): 12}


def test_detects_each_abrupt_concept_change_within_2000_events(tmp_path):
    log = InMemoryLog()
    _feed(log, _events(60_000))
    alerts = []
    pipe = _pipeline(log, DirectoryStore(tmp_path))
    pipe.on_alert = alerts.append
    pipe.run(max_events=60_000)
    for change in (20_000, 40_000):
        assert any(change <= a.last_event_index < change + 2000 for a in alerts), (change, pipe.drift_points)
    # exact for this seed: River's tree and ADWIN compute in plain Python floats, no BLAS
    assert pipe.drift_points == [7583, 19359, 20191, 40191]
    # every revision of every alert: the firing at 20191 falls within the cool-down of the
    # one at 19359 and merges into it (count 2); two alerts resolve once the rolling error
    # is back within 0.02 of the error before the drift
    assert [(a.id, a.revision, a.state, a.severity, a.count, a.last_event_index, a.resolved_index) for a in alerts] == [
        (0, 0, "drift", "low", 1, 7583, None),
        (0, 1, "resolved", "low", 1, 7583, 8704),
        (1, 0, "drift", "high", 1, 19359, None),
        (1, 1, "drift", "high", 2, 20191, None),
        (1, 2, "resolved", "high", 2, 20191, 27392),
        (2, 0, "drift", "high", 1, 40191, None),
    ]
    assert [(a.loss_before, a.loss_after) for a in alerts if a.state == "drift"] == [
        (0.130363, 0.18), (0.133248, 0.29), (0.133248, 0.27), (0.118057, 0.28)
    ]
    assert [a.error_now for a in alerts if a.state == "resolved"] == [0.122, 0.149]
    sent = _topic(log, "alerts")
    assert [(a["id"], a["revision"]) for a in sent] == [(a.id, a.revision) for a in alerts]
    assert [a.id for a in pipe.alerts.since()] == [0, 1, 2] and pipe.alerts.total == 3


def test_restore_gives_identical_predictions_and_resumes_at_the_stored_offset(tmp_path):
    events = _events(5000)
    probe = [e.x for e in _events(200, seed=99)]

    straight_log = InMemoryLog()
    _feed(straight_log, events)
    straight = _pipeline(straight_log, DirectoryStore(tmp_path / "a"), batch_size=100)
    straight.run(max_events=5000)

    log = InMemoryLog()
    _feed(log, events[:3000])
    store = DirectoryStore(tmp_path / "b")
    first = _pipeline(log, store, batch_size=100)
    first.run(max_events=3000)
    before = first.learner.predict_proba_many(probe)

    _feed(log, events[3000:])
    second = _pipeline(log, store, batch_size=100)
    assert second.restore()
    # exact: the state was restored bit for bit, then the same computation ran
    assert second.learner.predict_proba_many(probe) == before
    assert second.offsets == {("events", 0): 3000}
    first_seen = second.source.poll(1, 1)[0]
    assert first_seen.offset == 3000
    second.source.seek({("events", 0): 3000})
    second.run(max_events=5000)
    assert second.counters.events == 5000
    # exact: the same computation on identical state (same process, shapes and code path)
    assert second.learner.predict_proba_many(probe) == straight.learner.predict_proba_many(probe)
    # exact: the same computation on identical state (same process, shapes and code path)
    assert second.metrics.summary() == straight.metrics.summary()


def test_checkpoints_every_n_events_and_commits_offsets_after_the_snapshot(tmp_path):
    log = InMemoryLog()
    _feed(log, _events(2500))
    store = DirectoryStore(tmp_path)
    pipe = _pipeline(log, store, checkpoint_every_events=1000, batch_size=100)
    pipe.run(max_events=2500)
    # 1000, 2000, then the final one at 2500
    assert store.versions("t")[-3:] == [1, 2, 3]
    header, _ = open_snapshot(store.load("t", 2), KEY)
    assert header.events_seen == 2000 and header.offsets == {"events:0": 2000}
    assert log.committed("g") == {("events", 0): 2500}


class _DownStore(DirectoryStore):
    def __init__(self, root):
        super().__init__(root)
        self.down = True

    def save(self, pipeline, blob, *, fencing_token=None):
        if self.down:
            raise StoreUnavailableError("store down")
        return super().save(pipeline, blob, fencing_token=fencing_token)


def test_store_outage_keeps_learning_and_never_commits_past_the_last_snapshot(tmp_path):
    log = InMemoryLog()
    _feed(log, _events(3000))
    store = _DownStore(tmp_path)
    pipe = _pipeline(log, store, checkpoint_every_events=500, batch_size=100)
    for _ in range(10):
        pipe.step()
    assert pipe.counters.events == 1000 and pipe.counters.checkpoint_failures >= 1
    assert log.committed("g") == {}
    store.down = False
    pipe._retry_at = 0.0  # skip the backoff wait
    pipe.run(max_events=3000)
    assert log.committed("g") == {("events", 0): 3000}


def test_final_checkpoint_raises_when_the_store_stays_down(tmp_path):
    log = InMemoryLog()
    _feed(log, _events(10))
    pipe = _pipeline(log, _DownStore(tmp_path))
    pipe.final_wait_s = 0.0
    with pytest.raises(StoreUnavailableError):
        pipe.run(max_events=10)
    assert log.committed("g") == {}


def test_an_event_the_learner_cannot_learn_is_dead_lettered_and_the_rest_learned(tmp_path):
    log = InMemoryLog()
    sink = log.producer()
    rows = [({"a": 1.0}, 0), ({"a": 2.0}, 1), ({"a": "two"}, 1), ({"a": 3.0}, 0)]
    for i, (x, y) in enumerate(rows):
        sink.send("events", Event(id=f"e{i}", x=x, y=y).to_json())
    # one micro-batch of exactly these four, so it is learned before the run ends
    pipe = _pipeline(log, DirectoryStore(tmp_path), batch_size=4)
    pipe.run(max_events=4)
    dead = _dead_letters(log)
    # 'a' is first seen as a number in this very batch, so the kind clash shows at learning
    assert [(d.offset, d.kind) for d in dead] == [(2, "learner_refused")]
    assert "learner could not learn the event" in dead[0].reason and "['a'] is a string" in dead[0].reason
    assert pipe.learner._n_learned == 3 and pipe.counters.dead_letters == 1


def test_checkpoints_when_the_interval_passes_on_the_injected_clock(tmp_path):
    log = InMemoryLog()
    _feed(log, _events(500))
    now = [0.0]
    store = DirectoryStore(tmp_path)
    pipe = _pipeline(log, store, clock=lambda: now[0], checkpoint_every_events=10**6, checkpoint_every_s=30.0, batch_size=100)
    pipe.step()
    pipe.step()
    assert store.versions("t") == []  # 200 events, no time has passed
    now[0] = 29.9
    pipe.step()
    assert store.versions("t") == []
    now[0] = 30.0
    pipe.step()
    assert store.versions("t") == [1]
    assert open_snapshot(store.load("t", 1), KEY)[0].events_seen == 400


class _RecordingBoard(ModelBoard):
    def __init__(self):
        super().__init__()
        self.published = []

    def publish(self, served):
        super().publish(served)
        self.published.append(served)


def test_each_new_version_is_scored_for_churn_on_the_recent_inputs(tmp_path):
    log = InMemoryLog()
    _feed(log, _events(24_000))
    now = [0.0]
    settings = load_settings(learner=LEARNER, pipeline="t", batch_timeout_ms=1, batch_size=500, publish_every_s=1.0,
                             churn_probe_size=300, alert_churn_above=0.045)  # fmt: skip
    board = _RecordingBoard()
    pipe = Pipeline(settings, lambda: make_learner(LEARNER, {}, 0), log.consumer(["events"], "g"), log.producer(),
                    DirectoryStore(tmp_path), KEY, clock=lambda: now[0], board=board)  # fmt: skip
    while pipe.counters.events < 24_000:
        now[0] += 1.0  # every step publishes
        pipe.step(500)
    versions = [(s.version, s.metrics.get("churn")) for s in board.published]
    assert versions[0] == (1, None) and all(c is not None and 0.0 <= c <= 1.0 for _, c in versions[1:])
    # the last version against the one before it, on the probe in use
    prev, last = board.published[-2], board.published[-1]
    probe = pipe._probe_rows
    assert len(probe) == 300 and last.version == prev.version + 1
    flipped = sum(a != b for a, b in zip(prev.model.predict_many(probe), last.model.predict_many(probe), strict=True))
    assert last.metrics["churn"] == round(flipped / 300, 6)  # exact: the same predictions counted again
    # per version, as GET /v1/models/{name}/versions lists them
    assert [v["metrics"].get("churn") for v in board.versions("t")] == [c for _, c in versions]
    # the concept change at 20,000 makes the tree rework its splits: churn is highest after it
    churn = {v: c for v, c in versions[1:]}
    before = max(churn[v] for v in range(20, 40))
    assert max(churn[v] for v in range(40, 48)) > before
    alerts = [a for a in pipe.alerts.since() if a.kind == "churn"]
    assert {a.model_version for a in alerts} == {v for v, c in churn.items() if c > 0.045} == {7, 8, 45}
    assert all(a.state == "churn" and a.severity == "medium" and a.loss_after > 0.045 for a in alerts)


def test_a_watched_feature_that_shifts_raises_an_input_drift_alert(tmp_path):
    import random

    rng = random.Random(4)
    events = []
    for i in range(6000):
        x0 = rng.uniform(0, 1) + (1.5 if i >= 3000 else 0.0)  # the input moves; the rule does not
        x1 = rng.uniform(0, 1)
        events.append(Event(id=f"e{i}", x={"x0": x0, "x1": x1, "c": "k"}, y=int(x1 > 0.5)))
    log = InMemoryLog()
    _feed(log, events)
    pipe = _pipeline(log, DirectoryStore(tmp_path), feature_monitors=["x0", "c"], batch_size=100)
    pipe.run(max_events=6000)
    inputs = [a for a in pipe.alerts.since() if a.signal != "loss"]
    # exact for this seed: ADWIN on plain Python floats
    assert [(a.signal, a.kind, a.severity, a.event_index, a.state, a.resolved_index) for a in inputs] == [
        ("x0", "drift", "high", 3039, "resolved", 4100)
    ]
    (a,) = inputs
    assert a.event_id == "e3039" and a.offset == 3039
    # the feature's means: before the change, and over the last 100 values (39 of them after it)
    assert a.loss_before == pytest.approx(0.5, abs=0.05) and 1.0 < a.loss_after < 1.3
    assert all(al.signal == "loss" for al in pipe.alerts.since() if al not in inputs)
    state = pipe.state_dict()["feature_monitors"]
    assert set(state) == {"x0", "c"} and state["c"]["welford"][0] == 0  # a string feature is skipped


def _runs_pipeline(log, store, label_aware):
    settings = load_settings(learner="driftmoe", pipeline="r", batch_timeout_ms=1, batch_size=256, label_aware_predictions=label_aware)
    return Pipeline(settings, lambda: make_learner("driftmoe", {}, 0), log.consumer(["events"], "g"), log.producer(), store, KEY, clock=lambda: 0.0)


def test_label_aware_predictions_use_the_inline_labels_of_the_batch_before_each_event(tmp_path):
    from stream.synth import runs_stream

    events = [Event(id=f"e{i}", x=x, y=y) for i, (x, y) in enumerate(runs_stream(2048, 3))]
    got = {}
    for aware in (True, False):
        log = InMemoryLog()
        _feed(log, events)
        pipe = _runs_pipeline(log, DirectoryStore(tmp_path / str(aware)), aware)
        pipe.run(max_events=len(events))
        got[aware] = ([p["y"] for p in _topic(log, "predictions")], pipe.metrics.summary()["accuracy"])
    # what the runtime published is the learner's prequential predict_many_causal, batch by batch
    learner, expected = make_learner("driftmoe", {}, 0), []
    for i in range(0, len(events), 256):
        X, y = [e.x for e in events[i : i + 256]], [e.y for e in events[i : i + 256]]
        expected += learner.predict_many_causal(X, y)
        learner.learn_many(X, y)
    assert got[True][0] == expected
    # classes in runs of about ten: a run is followed from its first labels on, where the
    # blind verb predicts a whole micro-batch before any of it is learned
    assert got[True][1] > got[False][1] + 0.2, (got[True][1], got[False][1])
