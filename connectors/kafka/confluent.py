"""Kafka source and sink on confluent-kafka (librdkafka).

Same contract as :mod:`connectors.kafka.kafka_python`: the runtime's snapshot, not
Kafka's committed offsets, is the truth about progress. A restored worker calls
:meth:`ConfluentSource.seek` before it has partitions and the source applies the offsets
the moment the group assigns them. Outputs can be written in transactions that also
commit the input offsets, which ``read_committed`` readers (the default here) see
exactly once.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as ConfluentTopicPartition

from connectors.base import Offsets, Record, TopicPartition, check_seek, topic_names
from connectors.exceptions import ConnectorError, OutputsLostError, ProducerFencedError
from connectors.kafka._common import (
    DEFAULT_GIVE_UP_S,
    DEFAULT_STALL_WARN_S,
    BrokerContact,
    PollWatchdog,
    bootstrap_list,
    check_bounds,
    confluent_config,
)

__all__ = ["CONSUMER_DEFAULTS", "PRODUCER_DEFAULTS", "ConfluentSink", "ConfluentSource"]

log = logging.getLogger(__name__)
# librdkafka's own log lines (connection failures, retries) go to Python logging, not stderr
_LIBRDKAFKA_LOG = logging.getLogger("connectors.kafka.librdkafka")

#: Consumer defaults; any of them can be overridden through ``options``. 6000 ms is the
#: broker's minimum session timeout: joins and failover stay quick.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
    "auto.offset.reset": "earliest",
    # the service's own outputs are transactional; aborted records must never be read
    "isolation.level": "read_committed",
}

#: Producer defaults; any of them can be overridden through ``options``.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 5,
    "acks": "all",
    # only failures are acted on: a Python call per delivered record would cost more than producing it
    "delivery.report.only.error": True,
}

#: how long a topic's partition count is trusted before it is asked again
_PARTITIONS_TTL_S = 60.0
#: the partition that lets the configured partitioner choose (RD_KAFKA_PARTITION_UA)
_PARTITIONER = -1

#: sends between two calls that serve the producer's callbacks (failures, logs)
_SERVE_EVERY = 4096

#: linger of a transactional producer: its records are visible only at the commit anyway
TRANSACTIONAL_LINGER_MS = 50

#: how long past its own timeout a transactional call may take before the producer is given up
_TXN_CALL_GRACE_S = 5.0

_FENCED_CODES = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)
# Consumer events that are news, not failures: the client retries them itself.
_TRANSIENT_CONSUMER_CODES = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._RESOLVE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._UNKNOWN_TOPIC,
    }
)


def _kafka_error(exc: BaseException) -> KafkaError | None:
    arg = exc.args[0] if exc.args else None
    return arg if isinstance(arg, KafkaError) else None


def _as_connector_error(exc: BaseException, what: str) -> ConnectorError:
    err = _kafka_error(exc)
    if err is not None and err.code() in _FENCED_CODES:
        return ProducerFencedError(f"{what}: producer fenced by another with the same transactional id: {err.str()}")
    return ConnectorError(f"{what}: {exc}")


def _bounded(fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float, what: str) -> Any:
    """``fn(*args)`` on a daemon thread, waited for at most ``timeout_s`` (TimeoutError past it).

    A daemon thread, so that a call that never returns cannot hold the process at exit.
    """
    done = threading.Event()
    out: list[Any] = []

    def call() -> None:
        try:
            out.append((True, fn(*args)))
        except BaseException as exc:  # handed to the caller below
            out.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=call, name=f"kafka-txn {what}", daemon=True).start()
    if not done.wait(timeout_s):
        raise TimeoutError(what)
    ok, value = out[0]
    if ok:
        return value
    raise value


def _in_order(records: list[Record]) -> bool:
    """Whether the records are one partition's, in offset order (the common poll)."""
    first = records[0]
    topic, partition = first.topic, first.partition
    offset = first.offset
    for r in records[1:]:
        if r.partition != partition or r.topic != topic or r.offset <= offset:
            return False
        offset = r.offset
    return True


