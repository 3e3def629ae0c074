"""Wiring: build a pipeline from settings with the embedded or the real connectors, serve HTTP.

The embedded default: an in-process log fed by a seeded synthetic drifting stream and a
directory snapshot store. The worker: Kafka in and out, Redis for snapshots. The runtime
loop is the same object in both.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from learners.registry import make_learner
from stream.alerts import AlertLog, AlertRelay
from stream.api import create_app
from stream.config import Settings
from stream.events import Event
from stream.exceptions import ConfigError
from stream.runtime import ModelBoard, Pipeline
from stream.snapshot import load_or_create_key

logger = logging.getLogger(__name__)


def learner_factory(settings: Settings) -> Callable[[], Any]:
    def build() -> Any:
        return make_learner(settings.learner, settings.learner_params, settings.seed)

    build()  # fail at start-up, not at the first restore, when params are wrong
    return build


def snapshot_key(settings: Settings, *, required: bool) -> bytes:
    if settings.snapshot_key is not None:
        return settings.snapshot_key.get_secret_value().encode()
    if required:
        raise ConfigError(
            "snapshot_key (env DRIFTLINE_SNAPSHOT_KEY): required when snapshots go to Redis, so every "
            "worker and replica signs and verifies with the same key; make one with "
            "`python -c 'import secrets; print(secrets.token_hex(32))'`"
        )
    return load_or_create_key(Path(settings.snapshot_dir) / "snapshot.key")


@dataclass
class Embedded:
    pipeline: Pipeline
    feeder: Feeder
    log: Any = None


def build_embedded(
    settings: Settings,
    stream: Iterator[tuple[dict[str, Any], Any]],
    *,
    rate: float = 0.0,
    on_alert: Callable[..., None] | None = None,
) -> Embedded:
    from connectors.directory import DirectoryStore
    from connectors.memory import InMemoryLog

    # bounded: `driftline run` may run for days; the feeder stays well within retention
    log = InMemoryLog(default_partitions=1, retention=200_000)
    for topic in (settings.events_topic, settings.predictions_topic, settings.alerts_topic, settings.dead_letter_topic, settings.labels_topic):
        if topic:
            log.create_topic(topic, 1)
    store = DirectoryStore(settings.snapshot_dir, keep=settings.snapshot_keep)
    pipeline = Pipeline(
        settings,
        learner_factory(settings),
        log.consumer([settings.events_topic], settings.consumer_group),
        log.producer(),
        store,
        snapshot_key(settings, required=False),
        board=ModelBoard(),
        alerts=AlertLog(),
        on_alert=on_alert,
    )
    pipeline.alerts.subscribe(alert_relay(settings, redis=False))
    feeder = Feeder(log, settings.events_topic, stream, rate=rate, consumed=lambda: pipeline.counters.records)
    return Embedded(pipeline, feeder, log)


def prepare_kafka(settings: Settings) -> None:
    """Check the worker's services are named, wait for the broker, create missing topics."""
    from connectors.kafka import KafkaAdmin

    if not settings.kafka_bootstrap_servers:
        raise ConfigError("kafka_bootstrap_servers (env KAFKA_BOOTSTRAP_SERVERS): required by the worker, e.g. 127.0.0.1:9092; `driftline services up` starts a local broker")
    if not settings.redis_url:
        raise ConfigError("redis_url (env REDIS_URL): required by the worker, e.g. redis://127.0.0.1:6379/0; `driftline services up` starts a local server")
    # topics that do not exist yet would leave the consumer waiting for a metadata refresh
    admin = KafkaAdmin(settings.kafka_bootstrap_servers, options=settings.kafka_options)
    try:
        admin.wait_ready(timeout_s=60)
        admin.create_topics(
            [settings.events_topic, settings.predictions_topic, settings.alerts_topic, settings.dead_letter_topic]
            + ([settings.labels_topic] if settings.labels_topic else []),
            1,
        )
    finally:
        admin.close()


def open_lease(settings: Settings) -> Any:
    from connectors.redis_store import RedisLease

    return RedisLease(settings.redis_url, settings.pipeline, ttl_ms=int(settings.lease_ttl_s * 1000))


