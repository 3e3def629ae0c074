"""The runtime's guarantees on the in-process log: chop invariance, crash equivalence,
fail-closed progress, replay under transactional outputs, refused restores."""

from __future__ import annotations

import json
import logging
import random

import pytest

from connectors.directory import DirectoryStore
from connectors.exceptions import OutputsLostError, ProducerFencedError
from connectors.memory import InMemoryLog
from learners import checks
from learners.registry import make_learner
from stream.config import load_settings
from stream.events import Event
from stream.exceptions import ConfigError, LeaseLostError, PipelineError, SnapshotError
from stream.runtime import Pipeline
from stream.snapshot import open_snapshot, read_header
from stream.synth import sea_stream

KEY = b"0123456789abcdef0123456789abcdef"
TREE = "river:tree.HoeffdingTreeClassifier"
LEARNERS = [TREE, "driftmoe"]


def _events(n: int, seed: int = 3, drift_every: int = 1500) -> list[Event]:
    return [Event(id=f"e{i}", x=x, y=y) for i, (x, y) in enumerate(sea_stream(n, seed, drift_every))]


def _feed(log: InMemoryLog, events: list[Event]) -> None:
    sink = log.producer()
    for ev in events:
        sink.send("events", ev.to_json())


def _topic(log: InMemoryLog, topic: str) -> list[dict]:
    consumer = log.consumer([topic], "reader")
    out: list[dict] = []
    while batch := consumer.poll(10_000, 1):
        out.extend(json.loads(r.value) for r in batch)
    return out


class ChoppingSource:
    """Returns polls of seeded random sizes, as a broker's fetches do."""

    def __init__(self, inner, seed: int):
        self._inner = inner
        self._rng = random.Random(seed)

    def poll(self, max_records, timeout_ms):
        return self._inner.poll(self._rng.randint(1, max_records), timeout_ms)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _pipeline(log, store, learner=TREE, params=None, source=None, sink=None, **kw) -> Pipeline:
    kw.setdefault("batch_size", 64)
    kw.setdefault("checkpoint_every_events", 10**9)
    settings = load_settings(learner=learner, learner_params=params or {}, pipeline="t", batch_timeout_ms=1, **kw)
    return Pipeline(
        settings,
        lambda: make_learner(learner, params or {}, 0),
        source or log.consumer(["events"], "g"),
        sink or log.producer(),
        store,
        KEY,
    )


def _final(pipe: Pipeline) -> tuple:
    probe = [e.x for e in _events(50, seed=99)]
    return pipe.learner.state_dict(), pipe.learner.predict_proba_many(probe), pipe.metrics.summary(), pipe.drift_points, _alert_state(pipe)


def _alert_state(pipe: Pipeline) -> dict:
    # the open alert's wall-clock times say when this process saw the drift: not the stream's
    state = pipe.alert_manager.state_dict()
    state["open"] = {s: {k: v for k, v in a.items() if k not in ("ts", "updated_ts")} for s, a in state["open"].items()}
    return state


def _assert_same(a: tuple, b: tuple) -> None:
    # exact: the same computations in the same process, micro-batch for micro-batch
    checks.assert_state_equal(a[0], b[0])
    assert a[1] == b[1]
    assert a[2] == b[2]
    assert a[3] == b[3]
    assert a[4] == b[4]  # the alerts' lifecycle: same ids, the same alert open, the same firings


@pytest.mark.parametrize("learner", LEARNERS)
def test_how_polls_chop_the_stream_changes_nothing(tmp_path, learner):
    events = _events(4000)
    runs = []
    for i, seed in enumerate((None, 1, 2)):
        log = InMemoryLog()
        _feed(log, events)
        source = log.consumer(["events"], "g")
        if seed is not None:
            source = ChoppingSource(source, seed)
        pipe = _pipeline(log, DirectoryStore(tmp_path / str(i)), learner, source=source)
        pipe.run(max_events=4000)
        runs.append((_final(pipe), [p["y"] for p in _topic(log, "predictions")]))
    assert runs[0][0][3], "the stream drifts; the monitor should have fired"
    for other in runs[1:]:
        _assert_same(runs[0][0], other[0])
        assert other[1] == runs[0][1]