class ConfluentSource:
    """:class:`~connectors.base.Source` on a librdkafka consumer in a consumer group.

    The source remembers, per partition, the next offset it should read: set by
    :meth:`seek` and advanced by every :meth:`poll`. Whenever the group (re)assigns a
    partition it knows, it starts there, so neither a restore before the first
    assignment nor a rebalance mid-stream replays or skips records; partitions it has no
    position for start at the group's committed offset, else the earliest. This assumes
    one learning consumer per group, which the pipeline lease guarantees.

    ``stall_warn_s`` / ``give_up_s`` bound a broker that does not answer (logged, then
    :class:`ConnectorError` from :meth:`poll`) and a poll call stuck inside the library
    (logged, then the process exits with status 70; see
    :class:`~connectors.kafka._common.PollWatchdog`). With ``metadata=False`` the records
    come without their timestamps and headers.
    """

    client = "confluent"

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        topics: Iterable[str] | str,
        group_id: str,
        *,
        options: Mapping[str, Any] | None = None,
        stall_warn_s: float = DEFAULT_STALL_WARN_S,
        give_up_s: float = DEFAULT_GIVE_UP_S,
        metadata: bool = True,
    ) -> None:
        self.topics = topic_names(topics)
        check_bounds(stall_warn_s, give_up_s)
        self.group_id = group_id
        self.metadata = metadata
        self.bootstrap_servers = bootstrap_list(bootstrap_servers)
        config: dict[str, Any] = {
            **CONSUMER_DEFAULTS,
            **confluent_config(options),
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": group_id,
            "enable.auto.commit": False,
            "error_cb": self._on_client_error,
        }
        config.setdefault("logger", _LIBRDKAFKA_LOG)
        self._cooperative = "cooperative" in str(config.get("partition.assignment.strategy", ""))
        self._lock = threading.Lock()
        self._positions: dict[TopicPartition, int] = {}
        # seeks librdkafka refused because the partition's fetcher had not started yet
        self._pending_seeks: set[TopicPartition] = set()
        self._fatal: KafkaError | None = None
        what = f"consumer of {self.topics} (group {group_id!r})"
        self._contact = BrokerContact(what, stall_warn_s, give_up_s)
        self._watchdog = PollWatchdog(what, stall_warn_s, give_up_s)
        try:
            self._consumer = Consumer(config)
            self._consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        except (KafkaException, ValueError, TypeError) as exc:
            msg = f"cannot create a consumer for Kafka at {self.bootstrap_servers}: {exc}"
            raise ConnectorError(msg) from exc

    # -- callbacks, run by librdkafka inside consume() -------------------------------------

    def _on_client_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
        log.debug("consumer client event: %s", err)

    def _on_assign(self, consumer: Consumer, partitions: list[ConfluentTopicPartition]) -> None:
        self._contact.ok()
        with self._lock:
            for tp in partitions:
                offset = self._positions.get((tp.topic, tp.partition))
                if offset is not None:
                    tp.offset = offset
                self._pending_seeks.discard((tp.topic, tp.partition))
        log.debug(
            "partitions assigned: %s",
            [(tp.topic, tp.partition, tp.offset) for tp in partitions],
        )
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[ConfluentTopicPartition]) -> None:
        log.debug("partitions revoked: %s", sorted((tp.topic, tp.partition) for tp in partitions))

    # -- Source ---------------------------------------------------------------------------

    def assignment(self) -> list[TopicPartition]:
        """Partitions the group has given this consumer now, sorted."""
        return sorted((tp.topic, tp.partition) for tp in self._consumer.assignment())

    def poll(self, max_records: int, timeout_ms: int) -> list[Record]:
        if max_records < 1:
            msg = f"max_records must be >= 1, got {max_records}"
            raise ValueError(msg)
        timeout_s = max(timeout_ms, 0) / 1000.0
        # the wait the caller asked for and one bounded probe are not a stall
        self._watchdog.enter(timeout_s + self._contact.max_probe_s)
        try:
            return self._poll(max_records, timeout_s)
        finally:
            self._watchdog.leave()

    def _poll(self, max_records: int, timeout_s: float) -> list[Record]:
        if self._fatal is not None:
            msg = f"the consumer of {self.topics} failed: {self._fatal}"
            raise ConnectorError(msg)
        self._retry_pending_seeks()
        try:
            # consume(n, t) waits for n messages or t; take what is there, and if nothing
            # is, wait for the first one only, then drain what arrived with it
            messages = self._consumer.consume(max_records, 0)
            if not any(m.error() is None for m in messages) and timeout_s > 0:
                messages += self._consumer.consume(1, timeout_s)
                if messages and max_records > 1:
                    messages += self._consumer.consume(max_records - len(messages), 0)
        except (KafkaException, RuntimeError) as exc:
            msg = f"polling {self.topics} failed: {exc}"
            raise ConnectorError(msg) from exc
        records: list[Record] = []
        append = records.append
        # a consumer of one topic reads only that topic: its name is not asked of each
        # message (a new string each time). A name starting with ^ is a pattern to librdkafka
        only = self.topics[0] if len(self.topics) == 1 and not self.topics[0].startswith("^") else None
        metadata = self.metadata
        for m in messages:
            err = m.error()
            if err is not None:
                self._consumer_event(err)
                continue
            rec = Record(only or m.topic(), m.partition(), m.offset(), m.value() or b"", m.key())
            if metadata:
                # timestamps and headers cost a third of a record's making; most readers need neither
                ts_type, ts = m.timestamp()
                headers = m.headers()
                rec.timestamp_ms = ts if ts_type != 0 and ts >= 0 else None
                rec.headers = tuple(headers) if headers else ()
            append(rec)
        one_partition = not records or _in_order(records)
        if not one_partition:
            records.sort(key=lambda r: (r.topic, r.partition, r.offset))
        if records:
            self._contact.ok()
            with self._lock:
                if one_partition:
                    last = records[-1]
                    self._positions[(last.topic, last.partition)] = last.offset + 1
                else:
                    for r in records:
                        self._positions[(r.topic, r.partition)] = r.offset + 1
        elif self._contact.probe_due():
            self._probe()
        return records

    def _consumer_event(self, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.code() in _TRANSIENT_CONSUMER_CODES or (err.retriable() and not err.fatal()):
            log.debug("consumer event on %s: %s", self.topics, err)
            return
        msg = f"polling {self.topics} failed: {err}"
        raise ConnectorError(msg)

    def _probe(self) -> None:
        try:
            self._consumer.list_topics(self.topics[0], timeout=self._contact.probe_timeout_s())
        except (KafkaException, RuntimeError) as exc:
            self._contact.failed(exc)
        else:
            self._contact.ok()

    def _retry_pending_seeks(self) -> None:
        with self._lock:
            if not self._pending_seeks:
                return
            pending = {tp: self._positions[tp] for tp in self._pending_seeks}
            self._pending_seeks.clear()
        self._seek_assigned(pending)

    def _seek_assigned(self, offsets: Mapping[TopicPartition, int]) -> None:
        assigned = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        for (topic, partition), offset in sorted(offsets.items()):
            if (topic, partition) not in assigned:
                continue  # applied by _on_assign when the group gives it to us
            try:
                self._consumer.seek(ConfluentTopicPartition(topic, partition, offset))
            except KafkaException as exc:
                # librdkafka refuses a seek before the partition's fetcher has started;
                # the position is remembered, so retry at the next poll
                log.debug("seek %s[%d] to %d deferred: %s", topic, partition, offset, exc)
                with self._lock:
                    self._pending_seeks.add((topic, partition))

    def seek(self, offsets: Offsets) -> None:
        """Continue from these next offsets; applied now if assigned, else on assignment."""
        check_seek(offsets, self.topics)
        with self._lock:
            self._positions.update(offsets)
        self._seek_assigned(offsets)

    def commit(self, offsets: Offsets) -> None:
        if not offsets:
            return
        tps = [ConfluentTopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
        try:
            result = self._consumer.commit(offsets=tps, asynchronous=False)
        except (KafkaException, RuntimeError) as exc:
            msg = f"committing offsets for group {self.group_id!r} failed: {exc}"
            raise ConnectorError(msg) from exc
        failed = [f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in result or () if tp.error]
        if failed:
            msg = f"committing offsets for group {self.group_id!r} failed: " + "; ".join(failed)
            raise ConnectorError(msg)
        self._contact.ok()

    def committed(self, timeout_s: float = 10.0) -> dict[TopicPartition, int]:
        """The group's committed next offsets for every partition of the source's topics.

        A partition without a committed offset is left out. Works before assignment.
        """
        try:
            tps = []
            for topic in self.topics:
                tmeta = self._consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
                if tmeta is None or tmeta.error is not None:
                    continue
                tps.extend(ConfluentTopicPartition(topic, p) for p in sorted(tmeta.partitions))
            result = self._consumer.committed(tps, timeout=timeout_s) if tps else []
        except (KafkaException, RuntimeError) as exc:
            msg = f"reading the committed offsets of group {self.group_id!r} failed: {exc}"
            raise ConnectorError(msg) from exc
        out: dict[TopicPartition, int] = {}
        for tp in result:
            if tp.error:
                msg = f"reading the committed offset of {tp.topic}[{tp.partition}] failed: {tp.error}"
                raise ConnectorError(msg)
            if tp.offset >= 0 and tp.offset != OFFSET_INVALID:
                out[(tp.topic, tp.partition)] = tp.offset
        return dict(sorted(out.items()))

    def caught_up(self, timeout_s: float = 5.0) -> bool:
        """True when the group assigned this consumer every partition of its topics and it
        has read each one to the end of the log (the high watermark, asked of the broker).

        False while the group has not assigned anything yet, so "nothing more to read" is
        never mistaken for "not joined yet".
        """
        try:
            assigned = self._consumer.assignment()
            if not assigned:
                return False
            if not hasattr(self, "_partition_count"):
                count = 0
                for topic in self.topics:
                    tmeta = self._consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
                    count += len(tmeta.partitions) if tmeta is not None and tmeta.error is None else 0
                self._partition_count = count
            if len(assigned) < self._partition_count:
                return False
            for tp, pos in zip(assigned, self._consumer.position(assigned), strict=True):
                _low, high = self._consumer.get_watermark_offsets(tp, timeout=timeout_s, cached=False)
                with self._lock:
                    mine = self._positions.get((tp.topic, tp.partition), -1)
                if max(pos.offset, mine) < high and high > _low:
                    return False
        except (KafkaException, RuntimeError) as exc:
            msg = f"reading the end of {self.topics} failed: {exc}"
            raise ConnectorError(msg) from exc
        return True

    def group_metadata(self) -> Any:
        """The consumer's group metadata, for :meth:`ConfluentSink.commit_transaction`."""
        return self._consumer.consumer_group_metadata()

    def close(self) -> None:
        self._watchdog.close()
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.debug("closing the consumer: %s", exc)


class ConfluentSink:
    """:class:`~connectors.base.Sink` on a librdkafka producer that batches and flushes.

    Delivery errors arrive asynchronously; the first one is raised by the next
    :meth:`flush` (or :meth:`send`), so a caller that flushes before committing progress
    never commits past a lost record. A fatal error (the idempotent producer gave up)
    replaces the producer: one poisoned record costs one error, not the worker's life.

    With a ``transactional_id`` the sink is transactional: the constructor calls
    ``init_transactions`` (which fences any older producer with that id and aborts what
    it left open), a transaction begins with the first send after a commit or abort, and
    :meth:`commit_transaction` commits the records together with the input offsets. A
    delivery error inside a transaction aborts it and raises :class:`ConnectorError`: the
    caller must then rewind its input to the offsets of the last commit. A producer
    fenced by a newer one raises :class:`ProducerFencedError` and is unusable.
    """

    client = "confluent"

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        *,
        transactional_id: str | None = None,
        options: Mapping[str, Any] | None = None,
        buffer_timeout_s: float = 30.0,
        transaction_timeout_s: float = 60.0,
    ) -> None:
        self.bootstrap_servers = bootstrap_list(bootstrap_servers)
        self.transactional_id = transactional_id
        self.transactional = transactional_id is not None
        self.buffer_timeout_s = buffer_timeout_s
        self.transaction_timeout_s = transaction_timeout_s
        self._config: dict[str, Any] = {
            **PRODUCER_DEFAULTS,
            **confluent_config(options),
            "bootstrap.servers": self.bootstrap_servers,
        }
        if transactional_id is not None:
            self._config["transactional.id"] = transactional_id
            # a transaction that starts while the last one's markers are still being written
            # is refused (CONCURRENT_TRANSACTIONS) and retried after this backoff, growing
            # exponentially: librdkafka's 100 ms start doubled the cost of every commit
            self._config.setdefault("retry.backoff.ms", 10)
            # a read_committed reader sees nothing before the commit, so lingering costs no
            # latency there, and fuller batches halve what each send costs beside the
            # producer's own thread (it takes the queue's lock once per batch)
            if not {"linger.ms", "queue.buffering.max.ms"} & set(options or {}):
                self._config["linger.ms"] = TRANSACTIONAL_LINGER_MS
        self._error: KafkaError | None = None
        self._fatal: KafkaError | None = None
        self._error_lock = threading.Lock()
        #: (producer generation, error, fatal) as the callbacks reported them
        self._reported: deque[tuple[int, KafkaError, bool]] = deque()
        # errors from a producer already replaced must not fail the new one
        self._generation = 0
        self._unpolled = 0
        #: topic -> (its partition count, 0 if unknown; when it was asked)
        self._partitions: dict[str, tuple[int, float]] = {}
        self._in_transaction = False
        self._abandoned: list[Producer] = []
        self._producer = self._new_producer()
        if self.transactional:
            self._call(self._producer.init_transactions, "initialising transactions")

    def _new_producer(self) -> Producer:
        generation = self._generation

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                self._on_error(generation, err)

        def client_error(err: KafkaError) -> None:
            if err.fatal():
                self._on_error(generation, err, fatal=True)
            else:
                log.debug("producer client event: %s", err)

        try:
            return Producer(
                {"logger": _LIBRDKAFKA_LOG, **self._config, "on_delivery": delivered, "error_cb": client_error}
            )
        except (KafkaException, ValueError, TypeError) as exc:
            msg = f"cannot create a producer for Kafka at {self.bootstrap_servers}: {exc}"
            raise ConnectorError(msg) from exc

    def _on_error(self, generation: int, err: KafkaError, *, fatal: bool = False) -> None:
        # runs inside librdkafka's callbacks, on whichever thread is serving the producer:
        # it takes no lock (a callback that waited for one could wait for ever), it only
        # reports; _collect sorts the reports out
        self._reported.append((generation, err, fatal))

    def _collect(self) -> None:
        """Move the callbacks' reports about the current producer into ``_error``/``_fatal``
        (the caller holds ``_error_lock``)."""
        while self._reported:
            generation, err, fatal = self._reported.popleft()
            if generation != self._generation:
                continue
            if fatal and self._fatal is None:
                self._fatal = err
            if self._error is None:
                self._error = err

    def _call(self, fn: Callable[..., Any], what: str, *args: Any) -> Any:
        """A transactional API call: retried while retriable, errors made ours.

        The call runs on a helper thread and is waited for within a bound: librdkafka can
        block in it past its own timeout (sending offsets to a group coordinator that went
        away and came back), and a worker must not hang there.
        """
        deadline = time.monotonic() + self.transaction_timeout_s
        while True:
            budget = max(0.1, deadline - time.monotonic())
            try:
                return _bounded(fn, (*args, budget), budget + _TXN_CALL_GRACE_S, what)
            except TimeoutError:
                self._replace_wedged(what)
                msg = f"{what}: no answer within {budget + _TXN_CALL_GRACE_S:.0f} s; the transaction is lost"
                raise OutputsLostError(msg) from None
            except KafkaException as exc:
                err = _kafka_error(exc)
                if err is not None and err.code() in _FENCED_CODES:
                    with self._error_lock:
                        self._error = self._fatal = err  # for good: see _raise_pending
                    raise _as_connector_error(exc, what) from exc
                if err is not None and err.retriable() and time.monotonic() < deadline:
                    log.debug("%s: retrying after %s", what, err)
                    continue
                if not self._in_transaction:
                    raise _as_connector_error(exc, what) from exc
                if err is not None and err.txn_requires_abort():
                    self._abort_after(what, exc)
                else:
                    self._replace_wedged(what)
                msg = f"{what} failed, the transaction is lost: {exc}"
                raise OutputsLostError(msg) from exc

    def _replace_wedged(self, what: str) -> None:
        """Give up on the producer and its transaction: a new one with the same id fences it
        and aborts what it left open."""
        log.warning("%s: replacing the transactional producer", what)
        with self._error_lock:
            self._generation += 1
            self._reported.clear()
            self._error = self._fatal = None
        # the old producer may still be blocked inside a call on a helper thread: it is
        # kept, not closed under that call
        self._abandoned.append(self._producer)
        self._in_transaction = False
        self._producer = self._new_producer()
        self._call(self._producer.init_transactions, "initialising transactions")

    def _abort_after(self, what: str, cause: BaseException) -> None:
        log.warning("%s failed, aborting the transaction: %s", what, cause)
        try:
            self._producer.abort_transaction(self.transaction_timeout_s)
        except KafkaException as exc:
            log.warning("aborting the transaction failed too (%s): replacing the producer", exc)
            self._replace_wedged("aborting the transaction")
        finally:
            self._in_transaction = False
        with self._error_lock:
            self._collect()
            self._error = None

    def _raise_pending(self) -> None:
        with self._error_lock:
            self._collect()
            err, self._error = self._error, None
            fatal, self._fatal = self._fatal, None
        if err is None:
            return
        fenced = err.code() in _FENCED_CODES or (fatal is not None and fatal.code() in _FENCED_CODES)
        if self.transactional and fenced:
            # fenced is for good: keep failing
            with self._error_lock:
                self._error, self._fatal = err, fatal
        if fenced:
            msg = f"producer fenced by another with the same transactional id: {fatal or err}"
            raise ProducerFencedError(msg)
        if self.transactional:
            if fatal is not None:
                self._replace_wedged(f"the transactional producer failed ({fatal})")
                msg = f"the transactional producer failed, its transaction is lost: {fatal}"
                raise OutputsLostError(msg)
            if self._in_transaction:
                self._abort_after("delivering a record", ConnectorError(err.str()))
            msg = f"a record was not delivered, the transaction was aborted: {err}"
            raise OutputsLostError(msg)
        if fatal is not None:
            log.warning("replacing the Kafka producer after a fatal error: %s", fatal)
            with self._error_lock:
                self._generation += 1
            old, self._producer = self._producer, self._new_producer()
            try:
                old.purge()
                old.close()
            except (KafkaException, RuntimeError) as close_exc:  # broken already
                log.debug("closing the failed producer: %s", close_exc)
        msg = f"a record was not delivered: {err}"
        raise ConnectorError(msg)

    def _require_transactional(self) -> None:
        if not self.transactional:
            msg = "this sink is not transactional: open it with a transactional_id"
            raise ConnectorError(msg)

    def _begin(self) -> None:
        self._call(lambda _t: self._producer.begin_transaction(), "beginning a transaction")
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
        self._produce(topic, value, key, list(headers) if headers else None)
        self._served(1)

    def send_many(self, topic: str, values: Sequence[bytes], keys: Sequence[bytes | None]) -> None:
        """``send`` of each value with its key, in order, without the per-record checks."""
        self._raise_pending()
        if self.transactional and not self._in_transaction:
            self._begin()
        produce = self._producer.produce
        # the partitioner's call is a fifth of a send; a topic of one partition needs none
        # (-1, librdkafka's "unassigned", leaves the choice to the partitioner)
        partition = 0 if self._one_partition(topic) else _PARTITIONER
        for value, key in zip(values, keys, strict=True):
            try:
                produce(topic, value, key, partition)
            except (BufferError, KafkaException, TypeError, ValueError):
                self._produce(topic, value, key, None)
        self._served(len(values))

    def _one_partition(self, topic: str) -> bool:
        """Whether ``topic`` has a single partition, as the broker said at most a minute ago
        (unknown counts as no: the partitioner then decides)."""
        now = time.monotonic()
        known = self._partitions.get(topic)
        if known is not None and now - known[1] < _PARTITIONS_TTL_S:
            return known[0] == 1
        try:
            meta = self._producer.list_topics(topic, timeout=1.0).topics.get(topic)
            count = len(meta.partitions) if meta is not None and meta.error is None else 0
        except (KafkaException, RuntimeError) as exc:
            log.debug("partitions of %r unknown: %s", topic, exc)
            count = 0
        self._partitions[topic] = (count, now)
        return count == 1

    def _produce(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]] | None) -> None:
        deadline: float | None = None
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers)
                return
            except BufferError:
                # the local queue is full: serve delivery reports until it drains
                now = time.monotonic()
                deadline = now + self.buffer_timeout_s if deadline is None else deadline
                if now >= deadline:
                    msg = f"sending to {topic!r}: the producer queue stayed full for {self.buffer_timeout_s:g} s"
                    raise ConnectorError(msg) from None
                self._producer.poll(0.05)
            except (KafkaException, TypeError, ValueError) as exc:
                raise _as_connector_error(exc, f"sending to {topic!r} failed") from exc

    def _served(self, sent: int) -> None:
        # serving callbacks costs a call that waits on the client's locks; only failures
        # are reported, so a call every few thousand sends keeps the queue short (a commit
        # and a flush serve them too)
        self._unpolled += sent
        if self._unpolled >= _SERVE_EVERY:
            self._unpolled = 0
            self._producer.poll(0)

    def flush(self, timeout_s: float | None = None) -> None:
        left = self._producer.flush(-1 if timeout_s is None else timeout_s)
        self._raise_pending()
        if left:
            msg = f"flush did not complete: {left} records still queued after {timeout_s} s"
            raise ConnectorError(msg)

    def commit_transaction(self, offsets: Offsets, source: Any) -> None:
        """Commit the records sent since the last commit and ``offsets`` for ``source``'s group.

        ``offsets`` are next offsets to read per (topic, partition); ``source`` is the
        :class:`ConfluentSource` they were read with.
        """
        self._require_transactional()
        self._raise_pending()
        if not self._in_transaction:
            if not offsets:
                return
            self._begin()
        if offsets:
            if not isinstance(source, ConfluentSource):
                msg = f"a confluent sink commits offsets of a ConfluentSource, not {type(source).__name__}"
                raise TypeError(msg)
            tps = [ConfluentTopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
            self._call(
                self._producer.send_offsets_to_transaction,
                "sending offsets to the transaction",
                tps,
                source.group_metadata(),
            )
        self._call(self._producer.commit_transaction, "committing the transaction")
        self._in_transaction = False
        self._producer.poll(0)
        self._raise_pending()

    def abort_transaction(self) -> None:
        """Discard the records sent since the last commit; nothing open is a no-op."""
        self._require_transactional()
        if not self._in_transaction:
            return
        self._call(self._producer.abort_transaction, "aborting the transaction")
        self._in_transaction = False
        with self._error_lock:
            self._collect()
            self._error = None

    def close(self) -> None:
        """Flush and close; an open transaction is aborted, not committed."""
        with self._error_lock:
            self._collect()
        if self._in_transaction and self._fatal is None:
            self._in_transaction = False
            try:
                self._producer.abort_transaction(10)
            except KafkaException as exc:  # fenced, or the broker is away
                log.warning("aborting the open transaction at close: %s", exc)
        try:
            if self._producer.flush(10):
                # an unreachable broker must not make close() wait for ever
                self._producer.purge()
            with self._error_lock:
                self._collect()
            with warnings.catch_warnings():
                # close() tries to abort the transaction a fenced producer still holds,
                # and warns that it cannot: that is known and already raised
                if self._fatal is not None:
                    warnings.simplefilter("ignore", RuntimeWarning)
                self._producer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("closing the producer: %s", exc)