def alert_relay(settings: Settings, *, redis: bool) -> AlertRelay:
    """Where each alert revision goes besides the topic: the Redis stream, the webhook, Prometheus."""
    stream = None
    if redis and settings.redis_url:
        from connectors.redis_alerts import RedisAlertStream

        stream = RedisAlertStream(settings.redis_url, key=settings.alerts_stream_key, maxlen=settings.alerts_stream_maxlen)
    return AlertRelay(stream=stream, webhook_url=settings.alert_webhook_url, retries=settings.alert_webhook_retries)


def build_worker(
    settings: Settings,
    *,
    fencing_token: int | None = None,
    on_alert: Callable[..., None] | None = None,
    board: ModelBoard | None = None,
    alerts: AlertLog | None = None,
) -> Pipeline:
    """The pipeline on Kafka and Redis; call it once the pipeline's lease is held."""
    from connectors.kafka import open_sink, open_source
    from connectors.redis_store import RedisStore

    prepare_kafka(settings)
    joins = bool(settings.labels_topic and settings.join_labels)
    source = open_source(
        settings.kafka_client, settings.kafka_bootstrap_servers, [settings.events_topic], settings.consumer_group,
        # only the label join reads the events' timestamps (its stream time)
        options=settings.kafka_options, metadata=joins,
    )
    # one transactional id per pipeline, stable across restarts: a new worker's producer
    # fences its predecessor's, so a zombie cannot commit outputs
    sink = open_sink(
        settings.kafka_client, settings.kafka_bootstrap_servers,
        transactional_id=f"driftline-{settings.pipeline}" if settings.transactional_outputs else None,
        options=settings.kafka_options,
    )
    labels = None
    if joins:
        # its own group: the labels' offsets live in the snapshot; the group's are for lag
        labels = open_source(
            settings.kafka_client, settings.kafka_bootstrap_servers, [settings.labels_topic],
            f"{settings.consumer_group}-labels", options=settings.kafka_options,
        )
    pipeline = Pipeline(
        settings,
        learner_factory(settings),
        source,
        sink,
        RedisStore(settings.redis_url, keep=settings.snapshot_keep),
        snapshot_key(settings, required=True),
        fencing_token=fencing_token,
        on_alert=on_alert,
        board=board,
        alerts=alerts,
        labels=labels,
    )
    if alerts is None:  # a log shared by several pipelines is relayed once, by its owner
        pipeline.alerts.subscribe(alert_relay(settings, redis=True))
    return pipeline


class Feeder:
    """Writes a synthetic stream into the in-process log, throttled to ``rate`` events/s.

    It stays at most ``max_ahead`` events ahead of the consumer, so an unthrottled stream
    does not fill memory faster than the model learns.
    """

    def __init__(self, log: Any, topic: str, stream: Iterator[tuple[dict[str, Any], Any]], *, rate: float, consumed: Callable[[], int], max_ahead: int = 50_000):
        self._sink = log.producer()
        self._topic = topic
        self._stream = stream
        self._rate = rate
        self._consumed = consumed
        self._max_ahead = max_ahead
        self.produced = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        started = time.monotonic()
        for x, y in self._stream:
            while self.produced - self._consumed() >= self._max_ahead:
                if self._stop.wait(0.01):
                    return
            if self._rate > 0:
                due = started + self.produced / self._rate
                delay = due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
            if self._stop.is_set():
                return
            self._sink.send(self._topic, Event(id=f"e{self.produced}", x=x, y=y).to_json())
            self.produced += 1


class HttpServer:
    """uvicorn in a background thread; ``port`` is the bound port (useful with port 0).

    uvloop and httptools: the event loop and HTTP parser in C, a large share of a small
    request's time otherwise.
    """

    def __init__(self, app: Any, host: str, port: int):
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="on", loop="uvloop", http="httptools",
            access_log=False,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self.host = host
        self.port = port

    def start(self, timeout_s: float = 15.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"http_port: could not listen on {self.host}:{self.port} (in use? pick another with --port)")
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)


