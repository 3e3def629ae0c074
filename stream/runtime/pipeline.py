"""The runtime loop: one pipeline = one model, fed micro-batch by micro-batch.

poll → decode + validate (bad ones to the dead-letter topic with a reason) → predict
(before learning: prequential) → evaluate → drift monitor on the per-event loss → alerts
→ at the end of each micro-batch, learn → every N events or T seconds, checkpoint model +
monitor + metrics + offsets + the unfinished micro-batch as ONE signed snapshot.

Micro-batches are cut on a fixed grid of record counts (``batch_size``), never by timing:
a poll that returns part of a micro-batch is predicted and published at once, and its
rows wait, as part of the runtime's state, until the micro-batch is complete to be
learned. Every row of a micro-batch is predicted by the model as it was at the batch's
start, so how polls chop the stream changes nothing: a replay after a crash predicts,
scores, alerts and learns exactly as the first pass did.

Fail-closed: the offsets advance only past records whose processing finished. An
exception that belongs to one event dead-letters that event; any other stops the loop
without a checkpoint, so a restart resumes from the last good snapshot.

Outputs. With a transactional sink (Kafka), predictions, alerts and dead letters are
produced in a transaction that commits together with the consumer offsets, and the
snapshot is written after it: a crash between the two leaves the committed offsets ahead
of the snapshot, and the restored pipeline replays that gap silently (learning only; its
outputs are already published, and deterministic learning would reproduce them). Without
one (the embedded log), the snapshot is written first, then the outputs flushed, then the
offsets committed, so offsets never pass the last durable snapshot.
"""

from __future__ import annotations

import json
import logging
import pickle
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from connectors.base import Record, Sink, SnapshotStore, Source, TopicPartition, send_many
from connectors.exceptions import OutputsLostError, ProducerFencedError, StaleFencingTokenError, StoreUnavailableError
from learners.base import Learner
from learners.exceptions import LearnerError
from stream.alerts import Alert, AlertLog, AlertManager, Where, rules_from
from stream.config import Settings
from stream.dead_letters import dead_letter_headers
from stream.evaluation import make_metrics, predictive_churn
from stream.events import Event, decode_events
from stream.exceptions import ConfigError, EventError, LeaseLostError, PipelineError, SnapshotError
from stream.join import LabelJoin
from stream.monitors import FeatureMonitor, LossMonitor
from stream.runtime.board import ModelBoard, ServedModel
from stream.snapshot import SnapshotHeader, encode_tp, numeric_kernels, open_snapshot, seal

logger = logging.getLogger(__name__)

LearnerFactory = Callable[[], Learner]
#: rewinds to the last snapshot after lost outputs, in a row, before the pipeline gives up
MAX_REWINDS = 5
#: records a poll asks for, rounded down to whole micro-batches (at least one)
POLL_RECORDS = 1024


@dataclass
class Counters:
    records: int = 0
    events: int = 0
    labelled: int = 0
    dead_letters: int = 0
    checkpoints: int = 0
    checkpoint_failures: int = 0


#: a poll whose values all decoded has only these types (a C-level check, no generator)
_ONLY_EVENTS = frozenset((Event,))


class _Prediction(msgspec.Struct):
    id: str
    y: Any
    version: int


