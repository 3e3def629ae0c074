"""A read replica: serves pipelines' latest verified snapshots and learns nothing.

For each pipeline it loads the newest snapshot whose signature verifies, builds the
model from it and publishes it on its own board; then it waits on the store's PUBLISH
channel and swaps in each new version as it is announced, checking the store every
``poll_s`` as well in case an announcement was missed (a dropped connection, a replica
started between a save and its publish). The swap is one reference on the board:
requests in flight finish on the copy they took, the next ones get the new one.

A snapshot that does not verify or does not load is logged and skipped; the replica
keeps serving what it has. So does a store that is down.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from connectors.exceptions import ConnectorError
from learners.registry import make_learner
from stream.exceptions import DriftlineError
from stream.runtime.board import ModelBoard, ServedModel
from stream.snapshot import open_snapshot

logger = logging.getLogger(__name__)


class Replica:
    """Keeps ``board`` at the latest verified snapshot of each of ``pipelines`` in ``store``."""

    def __init__(
        self,
        store: Any,
        key: bytes,
        pipelines: list[str],
        board: ModelBoard | None = None,
        *,
        poll_s: float = 2.0,
        on_swap: Callable[[ServedModel], None] | None = None,
    ):
        self.store = store
        self._key = key
        self.pipelines = list(pipelines)
        self.board = board if board is not None else ModelBoard()
        self.poll_s = poll_s
        self.on_swap = on_swap
        #: per pipeline, the snapshot version served
        self.loaded: dict[str, int] = {}
        self._refused: set[tuple[str, int]] = set()
        self.swaps = 0
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replica", daemon=True)

    # ----------------------------------------------------------------- loading

    def refresh(self, pipeline: str) -> bool:
        """Serve the newest verified snapshot of ``pipeline`` newer than the one served; True if swapped."""
        have = self.loaded.get(pipeline, 0)
        newer = [v for v in self.store.versions(pipeline) if v > have and (pipeline, v) not in self._refused]
        for version in sorted(newer, reverse=True):
            try:
                blob = self.store.load(pipeline, version)
            except ConnectorError as exc:  # pruned between the listing and the read: try the next
                logger.info("replica pipeline=%s v%d gone before it was read: %s", pipeline, version, exc)
                continue
            try:
                served = self._build(pipeline, version, blob)
            except (DriftlineError, ValueError, KeyError, TypeError) as exc:
                self.refused += 1
                logger.error("replica pipeline=%s snapshot v%d refused, still serving v%s: %s", pipeline, version, have or "-", exc)
                self._refused.add((pipeline, version))
                continue
            self.board.publish(served)
            self.loaded[pipeline] = version
            self.swaps += 1
            logger.info("replica pipeline=%s serving snapshot v%d (model version %d)", pipeline, version, served.version)
            if self.on_swap is not None:
                self.on_swap(served)
            return True
        return False

    def _build(self, pipeline: str, version: int, blob: bytes) -> ServedModel:
        header, state = open_snapshot(blob, self._key)  # the signature is checked before anything is unpickled
        if header.pipeline != pipeline:
            raise ValueError(f"snapshot v{version} belongs to pipeline {header.pipeline!r}")
        model = make_learner(header.learner, header.learner_params, 0)
        model.load_state_dict(state["learner"])
        return ServedModel(
            name=pipeline,
            learner=header.learner,
            version=header.model_version,
            events_seen=header.events_seen,
            model=model,
            metrics=dict(header.metrics),
            offsets=dict(header.offsets),
            published_at=header.created_at,
            snapshot_version=version,
        )

    def refresh_all(self) -> None:
        for p in self.pipelines:
            try:
                self.refresh(p)
            except ConnectorError as exc:
                logger.warning("replica pipeline=%s store unavailable, still serving v%s: %s", p, self.loaded.get(p, "-"), exc)

    # --------------------------------------------------------------- the watch

    def start(self) -> Replica:
        self.refresh_all()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> Replica:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        channels = {self.store.channel(p): p for p in self.pipelines}
        pubsub = None
        last_poll = time.monotonic()
        while not self._stop.is_set():
            try:
                if pubsub is None:
                    pubsub = redis.Redis.from_url(self.store.url, socket_connect_timeout=5).pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(*channels)
                    # anything saved while not subscribed is found by this check
                    self.refresh_all()
                    last_poll = time.monotonic()
                msg = pubsub.get_message(timeout=min(self.poll_s, 0.5))
                if msg is not None and msg.get("type") == "message":
                    channel = msg["channel"].decode() if isinstance(msg["channel"], bytes) else msg["channel"]
                    if channel in channels:
                        self.refresh(channels[channel])
                if time.monotonic() - last_poll >= self.poll_s:
                    self.refresh_all()
                    last_poll = time.monotonic()
            except (redis.ConnectionError, redis.TimeoutError, ConnectorError) as exc:
                logger.warning("replica: store unavailable, retrying in %.1fs: %s", self.poll_s, exc)
                if pubsub is not None:
                    with contextlib.suppress(Exception):  # closing a broken connection
                        pubsub.close()
                pubsub = None
                self._stop.wait(self.poll_s)
        if pubsub is not None:
            pubsub.close()