def lag_probe(end_offsets: Callable[[str], dict[tuple[str, int], int]], topic: str, positions: Callable[[], dict[str, dict[tuple[str, int], int]]], *, every_s: float = 5.0) -> Callable[[], dict[str, int]]:
    """Per pipeline, records on ``topic`` past its position; the topic's end asked at most every ``every_s``."""
    cache: dict[str, Any] = {"at": float("-inf"), "end": {}}

    def lag() -> dict[str, int]:
        now = time.monotonic()
        if now - cache["at"] >= every_s:
            cache["end"], cache["at"] = end_offsets(topic), now
        end = cache["end"]
        return {name: sum(max(0, off - pos.get(tp, 0)) for tp, off in end.items()) for name, pos in positions().items()}

    return lag


def labels_producer(settings: Settings) -> Any:
    """A plain (non-transactional) Kafka producer for forwarded labels, or None without a broker."""
    if not settings.kafka_bootstrap_servers:
        return None
    from connectors.kafka import open_sink

    return open_sink(settings.kafka_client, settings.kafka_bootstrap_servers, options=settings.kafka_options)


def serve(pipeline: Pipeline, settings: Settings, *, log: Any = None) -> Any:
    """The HTTP API of a learning process, over its pipeline's board; ``log``: the embedded one."""

    def status() -> dict[str, Any]:
        c = pipeline.counters
        return {
            "pipeline": pipeline.name,
            "events": c.events,
            "dead_letters": c.dead_letters,
            "dead_letters_by_kind": dict(pipeline.dead_letters_by_kind),
            "snapshot_version": pipeline.snapshot_version,
            "checkpoint_age_s": round(pipeline._clock() - pipeline._last_checkpoint_at, 3),
        }

    if log is not None:
        labels, end_offsets = log.producer(), log.end_offsets
    else:
        from connectors.kafka import KafkaAdmin

        admin = KafkaAdmin(settings.kafka_bootstrap_servers, options=settings.kafka_options)
        labels, end_offsets = labels_producer(settings), admin.end_offsets
    lag = lag_probe(end_offsets, settings.events_topic, lambda: {pipeline.name: dict(pipeline.offsets)})
    if not settings.labels_topic:  # labels come inline only: the route says so (409)
        labels = None
    if api_in_child(settings):
        from stream.api.process import ApiProcess

        app_kwargs = {
            "max_rows": settings.max_predict_rows, "api_keys": settings.api_key_list(), "open_reads": settings.api_open_reads,
            "labels_from_parent": labels is not None, "labels_topic": settings.labels_topic or "labels",
        }  # fmt: skip
        child = ApiProcess(
            pipeline.board, pipeline.alerts, app_kwargs, settings.http_host, settings.http_port,
            status=status, lag=lag, labels_sink=labels, labels_topic=settings.labels_topic or "labels",
        )  # fmt: skip
        child.start()
        return child
    app = create_app(
        pipeline.board, pipeline.alerts, max_rows=settings.max_predict_rows, status=status,
        api_keys=settings.api_key_list(), open_reads=settings.api_open_reads,
        labels_sink=labels, labels_topic=settings.labels_topic or "labels", lag=lag,
    )  # fmt: skip
    server = HttpServer(app, settings.http_host, settings.http_port)
    server.start()
    return server


def api_in_child(settings: Settings) -> bool:
    """Whether a learning process serves its API from a child process: as configured, else
    wherever a second CPU lets the child run beside learning instead of taking turns with it."""
    if settings.api_process is not None:
        return settings.api_process
    return len(os.sched_getaffinity(0)) >= 2 if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1) >= 2


