"""The edges' protocols: where events come from, where outputs go, where snapshots live.

Offsets follow Kafka's convention everywhere: the offset stored for a partition is the
*next* offset to read, so a restored consumer seeks to it and neither re-reads nor skips.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import msgspec

#: (topic, partition)
TopicPartition = tuple[str, int]
#: next offset to read, per topic-partition
Offsets = Mapping[TopicPartition, int]


def topic_names(topics: Iterable[str] | str) -> list[str]:
    """A source's topics, sorted and once each; a source of no topic is refused."""
    names = sorted({topics} if isinstance(topics, str) else set(topics))
    if not names:
        raise ValueError("topics must name at least one topic")
    return names


def check_seek(offsets: Offsets, topics: Sequence[str]) -> None:
    """Refuse a seek to a topic the source does not read or to a negative offset."""
    for (topic, partition), offset in offsets.items():
        if topic not in topics:
            raise ValueError(f"cannot seek {topic!r}: not among this source's topics {list(topics)}")
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset} for {topic}[{partition}]")


class Record(msgspec.Struct, gc=False):
    """One message as read from a topic (treat as read-only).

    A struct built in C, once per record: a third of a slots dataclass's cost. It holds no
    containers that could form a cycle, so the cyclic collector never tracks it (gc=False)
    and the records of a poll do not count towards its young generation.
    """

    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None
    timestamp_ms: int | None = None
    #: (name, value) pairs in the order they were sent; names may repeat
    headers: tuple[tuple[str, bytes], ...] = ()


@runtime_checkable
class Source(Protocol):
    """A consumer of one or more topics."""

    def poll(self, max_records: int, timeout_ms: int) -> list[Record]:
        """Return up to ``max_records`` records, waiting at most ``timeout_ms`` for the first.

        A partition's records come together, in offset order (the runtime reads a poll's
        progress from its last record when the first and the last share a partition).
        """
        ...

    def seek(self, offsets: Offsets) -> None:
        """Continue each named partition from the given next offset."""
        ...

    def commit(self, offsets: Offsets) -> None:
        """Record progress for lag monitoring; the snapshot, not this, is the truth."""
        ...

    # Kafka sources also offer ``committed() -> dict[TopicPartition, int]``: the group's
    # committed next offsets for every partition of their topics that has one, callable
    # before the group assigns anything. It is not required of every source.

    def close(self) -> None: ...


@runtime_checkable
class Sink(Protocol):
    """A producer of records to topics."""

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None: ...

    def flush(self, timeout_s: float | None = None) -> None: ...

    def close(self) -> None: ...


def send_many(sink: Sink, topic: str, values: Sequence[bytes], keys: Sequence[bytes | None]) -> None:
    """Send ``values`` with their ``keys`` in order, through the sink's batch path if it has one."""
    many = getattr(sink, "send_many", None)
    if many is not None:
        many(topic, values, keys)
        return
    for value, key in zip(values, keys, strict=True):
        sink.send(topic, value, key=key)


@runtime_checkable
class TransactionalSink(Sink, Protocol):
    """A sink whose sends become visible to ``read_committed`` readers only on commit.

    A transaction begins with the first send after a commit or abort. Committing it also
    commits ``offsets`` (next offsets to read) for the source's consumer group, atomically
    with the records, which is what makes consume-process-produce exactly once.
    """

    transactional: bool

    def commit_transaction(self, offsets: Offsets, source: Source) -> None: ...

    def abort_transaction(self) -> None: ...


@runtime_checkable
class SnapshotStore(Protocol):
    """Versioned, opaque snapshot blobs per pipeline, with a ``latest`` pointer.

    The store does not read the blob: signing and decoding are the runtime's job.
    """

    def save(self, pipeline: str, blob: bytes, *, fencing_token: int | None = None) -> int:
        """Store a new version, move ``latest`` to it atomically, prune old ones; return the version."""
        ...

    def load_latest(self, pipeline: str) -> tuple[int, bytes] | None:
        """The newest (version, blob), or None when the pipeline has no snapshot yet."""
        ...

    def load(self, pipeline: str, version: int) -> bytes: ...

    def versions(self, pipeline: str) -> Sequence[int]:
        """Stored versions, oldest first."""
        ...

    def close(self) -> None: ...
