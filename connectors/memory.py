"""An in-process log with Kafka's semantics, for the embedded default and for tests.

Topics have a fixed number of partitions; each partition is an append-only list whose
offsets start at 0. Keys choose the partition with CRC-32, so the same key lands on the
same partition in every process (Python's ``hash`` is salted per process). Consumers keep
their own positions and commit per group, so a restarted consumer resumes like a Kafka one.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from connectors.base import Offsets, Record, TopicPartition, check_seek, topic_names
from connectors.exceptions import ConnectorError

__all__ = ["InMemoryLog", "MemorySink", "MemorySource", "partition_for_key"]


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition a key maps to: stable across processes and runs."""
    return zlib.crc32(key) % partitions


@dataclass(frozen=True, slots=True)
class _Entry:
    value: bytes
    key: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()


class _PartitionLog:
    """One partition: offsets count from 0 for ever, but only the newest ``retention``
    records are kept (like Kafka's size-based retention), so an endless stream in a
    long-running process does not grow memory without bound."""

    __slots__ = ("_entries", "retention", "start")

    def __init__(self, retention: int | None) -> None:
        self._entries: list[_Entry] = []
        self.retention = retention
        #: first offset still held
        self.start = 0

    def __len__(self) -> int:
        """The end offset: one past the newest record."""
        return self.start + len(self._entries)

    def __getitem__(self, offset: int) -> _Entry:
        return self._entries[offset - self.start]

    def append(self, entry: _Entry) -> None:
        self._entries.append(entry)
        # trim in halves so appends stay amortised O(1)
        if self.retention is not None and len(self._entries) >= 2 * self.retention:
            drop = len(self._entries) - self.retention
            del self._entries[:drop]
            self.start += drop


