"""Labels that arrive after their event: a bounded join buffer, and one merge rule.

An event served without a label waits in the join buffer with what it was served with:
its features, the prediction as served and the model version. A label ``{"id", "y"}`` on
the pipeline's labels topic (or sent by ``send_label``, which the HTTP labels route
calls) is joined to it by event id; the pipeline then scores the prediction made when
the event was served (prequential: not a fresh one), feeds the drift monitor, and learns.

The merge rule (what makes a replay after a crash learn exactly what the first pass did).
Two topics read concurrently interleave by timing, so the order in which the pipeline
takes labels must not come from when polls return. It comes from the records' Kafka
timestamps, which are stored in the log:

- the pipeline's *stream time* is the largest timestamp of the events it has read;
- a label's time is its record's timestamp, made non-decreasing within its partition
  (``max`` with the label before it), so labels keep their log order;
- at each micro-batch boundary (a fixed grid of event counts, see ``runtime.pipeline``),
  after the batch is learned, the pipeline takes every label whose time is at most the
  stream time minus ``label_delay_ms``, in (time, partition, offset) order, and no other;
- to know it has them all, it reads the labels topic until each partition holds a label
  past that point or is read to its end. Only then does the boundary go on.

So where a label is applied depends only on the two logs' contents. The delay covers
labels still on their way to the broker when the events' stream time passes them: a
label that takes longer than ``label_delay_ms`` to be appended after its timestamp may be
applied later on a replay than it was live (the one way the rule can see timing). A label
whose record has no timestamp counts as time 0 (applied at the next boundary).

Time-to-live: an event waits at most ``label_ttl_events`` events or ``label_ttl_s``
seconds of stream time, whichever comes first, checked at boundaries after the labels
were taken (a label that arrives at the boundary where its event expires wins). Then it
expires: dropped, or (``label_on_expiry: learn_default``) scored and learned with
``label_default``, e.g. "no chargeback within 30 days means legitimate".

A label may name its pipeline (``{"pipeline", "id", "y"}``, as the HTTP route sends it);
one naming another pipeline is skipped, so pipelines can share a labels topic.

Counters: ``on_time`` (joined while waiting), ``late`` (its event had expired),
``duplicate`` (its event was joined already), ``unknown`` (no such event waited:
never served, served with an inline label, or forgotten), ``expired`` (events whose
label never came in time). Joined and expired ids are remembered, up to
``label_remember`` of them, to tell late and duplicate labels from unknown ones.

The buffer, the counters, the remembered ids and the labels topic's offsets (the next
label not yet taken, per partition) are plain data in the pipeline's snapshot; labels
read ahead but not yet taken are not: a restore reads them again from those offsets.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from connectors.base import Record, Sink, Source, TopicPartition
from stream.events import MAX_LABEL_INT, check_label
from stream.exceptions import EventError

logger = logging.getLogger(__name__)

#: outcomes of one label
ON_TIME, LATE, DUPLICATE, UNKNOWN = "on_time", "late", "duplicate", "unknown"
_JOINED, _EXPIRED = 1, 2


class Label(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    y: bool | int | float | str
    #: the pipeline it is meant for, when a labels topic is shared (the HTTP route sets it)
    pipeline: str | None = None


_LABEL = msgspec.json.Decoder(Label)
_ENCODE = msgspec.json.Encoder()


def encode_label(event_id: str, y: Any) -> bytes:
    """The bytes of one label record: ``{"id": ..., "y": ...}``."""
    return _ENCODE.encode({"id": event_id, "y": y})


def send_label(sink: Sink, topic: str, event_id: str, y: Any) -> None:
    """Send one label to a pipeline's labels topic, keyed by the event id (for the HTTP route).

    The pipeline joins it by the merge rule above, like any other label on the topic.
    """
    if not isinstance(event_id, str) or not event_id:
        raise EventError("'id' must be a non-empty string")
    sink.send(topic, encode_label(event_id, y), key=event_id.encode())


def decode_label(raw: bytes, task: str) -> Label:
    """Parse a label record, or raise EventError saying why not."""
    try:
        label = _LABEL.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EventError(f"not a label {{\"id\": str, \"y\": label}}: {exc}") from None
    if not label.id:
        raise EventError("'id' must be a non-empty string")
    if task == "regression":
        if isinstance(label.y, bool) or not isinstance(label.y, int | float):
            raise EventError(f"'y' must be a number for a regression pipeline, got {label.y!r}")
        if isinstance(label.y, int) and abs(label.y) > MAX_LABEL_INT:
            raise EventError("'y' is an integer too large for a float64")
        return msgspec.structs.replace(label, y=float(label.y))
    return msgspec.structs.replace(label, y=check_label(label.y))


@dataclass(slots=True)
class Waiting:
    """A served event waiting for its label."""

    event_id: str
    x: dict[str, Any]
    prediction: Any
    version: int
    index: int
    ts_ms: int
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    def record(self) -> Record:
        return Record(self.topic, self.partition, self.offset, self.value, self.key)


@dataclass
class JoinCounts:
    on_time: int = 0
    late: int = 0
    duplicate: int = 0
    unknown: int = 0
    expired: int = 0
    bad: int = 0


@dataclass
class Taken:
    """What one boundary took: labels joined to their events, and expired events."""

    joined: list[tuple[Waiting, Any, Record]] = field(default_factory=list)
    expired: list[Waiting] = field(default_factory=list)
    bad: list[tuple[Record, str]] = field(default_factory=list)


class LabelJoin:
    """The join buffer and the labels topic's reader; see the module docstring."""

    def __init__(
        self,
        *,
        task: str,
        ttl_events: int,
        ttl_s: float,
        delay_ms: int,
        remember: int,
        pipeline: str | None = None,
        source: Source | None = None,
        wait_log_s: float = 10.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.task = task
        self.pipeline = pipeline
        self.ttl_events = ttl_events
        self.ttl_ms = int(ttl_s * 1000)
        self.delay_ms = delay_ms
        self.remember = remember
        self.source = source
        self.counts = JoinCounts()
        self.stream_ms = 0
        self.offsets: dict[TopicPartition, int] = {}
        self._waiting: dict[str, Waiting] = {}
        self._resolved: dict[str, int] = {}
        #: per labels partition, the time of the last label taken (labels' times never fall)
        self._last_ms: dict[int, int] = {}
        #: read ahead, not yet taken: per partition, (time, record), in log order
        self._held: dict[int, deque[tuple[int, Record]]] = {}
        self._tail_ms: dict[int, int] = {}
        self._wait_log_s = wait_log_s
        self._wall = wall_clock
        #: wall time (ms) at which the labels topic was last found read to its end
        self._verified_ms = float("-inf")

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    # ------------------------------------------------------------ events side

    def serve(self, events: Iterable[Any], records: Iterable[Record], predictions: Iterable[Any], first_index: int, version: int) -> None:
        """Remember the unlabelled events of a chunk as served; advance the stream time."""
        waiting, stream_ms = self._waiting, self.stream_ms
        for i, (ev, rec, pred) in enumerate(zip(events, records, predictions, strict=True)):
            ts = rec.timestamp_ms or 0
            if ts > stream_ms:
                stream_ms = ts
            if ev.y is not None:
                continue
            # an id served again replaces the older wait (the newer prediction is the one to score)
            waiting.pop(ev.id, None)
            waiting[ev.id] = Waiting(ev.id, ev.x, pred, version, first_index + i, ts, rec.topic, rec.partition, rec.offset, rec.key, rec.value)
        self.stream_ms = stream_ms

    def observe(self, records: Iterable[Record]) -> None:
        """Advance the stream time past records that were not served (dead letters)."""
        for rec in records:
            if rec.timestamp_ms is not None and rec.timestamp_ms > self.stream_ms:
                self.stream_ms = rec.timestamp_ms

    # ------------------------------------------------------------ labels side

    def take(self, events_seen: int, *, clock: Callable[[], float] = time.monotonic) -> Taken:
        """At a boundary: the labels the merge rule gives it, joined; then the expired events."""
        taken = Taken()
        for rec in self._due(clock):
            try:
                label = decode_label(rec.value, self.task)
            except EventError as exc:
                self.counts.bad += 1
                taken.bad.append((rec, f"bad label: {exc.reason}"))
                continue
            if label.pipeline is not None and label.pipeline != self.pipeline:
                continue  # another pipeline's, on a shared topic
            entry = self._waiting.pop(label.id, None)
            if entry is not None:
                self.counts.on_time += 1
                self._resolve(label.id, _JOINED)
                taken.joined.append((entry, label.y, rec))
                continue
            state = self._resolved.get(label.id)
            if state == _JOINED:
                self.counts.duplicate += 1
            elif state == _EXPIRED:
                self.counts.late += 1
            else:
                self.counts.unknown += 1
        # expiry, oldest first: the buffer is in serve order
        waiting = self._waiting
        while waiting:
            event_id, entry = next(iter(waiting.items()))
            if events_seen - (entry.index + 1) < self.ttl_events and self.stream_ms - entry.ts_ms <= self.ttl_ms:
                break
            del waiting[event_id]
            self.counts.expired += 1
            self._resolve(event_id, _EXPIRED)
            taken.expired.append(entry)
        return taken

    def _resolve(self, event_id: str, state: int) -> None:
        resolved = self._resolved
        resolved.pop(event_id, None)
        resolved[event_id] = state
        while len(resolved) > self.remember:
            del resolved[next(iter(resolved))]

    def _due(self, clock: Callable[[], float]) -> list[Record]:
        if self.source is None:
            return []
        cutoff = self.stream_ms - self.delay_ms
        started = told = clock()
        while not self._complete(cutoff):
            self._read()
            if clock() - told >= self._wait_log_s:
                told = clock()
                logger.warning(
                    "labels: waiting %.0f s for the labels topic to be read up to stream time %d (its end or a later label)",
                    told - started, cutoff,
                )
        due: list[tuple[int, int, int, Record]] = []
        for partition, held in self._held.items():
            while held and held[0][0] <= cutoff:
                ts, rec = held.popleft()
                due.append((ts, partition, rec.offset, rec))
                self._last_ms[partition] = ts
                self.offsets[(rec.topic, partition)] = rec.offset + 1
        due.sort(key=lambda d: d[:3])
        return [d[3] for d in due]

    def _complete(self, cutoff: int) -> bool:
        # Read to the end at wall time W, every label appended before W is here; one appended
        # later has a timestamp past W - delay (the rule's assumption), so up to a stream
        # time before W nothing is missing and the broker need not be asked again: a
        # replay far behind real time asks once, not at every boundary.
        if self.stream_ms < self._verified_ms:
            return True
        parts = self.source.assignment()
        if parts and all(self._held.get(p) and self._held[p][-1][0] > cutoff for _, p in parts):
            return True
        asked_at = self._wall() * 1000.0
        if self.source.caught_up():
            self._verified_ms = asked_at
            return True
        return False

    def _read(self) -> None:
        for rec in self.source.poll(1000, 100):
            p = rec.partition
            ts = max(rec.timestamp_ms or 0, self._tail_ms.get(p, self._last_ms.get(p, 0)))
            self._tail_ms[p] = ts
            self._held.setdefault(p, deque()).append((ts, rec))

    # --------------------------------------------------------------- snapshot

    def seek(self) -> None:
        """After a restore: read the labels topic again from the next label not yet taken."""
        self._held.clear()
        self._tail_ms.clear()
        if self.source is not None and self.offsets:
            self.source.seek(dict(self.offsets))

    def state_dict(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts.__dict__),
            "stream_ms": self.stream_ms,
            "offsets": [[t, p, o] for (t, p), o in sorted(self.offsets.items())],
            "last_ms": sorted(self._last_ms.items()),
            "waiting": [
                [k, w.x, w.prediction, w.version, w.index, w.ts_ms, w.topic, w.partition, w.offset, w.key, w.value]
                for k, w in self._waiting.items()
            ],
            "resolved": list(self._resolved.items()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts = JoinCounts(**state["counts"])
        self.stream_ms = int(state["stream_ms"])
        self.offsets = {(t, int(p)): int(o) for t, p, o in state["offsets"]}
        self._last_ms = {int(p): int(ts) for p, ts in state["last_ms"]}
        self._waiting = {row[0]: Waiting(*row) for row in state["waiting"]}
        self._resolved = dict(state["resolved"])
        self.seek()