@pytest.mark.parametrize("learner", LEARNERS)
def test_a_crash_and_restore_ends_bit_identical_to_one_run(tmp_path, learner):
    events = _events(4000)
    straight_log = InMemoryLog()
    _feed(straight_log, events)
    straight = _pipeline(straight_log, DirectoryStore(tmp_path / "a"), learner)
    straight.run(max_events=4000)

    log = InMemoryLog()
    _feed(log, events)
    store = DirectoryStore(tmp_path / "b")
    rng = random.Random(5)
    crashes = sorted(rng.sample(range(200, 3800), 4))
    done = 0
    for crash_at in crashes:
        # checkpoints mid micro-batch (every 700 events), then a "kill": the object is
        # dropped with events learned past its last snapshot
        pipe = _pipeline(log, store, learner, checkpoint_every_events=700, source=ChoppingSource(log.consumer(["events"], "g"), crash_at))
        pipe.restore()
        while pipe.counters.events < crash_at:
            pipe.step(pipe.settings.batch_size - pipe.counters.records % pipe.settings.batch_size)
        done = max(done, pipe.counters.events)
    last = _pipeline(log, store, learner, checkpoint_every_events=700)
    last.restore()
    assert last.counters.events < done, "the last crash lost work past its snapshot, to be redone"
    last.run(max_events=4000)
    _assert_same(_final(straight), _final(last))


class _FailingLearner:
    def __init__(self, inner, fail_on_call: int):
        self._inner = inner
        self._calls = 0
        self._fail_on = fail_on_call

    def learn_many(self, X, y):
        self._calls += 1
        if self._calls == self._fail_on:
            raise RuntimeError("disk on fire")
        self._inner.learn_many(X, y)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_an_error_outside_one_event_stops_without_a_checkpoint(tmp_path):
    log = InMemoryLog()
    _feed(log, _events(1000))
    store = DirectoryStore(tmp_path)
    settings = load_settings(learner=TREE, pipeline="t", batch_timeout_ms=1, batch_size=100, checkpoint_every_events=200)
    pipe = Pipeline(settings, lambda: _FailingLearner(make_learner(TREE, {}, 0), 3), log.consumer(["events"], "g"), log.producer(), store, KEY)
    with pytest.raises(PipelineError, match="disk on fire"):
        pipe.run(max_events=1000)
    header, state = open_snapshot(store.load_latest("t")[1], KEY)
    # batches 1 and 2 were learned and checkpointed at 200; batch 3 failed: nothing of it is durable
    assert header.offsets == {"events:0": 200} and state["counters"]["events"] == 200
    assert log.committed("g") == {("events", 0): 200}


class _PickyLearner:
    """Fails, not with a LearnerError, on one event's value: a bug one event triggers."""

    def __init__(self, inner):
        self._inner = inner

    @staticmethod
    def _check(X):
        if any(x.get("x0") == 4.2 for x in X):
            raise ZeroDivisionError("x0 of 4.2")

    def predict_many(self, X):
        self._check(X)
        return self._inner.predict_many(X)

    def predict_many_causal(self, X, y):
        self._check(X)
        return self._inner.predict_many_causal(X, y)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_an_unexpected_error_on_one_event_dead_letters_that_event(tmp_path):
    log = InMemoryLog()
    events = _events(200)
    events[50] = Event(id="odd", x={"x0": 4.2, "x1": 1.0, "x2": 1.0}, y=0)
    _feed(log, events)
    settings = load_settings(learner=TREE, pipeline="t", batch_timeout_ms=1, batch_size=100)
    pipe = Pipeline(settings, lambda: _PickyLearner(make_learner(TREE, {}, 0)), log.consumer(["events"], "g"), log.producer(), DirectoryStore(tmp_path), KEY)
    pipe.run(max_events=199)
    from stream.dead_letters import read_dead_letter

    dead = [read_dead_letter(r) for r in log.consumer(["dead-letter"], "reader").poll(100, 1)]
    assert [(d.offset, d.reason, d.kind) for d in dead] == [(50, "prediction failed (ZeroDivisionError): x0 of 4.2", "prediction_failed")]
    assert dead[0].value == events[50].to_json()
    assert pipe.counters.events == 199 and pipe.counters.dead_letters == 1
    assert pipe.offsets == {("events", 0): 200}


def test_restore_refuses_other_learner_parameters_naming_both(tmp_path):
    log = InMemoryLog()
    _feed(log, _events(300))
    store = DirectoryStore(tmp_path)
    _pipeline(log, store, params={"grace_period": 100}).run(max_events=300)
    other = _pipeline(log, store, params={"grace_period": 50})
    with pytest.raises(ConfigError, match=r'"grace_period": 100.*"grace_period": 50'):
        other.restore()


def test_a_changed_detector_starts_fresh_and_says_so(tmp_path, caplog):
    log = InMemoryLog()
    _feed(log, _events(300))
    store = DirectoryStore(tmp_path)
    _pipeline(log, store).run(max_events=300)
    changed = _pipeline(log, store, detector="page_hinkley")
    with caplog.at_level(logging.WARNING):
        assert changed.restore()
    assert "detector settings changed" in caplog.text
    assert changed.monitor.name == "page_hinkley" and changed.counters.events == 300


