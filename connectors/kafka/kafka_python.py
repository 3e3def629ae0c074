"""Kafka source and sink on kafka-python 3.x (pure Python).

The runtime's snapshot, not Kafka's committed offsets, is the truth about progress: a
restored worker calls :meth:`KafkaPythonSource.seek` with the snapshot's offsets before it
has partitions, and the source applies them the moment the group assigns them. Auto-commit
is off; :meth:`KafkaPythonSource.commit` exists for lag monitoring, and a transactional
:class:`KafkaPythonSink` commits offsets together with its outputs.

Reading topics compressed with snappy, lz4 or zstd needs ``python-snappy`` (on
``cramjam``), ``lz4`` and ``zstandard``: kafka-python's codec module imports them if
installed and otherwise fails inside ``poll``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka import errors as kafka_errors
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaConfigurationError, KafkaError
from kafka.structs import OffsetAndMetadata

from connectors.base import Offsets, Record, TopicPartition, check_seek, topic_names
from connectors.exceptions import ConnectorError, OutputsLostError, ProducerFencedError
from connectors.kafka._common import (
    DEFAULT_GIVE_UP_S,
    DEFAULT_STALL_WARN_S,
    BrokerContact,
    PollWatchdog,
    any_bootstrap_reachable,
    bootstrap_list,
    check_bounds,
    kafka_python_config,
)

__all__ = ["DEFAULT_CLIENT_CONFIG", "KafkaPythonSink", "KafkaPythonSource"]

log = logging.getLogger(__name__)

#: Group settings that keep joins and failover quick; 6000 ms is the broker's minimum
#: session timeout. Override any of them through ``options`` or ``extra_config``.
DEFAULT_CLIENT_CONFIG: dict[str, Any] = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
}

_FENCED = (
    kafka_errors.ProducerFencedError,
    kafka_errors.InvalidProducerEpochError,
    kafka_errors.TransactionCoordinatorFencedError,
)


def _as_connector_error(exc: BaseException, what: str) -> ConnectorError:
    if isinstance(exc, _FENCED):
        return ProducerFencedError(f"{what}: producer fenced by another with the same transactional id: {exc}")
    return ConnectorError(f"{what}: {exc}")


class _SeekOnAssign(ConsumerRebalanceListener):
    def __init__(self, source: KafkaPythonSource) -> None:
        self._source = source

    def on_partitions_revoked(self, revoked: list[KafkaTopicPartition]) -> None:
        log.debug("partitions revoked: %s", sorted(revoked))

    def on_partitions_assigned(self, assigned: list[KafkaTopicPartition]) -> None:
        self._source._contact.ok()
        self._source._apply_positions(assigned)


class KafkaPythonSource:
    """:class:`~connectors.base.Source` on a ``KafkaConsumer`` in a consumer group.

    The source remembers, per partition, the next offset it should read: set by
    :meth:`seek` and advanced by every :meth:`poll`. Whenever the group (re)assigns a
    partition it knows, it seeks there, so neither a restore before the first
    assignment nor a rebalance mid-stream replays or skips records; partitions it has no
    position for start at the group's committed offset, else the earliest. This assumes
    one learning consumer per group, which the pipeline lease guarantees.

    A broker unreachable at construction does not fail it: :meth:`poll` keeps trying
    with backoff and raises :class:`ConnectorError` once ``give_up_s`` pass without an
    answer, like a broker lost later. A poll call stuck inside the library past
    ``give_up_s`` ends the process (see :class:`~connectors.kafka._common.PollWatchdog`).
    """

    client = "kafka-python"

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        topics: Iterable[str] | str,
        group_id: str,
        *,
        options: Mapping[str, Any] | None = None,
        extra_config: Mapping[str, Any] | None = None,
        stall_warn_s: float = DEFAULT_STALL_WARN_S,
        give_up_s: float = DEFAULT_GIVE_UP_S,
        metadata: bool = True,
    ) -> None:
        self.topics = topic_names(topics)
        check_bounds(stall_warn_s, give_up_s)
        self.metadata = metadata
        self.group_id = group_id
        self.bootstrap_servers = bootstrap_servers
        self._config: dict[str, Any] = {
            **DEFAULT_CLIENT_CONFIG,
            "isolation_level": "read_committed",
            "auto_offset_reset": "earliest",
            "bootstrap_timeout_ms": 10000,
            **kafka_python_config(options, "consumer"),
            **(extra_config or {}),
            "bootstrap_servers": bootstrap_servers,
            "group_id": group_id,
            "enable_auto_commit": False,
        }
        self._lock = threading.Lock()
        self._positions: dict[TopicPartition, int] = {}
        what = f"consumer of {self.topics} (group {group_id!r})"
        self._contact = BrokerContact(what, stall_warn_s, give_up_s)
        self._watchdog = PollWatchdog(what, stall_warn_s, give_up_s)
        self._consumer: KafkaConsumer | None = None
        try:
            self._connect()
        except ConnectorError as exc:
            log.warning("%s; retrying while polling", exc)

    def _connect(self) -> KafkaConsumer:
        """The consumer, created now if need be; ConnectorError when the broker is away."""
        if self._consumer is not None:
            return self._consumer
        timeout_s = self._contact.probe_timeout_s()
        # KafkaConsumer starts its IO thread before it bootstraps and does not stop it
        # when bootstrapping fails; a closed port is refused without starting anything
        if not any_bootstrap_reachable(self.bootstrap_servers, timeout_s):
            msg = f"Kafka at {bootstrap_list(self.bootstrap_servers)} refuses connections"
            raise ConnectorError(msg)
        config = dict(self._config)
        config["bootstrap_timeout_ms"] = min(config["bootstrap_timeout_ms"], int(timeout_s * 1000))
        try:
            consumer = KafkaConsumer(**config)
            consumer.subscribe(topics=self.topics, listener=_SeekOnAssign(self))
        except KafkaConfigurationError as exc:
            raise ValueError(f"bad kafka-python consumer configuration: {exc}") from exc
        except KafkaError as exc:
            msg = f"cannot connect a consumer to Kafka at {self.bootstrap_servers}: {exc}"
            raise ConnectorError(msg) from exc
        self._consumer = consumer
        self._contact.ok()
        return consumer

    def _apply_positions(self, partitions: Iterable[KafkaTopicPartition]) -> None:
        # Runs on the consumer's IO loop during a rebalance and from seek(): only sets
        # fetch positions, never blocks.
        consumer = self._consumer
        if consumer is None:
            return
        with self._lock:
            wanted = {
                tp: self._positions[(tp.topic, tp.partition)]
                for tp in partitions
                if (tp.topic, tp.partition) in self._positions
            }
        for tp, offset in sorted(wanted.items()):
            log.debug("seeking %s[%d] to %d", tp.topic, tp.partition, offset)
            try:
                consumer.seek(tp, offset)
            except ValueError:
                # Revoked by a rebalance since we looked; the position stays remembered
                # and is applied when the partition comes back.
                log.debug("%s[%d] no longer assigned; seek deferred", tp.topic, tp.partition)

    def caught_up(self, timeout_s: float = 5.0) -> bool:
        """True when the group assigned this consumer every partition of its topics and it
        has read each one to the end of the log; False before the group assigned anything."""
        consumer = self._consumer
        if consumer is None:
            return False
        try:
            assigned = sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
            if not assigned:
                return False
            count = sum(len(consumer.partitions_for_topic(t) or ()) for t in self.topics)
            if len(assigned) < count:
                return False
            ends = consumer.end_offsets(assigned)
            for tp in assigned:
                with self._lock:
                    mine = self._positions.get((tp.topic, tp.partition), -1)
                if max(consumer.position(tp, timeout_ms=int(timeout_s * 1000)) or -1, mine) < ends[tp]:
                    return False
        except Exception as exc:  # kafka-python raises its own errors and ValueError alike
            msg = f"reading the end of {self.topics} failed: {exc}"
            raise ConnectorError(msg) from exc
        return True

    def assignment(self) -> list[TopicPartition]:
        """Partitions the group has given this consumer now, sorted."""
        if self._consumer is None:
            return []
        return sorted((tp.topic, tp.partition) for tp in self._consumer.assignment())

    def poll(self, max_records: int, timeout_ms: int) -> list[Record]:
        if max_records < 1:
            msg = f"max_records must be >= 1, got {max_records}"
            raise ValueError(msg)
        # the wait the caller asked for and a bounded probe or reconnect are not a stall
        self._watchdog.enter(max(timeout_ms, 0) / 1000.0 + 2 * self._contact.max_probe_s)
        try:
            return self._poll(max_records, timeout_ms)
        finally:
            self._watchdog.leave()

    def _poll(self, max_records: int, timeout_ms: int) -> list[Record]:
        started = time.monotonic()
        if self._consumer is None:
            if self._contact.probe_due():
                try:
                    self._connect()
                except ConnectorError as exc:
                    self._contact.failed(exc)
            if self._consumer is None:
                # keep the caller's pace: an immediate return would make its loop spin
                time.sleep(max(0.0, timeout_ms / 1000.0 - (time.monotonic() - started)))
                return []
            timeout_ms = max(0, timeout_ms - int((time.monotonic() - started) * 1000))
        consumer = self._consumer
        try:
            batches = consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            msg = f"polling {self.topics} failed: {exc}"
            raise ConnectorError(msg) from exc
        records = [
            Record(
                r.topic,
                r.partition,
                r.offset,
                r.value if r.value is not None else b"",
                r.key,
                r.timestamp if self.metadata and r.timestamp is not None and r.timestamp >= 0 else None,
                tuple((name, value) for name, value in r.headers) if self.metadata and r.headers else (),
            )
            for batch in batches.values()
            for r in batch
        ]
        records.sort(key=lambda r: (r.topic, r.partition, r.offset))
        if records:
            self._contact.ok()
            with self._lock:
                for r in records:
                    self._positions[(r.topic, r.partition)] = r.offset + 1
        elif self._contact.probe_due():
            self._probe(consumer)
        return records

    def _probe(self, consumer: KafkaConsumer) -> None:
        assigned = sorted(consumer.assignment())
        tp = assigned[0] if assigned else KafkaTopicPartition(self.topics[0], 0)
        try:
            consumer.end_offsets([tp], timeout_ms=int(self._contact.probe_timeout_s() * 1000))
        except KafkaError as exc:
            self._contact.failed(exc)
        else:
            self._contact.ok()

    def seek(self, offsets: Offsets) -> None:
        """Continue from these next offsets; applied now if assigned, else on assignment."""
        check_seek(offsets, self.topics)
        with self._lock:
            self._positions.update(offsets)
        if self._consumer is not None:
            assigned = self._consumer.assignment()
            self._apply_positions(tp for tp in assigned if (tp.topic, tp.partition) in offsets)

    def commit(self, offsets: Offsets) -> None:
        if not offsets:
            return
        payload = {
            KafkaTopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
            for (topic, partition), offset in offsets.items()
        }
        try:
            self._connect().commit(payload)
        except KafkaError as exc:
            msg = f"committing offsets for group {self.group_id!r} failed: {exc}"
            raise ConnectorError(msg) from exc
        self._contact.ok()

    def committed(self, timeout_s: float = 10.0) -> dict[TopicPartition, int]:
        """The group's committed next offsets for every partition of the source's topics.

        A partition without a committed offset is left out. Works before assignment.
        """
        consumer = self._connect()
        out: dict[TopicPartition, int] = {}
        # a metadata fetch in kafka-python waits without a bound: watch it like a poll
        self._watchdog.enter(timeout_s)
        try:
            for topic in self.topics:
                for partition in sorted(consumer.partitions_for_topic(topic)):
                    offset = consumer.committed(
                        KafkaTopicPartition(topic, partition), timeout_ms=int(timeout_s * 1000)
                    )
                    if offset is not None and offset >= 0:
                        out[(topic, partition)] = int(offset)
        except KafkaError as exc:
            msg = f"reading the committed offsets of group {self.group_id!r} failed: {exc}"
            raise ConnectorError(msg) from exc
        finally:
            self._watchdog.leave()
        return out

    def group_metadata(self) -> Any:
        """The consumer's group metadata, for :meth:`KafkaPythonSink.commit_transaction`."""
        return self._connect().group_metadata()

    def close(self) -> None:
        self._watchdog.close()
        if self._consumer is not None:
            self._consumer.close(autocommit=False)


