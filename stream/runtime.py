"""The runtime loop: one pipeline = one model, fed micro-batch by micro-batch.

poll up to B events or T ms → decode + validate (bad ones to the dead-letter topic with a
reason) → predict (before learning: prequential) → evaluate → drift monitor on the
per-event loss → alerts → learn → advance the input cursor → every N events or T seconds,
checkpoint model + monitor + metrics + offsets as ONE signed snapshot, and only after the
store has it, commit the offsets to the source.

The loop is the same for every connector: the embedded default hands it an in-process log
and a directory store, the worker Kafka and Redis.
"""

from __future__ import annotations

import base64
import json
import logging
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connectors.base import Record, Sink, SnapshotStore, Source, TopicPartition
from connectors.exceptions import StoreUnavailableError
from learners.base import Learner
from learners.exceptions import LearnerError
from stream.alerts import Alert, AlertLog
from stream.config import Settings
from stream.evaluation import Prequential
from stream.events import Event, decode_event
from stream.exceptions import ConfigError, EventError, SnapshotError
from stream.monitors import LossMonitor
from stream.snapshot import SnapshotHeader, encode_tp, open_snapshot, seal

logger = logging.getLogger(__name__)

LearnerFactory = Callable[[], Learner]


@dataclass(frozen=True)
class ServedModel:
    """An immutable copy of a pipeline's model for serving: swapped whole, never locked."""

    name: str
    learner: str
    version: int
    events_seen: int
    model: Learner
    metrics: dict[str, float] = field(default_factory=dict)


class ModelBoard:
    """The served copies by pipeline name; readers take a reference and keep it."""

    def __init__(self) -> None:
        self._models: dict[str, ServedModel] = {}
        self._lock = threading.Lock()

    def publish(self, served: ServedModel) -> None:
        with self._lock:
            self._models = {**self._models, served.name: served}

    def get(self, name: str) -> ServedModel | None:
        return self._models.get(name)

    def all(self) -> list[ServedModel]:
        return list(self._models.values())