def test_the_header_records_what_the_bits_depend_on(tmp_path):
    log = InMemoryLog()
    _feed(log, _events(100))
    store = DirectoryStore(tmp_path)
    _pipeline(log, store).run(max_events=100)
    header = read_header(store.load_latest("t")[1])
    assert header.format_version == 2 and header.package_version
    assert {b["library"] for b in header.kernels["blas"]} >= {"openblas"}
    assert all(b["kernel"] for b in header.kernels["blas"])


def test_a_snapshot_of_another_format_is_refused_clearly(tmp_path):
    import hashlib
    import hmac
    import struct

    from stream.snapshot import MAGIC

    header = {"pipeline": "t", "model_version": 1, "events_seen": 1, "offsets": {}, "learner": TREE, "format_version": 1, "payload_sha256": hashlib.sha256(b"x").hexdigest()}
    hb = json.dumps(header).encode()
    body = MAGIC + struct.pack(">I", len(hb)) + hb + b"x"
    blob = body + hmac.new(KEY, body, hashlib.sha256).digest()
    with pytest.raises(SnapshotError, match=r"snapshot format 1 .* reads format 2"):
        open_snapshot(blob, KEY)


class TransactionalMemorySink:
    """Kafka's transaction semantics over the in-process log, for the runtime's logic:
    sends are buffered and appear, with the group's offsets, only at commit."""

    transactional = True

    def __init__(self, log: InMemoryLog):
        self._log = log
        self._open: list[tuple] = []
        self.commits = 0

    def send(self, topic, value, key=None, headers=None):
        self._open.append((topic, value, key))

    def commit_transaction(self, offsets, source):
        for topic, value, key in self._open:
            self._log.append(topic, value, key)
        self._open = []
        self._log._commit(source.group_id, offsets)
        self.commits += 1

    def flush(self, timeout_s=None):
        pass

    def close(self):
        self._open = []


class _CommittedSource:
    def __init__(self, log, inner):
        self._log = log
        self._inner = inner

    def committed(self):
        return self._log.committed(self._inner.group_id)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _transactional(log, store, sink=None, **kw) -> Pipeline:
    """A pipeline whose outputs go through a transactional sink and whose source knows the
    group's committed offsets, as with Kafka."""
    return _pipeline(
        log, store, source=_CommittedSource(log, log.consumer(["events"], "g")),
        sink=sink if sink is not None else TransactionalMemorySink(log), **kw,
    )


def test_transactional_outputs_reach_readers_once_across_a_crash(tmp_path):
    events = _events(3000)
    log = InMemoryLog()
    _feed(log, events)
    store = DirectoryStore(tmp_path)

    def build():
        return _transactional(log, store, checkpoint_every_events=1000)

    first = build()
    first.restore()
    first.run(max_events=1000)  # snapshot at 1000, outputs committed to 1000
    # the crash window: outputs and offsets committed up to 1728, the snapshot not written
    while first.counters.events < 1700:
        first.step(64 - first.counters.records % 64)
    first._commit_outputs()
    assert log.committed("g") == {("events", 0): 1728}
    assert read_header(store.load_latest("t")[1]).offsets == {"events:0": 1000}

    second = build()
    second.restore()
    second.run(max_events=3000)
    ids = [p["id"] for p in _topic(log, "predictions")]
    assert ids == [e.id for e in events]

    straight_log = InMemoryLog()
    _feed(straight_log, events)
    straight = _pipeline(straight_log, DirectoryStore(tmp_path / "s"))
    straight.run(max_events=3000)
    _assert_same(_final(straight), _final(second))
    def lifecycle(log):
        return [(a["id"], a["revision"], a["state"], a["count"], a["last_event_index"]) for a in _topic(log, "alerts")]

    assert lifecycle(log) and lifecycle(log) == lifecycle(straight_log)


class LosingSink(TransactionalMemorySink):
    """Loses the open transaction at the chosen commits, as a restarted broker does."""

    def __init__(self, log: InMemoryLog, lose_at: set[int]):
        super().__init__(log)
        self.lose_at = lose_at
        self.attempts = 0

    def commit_transaction(self, offsets, source):
        self.attempts += 1
        if self.attempts in self.lose_at:
            self._open = []
            raise OutputsLostError(f"commit {self.attempts} lost")
        super().commit_transaction(offsets, source)


