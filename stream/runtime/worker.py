"""A worker learns a pipeline only while it holds the pipeline's lease.

One pipeline has one learning worker at a time: the worker takes a Redis lease with a
fencing token before it joins the consumer group, renews it in the background, and every
snapshot it writes carries the token, so a worker that lost the lease (paused, cut off)
has its next write refused and stops. A standby worker with the same settings waits for
the lease; when the holder dies the lease expires after ``lease_ttl_s`` and the standby
takes it, restores the latest snapshot and resumes from its offsets.

A Redis outage longer than the lease's life does not stop a lone worker: when Redis
answers again it takes the lease afresh, provided nobody wrote a snapshot meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from connectors.exceptions import StoreUnavailableError
from stream.runtime.pipeline import Pipeline

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews a held lease every third of its life; sets ``lost`` when it is gone for good."""

    def __init__(self, lease: object, pipeline: Pipeline, stop: threading.Event, *, clock: Callable[[], float] = time.monotonic):
        self._lease = lease
        self._pipeline = pipeline
        self._stop = stop
        self._clock = clock
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{pipeline.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        """Wait for the renewals to end (after ``stop`` is set): a renewal still running
        when the lease is released would take it again, for nobody."""
        self._thread.join()

    def _run(self) -> None:
        every = self._lease.ttl_ms / 3000.0
        due = self._clock() + every
        while not self._stop.wait(max(0.0, due - self._clock())):
            late = self._clock() - due
            if late > every:
                # a starved process renews late; past the lease's life it loses the pipeline
                logger.warning("pipeline=%s lease renewal %.1fs late (the lease lives %.1fs)", self._pipeline.name, late, self._lease.ttl_ms / 1000)
            due = self._clock() + every
            try:
                if self._lease.renew():
                    continue
                if self._retake():
                    continue
            except StoreUnavailableError as exc:
                logger.warning("pipeline=%s lease renewal failed, learning goes on: %s", self._pipeline.name, exc)
                continue
            try:
                holder = self._lease.holder()
            except StoreUnavailableError:
                holder = None
            logger.error("pipeline=%s lost its lease to %s; stopping", self._pipeline.name, holder)
            self.lost.set()
            self._pipeline.halt(f"another worker ({holder}) holds the lease of pipeline {self._pipeline.name!r} now")
            self._stop.set()
            return

    def _retake(self) -> bool:
        # The lease expired while Redis was away. Take it again only if nobody else wrote a
        # snapshot since ours: then this worker's state is still the newest.
        token = self._lease.acquire()
        if token is None:
            return False
        latest = self._pipeline.store.load_latest(self._pipeline.name)
        ours = self._pipeline.snapshot_version
        if latest is not None and latest[0] != ours:
            self._lease.release()
            return False
        logger.warning("pipeline=%s lease expired during an outage and was taken again (token %d)", self._pipeline.name, token)
        self._pipeline.fencing_token = token
        return True


def wait_for_lease(lease: object, stop: threading.Event, *, poll_s: float = 0.5, on_wait: Callable[[str | None], None] | None = None) -> int | None:
    """Block until the lease is ours (its fencing token) or ``stop`` is set (None)."""
    told = False
    while not stop.is_set():
        try:
            token = lease.acquire()
        except StoreUnavailableError as exc:
            logger.warning("waiting for the lease: %s", exc)
            token = None
        if token is not None:
            return token
        if not told:
            holder = lease.holder()
            logger.info("standby: pipeline %s is held by %s", lease.pipeline, holder)
            if on_wait is not None:
                on_wait(holder)
            told = True
        stop.wait(poll_s)
    return None


def run_leased(pipeline: Pipeline, lease: object, stop: threading.Event, *, max_events: int | None = None) -> None:
    """Restore and run ``pipeline`` under a lease already taken; release it on a clean stop."""
    keeper = LeaseKeeper(lease, pipeline, stop)
    keeper.start()
    try:
        pipeline.run(max_events=max_events, stop=stop)
    finally:
        stop.set()
        keeper.join()
    with contextlib.suppress(StoreUnavailableError):
        lease.release()
