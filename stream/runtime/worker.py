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
from stream.exceptions import LeaseLostError
from stream.runtime.pipeline import Pipeline

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews a held lease every third of its life; sets ``lost`` when it is gone for good.

    It starts when the lease is taken, before the pipeline exists: building one (its
    producer fences the previous holder's transaction) and restoring its snapshot can
    take longer than the lease lives. ``attach`` hands it the pipeline once built.
    """

    def __init__(self, lease: object, name: str, stop: threading.Event, *, clock: Callable[[], float] = time.monotonic):
        self._lease = lease
        self._name = name
        self._pipeline: Pipeline | None = None
        self._stop = stop
        self._clock = clock
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def attach(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

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
                logger.warning("pipeline=%s lease renewal %.1fs late (the lease lives %.1fs)", self._name, late, self._lease.ttl_ms / 1000)
            due = self._clock() + every
            try:
                if self._lease.renew():
                    continue
                if self._retake():
                    continue
            except StoreUnavailableError as exc:
                logger.warning("pipeline=%s lease renewal failed, learning goes on: %s", self._name, exc)
                continue
            try:
                holder = self._lease.holder()
            except StoreUnavailableError:
                holder = None
            logger.error("pipeline=%s lost its lease to %s; stopping", self._name, holder)
            self.lost.set()
            if self._pipeline is not None:
                self._pipeline.halt(f"another worker ({holder}) holds the lease of pipeline {self._name!r} now")
            self._stop.set()
            return

    def _retake(self) -> bool:
        # The lease expired while Redis was away. Take it again only if nobody else wrote a
        # snapshot since ours: then this worker's state is still the newest.
        pipeline = self._pipeline
        if pipeline is None:  # not restored yet: nothing shows whose state is newest
            return False
        token = self._lease.acquire()
        if token is None:
            return False
        latest = pipeline.store.load_latest(self._name)
        ours = pipeline.snapshot_version
        if latest is not None and latest[0] != ours:
            self._lease.release()
            return False
        logger.warning("pipeline=%s lease expired during an outage and was taken again (token %d)", self._name, token)
        pipeline.fencing_token = token
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


def run_leased(pipeline: Pipeline, lease: object, stop: threading.Event, *, max_events: int | None = None, keeper: LeaseKeeper | None = None) -> None:
    """Run ``pipeline`` under a lease already taken; release it at the end.

    ``keeper``: the renewals the caller started when it took the lease; without one they
    start now.
    """
    if keeper is None:
        keeper = LeaseKeeper(lease, pipeline.name, stop)
        keeper.start()
    keeper.attach(pipeline)
    try:
        if keeper.lost.is_set():
            raise LeaseLostError(f"pipeline {pipeline.name!r}: the lease was lost while the pipeline started; this worker stopped without writing")
        pipeline.run(max_events=max_events, stop=stop)
    finally:
        stop.set()
        keeper.join()
    with contextlib.suppress(StoreUnavailableError):
        lease.release()