class Pipeline:
    """Runs one learner over one source; see the module docstring for the loop."""

    def __init__(
        self,
        settings: Settings,
        learner_factory: LearnerFactory,
        source: Source,
        sink: Sink,
        store: SnapshotStore,
        snapshot_key: bytes,
        *,
        alerts: AlertLog | None = None,
        board: ModelBoard | None = None,
        fencing_token: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_alert: Callable[[Alert], None] | None = None,
        labels: Source | None = None,
    ):
        self.settings = settings
        self.name = settings.pipeline
        self._factory = learner_factory
        self.source = source
        self.sink = sink
        self.store = store
        self._key = snapshot_key
        self.alerts = alerts if alerts is not None else AlertLog()
        self.board = board if board is not None else ModelBoard()
        self.fencing_token = fencing_token
        self._clock = clock
        self._wall = wall_clock
        self.on_alert = on_alert
        self._transactional = bool(getattr(sink, "transactional", False))

        self.learner: Learner = learner_factory()
        self.metrics = make_metrics(settings.task, settings.rolling_window)
        self._labels_source = labels
        #: labels that arrive after their event (stream.join); None without a labels topic
        self.join = self._new_join()
        self.monitor = self._new_monitor()
        self.feature_monitors = self._new_feature_monitors()
        self.offsets: dict[TopicPartition, int] = {}
        self.model_version = 0
        #: the alerts' lifecycle (open, merged, resolved); its state is part of the snapshot
        self.alert_manager = AlertManager(self.name, rules_from(settings), clock=clock, wall_clock=wall_clock)
        self.counters = Counters()
        #: dead letters since this process started, by kind (not snapshotted: a metric)
        self.dead_letters_by_kind: dict[str, int] = {}
        self.snapshot_version: int | None = None
        self.drift_points: list[int] = []
        #: labelled rows predicted but not yet learned (their micro-batch is not complete):
        #: features, labels and the records they came from, as three lists
        self._pending_x: list[dict[str, Any]] = []
        self._pending_y: list[Any] = []
        self._pending_rec: list[Record] = []
        #: every row of the current micro-batch predicted so far, labelled or not
        self._batch_x: list[dict[str, Any]] = []
        #: their inline labels (None: none came with the event), for label-aware prediction
        self._batch_y: list[Any] = []
        self._drifted = False
        #: per partition, the offset up to which outputs were already published (replay)
        self._replay_until: dict[TopicPartition, int] = {}

        self._last_checkpoint_events = 0
        self._last_checkpoint_at = clock()
        self._last_commit_at = clock()
        self._last_publish_at = float("-inf")
        self._retry_at = float("-inf")
        self._retry_delay = 0.0
        self._dirty = False
        self._outputs_open = False
        self._halted: str | None = None
        #: rewinds after lost outputs since the last committed transaction
        self._rewinds = 0
        #: how long the final checkpoint waits for a store that is down
        self.final_wait_s = 120.0
        #: recent inputs each newly published version is compared on with the one before it
        #: the latest chunks' rows, newest last, just enough of them to hold the probe's size:
        #: a chunk's list is kept as it is, where a deque of rows took a step per row
        self._probe: deque[list[dict[str, Any]]] = deque()
        self._probe_held = 0
        self._served: ServedModel | None = None
        #: share of the probe's predictions the last new version flipped (None: none compared yet)
        self.last_churn: float | None = None
        self._router_shares: dict[str, float] = {}
        #: the probe in use, how many versions it scored, and the last one's answers on it
        self._probe_rows: list[dict[str, Any]] | None = None
        self._probe_uses = 0
        self._probe_preds: list[Any] | None = None
        self._probe_version = -1
        #: the last checkpoint: seconds from sealing to stored, and the snapshot's size
        self.last_checkpoint_s = 0.0
        self.last_snapshot_bytes = 0

    def halt(self, reason: str) -> None:
        """Stop at the end of the current step without writing anything more (a lost lease)."""
        self._halted = reason

    def _new_join(self) -> LabelJoin | None:
        s = self.settings
        if s.labels_topic is None or not s.join_labels:
            return None
        return LabelJoin(
            task=s.task, ttl_events=s.label_ttl_events, ttl_s=s.label_ttl_s, delay_ms=s.label_delay_ms,
            remember=s.label_remember, pipeline=s.pipeline, source=self._labels_source, wall_clock=self._wall,
        )

    def _new_feature_monitors(self) -> list[FeatureMonitor]:
        return [FeatureMonitor(f, window=self.settings.rolling_window) for f in self.settings.feature_monitors]

    def _new_monitor(self) -> LossMonitor:
        s = self.settings
        return LossMonitor(s.detector, s.detector_params, s.seed, s.rolling_window, s.drift_direction)

    # ---------------------------------------------------------------- restore

    def restore(self) -> bool:
        """Load the latest snapshot, if any, and seek the source to its offsets."""
        latest = self.store.load_latest(self.name)
        if latest is None:
            logger.info("pipeline=%s no snapshot, starting fresh", self.name)
            self._start_fresh()
            # outputs committed before any snapshot (a crash before the first one) are
            # replayed from the start of those partitions, not skipped
            ahead = self._plan_replay({})
            if ahead:
                self.source.seek(dict.fromkeys(ahead, 0))
            self.publish(force=True)
            return False
        version, blob = latest
        header, state = open_snapshot(blob, self._key)
        self._check_header(version, header)
        learner = self._factory()
        learner.load_state_dict(state["learner"])
        self.learner = learner
        self.metrics = make_metrics(self.settings.task, self.settings.rolling_window)
        self.metrics.load_state_dict(state["metrics"])
        self.join = self._new_join()
        if self.join is not None and state.get("join") is not None:
            self.join.load_state_dict(state["join"])
        self.monitor = self._new_monitor()
        if not self.monitor.load_state_dict(state["monitor"]):
            logger.warning(
                "pipeline=%s detector settings changed since snapshot v%d (%s %s -> %s %s): the monitor starts fresh",
                self.name, version, state["monitor"]["name"], state["monitor"]["params"],
                self.settings.detector, self.settings.detector_params,
            )
        self.feature_monitors = self._new_feature_monitors()
        kept = state.get("feature_monitors", {})
        for mon in self.feature_monitors:
            if mon.feature in kept and not mon.load_state_dict(kept[mon.feature]):
                logger.warning("pipeline=%s input monitor of %r changed since snapshot v%d: it starts fresh", self.name, mon.feature, version)
        self.model_version = header.model_version
        self.alert_manager = AlertManager(self.name, rules_from(self.settings), clock=self._clock, wall_clock=self._wall)
        if "alerts" in state:
            self.alert_manager.load_state_dict(state["alerts"])
        else:
            self.alert_manager.next_id = state["next_alert_id"]
        self.drift_points = list(state["drift_points"])
        self.counters = Counters(**state["counters"])
        self._pending_x = [p["x"] for p in state["pending"]]
        self._pending_y = [p["y"] for p in state["pending"]]
        self._pending_rec = [Record(p["topic"], p["partition"], p["offset"], p["value"], p["key"]) for p in state["pending"]]
        self._batch_x = list(state["batch_x"])
        # snapshots from before label-aware prediction kept no labels: those rows count as unlabelled
        self._batch_y = list(state.get("batch_y", [None] * len(self._batch_x)))
        self._drifted = bool(state["drifted"])
        self.offsets = header.topic_offsets()
        self.snapshot_version = version
        self._last_checkpoint_events = self.counters.events
        self.source.seek(self.offsets)
        self._plan_replay(self.offsets)
        logger.info(
            "pipeline=%s restored snapshot=v%d events=%d offsets=%s",
            self.name, version, self.counters.events, header.offsets,
        )
        self.publish(force=True)
        return True

    def _check_header(self, version: int, header: SnapshotHeader) -> None:
        if header.pipeline != self.name:
            raise SnapshotError(f"snapshot v{version} belongs to pipeline {header.pipeline!r}, not {self.name!r}")
        s = self.settings
        if header.learner != s.learner or header.learner_params != dict(s.learner_params):
            raise ConfigError(
                f"learner: the snapshot v{version} of pipeline {self.name!r} was written by "
                f"{header.learner!r} with parameters {json.dumps(header.learner_params, sort_keys=True)}, "
                f"but the settings say {s.learner!r} with {json.dumps(dict(s.learner_params), sort_keys=True)}; "
                "use the snapshot's learner and parameters, or a new pipeline name to start a new model"
            )
        if header.kernels and header.kernels != numeric_kernels():
            logger.warning(
                "pipeline=%s snapshot v%d was written on other numeric kernels (%s; here %s): it "
                "restores, but learning from here is bit-identical only to runs on these kernels",
                self.name, version, header.kernels, numeric_kernels(),
            )

    def _start_fresh(self) -> None:
        self.learner = self._factory()
        self.metrics = make_metrics(self.settings.task, self.settings.rolling_window)
        self.join = self._new_join()
        self.monitor = self._new_monitor()
        self.feature_monitors = self._new_feature_monitors()
        self.offsets = {}
        self.model_version = 0
        self.alert_manager = AlertManager(self.name, rules_from(self.settings), clock=self._clock, wall_clock=self._wall)
        self.counters = Counters()
        self.snapshot_version = None
        self.drift_points = []
        self._pending_x, self._pending_y, self._pending_rec = [], [], []
        self._batch_x = []
        self._batch_y = []
        self._drifted = False
        self._last_checkpoint_events = 0

    def _plan_replay(self, snapshot_offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Outputs of records the committed transactions already cover are not sent again."""
        committed = getattr(self.source, "committed", None)
        if not self._transactional or not callable(committed):
            return {}
        ahead = {
            tp: off for tp, off in committed().items() if off > snapshot_offsets.get(tp, 0)
        }
        if ahead:
            logger.info("pipeline=%s replaying silently up to the published offsets %s", self.name, ahead)
        self._replay_until = ahead
        return ahead

    # ------------------------------------------------------------------- loop

    def run(self, max_events: int | None = None, stop: threading.Event | None = None) -> None:
        """Loop until ``stop`` is set or ``max_events`` valid events were processed, then checkpoint.

        An error stops the loop with no checkpoint: the last good snapshot stays the truth.
        """
        stop = stop or threading.Event()
        while True:
            try:
                while not stop.is_set() and self._halted is None:
                    # a poll ends at a micro-batch's end and may hold several: fewer, larger
                    # polls cost less an event, and the stream is cut into batches the same way
                    size = self.settings.batch_size
                    limit = size * max(1, POLL_RECORDS // size) - self.counters.records % size
                    due = self.settings.checkpoint_every_events - (self.counters.events - self._last_checkpoint_events)
                    if 0 < due < limit:
                        # nor past the micro-batch in which a checkpoint falls due
                        limit = due + (-(self.counters.records + due)) % size
                    if max_events is not None:
                        remaining = max_events - self.counters.events
                        if remaining <= 0:
                            break
                        limit = min(limit, remaining)
                    self.step(limit)
                if self._halted is not None:
                    raise LeaseLostError(f"{self._halted}; this worker stopped without writing")
                self._final_checkpoint()
                break
            except ProducerFencedError as exc:
                # only a newer instance of this pipeline's transactional id fences ours: the
                # pipeline has another worker now, exactly as when the lease is lost
                raise LeaseLostError(f"pipeline {self.name!r}: {exc}; another worker writes its outputs now, this one stopped") from exc
            except OutputsLostError as exc:
                self._rewinds += 1
                if self._rewinds > MAX_REWINDS:
                    raise PipelineError(f"pipeline {self.name!r}: outputs lost {self._rewinds} times in a row: {exc}") from exc
                self._rewind(exc)
        self.publish(force=True)

    def _rewind(self, exc: OutputsLostError) -> None:
        """The open transaction's outputs are gone (the broker restarted under it): go back to
        the last snapshot and replay, as a restarted worker would, in this process."""
        logger.warning("pipeline=%s outputs of the open transaction lost (%s): back to the last snapshot", self.name, exc)
        self._outputs_open = False
        read = set(self.offsets)
        self.restore()
        # partitions first read after that snapshot are read again from their start
        unread = {tp: 0 for tp in read if tp not in self.offsets}
        if unread:
            self.source.seek(unread)

    def _final_checkpoint(self) -> None:
        # a store that is down at the end is waited for, within bounds: stopping without
        # the last snapshot would only make the next start redo the work
        deadline = self._clock() + self.final_wait_s
        while True:
            try:
                self.checkpoint(final=True)
                return
            except StoreUnavailableError:
                if self._clock() >= deadline:
                    raise
                time.sleep(max(0.0, min(self._retry_at - self._clock(), deadline - self._clock())))

    def step(self, limit: int | None = None) -> int:
        """Poll and process up to the end of the current micro-batch; return the records read."""
        records = self.source.poll(limit or self.settings.batch_size, self.settings.batch_timeout_ms)
        if records:
            self._emit(self.alert_manager.on_events())
            self.process(records)
        else:
            self._emit(self.alert_manager.on_idle(self.counters.events, self.model_version))
        self.maybe_checkpoint()
        self.publish()
        return len(records)

    def process(self, records: list[Record]) -> None:
        """Predict, score, publish and buffer these records; learn each micro-batch they complete."""
        size = self.settings.batch_size
        # per-event work is done a poll (decode, send) or a chunk (predict, score, monitor)
        # at a time: the event path should cost little beside the learner
        decoded = decode_events([r.value for r in records], self.settings.max_event_bytes, self.settings.task)
        outbox: tuple[list[bytes], list[bytes | None]] = ([], [])
        start = 0
        while start < len(records):
            # split at the grid, so no call spans two micro-batches
            take = size - self.counters.records % size
            self._process_chunk(records[start : start + take], decoded[start : start + take], outbox)
            start += take
            if self.counters.records % size == 0:
                self._finish_batch()
        if outbox[0]:
            send_many(self.sink, self.settings.predictions_topic, *outbox)
            self._outputs_open = True

    def _process_chunk(
        self, records: list[Record], decoded: list[Event | EventError], outbox: tuple[list[bytes], list[bytes | None]]
    ) -> None:
        if _ONLY_EVENTS.issuperset(map(type, decoded)):
            events, origin = decoded, records
        else:
            events, origin = [], []
            for rec, ev in zip(records, decoded, strict=True):
                if type(ev) is Event:
                    events.append(ev)
                    origin.append(rec)
                else:
                    self.dead_letter(rec, ev.reason)
        events, origin, y_pred, xs, ys = self._predict(events, origin)
        if self.settings.churn_probe_size:
            self._hold_for_probe(xs)
        if self.settings.publish_predictions and events:
            self._encode_predictions(events, origin, y_pred, outbox)
        first = self.counters.events
        if None in ys:
            keep = [i for i, y in enumerate(ys) if y is not None]
            ys, preds, indexes = [ys[i] for i in keep], [y_pred[i] for i in keep], [first + i for i in keep]
            labelled, lab_origin, xs = [events[i] for i in keep], [origin[i] for i in keep], [xs[i] for i in keep]
        else:
            preds, indexes, labelled, lab_origin = y_pred, range(first, first + len(events)), events, origin
        if ys:
            losses = self.metrics.score_many(ys, preds)
            for at, found in self.monitor.update_many(losses, indexes):
                # a warning is for people; only a firing tells the learner to react
                self._drifted = self._drifted or found.kind == "drift"
                self._raise_alert(found, labelled[at], lab_origin[at])
            self._pending_x.extend(xs)
            self._pending_y.extend(ys)
            self._pending_rec.extend(lab_origin)
        self.counters.labelled += len(labelled)
        if self.join is not None:
            self.join.serve(events, origin, y_pred, first, self.model_version)
            self.join.observe(records)
        if self.feature_monitors:
            self._watch_inputs(events, origin, first)
        if self.alert_manager.open:
            error = self.metrics.rolling_error()
            self._emit(self.alert_manager.on_progress(first + len(events), error), origin[-1] if origin else None)
        # progress moves only now, past records whose processing finished
        self.counters.events += len(events)
        self.counters.records += len(records)
        offsets = self.offsets
        first, last = records[0], records[-1]
        if first.partition == last.partition and first.topic == last.topic:
            # a source returns each partition's records together, in offset order
            offsets[(last.topic, last.partition)] = last.offset + 1
        else:
            for rec in records:
                offsets[(rec.topic, rec.partition)] = rec.offset + 1
        if self._replay_until:
            self._replay_until = {tp: until for tp, until in self._replay_until.items() if offsets.get(tp, 0) < until}
        self._dirty = True

    def _encode_predictions(
        self, events: list[Event], origin: list[Record], y_pred: list[Any], outbox: tuple[list[bytes], list[bytes | None]]
    ) -> None:
        """Add the chunk's predictions, made by the model version of now, to the poll's outbox
        (sent once the poll is processed, before any checkpoint)."""
        if self._replay_until:
            kept = [i for i, rec in enumerate(origin) if not self._replaying(rec)]
            events, origin, y_pred = [events[i] for i in kept], [origin[i] for i in kept], [y_pred[i] for i in kept]
            if not events:
                return
        encode, version = _ENCODER.encode, self.model_version
        outbox[0].extend([encode(_Prediction(ev.id, y, version)) for ev, y in zip(events, y_pred, strict=True)])
        outbox[1].extend([rec.key for rec in origin])

    def _finish_batch(self) -> None:
        xs, ys, recs = self._pending_x, self._pending_y, self._pending_rec
        self._pending_x, self._pending_y, self._pending_rec = [], [], []
        self._batch_x, self._batch_y = [], []
        if xs:
            self._learn(xs, ys, recs)
            self.model_version += 1
        if self.join is not None:
            self._take_labels()
        if self._drifted and self.settings.drift_reaction == "learner":
            hook = getattr(self.learner, "on_drift", None)
            if callable(hook):
                hook()
        self._drifted = False

    def _take_labels(self) -> None:
        """Score and learn the labels the merge rule gives this boundary (see stream.join)."""
        taken = self.join.take(self.counters.events, clock=self._clock)
        for rec, reason in taken.bad:
            self.dead_letter(rec, reason, "bad_label")
        s = self.settings
        default = s.label_default if s.label_on_expiry == "learn_default" else None
        if default is not None and s.task == "regression":
            default = float(default)
        joined = [(w, y) for w, y, _ in taken.joined] + [(w, default) for w in taken.expired if default is not None]
        if not joined:
            return
        # the predictions made when the events were served, not ones made now
        losses = self.metrics.score_many([y for _, y in joined], [w.prediction for w, _ in joined])
        for at, found in self.monitor.update_many(losses, [w.index for w, _ in joined]):
            self._drifted = self._drifted or found.kind == "drift"
            w = joined[at][0]
            self._raise_alert(found, Event(id=w.event_id, x=w.x), w.record())
        self.counters.labelled += len(joined)
        self._learn([w.x for w, _ in joined], [y for _, y in joined], [w.record() for w, _ in joined])
        self.model_version += 1

    def _learn(self, xs: list[dict[str, Any]], ys: list[Any], recs: list[Record]) -> None:
        # learners check a whole batch before learning any of it, so after a refusal the
        # events can be learned one by one and only the offending ones dead-lettered
        try:
            self.learner.learn_many(xs, ys)
            return
        except LearnerError:
            pass
        except Exception as exc:
            # the learner may have learned part of the batch: its state is no longer one
            # the stream explains, so stop before any of it reaches a snapshot
            raise PipelineError(f"pipeline {self.name!r}: learning failed: {exc!r}; stopped without a checkpoint") from exc
        for x, y, rec in zip(xs, ys, recs, strict=True):
            try:
                self.learner.learn_many([x], [y])
            except LearnerError as exc:
                self.dead_letter(rec, f"learner could not learn the event: {exc}", "learner_refused")

    def _predict(
        self, events: list[Event], origin: list[Record]
    ) -> tuple[list[Event], list[Record], list[Any], list[dict[str, Any]], list[Any]]:
        """The events the learner took, their records and predictions, and their features
        and inline labels (the rest are dead-lettered)."""
        # A learner may read a row's context from the rows before it in the same call (the
        # recent past, in stream order), and with label-aware prediction their inline labels
        # too, as a learner stepping one event at a time would have learned them. So a poll
        # that continues a micro-batch is predicted behind the rows of that batch already
        # predicted: each row's prediction is then the same however the polls chopped it.
        if not events:
            return events, origin, [], [], []
        prefix, prefix_y = self._batch_x, self._batch_y
        X, ys = [e.x for e in events], [e.y for e in events]
        try:
            preds = self._predict_rows(prefix + X, prefix_y + ys)[len(prefix) :]
            prefix.extend(X)
            prefix_y.extend(ys)
            return events, origin, preds, X, ys
        except Exception as batch_exc:
            failure = batch_exc
        # One event the learner cannot use must not sink the batch: find it, dead-letter it.
        # If every event fails alike, the fault is not in the events: stop.
        kept_e, kept_r, kept_x, kept_y, preds, refused = [], [], [], [], [], []
        for ev, rec in zip(events, origin, strict=True):
            try:
                preds.append(self._predict_rows([*prefix, ev.x], [*prefix_y, ev.y])[-1])
            except Exception as exc:
                refused.append((rec, exc))
                continue
            prefix.append(ev.x)
            prefix_y.append(ev.y)
            kept_e.append(ev)
            kept_r.append(rec)
            kept_x.append(ev.x)
            kept_y.append(ev.y)
        if not kept_e and len(events) > 1 and not all(isinstance(e, LearnerError) for _, e in refused):
            raise PipelineError(f"pipeline {self.name!r}: prediction failed for every event: {failure!r}") from failure
        for rec, exc in refused:
            what = "learner rejected the event" if isinstance(exc, LearnerError) else f"prediction failed ({type(exc).__name__})"
            self.dead_letter(rec, f"{what}: {exc}", "learner_refused" if isinstance(exc, LearnerError) else "prediction_failed")
        return kept_e, kept_r, preds, kept_x, kept_y

    def _predict_rows(self, X: list[dict[str, Any]], y: list[Any]) -> list[Any]:
        # the verb never depends on which labels came, so neither does a row's prediction
        if self.settings.label_aware_predictions:
            return self.learner.predict_many_causal(X, y)
        return self.learner.predict_many(X)

    def _replaying(self, rec: Record) -> bool:
        until = self._replay_until.get((rec.topic, rec.partition))
        return until is not None and rec.offset < until

    def _send(self, topic: str, value: bytes, key: bytes | None) -> None:
        self.sink.send(topic, value, key=key)
        self._outputs_open = True

    def dead_letter(self, rec: Record, reason: str, kind: str = "invalid_event") -> None:
        self.counters.dead_letters += 1
        # by kind for /metrics: the reason itself names fields, too many values for a label
        self.dead_letters_by_kind[kind] = self.dead_letters_by_kind.get(kind, 0) + 1
        logger.warning("pipeline=%s dead-letter %s[%d]@%d: %s", self.name, rec.topic, rec.partition, rec.offset, reason)
        if self._replaying(rec):
            return
        # the original bytes and key, and why as headers (stream.dead_letters)
        headers = dead_letter_headers(self.name, rec, reason, kind)
        self.sink.send(self.settings.dead_letter_topic, rec.value, key=rec.key, headers=headers)
        self._outputs_open = True

    def _watch_inputs(self, events: list[Event], origin: list[Record], first_index: int) -> None:
        """Input drift: each watched feature's values through its own detector."""
        for mon in self.feature_monitors:
            name, update = mon.feature, mon.update
            for i, (ev, rec) in enumerate(zip(events, origin, strict=True)):
                v = ev.x.get(name)
                if type(v) is float or type(v) is int:
                    found = update(float(v), first_index + i)
                    if found is not None:
                        self._raise_alert(found, ev, rec)

    def _raise_alert(self, found: Any, ev: Event, rec: Record) -> None:
        if found.kind == "drift" and found.signal == "loss":
            self.drift_points.append(found.event_index)
        where = Where(ev.id, rec.topic, rec.partition, rec.offset, self.model_version, ev.ts)
        self._emit(self.alert_manager.on_signal(found, where), rec)

    def _emit(self, alerts: list[Alert], rec: Record | None = None) -> None:
        """Each revision to the history (and its listeners) and, unless replaying, the topic."""
        for alert in alerts:
            self.alerts.append(alert)
            if rec is not None and self._replaying(rec):
                continue
            self._send(self.settings.alerts_topic, alert.to_json(), self.name.encode())
            logger.info(
                "pipeline=%s alert=%d %s %s severity=%s count=%d event_index=%d loss %.3f -> %.3f",
                self.name, alert.id, alert.kind, alert.state, alert.severity, alert.count,
                alert.last_event_index, alert.loss_before, alert.loss_after,
            )
            if self.on_alert is not None:
                self.on_alert(alert)

    # ------------------------------------------------------------ checkpoint

    def maybe_checkpoint(self) -> None:
        now = self._clock()
        due = (
            self.counters.events - self._last_checkpoint_events >= self.settings.checkpoint_every_events
            or now - self._last_checkpoint_at >= self.settings.checkpoint_every_s
        )
        if due and self._dirty and now >= self._retry_at:
            self.checkpoint()
        elif self._transactional and self._outputs_open and now - self._last_commit_at >= self.settings.output_commit_every_s:
            self._commit_outputs()

    def _commit_outputs(self) -> None:
        """Commit the open transaction: the outputs so far with the offsets they cover."""
        self.sink.commit_transaction(dict(self.offsets), self.source)
        self._rewinds = 0
        self._outputs_open = False
        self._last_commit_at = self._clock()

    def state_dict(self) -> dict[str, Any]:
        return {
            "learner": self.learner.state_dict(),
            "metrics": self.metrics.state_dict(),
            "monitor": self.monitor.state_dict(),
            "feature_monitors": {m.feature: m.state_dict() for m in self.feature_monitors},
            "next_alert_id": self.alert_manager.next_id,
            "alerts": self.alert_manager.state_dict(),
            "drift_points": list(self.drift_points),
            "counters": dict(self.counters.__dict__),
            "pending": [
                {"x": x, "y": y, "topic": r.topic, "partition": r.partition, "offset": r.offset, "key": r.key, "value": r.value}
                for x, y, r in zip(self._pending_x, self._pending_y, self._pending_rec, strict=True)
            ],
            "drifted": self._drifted,
            "batch_x": list(self._batch_x),
            "batch_y": list(self._batch_y),
            "join": self.join.state_dict() if self.join is not None else None,
        }

    def checkpoint(self, final: bool = False) -> int | None:
        """Write one snapshot (see the module docstring for the order); return the version, or None."""
        if not self._dirty and self.snapshot_version is not None:
            return self.snapshot_version
        if self._transactional and self.offsets:
            self._commit_outputs()
        header = SnapshotHeader(
            pipeline=self.name,
            model_version=self.model_version,
            events_seen=self.counters.events,
            offsets={encode_tp(tp): off for tp, off in sorted(self.offsets.items())},
            learner=self.settings.learner,
            learner_params=dict(self.settings.learner_params),
            metrics=self._summary(),
        )
        started = time.perf_counter()
        blob = seal(header, self.state_dict(), self._key)
        now = self._clock()
        try:
            version = self.store.save(self.name, blob, fencing_token=self.fencing_token)
        except StaleFencingTokenError as exc:
            raise LeaseLostError(f"pipeline {self.name!r}: {exc}; this worker stops learning") from exc
        except StoreUnavailableError as exc:
            self.counters.checkpoint_failures += 1
            self._retry_delay = min(max(self._retry_delay * 2, 0.5), 30.0)
            self._retry_at = now + self._retry_delay
            logger.warning("pipeline=%s checkpoint failed, retry in %.1fs: %s", self.name, self._retry_delay, exc)
            if final:
                raise
            return None
        self._retry_delay = 0.0
        if not self._transactional:
            self.sink.flush()
            self.source.commit(dict(self.offsets))
        if self.join is not None and self.join.source is not None and self.join.offsets:
            try:  # for lag monitoring only: the snapshot holds the labels' offsets
                self.join.source.commit(dict(self.join.offsets))
            except Exception as exc:
                logger.warning("pipeline=%s committing the labels offsets failed: %s", self.name, exc)
        self.last_checkpoint_s = time.perf_counter() - started
        self.last_snapshot_bytes = len(blob)
        self.snapshot_version = version
        self.counters.checkpoints += 1
        self._last_checkpoint_events = self.counters.events
        self._last_checkpoint_at = now
        self._dirty = False
        logger.info("pipeline=%s checkpoint v%d events=%d bytes=%d", self.name, version, self.counters.events, len(blob))
        return version

    # --------------------------------------------------------------- serving

    def publish(self, force: bool = False) -> None:
        """Swap in a fresh copy of the model for serving, at most every publish_every_s."""
        now = self._clock()
        if not force and now - self._last_publish_at < self.settings.publish_every_s:
            return
        self._last_publish_at = now
        copy = self._factory()
        copy.load_state_dict(pickle.loads(pickle.dumps(self.learner.state_dict())))  # noqa: S301 - our own bytes
        if not force:
            self._score_churn(copy)
        served = ServedModel(
            name=self.name,
            learner=self.settings.learner,
            version=self.model_version,
            events_seen=self.counters.events,
            model=copy,
            task=self.settings.task,
            metrics=self._summary(),
            offsets={encode_tp(tp): off for tp, off in sorted(self.offsets.items())},
            published_at=self._wall(),
            snapshot_version=self.snapshot_version,
        )
        self.board.publish(served)
        self._served = served

    def _summary(self) -> dict[str, float]:
        summary = self.metrics.summary()
        if self.last_churn is not None:
            summary["churn"] = self.last_churn
        summary.update(self._router_shares)
        return summary

    def _hold_for_probe(self, xs: list[dict[str, Any]]) -> None:
        if not xs:
            return
        self._probe.append(xs)
        self._probe_held += len(xs)
        while self._probe_held - len(self._probe[0]) >= self.settings.churn_probe_size:
            self._probe_held -= len(self._probe.popleft())

    def _score_churn(self, copy: Learner) -> None:
        """Compare a new version with the one served before it on a probe of recent inputs.

        The probe is fixed for ``_PROBE_VERSIONS`` versions, so each new version costs one
        prediction of it (the previous version's answers are kept); then it is taken afresh
        from the latest inputs. A router (DriftMoE) also says which expert it picks for each
        probe row; the shares go with the version's metrics as ``router_e<j>``.
        """
        prev = self._served
        size = self.settings.churn_probe_size
        if not size or not self._probe_held or (prev is not None and prev.version == self.model_version):
            return
        if self._probe_rows is None or self._probe_uses >= _PROBE_VERSIONS:
            self._probe_rows, self._probe_uses, self._probe_preds = [x for rows in self._probe for x in rows][-size:], 0, None
        rows = self._probe_rows
        before = self._probe_preds if self._probe_preds is not None and prev is not None and self._probe_version == prev.version else None
        choices = getattr(copy, "router_choices", None)
        try:
            if before is None and prev is not None:
                before = prev.model.predict_many(rows)
            after = copy.predict_many(rows)
            picked = choices(rows) if callable(choices) else []
        except LearnerError as exc:
            # a probe row the model no longer takes (the event was dead-lettered when learned):
            # skip this version, and take a fresh probe next time
            logger.debug("pipeline=%s churn probe refused (%s); taking a new one", self.name, exc)
            self._probe_rows, self._probe_preds = None, None
            return
        self._probe_preds, self._probe_version, self._probe_uses = after, self.model_version, self._probe_uses + 1
        if picked:
            self._router_shares = {f"router_e{j}": round(picked.count(j) / len(picked), 4) for j in sorted(set(picked))}
        if prev is None or before is None:
            return
        self.last_churn = round(predictive_churn(before, after), 6)
        self._emit(self.alert_manager.on_churn(self.last_churn, prev.version, self.model_version, self.counters.events))


#: versions scored on one probe before it is taken afresh from the latest inputs
_PROBE_VERSIONS = 10
_ENCODER = msgspec.json.Encoder()