@dataclass
class Counters:
    records: int = 0
    events: int = 0
    labelled: int = 0
    dead_letters: int = 0
    checkpoints: int = 0
    checkpoint_failures: int = 0


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

        self.learner: Learner = learner_factory()
        self.metrics = Prequential(settings.rolling_window)
        self.monitor = LossMonitor(
            settings.detector, settings.detector_params, settings.seed, settings.rolling_window, settings.drift_direction
        )
        self.offsets: dict[TopicPartition, int] = {}
        self.model_version = 0
        self.next_alert_id = 0
        self.counters = Counters()
        self.snapshot_version: int | None = None
        self.drift_points: list[int] = []

        self._last_checkpoint_events = 0
        self._last_checkpoint_at = clock()
        self._last_publish_at = float("-inf")
        self._retry_at = float("-inf")
        self._retry_delay = 0.0
        self._dirty = False

    # ---------------------------------------------------------------- restore

    def restore(self) -> bool:
        """Load the latest snapshot, if any, and seek the source to its offsets."""
        latest = self.store.load_latest(self.name)
        if latest is None:
            logger.info("pipeline=%s no snapshot, starting fresh", self.name)
            self.publish(force=True)
            return False
        version, blob = latest
        header, state = open_snapshot(blob, self._key)
        if header.pipeline != self.name:
            raise SnapshotError(f"snapshot v{version} belongs to pipeline {header.pipeline!r}, not {self.name!r}")
        if header.learner != self.settings.learner:
            raise ConfigError(
                f"learner: the snapshot of pipeline {self.name!r} was written by {header.learner!r} "
                f"but the setting says {self.settings.learner!r}; use the same learner or a new pipeline name"
            )
        learner = self._factory()
        learner.load_state_dict(state["learner"])
        self.learner = learner
        self.metrics = state["metrics"]
        self.monitor = state["monitor"]
        self.model_version = header.model_version
        self.next_alert_id = state["next_alert_id"]
        self.drift_points = list(state["drift_points"])
        c = state["counters"]
        self.counters = Counters(**c)
        self.offsets = header.topic_offsets()
        self.snapshot_version = version
        self._last_checkpoint_events = self.counters.events
        self.source.seek(self.offsets)
        logger.info(
            "pipeline=%s restored snapshot=v%d events=%d offsets=%s",
            self.name, version, self.counters.events, header.offsets,
        )
        self.publish(force=True)
        return True

    # ------------------------------------------------------------------- loop

    def run(self, max_events: int | None = None, stop: threading.Event | None = None) -> None:
        """Loop until ``stop`` is set or ``max_events`` valid events were processed, then checkpoint."""
        stop = stop or threading.Event()
        try:
            while not stop.is_set():
                # Cut micro-batches on a fixed grid of record counts, so that replaying a
                # backlog after a restore forms the same batches as the first pass did.
                limit = self.settings.batch_size - self.counters.records % self.settings.batch_size
                if max_events is not None:
                    remaining = max_events - self.counters.events
                    if remaining <= 0:
                        break
                    limit = min(limit, remaining)
                self.step(limit)
        finally:
            self.checkpoint(final=True)
            self.publish(force=True)

    def step(self, limit: int | None = None) -> int:
        """Poll and process one micro-batch; return the number of records read."""
        records = self.source.poll(limit or self.settings.batch_size, self.settings.batch_timeout_ms)
        if records:
            self.process(records)
        self.maybe_checkpoint()
        self.publish()
        return len(records)

    def process(self, records: list[Record]) -> None:
        events: list[Event] = []
        origin: list[Record] = []
        for rec in records:
            self.counters.records += 1
            self.offsets[(rec.topic, rec.partition)] = rec.offset + 1
            try:
                events.append(decode_event(rec.value, self.settings.max_event_bytes))
                origin.append(rec)
            except EventError as exc:
                self.dead_letter(rec, exc.reason)
        self._dirty = True
        if not events:
            return
        events, origin, y_pred = self._predict(events, origin)
        first_index = self.counters.events
        self.counters.events += len(events)

        X_learn, y_learn, r_learn = [], [], []
        drifted = False
        for i, (ev, rec, pred) in enumerate(zip(events, origin, y_pred, strict=True)):
            if self.settings.publish_predictions:
                self.sink.send(self.settings.predictions_topic, _prediction_json(ev, pred, self.model_version), key=rec.key)
            if ev.y is None:
                continue
            self.counters.labelled += 1
            self.metrics.update(ev.y, pred)
            found = self.monitor.update(0.0 if pred == ev.y else 1.0, first_index + i)
            if found is not None:
                drifted = True
                self._raise_alert(found, ev, rec)
            X_learn.append(ev.x)
            y_learn.append(ev.y)
            r_learn.append(rec)
        if X_learn:
            self._learn(X_learn, y_learn, r_learn)
            self.model_version += 1
        if drifted and self.settings.drift_reaction == "learner":
            hook = getattr(self.learner, "on_drift", None)
            if callable(hook):
                hook()

    def _learn(self, X: list[Any], y: list[Any], origin: list[Record]) -> None:
        # learners check a whole batch before learning any of it, so after a refusal the
        # events can be learned one by one and only the offending ones dead-lettered
        try:
            self.learner.learn_many(X, y)
            return
        except LearnerError:
            pass
        for x, label, rec in zip(X, y, origin, strict=True):
            try:
                self.learner.learn_many([x], [label])
            except LearnerError as exc:
                self.dead_letter(rec, f"learner could not learn the event: {exc}")

    def _predict(
        self, events: list[Event], origin: list[Record]
    ) -> tuple[list[Event], list[Record], list[Any]]:
        X = [e.x for e in events]
        try:
            return events, origin, self.learner.predict_many(X)
        except LearnerError:
            pass
        # One event the learner cannot use must not sink the batch: find it, dead-letter it.
        kept_e, kept_r, preds = [], [], []
        for ev, rec in zip(events, origin, strict=True):
            try:
                preds.append(self.learner.predict_many([ev.x])[0])
            except LearnerError as exc:
                self.dead_letter(rec, f"learner rejected the event: {exc}")
                continue
            kept_e.append(ev)
            kept_r.append(rec)
        return kept_e, kept_r, preds

    def dead_letter(self, rec: Record, reason: str) -> None:
        self.counters.dead_letters += 1
        body = {
            "pipeline": self.name,
            "reason": reason,
            "topic": rec.topic,
            "partition": rec.partition,
            "offset": rec.offset,
            "value_b64": base64.b64encode(rec.value).decode(),
        }
        self.sink.send(self.settings.dead_letter_topic, json.dumps(body).encode(), key=rec.key)
        logger.warning("pipeline=%s dead-letter %s[%d]@%d: %s", self.name, rec.topic, rec.partition, rec.offset, reason)

    def _raise_alert(self, found: Any, ev: Event, rec: Record) -> None:
        alert = Alert(
            id=self.next_alert_id,
            pipeline=self.name,
            detector=found.detector,
            signal="loss",
            event_index=found.event_index,
            event_id=ev.id,
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            ts=self._wall(),
            loss_before=round(found.loss_before, 6),
            loss_after=round(found.loss_after, 6),
            window=found.window,
            model_version=self.model_version,
        )
        self.next_alert_id += 1
        self.drift_points.append(found.event_index)
        self.alerts.append(alert)
        self.sink.send(self.settings.alerts_topic, alert.to_json(), key=self.name.encode())
        logger.info(
            "pipeline=%s drift detector=%s event_index=%d loss %.3f -> %.3f",
            self.name, alert.detector, alert.event_index, alert.loss_before, alert.loss_after,
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

    def checkpoint(self, final: bool = False) -> int | None:
        """Write one snapshot; then flush outputs; then commit offsets. Return the version, or None."""
        if not self._dirty and self.snapshot_version is not None:
            return self.snapshot_version
        header = SnapshotHeader(
            pipeline=self.name,
            model_version=self.model_version,
            events_seen=self.counters.events,
            offsets={encode_tp(tp): off for tp, off in sorted(self.offsets.items())},
            learner=self.settings.learner,
            learner_params=dict(self.settings.learner_params),
            metrics=self.metrics.summary(),
        )
        state = {
            "learner": self.learner.state_dict(),
            "metrics": self.metrics,
            "monitor": self.monitor,
            "next_alert_id": self.next_alert_id,
            "drift_points": list(self.drift_points),
            "counters": dict(self.counters.__dict__),
        }
        blob = seal(header, state, self._key)
        now = self._clock()
        try:
            version = self.store.save(self.name, blob, fencing_token=self.fencing_token)
        except StoreUnavailableError as exc:
            self.counters.checkpoint_failures += 1
            self._retry_delay = min(max(self._retry_delay * 2, 0.5), 30.0)
            self._retry_at = now + self._retry_delay
            logger.warning("pipeline=%s checkpoint failed, retry in %.1fs: %s", self.name, self._retry_delay, exc)
            if final:
                raise
            return None
        self._retry_delay = 0.0
        self.sink.flush()
        self.source.commit(dict(self.offsets))
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
        self.board.publish(
            ServedModel(
                name=self.name,
                learner=self.settings.learner,
                version=self.model_version,
                events_seen=self.counters.events,
                model=copy,
                metrics=self.metrics.summary(),
            )
        )


def _prediction_json(ev: Event, pred: Any, version: int) -> bytes:
    return json.dumps({"id": ev.id, "y": pred, "version": version}, separators=(",", ":")).encode()