class KafkaPythonSink:
    """:class:`~connectors.base.Sink` on a ``KafkaProducer`` that batches and flushes.

    Delivery errors arrive asynchronously; the first one is raised by the next
    :meth:`flush` (or :meth:`send`), so a caller that flushes before committing progress
    never commits past a lost record. The idempotent producer treats a rejected batch as
    fatal and fails everything after it, so the sink then replaces its producer: one
    poisoned record costs one error, not the rest of the worker's life.

    With a ``transactional_id`` the sink is transactional, with the same contract as
    :class:`~connectors.kafka.confluent.ConfluentSink`: ``init_transactions`` at
    construction fences older producers with that id, a transaction begins with the
    first send after a commit or abort, a delivery error aborts it and raises
    :class:`ConnectorError`, and a fenced producer raises :class:`ProducerFencedError`.
    """

    client = "kafka-python"

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        *,
        transactional_id: str | None = None,
        options: Mapping[str, Any] | None = None,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.transactional_id = transactional_id
        self.transactional = transactional_id is not None
        self._config: dict[str, Any] = {
            "linger_ms": 5,
            "acks": "all",
            "bootstrap_timeout_ms": 10000,
            **kafka_python_config(options, "producer"),
            **(extra_config or {}),
            "bootstrap_servers": bootstrap_servers,
        }
        if transactional_id is not None:
            self._config["transactional_id"] = transactional_id
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        # Errors from a producer already replaced must not fail the new one.
        self._generation = 0
        self._in_transaction = False
        self._producer = self._new_producer()
        if self.transactional:
            try:
                self._producer.init_transactions()
            except KafkaError as exc:
                raise _as_connector_error(exc, "initialising transactions") from exc

    def _new_producer(self) -> KafkaProducer:
        try:
            return KafkaProducer(**self._config)
        except KafkaConfigurationError as exc:
            raise ValueError(f"bad kafka-python producer configuration: {exc}") from exc
        except KafkaError as exc:
            msg = (
                f"cannot connect a producer to Kafka at {self._config['bootstrap_servers']}: {exc}"
            )
            raise ConnectorError(msg) from exc

    def _on_error(self, generation: int, exc: BaseException) -> None:
        with self._error_lock:
            if generation == self._generation and self._error is None:
                self._error = exc

    def _abort_after(self, what: str, cause: BaseException) -> None:
        log.warning("%s failed, aborting the transaction: %s", what, cause)
        self._abort()

    def _abort(self) -> None:
        try:
            self._producer.abort_transaction()
        except KafkaError as exc:
            raise _as_connector_error(exc, "aborting the transaction") from exc
        finally:
            self._in_transaction = False
        with self._error_lock:
            self._error = None

    def _raise_pending(self) -> None:
        with self._error_lock:
            exc, self._error = self._error, None
            if exc is not None and not self.transactional:
                self._generation += 1
        if exc is None:
            return
        if isinstance(exc, _FENCED):
            raise _as_connector_error(exc, "a record was not delivered") from exc
        if self.transactional:
            if self._in_transaction:
                self._abort_after("delivering a record", exc)
            msg = f"a record was not delivered, the transaction was aborted: {exc}"
            raise OutputsLostError(msg) from exc
        log.warning("replacing the Kafka producer after a delivery error: %s", exc)
        old, self._producer = self._producer, self._new_producer()
        try:
            old.close(timeout=5)
        except Exception as close_exc:  # the old producer is broken already
            log.debug("closing the failed producer: %s", close_exc)
        msg = f"a record was not delivered: {exc}"
        raise ConnectorError(msg) from exc

    def _require_transactional(self) -> None:
        if not self.transactional:
            msg = "this sink is not transactional: open it with a transactional_id"
            raise ConnectorError(msg)

    def _begin(self) -> None:
        try:
            self._producer.begin_transaction()
        except KafkaError as exc:
            raise _as_connector_error(exc, "beginning a transaction") from exc
        self._in_transaction = True

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        self._raise_pending()
        if self.transactional and not self._in_transaction:
            self._begin()
        try:
            future = self._producer.send(
                topic, value=value, key=key, headers=list(headers) if headers else None
            )
        except KafkaError as exc:
            raise _as_connector_error(exc, f"sending to {topic!r} failed") from exc
        future.add_errback(self._on_error, self._generation)

    def flush(self, timeout_s: float | None = None) -> None:
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise _as_connector_error(exc, "flush did not complete") from exc
        self._raise_pending()

    def commit_transaction(self, offsets: Offsets, source: Any) -> None:
        """Commit the records sent since the last commit and ``offsets`` for ``source``'s group.

        ``offsets`` are next offsets to read per (topic, partition); ``source`` is the
        :class:`KafkaPythonSource` they were read with.
        """
        self._require_transactional()
        self._raise_pending()
        if not self._in_transaction:
            if not offsets:
                return
            self._begin()
        try:
            if offsets:
                if not isinstance(source, KafkaPythonSource):
                    msg = f"a kafka-python sink commits offsets of a KafkaPythonSource, not {type(source).__name__}"
                    raise TypeError(msg)
                payload = {
                    KafkaTopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                    for (t, p), o in sorted(offsets.items())
                }
                self._producer.send_offsets_to_transaction(payload, source.group_metadata())
            self._producer.commit_transaction()
        except KafkaError as exc:
            if isinstance(exc, _FENCED):
                raise _as_connector_error(exc, "committing the transaction") from exc
            self._abort_after("committing the transaction", exc)
            msg = f"committing the transaction failed, it was aborted: {exc}"
            raise OutputsLostError(msg) from exc
        self._in_transaction = False
        self._raise_pending()

    def abort_transaction(self) -> None:
        """Discard the records sent since the last commit; nothing open is a no-op."""
        self._require_transactional()
        if not self._in_transaction:
            return
        self._abort()

    def close(self) -> None:
        """Flush and close; an open transaction is aborted, not committed."""
        try:
            if self._in_transaction:
                self._producer.abort_transaction()
                self._in_transaction = False
        except KafkaError as exc:
            log.warning("aborting the open transaction at close: %s", exc)
        self._producer.close(timeout=10)