def _straight(tmp_path, events: list[Event], learner: str = TREE) -> tuple[Pipeline, InMemoryLog]:
    log = InMemoryLog()
    _feed(log, events)
    pipe = _pipeline(log, DirectoryStore(tmp_path / "straight"), learner=learner)
    pipe.run(max_events=len(events))
    return pipe, log


@pytest.mark.parametrize("learner", LEARNERS)
def test_lost_outputs_rewind_to_the_last_snapshot_in_process(tmp_path, learner):
    events = _events(3000)
    log = InMemoryLog()
    _feed(log, events)
    sink = LosingSink(log, lose_at={2, 3, 6})
    pipe = _transactional(log, DirectoryStore(tmp_path), sink, learner=learner, checkpoint_every_events=500)
    pipe.restore()
    pipe.run(max_events=3000)
    assert sink.attempts > sink.commits >= 6
    assert [p["id"] for p in _topic(log, "predictions")] == [e.id for e in events]
    straight, straight_log = _straight(tmp_path, events, learner)
    _assert_same(_final(straight), _final(pipe))
    alerts = [a["event_index"] for a in _topic(log, "alerts")]
    assert alerts and alerts == [a["event_index"] for a in _topic(straight_log, "alerts")]
    def history(p):
        return [(a.id, a.kind, a.state, a.count) for a in p.alerts.since()]

    assert history(pipe) == history(straight)


def test_outputs_lost_again_and_again_stop_the_pipeline(tmp_path):
    log = InMemoryLog()
    _feed(log, _events(2000))
    pipe = _transactional(log, DirectoryStore(tmp_path), LosingSink(log, lose_at=set(range(2, 100))), checkpoint_every_events=500)
    pipe.restore()
    with pytest.raises(PipelineError, match="outputs lost 6 times in a row"):
        pipe.run(max_events=2000)


class FencedSink(TransactionalMemorySink):
    """A newer producer with the same transactional id took over at the chosen commit."""

    def __init__(self, log: InMemoryLog, fenced_at: int):
        super().__init__(log)
        self.fenced_at = fenced_at
        self.attempts = 0

    def commit_transaction(self, offsets, source):
        self.attempts += 1
        if self.attempts >= self.fenced_at:
            raise ProducerFencedError("producer fenced by another with the same transactional id")
        super().commit_transaction(offsets, source)


def test_a_fenced_producer_stops_the_pipeline_as_a_lost_lease_without_writing(tmp_path):
    log = InMemoryLog()
    _feed(log, _events(2000))
    store = DirectoryStore(tmp_path)
    sink = FencedSink(log, fenced_at=3)
    # transactions commit at the checkpoints only: at 512 and 1024, then fenced at 1536
    pipe = _transactional(log, store, sink, checkpoint_every_events=500, output_commit_every_s=3600)
    pipe.restore()
    with pytest.raises(LeaseLostError, match="another worker writes its outputs now"):
        pipe.run(max_events=2000)
    # no rewind, no retry: the commits before the fence, and their snapshots, are all there is
    assert sink.attempts == 3 and sink.commits == 2
    assert read_header(store.load_latest("t")[1]).events_seen == 1024
    assert log.committed("g") == {("events", 0): 1024}


def test_a_crash_before_the_first_snapshot_replays_from_the_start(tmp_path):
    events = _events(2000)
    log = InMemoryLog()
    _feed(log, events)
    store = DirectoryStore(tmp_path)

    def build():
        return _transactional(log, store, checkpoint_every_events=10**6)

    first = build()
    first.restore()
    while first.counters.events < 700:
        first.step(64 - first.counters.records % 64)
    first._commit_outputs()  # outputs and offsets committed; no snapshot yet; then a crash
    assert store.load_latest("t") is None and log.committed("g") == {("events", 0): 704}
    second = build()
    second.restore()
    second.run(max_events=2000)
    assert [p["id"] for p in _topic(log, "predictions")] == [e.id for e in events]
    straight, _ = _straight(tmp_path, events)
    _assert_same(_final(straight), _final(second))


def test_a_restore_on_other_kernels_is_allowed_and_logged(tmp_path, caplog, monkeypatch):
    import stream.runtime.pipeline as pipeline_module

    log = InMemoryLog()
    _feed(log, _events(200))
    store = DirectoryStore(tmp_path)
    _pipeline(log, store).run(max_events=200)
    other = {"blas": [{"library": "openblas", "version": "0.3.31", "kernel": "Prescott"}], "torch": {}}
    monkeypatch.setattr(pipeline_module, "numeric_kernels", lambda: other)
    restored = _pipeline(log, store)
    with caplog.at_level(logging.WARNING):
        assert restored.restore()
    assert "written on other numeric kernels" in caplog.text and "Prescott" in caplog.text
    assert restored.counters.events == 200