class InMemoryLog:
    """Topics of partitioned, append-only logs shared by producers and consumers in one process.

    Parameters
    ----------
    default_partitions
        Partition count of a topic created implicitly by its first ``send``.
    clock
        Seconds since the epoch, for record timestamps; pass a fixed clock for tests that
        compare timestamps.
    retention
        Records kept per partition (None: all). Older ones are dropped; offsets go on.
    """

    def __init__(
        self,
        default_partitions: int = 1,
        *,
        clock: Callable[[], float] = time.time,
        retention: int | None = None,
    ) -> None:
        if default_partitions < 1:
            msg = f"default_partitions must be >= 1, got {default_partitions}"
            raise ValueError(msg)
        if retention is not None and retention < 1:
            msg = f"retention must be >= 1 or None, got {retention}"
            raise ValueError(msg)
        self.default_partitions = default_partitions
        self.retention = retention
        self._clock = clock
        self._topics: dict[str, list[_PartitionLog]] = {}
        # Keyless records rotate over partitions per topic; a counter keeps that deterministic.
        self._next_keyless: dict[str, int] = {}
        self._committed: dict[str, dict[TopicPartition, int]] = {}
        self._lock = threading.Lock()
        self._appended = threading.Condition(self._lock)

    # -- topics -----------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int | None = None) -> None:
        """Create a topic; creating it again with the same partition count is a no-op."""
        if not name:
            msg = "topic name must be a non-empty string"
            raise ValueError(msg)
        count = self.default_partitions if partitions is None else partitions
        if count < 1:
            msg = f"partitions must be >= 1, got {count}"
            raise ValueError(msg)
        with self._lock:
            existing = self._topics.get(name)
            if existing is not None:
                if len(existing) != count:
                    msg = f"topic {name!r} exists with {len(existing)} partitions, not {count}"
                    raise ValueError(msg)
                return
            self._topics[name] = [_PartitionLog(self.retention) for _ in range(count)]

    def topics(self) -> dict[str, int]:
        """Topic name -> partition count."""
        with self._lock:
            return {name: len(parts) for name, parts in self._topics.items()}

    def partitions(self, topic: str) -> int:
        """Partition count of ``topic``; KeyError when it does not exist."""
        with self._lock:
            return len(self._topics[topic])

    def end_offsets(self, topic: str) -> dict[TopicPartition, int]:
        """Per partition, the offset the next appended record will get."""
        with self._lock:
            parts = self._topics[topic]
            return {(topic, p): len(log) for p, log in enumerate(parts)}

    def committed(self, group_id: str) -> dict[TopicPartition, int]:
        """Offsets committed by a consumer group (next offset to read)."""
        with self._lock:
            return dict(self._committed.get(group_id, {}))

    # -- clients ----------------------------------------------------------------------

    def producer(self) -> MemorySink:
        return MemorySink(self)

    def consumer(self, topics: Iterable[str] | str, group_id: str) -> MemorySource:
        return MemorySource(self, [topics] if isinstance(topics, str) else list(topics), group_id)

    # -- used by the clients ----------------------------------------------------------

    def append(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> tuple[int, int]:
        """Append one record; return its (partition, offset)."""
        if not isinstance(value, bytes | bytearray | memoryview):
            msg = f"value must be bytes, got {type(value).__name__}"
            raise TypeError(msg)
        if key is not None and not isinstance(key, bytes | bytearray | memoryview):
            msg = f"key must be bytes or None, got {type(key).__name__}"
            raise TypeError(msg)
        entry = _Entry(
            bytes(value),
            None if key is None else bytes(key),
            int(self._clock() * 1000),
            tuple((str(name), bytes(v)) for name, v in headers or ()),
        )
        with self._appended:
            parts = self._topics.get(topic)
            if parts is None:
                parts = self._topics[topic] = [
                    _PartitionLog(self.retention) for _ in range(self.default_partitions)
                ]
            if partition is None:
                if entry.key is None:
                    n = self._next_keyless.get(topic, 0)
                    self._next_keyless[topic] = n + 1
                    partition = n % len(parts)
                else:
                    partition = partition_for_key(entry.key, len(parts))
            elif not 0 <= partition < len(parts):
                msg = f"partition {partition} out of range for topic {topic!r} ({len(parts)} partitions)"
                raise ValueError(msg)
            log = parts[partition]
            log.append(entry)
            self._appended.notify_all()
            return partition, len(log) - 1

    def _commit(self, group_id: str, offsets: Offsets) -> None:
        with self._lock:
            self._committed.setdefault(group_id, {}).update(offsets)


class MemorySink:
    """A producer on an :class:`InMemoryLog`; sends are visible to consumers at once."""

    def __init__(self, log: InMemoryLog) -> None:
        self._log = log
        self._closed = False

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        if self._closed:
            msg = "send on a closed producer"
            raise ConnectorError(msg)
        self._log.append(topic, value, key, headers=headers)

    def flush(self, timeout_s: float | None = None) -> None:
        """Nothing is buffered, so there is nothing to wait for."""

    def close(self) -> None:
        self._closed = True


class MemorySource:
    """A consumer of an :class:`InMemoryLog` that owns every partition of its topics.

    Unlike Kafka there is no group rebalancing: each consumer reads all partitions. A
    partition with no position starts at the group's committed offset, else at 0
    (``auto_offset_reset="earliest"``).
    """

    def __init__(self, log: InMemoryLog, topics: list[str], group_id: str) -> None:
        self._log = log
        self._topics = topic_names(topics)
        self.group_id = group_id
        self._positions: dict[TopicPartition, int] = {}
        # Index into the sorted partition list where the next poll starts, so one busy
        # partition cannot starve the others when max_records is small.
        self._cursor = 0
        self._closed = False

    @property
    def topics(self) -> list[str]:
        return list(self._topics)

    def _assigned_locked(self) -> list[TopicPartition]:
        parts: list[TopicPartition] = []
        for topic in self._topics:
            logs = self._log._topics.get(topic)
            if logs is not None:
                parts.extend((topic, p) for p in range(len(logs)))
        return parts

    def _position_locked(self, tp: TopicPartition) -> int:
        pos = self._positions.get(tp)
        if pos is None:
            pos = self._log._committed.get(self.group_id, {}).get(tp, 0)
            self._positions[tp] = pos
        return pos

    def _available_locked(self) -> bool:
        return any(
            self._position_locked(tp) < len(self._log._topics[tp[0]][tp[1]])
            for tp in self._assigned_locked()
        )

    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer reads, sorted."""
        with self._log._lock:
            return self._assigned_locked()

    def caught_up(self, timeout_s: float = 5.0) -> bool:
        """True when every partition of the source's topics has been read to its end."""
        with self._log._lock:
            return not self._available_locked()

    def position(self, tp: TopicPartition) -> int:
        """The next offset this consumer will read from ``tp``."""
        with self._log._lock:
            return self._position_locked(tp)

    def poll(self, max_records: int, timeout_ms: int) -> list[Record]:
        if max_records < 1:
            msg = f"max_records must be >= 1, got {max_records}"
            raise ValueError(msg)
        deadline = time.monotonic() + max(timeout_ms, 0) / 1000.0
        with self._log._appended:
            while True:
                if self._closed:
                    msg = "poll on a closed consumer"
                    raise ConnectorError(msg)
                if self._available_locked():
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._log._appended.wait(remaining)
            return self._take_locked(max_records)

    def _take_locked(self, max_records: int) -> list[Record]:
        assigned = self._assigned_locked()
        out: list[Record] = []
        n = len(assigned)
        start = self._cursor % n
        for i in range(n):
            if len(out) >= max_records:
                break
            idx = (start + i) % n
            topic, partition = tp = assigned[idx]
            log = self._log._topics[topic][partition]
            # a position behind retention resumes at the oldest record kept, as Kafka's
            # auto.offset.reset=earliest does after an out-of-range fetch
            pos = max(self._position_locked(tp), log.start)
            end = min(len(log), pos + max_records - len(out))
            if end <= pos:
                continue
            for offset in range(pos, end):
                e = log[offset]
                out.append(
                    Record(topic, partition, offset, e.value, e.key, e.timestamp_ms, e.headers)
                )
            self._positions[tp] = end
            self._cursor = idx + 1
        return out

    def seek(self, offsets: Offsets) -> None:
        """Set next offsets; an offset past the end waits there for new records."""
        check_seek(offsets, self._topics)
        with self._log._lock:
            for (topic, partition), offset in offsets.items():
                logs = self._log._topics.get(topic)
                if logs is not None and not 0 <= partition < len(logs):
                    msg = f"partition {partition} out of range for topic {topic!r}"
                    raise ValueError(msg)
                self._positions[(topic, partition)] = offset

    def commit(self, offsets: Offsets) -> None:
        if self._closed:
            msg = "commit on a closed consumer"
            raise ConnectorError(msg)
        self._log._commit(self.group_id, offsets)

    def close(self) -> None:
        with self._log._appended:
            self._closed = True
            # Wake a poll blocked in another thread so it sees the close.
            self._log._appended.notify_all()
