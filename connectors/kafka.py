"""Kafka source, sink and admin helpers on kafka-python 3.x.

The runtime's snapshot, not Kafka's committed offsets, is the truth about progress: a
restored worker calls :meth:`KafkaSource.seek` with the snapshot's offsets before it has
partitions, and the source applies them the moment the group assigns them. Auto-commit
is off; :meth:`KafkaSource.commit` exists for lag monitoring only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.admin import OffsetSpec
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from connectors.base import Offsets, Record, TopicPartition, check_seek
from connectors.exceptions import ConnectorError

__all__ = [
    "DEFAULT_CLIENT_CONFIG",
    "KafkaAdmin",
    "KafkaSink",
    "KafkaSource",
]

log = logging.getLogger(__name__)

#: Group settings that keep joins and failover quick; 6000 ms is the broker's minimum
#: session timeout. Override any of them through ``extra_config``.
DEFAULT_CLIENT_CONFIG: dict[str, Any] = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
}

_TOPIC_ALREADY_EXISTS = 36


def _retriable(exc: BaseException) -> bool:
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))


class _SeekOnAssign(ConsumerRebalanceListener):
    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    def on_partitions_revoked(self, revoked: list[KafkaTopicPartition]) -> None:
        log.debug("partitions revoked: %s", sorted(revoked))

    def on_partitions_assigned(self, assigned: list[KafkaTopicPartition]) -> None:
        self._source._apply_positions(assigned)


class KafkaSource:
    """:class:`~connectors.base.Source` on a ``KafkaConsumer`` in a consumer group.

    The source remembers, per partition, the next offset it should read: set by
    :meth:`seek` and advanced by every :meth:`poll`. Whenever the group (re)assigns a
    partition it knows, it seeks there, so neither a restore before the first
    assignment nor a rebalance mid-stream replays or skips records; partitions it has no
    position for start at the group's committed offset, else the earliest. This assumes
    one learning consumer per group, which the pipeline lease guarantees.
    """

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        topics: Iterable[str] | str,
        group_id: str,
        *,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.topics = sorted({topics} if isinstance(topics, str) else set(topics))
        if not self.topics:
            msg = "topics must name at least one topic"
            raise ValueError(msg)
        self.group_id = group_id
        config: dict[str, Any] = {
            **DEFAULT_CLIENT_CONFIG,
            **(extra_config or {}),
            "bootstrap_servers": bootstrap_servers,
            "group_id": group_id,
            "enable_auto_commit": False,
        }
        config.setdefault("auto_offset_reset", "earliest")
        self._lock = threading.Lock()
        self._positions: dict[TopicPartition, int] = {}
        try:
            self._consumer = KafkaConsumer(**config)
            self._consumer.subscribe(topics=self.topics, listener=_SeekOnAssign(self))
        except KafkaError as exc:
            msg = f"cannot connect a consumer to Kafka at {bootstrap_servers}: {exc}"
            raise ConnectorError(msg) from exc

    def _apply_positions(self, partitions: Iterable[KafkaTopicPartition]) -> None:
        # Runs on the consumer's IO loop during a rebalance and from seek(): only sets
        # fetch positions, never blocks.
        with self._lock:
            wanted = {
                tp: self._positions[(tp.topic, tp.partition)]
                for tp in partitions
                if (tp.topic, tp.partition) in self._positions
            }
        for tp, offset in sorted(wanted.items()):
            log.debug("seeking %s[%d] to %d", tp.topic, tp.partition, offset)
            try:
                self._consumer.seek(tp, offset)
            except ValueError:
                # Revoked by a rebalance since we looked; the position stays remembered
                # and is applied when the partition comes back.
                log.debug("%s[%d] no longer assigned; seek deferred", tp.topic, tp.partition)

    def assignment(self) -> list[TopicPartition]:
        """Partitions the group has given this consumer now, sorted."""
        return sorted((tp.topic, tp.partition) for tp in self._consumer.assignment())

    def poll(self, max_records: int, timeout_ms: int) -> list[Record]:
        if max_records < 1:
            msg = f"max_records must be >= 1, got {max_records}"
            raise ValueError(msg)
        try:
            batches = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            msg = f"polling {self.topics} failed: {exc}"
            raise ConnectorError(msg) from exc
        records = [
            Record(
                topic=r.topic,
                partition=r.partition,
                offset=r.offset,
                value=r.value,
                key=r.key,
                timestamp_ms=r.timestamp if r.timestamp is not None and r.timestamp >= 0 else None,
            )
            for batch in batches.values()
            for r in batch
        ]
        records.sort(key=lambda r: (r.topic, r.partition, r.offset))
        if records:
            with self._lock:
                for r in records:
                    self._positions[(r.topic, r.partition)] = r.offset + 1
        return records

    def seek(self, offsets: Offsets) -> None:
        """Continue from these next offsets; applied now if assigned, else on assignment."""
        check_seek(offsets, self.topics)
        with self._lock:
            self._positions.update(offsets)
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
            self._consumer.commit(payload)
        except KafkaError as exc:
            msg = f"committing offsets for group {self.group_id!r} failed: {exc}"
            raise ConnectorError(msg) from exc

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class KafkaSink:
    """:class:`~connectors.base.Sink` on a ``KafkaProducer`` that batches and flushes.

    Delivery errors arrive asynchronously; the first one is raised by the next
    :meth:`flush` (or :meth:`send`), so a caller that flushes before committing progress
    never commits past a lost record. The idempotent producer treats a rejected batch as
    fatal and fails everything after it, so the sink then replaces its producer: one
    poisoned record costs one error, not the rest of the worker's life.
    """

    def __init__(
        self, bootstrap_servers: str | list[str], *, extra_config: Mapping[str, Any] | None = None
    ) -> None:
        self._config: dict[str, Any] = {
            "linger_ms": 5,
            "acks": "all",
            **(extra_config or {}),
            "bootstrap_servers": bootstrap_servers,
        }
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        # Errors from a producer already replaced must not fail the new one.
        self._generation = 0
        self._producer = self._new_producer()

    def _new_producer(self) -> KafkaProducer:
        try:
            return KafkaProducer(**self._config)
        except KafkaError as exc:
            msg = (
                f"cannot connect a producer to Kafka at {self._config['bootstrap_servers']}: {exc}"
            )
            raise ConnectorError(msg) from exc

    def _on_error(self, generation: int, exc: BaseException) -> None:
        with self._error_lock:
            if generation == self._generation and self._error is None:
                self._error = exc

    def _raise_pending(self) -> None:
        with self._error_lock:
            exc, self._error = self._error, None
            if exc is not None:
                self._generation += 1
        if exc is None:
            return
        log.warning("replacing the Kafka producer after a delivery error: %s", exc)
        old, self._producer = self._producer, self._new_producer()
        try:
            old.close(timeout=5)
        except Exception as close_exc:  # the old producer is broken already
            log.debug("closing the failed producer: %s", close_exc)
        msg = f"a record was not delivered: {exc}"
        raise ConnectorError(msg) from exc

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self._raise_pending()
        try:
            future = self._producer.send(topic, value=value, key=key)
        except KafkaError as exc:
            msg = f"sending to {topic!r} failed: {exc}"
            raise ConnectorError(msg) from exc
        future.add_errback(self._on_error, self._generation)

    def flush(self, timeout_s: float | None = None) -> None:
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            msg = f"flush did not complete: {exc}"
            raise ConnectorError(msg) from exc
        self._raise_pending()

    def close(self) -> None:
        self._producer.close()


class KafkaAdmin:
    """Topic and offset helpers over ``KafkaAdminClient``; retriable errors are retried."""

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        *,
        extra_config: Mapping[str, Any] | None = None,
        retry_timeout_s: float = 30.0,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.retry_timeout_s = retry_timeout_s
        self._config = {
            "request_timeout_ms": 10000,
            "bootstrap_timeout_ms": 10000,
            **(extra_config or {}),
            "bootstrap_servers": bootstrap_servers,
        }
        # Created on first use, so that wait_ready can wait for a broker still starting.
        self._admin_client: KafkaAdminClient | None = None

    @property
    def _admin(self) -> KafkaAdminClient:
        return self._connect()

    def _connect(self, bootstrap_timeout_ms: int | None = None) -> KafkaAdminClient:
        if self._admin_client is None:
            config = dict(self._config)
            if bootstrap_timeout_ms is not None:
                config["bootstrap_timeout_ms"] = min(
                    config["bootstrap_timeout_ms"], bootstrap_timeout_ms
                )
            try:
                self._admin_client = KafkaAdminClient(**config)
            except KafkaError as exc:
                msg = f"cannot reach Kafka at {self.bootstrap_servers}: {exc}"
                raise ConnectorError(msg) from exc
        return self._admin_client

    def _retrying(self, timeout_s: float | None = None) -> Retrying:
        return Retrying(
            retry=retry_if_exception(_retriable),
            stop=stop_after_delay(self.retry_timeout_s if timeout_s is None else timeout_s),
            wait=wait_exponential(multiplier=0.1, max=2.0),
            reraise=True,
        )

    def wait_ready(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Block until the cluster answers ``describe_cluster`` with a broker; return it."""

        deadline = time.monotonic() + timeout_s

        def attempt() -> dict[str, Any]:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            info = self._connect(bootstrap_timeout_ms=max(remaining_ms, 500)).describe_cluster()
            if not info.get("brokers"):
                msg = "cluster has no live brokers yet"
                raise ConnectorError(msg)
            return info

        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, KafkaError | ConnectorError)),
            stop=stop_after_delay(timeout_s),
            wait=wait_exponential(multiplier=0.1, max=2.0),
        )
        try:
            return retrying(attempt)
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            msg = f"Kafka at {self.bootstrap_servers} not ready within {timeout_s:.0f} s: {cause}"
            raise ConnectorError(msg) from cause

    def create_topics(
        self, names: Iterable[str], partitions: int = 1, *, replication_factor: int = -1
    ) -> None:
        """Create topics that do not exist yet; existing ones are left as they are.

        ``replication_factor=-1`` uses the broker's default.
        """
        spec = {
            name: {"num_partitions": partitions, "replication_factor": replication_factor}
            for name in names
        }
        if not spec:
            return
        result = self._retrying()(
            self._admin.create_topics, spec, raise_errors=False, wait_for_metadata=True
        )
        failed = [
            f"{t['name']}: {t.get('error_message') or t['error_code']}"
            for t in result.get("topics", [])
            if t["error_code"] not in (0, _TOPIC_ALREADY_EXISTS)
        ]
        if failed:
            msg = "creating topics failed: " + "; ".join(failed)
            raise ConnectorError(msg)

    def partitions(self, topic: str) -> list[int]:
        """Partition ids of ``topic``, sorted; ConnectorError when it does not exist."""
        described = self._retrying()(self._admin.describe_topics, [topic])
        for t in described:
            if t["name"] == topic:
                if t["error_code"] != 0:
                    msg = f"topic {topic!r} cannot be described (error code {t['error_code']})"
                    raise ConnectorError(msg)
                return sorted(p["partition_index"] for p in t["partitions"])
        msg = f"topic {topic!r} not found"
        raise ConnectorError(msg)

    def end_offsets(self, topic: str) -> dict[TopicPartition, int]:
        """Per partition, the offset the next produced record will get."""
        spec = {KafkaTopicPartition(topic, p): OffsetSpec.LATEST for p in self.partitions(topic)}
        result = self._retrying()(self._admin.list_partition_offsets, spec)
        return {(tp.topic, tp.partition): int(o.offset) for tp, o in sorted(result.items())}

    def committed(self, group_id: str, topic: str | None = None) -> dict[TopicPartition, int]:
        """Offsets the group has committed (next offset to read), optionally for one topic."""
        result = self._retrying()(self._admin.list_group_offsets, group_id)
        out: dict[TopicPartition, int] = {}
        for tp, meta in result.get(group_id, {}).items():
            if (topic is None or tp.topic == topic) and meta.offset >= 0:
                out[(tp.topic, tp.partition)] = int(meta.offset)
        return dict(sorted(out.items()))

    def close(self) -> None:
        if self._admin_client is not None:
            self._admin_client.close()
            self._admin_client = None
