"""Kafka sources, sinks and admin, on either of two clients.

``confluent`` (confluent-kafka on librdkafka) is the default and the fast one;
``kafka-python`` is pure Python. Both give the same contract (see
:mod:`connectors.kafka.confluent`), read every codec, and take client options in
librdkafka's dotted naming (``security.protocol``, ``sasl.username``, ...), which are
translated for kafka-python.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from connectors.kafka._common import DEFAULT_GIVE_UP_S, DEFAULT_STALL_WARN_S, STUCK_EXIT_STATUS
from connectors.kafka.admin import KafkaAdmin
from connectors.kafka.confluent import ConfluentSink, ConfluentSource
from connectors.kafka.kafka_python import KafkaPythonSink, KafkaPythonSource

__all__ = [
    "CLIENTS",
    "DEFAULT_GIVE_UP_S",
    "DEFAULT_STALL_WARN_S",
    "STUCK_EXIT_STATUS",
    "ConfluentSink",
    "ConfluentSource",
    "KafkaAdmin",
    "KafkaPythonSink",
    "KafkaPythonSource",
    "KafkaSink",
    "KafkaSource",
    "open_sink",
    "open_source",
]

#: the client names :func:`open_source` and :func:`open_sink` accept, default first
CLIENTS = ("confluent", "kafka-python")

#: the default client's classes under the names callers have always imported
KafkaSource = ConfluentSource
KafkaSink = ConfluentSink

_SOURCES: dict[str, type[ConfluentSource] | type[KafkaPythonSource]] = {
    "confluent": ConfluentSource,
    "kafka-python": KafkaPythonSource,
}
_SINKS: dict[str, type[ConfluentSink] | type[KafkaPythonSink]] = {
    "confluent": ConfluentSink,
    "kafka-python": KafkaPythonSink,
}


def _check_client(client: str) -> None:
    if client not in CLIENTS:
        msg = f"unknown Kafka client {client!r}; choose one of {', '.join(CLIENTS)}"
        raise ValueError(msg)


def open_source(
    client: str,
    bootstrap_servers: str | list[str],
    topics: Iterable[str] | str,
    group_id: str,
    *,
    options: Mapping[str, Any] | None = None,
    metadata: bool = True,
    **bounds: float,
) -> ConfluentSource | KafkaPythonSource:
    """A consumer-group source on ``client``; ``bounds``: ``stall_warn_s``, ``give_up_s``;
    ``metadata=False``: records without their timestamps and headers (cheaper to read)."""
    _check_client(client)
    unknown = set(bounds) - {"stall_warn_s", "give_up_s"}
    if unknown:
        msg = f"unknown source bounds: {sorted(unknown)}"
        raise TypeError(msg)
    return _SOURCES[client](bootstrap_servers, topics, group_id, options=options, metadata=metadata, **bounds)


def open_sink(
    client: str,
    bootstrap_servers: str | list[str],
    *,
    transactional_id: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> ConfluentSink | KafkaPythonSink:
    """A sink on ``client``; transactional (``sink.transactional``) with a ``transactional_id``."""
    _check_client(client)
    return _SINKS[client](bootstrap_servers, transactional_id=transactional_id, options=options)