def serve_replica(settings: Settings, pipelines: list[str]) -> tuple[HttpServer, Any]:
    """A read replica of ``pipelines``: their snapshots from Redis, hot-swapped, over HTTP."""
    from connectors.redis_store import RedisStore
    from stream.runtime.replica import Replica
    from stream.snapshot import decode_tp

    if not settings.redis_url:
        raise ConfigError("redis_url (env REDIS_URL): required by a replica, which serves the snapshots workers write there, e.g. redis://127.0.0.1:6379/0")
    store = RedisStore(settings.redis_url, keep=settings.snapshot_keep)
    store.ping()
    replica = Replica(store, snapshot_key(settings, required=True), pipelines, ModelBoard(), poll_s=settings.replica_poll_s)

    def status() -> dict[str, Any]:
        return {"role": "replica", "snapshots": dict(replica.loaded), "swaps": replica.swaps, "refused": replica.refused}

    lag = None
    if settings.kafka_bootstrap_servers:
        from connectors.kafka import KafkaAdmin

        admin = KafkaAdmin(settings.kafka_bootstrap_servers, options=settings.kafka_options)

        def positions() -> dict[str, dict[tuple[str, int], int]]:
            return {m.name: {decode_tp(k): v for k, v in m.offsets.items()} for m in replica.board.all()}

        lag = lag_probe(admin.end_offsets, settings.events_topic, positions)
    from connectors.redis_alerts import RedisAlertStream

    # the history the workers write: GET /v1/alerts and its SSE on a replica read it
    alerts = RedisAlertStream(settings.redis_url, key=settings.alerts_stream_key, maxlen=settings.alerts_stream_maxlen)
    app = create_app(
        replica.board, alerts, max_rows=settings.max_predict_rows, status=status,
        api_keys=settings.api_key_list(), open_reads=settings.api_open_reads,
        labels_sink=labels_producer(settings) if settings.labels_topic else None, labels_topic=settings.labels_topic or "labels", lag=lag,
        lifespan=[lambda: replica],
    )  # fmt: skip
    server = HttpServer(app, settings.http_host, settings.http_port)
    server.start()
    return server, replica


@dataclass
class FleetParts:
    """What a worker running a file's pipelines shares among them."""

    process: Any
    board: ModelBoard
    alerts: AlertLog
    roster: Any
    open_lease: Callable[[Settings], Any]
    build: Callable[[Settings, int], Pipeline]
    finished: Callable[[Settings, int | None], bool]
    serve: Callable[[Any], HttpServer]


def build_fleet_parts(pipelines: list[Settings], process: Any) -> FleetParts:
    """Leases, builders, the roster and the HTTP API for ``driftline worker --config``."""
    import hashlib

    from connectors.redis_store import RedisLease, RedisRoster, RedisStore
    from stream.snapshot import read_header

    board, alerts = ModelBoard(), AlertLog()
    alerts.subscribe(alert_relay(pipelines[0], redis=True))
    ttl_ms = int(process.lease_ttl_s * 1000)
    # processes given the same pipelines count each other, and nobody else
    group = hashlib.sha256(",".join(sorted(s.pipeline for s in pipelines)).encode()).hexdigest()[:16]
    roster = RedisRoster(process.redis_url, group, ttl_ms=ttl_ms)
    store = RedisStore(process.redis_url, keep=process.snapshot_keep)
    snapshot_key(pipelines[0], required=True)  # fails early, naming the setting, when no key is set
    owner = roster.member

    def open_lease_for(s: Settings) -> Any:
        return RedisLease(process.redis_url, s.pipeline, ttl_ms=ttl_ms, owner=f"{owner}:{s.pipeline}")

    def build(s: Settings, token: int) -> Pipeline:
        return build_worker(s, fencing_token=token, board=board, alerts=alerts)

    def finished(s: Settings, max_events: int | None) -> bool:
        if max_events is None:
            return False
        latest = store.load_latest(s.pipeline)
        return latest is not None and read_header(latest[1]).events_seen >= max_events

    def serve_fleet(fleet: Any) -> HttpServer:
        def status() -> dict[str, Any]:
            out = {}
            for slot in fleet.slots:
                p = slot.pipeline
                out[slot.name] = {
                    "state": slot.state,
                    "events": p.counters.events if p is not None else None,
                    "labels": dict(p.join.counts.__dict__) if p is not None and p.join is not None else None,
                }
            return {"worker": owner, "pipelines": out}

        topics = {s.labels_topic for s in pipelines if s.labels_topic}
        # the labels route forwards to one topic: offered when the pipelines share one
        labels_topic = topics.pop() if len(topics) == 1 else None
        p0 = pipelines[0]
        app = create_app(
            board, alerts, max_rows=p0.max_predict_rows, status=status,
            api_keys=p0.api_key_list(), open_reads=p0.api_open_reads,
            labels_sink=labels_producer(p0) if labels_topic else None, labels_topic=labels_topic or "labels",
        )  # fmt: skip
        server = HttpServer(app, process.http_host, process.http_port)
        server.start()
        return server

    return FleetParts(process, board, alerts, roster, open_lease_for, build, finished, serve_fleet)
