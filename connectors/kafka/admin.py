"""Topic and offset administration on kafka-python's ``KafkaAdminClient``.

Used by the service to wait for the broker and create topics, and by tests and
operators to read end offsets and a group's committed offsets. It works against any
broker whichever client the sources and sinks use.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import KafkaAdminClient
from kafka import TopicPartition as KafkaTopicPartition
from kafka.admin import OffsetSpec
from kafka.errors import KafkaError
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from connectors.base import TopicPartition
from connectors.exceptions import ConnectorError
from connectors.kafka._common import kafka_python_config

__all__ = ["KafkaAdmin"]

_TOPIC_ALREADY_EXISTS = 36


def _retriable(exc: BaseException) -> bool:
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))


class KafkaAdmin:
    """Topic and offset helpers over ``KafkaAdminClient``; retriable errors are retried."""

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        *,
        options: Mapping[str, Any] | None = None,
        extra_config: Mapping[str, Any] | None = None,
        retry_timeout_s: float = 30.0,
    ) -> None:
        """``options`` in librdkafka's naming (``security.protocol``, ...), as the sources
        and sinks take them; ``extra_config`` in kafka-python's, applied last."""
        self.bootstrap_servers = bootstrap_servers
        self.retry_timeout_s = retry_timeout_s
        self._config = {
            "request_timeout_ms": 10000,
            "bootstrap_timeout_ms": 10000,
            **kafka_python_config(options, "admin"),
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
