"""Many pipelines in one worker process, and many worker processes sharing them.

A worker given a config file runs each of its pipelines in a thread of its own, each
learned only while this process holds that pipeline's Redis lease (``runtime.worker``):
its own consumer group, transactional id, snapshots, counters and state, so a pipeline
learns exactly as it would alone.

Several processes given the same file share its pipelines. Each process announces
itself in a roster (a Redis key per process that expires unless refreshed) and takes
leases up to its fair share, ``ceil(unfinished pipelines / live processes)``, one
pipeline per tick; a process holding more than its share (it started first, or others
joined since) hands one back per tick: it stops that pipeline at the next micro-batch,
writes a final checkpoint, releases the lease, and another process takes it. When a
process dies, its leases and its roster key lapse after ``lease_ttl_s``; the survivors'
share grows and they take its pipelines, restoring each from its latest snapshot.
Kafka's consumer groups carry the partitions (one group per pipeline); Redis carries
who learns what. Nothing else coordinates the processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stream.config import Settings
from stream.exceptions import LeaseLostError
from stream.runtime.pipeline import Pipeline
from stream.runtime.worker import LeaseKeeper, run_leased

logger = logging.getLogger(__name__)


@dataclass
class Slot:
    """One pipeline of the file, as this process sees it."""

    settings: Settings
    lease: Any
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    pipeline: Pipeline | None = None
    #: "free" (not ours), "running", "done" (reached max_events), "failed"
    state: str = "free"
    started_at: float = 0.0
    runs: int = 0
    error: str | None = None

    @property
    def name(self) -> str:
        return self.settings.pipeline


def close_pipeline(pipeline: Pipeline) -> None:
    """Close a stopped pipeline's clients: a consumer left open would keep its group's partitions."""
    for part in (pipeline.source, pipeline.join.source if pipeline.join is not None else None, pipeline.sink, pipeline.store):
        if part is not None:
            with contextlib.suppress(Exception):
                part.close()


class Fleet:
    """Runs the pipelines this process holds leases for; see the module docstring."""

    def __init__(
        self,
        settings: list[Settings],
        *,
        open_lease: Callable[[Settings], Any],
        build: Callable[[Settings, int], Pipeline],
        finished: Callable[[Settings], bool],
        roster: Any,
        stop: threading.Event,
        max_events: int | None = None,
        tick_s: float = 0.5,
        on_change: Callable[[str, str], None] | None = None,
    ) -> None:
        self.slots = [Slot(s, open_lease(s)) for s in settings]
        self._build = build
        self._finished = finished
        self.roster = roster
        self.stop = stop
        self.max_events = max_events
        self.tick_s = tick_s
        self._on_change = on_change or (lambda name, what: None)
        self._last_handback = 0.0
        # each process tries the pipelines in its own rotation, so simultaneous starters
        # mostly reach for different leases
        turn = int(hashlib.sha256(str(roster.member).encode()).hexdigest(), 16) % max(1, len(self.slots))
        self._order = self.slots[turn:] + self.slots[:turn]

    # ------------------------------------------------------------------ loop

    def run(self) -> int:
        """Until every pipeline is done (with ``max_events``) or ``stop`` is set; the exit status."""
        self.roster.beat()
        # let processes started together see each other before anyone takes a share
        self.stop.wait(min(1.0, self.tick_s * 2))
        try:
            while not self.stop.is_set():
                self._reap()
                if all(s.state in ("done", "failed") for s in self.slots):
                    break
                self._balance()
                self.stop.wait(self.tick_s)
        finally:
            for s in self.slots:
                s.stop.set()
            for s in self.slots:
                if s.thread is not None:
                    s.thread.join()
            self._reap()
            with contextlib.suppress(Exception):
                self.roster.leave()
        return 1 if any(s.state == "failed" for s in self.slots) else 0

    def held(self) -> list[Slot]:
        return [s for s in self.slots if s.state == "running"]

    def share(self) -> int:
        live = max(1, len(self.roster.members()))
        open_ = sum(1 for s in self.slots if s.state not in ("done", "failed"))
        return math.ceil(open_ / live) if open_ else 0

    def _balance(self) -> None:
        try:
            self.roster.beat()
            share = self.share()
        except Exception as exc:  # Redis away: keep what we hold, take nothing new
            logger.warning("fleet: the roster is unreachable (%s); keeping the pipelines held", exc)
            return
        held = self.held()
        if len(held) < share:
            for slot in self._order:
                if slot.state != "free":
                    continue
                try:
                    token = slot.lease.acquire()
                except Exception as exc:
                    logger.warning("fleet: lease of %s: %s", slot.name, exc)
                    return
                if token is None:
                    continue
                self._start(slot, token)
                return  # one per tick: the others get their turn
        elif len(held) > share and time.monotonic() - self._last_handback >= max(2 * self.tick_s, 1.0):
            # hand back the one started last: it has the least to lose
            slot = max(held, key=lambda s: s.started_at)
            logger.info("fleet: holding %d pipelines, share %d: handing %s back", len(held), share, slot.name)
            self._on_change(slot.name, "handed back")
            slot.stop.set()
            self._last_handback = time.monotonic()

    def _start(self, slot: Slot, token: int) -> None:
        if self.max_events is not None and self._finished(slot.settings):
            slot.state = "done"
            with contextlib.suppress(Exception):
                slot.lease.release()
            return
        slot.stop = threading.Event()
        slot.state = "running"
        slot.started_at = time.monotonic()
        slot.runs += 1
        slot.thread = threading.Thread(target=self._body, args=(slot, token), name=f"pipeline-{slot.name}", daemon=True)
        slot.thread.start()
        self._on_change(slot.name, "started")

    def _body(self, slot: Slot, token: int) -> None:
        pipeline = None
        keeper = LeaseKeeper(slot.lease, slot.name, slot.stop)
        keeper.start()
        try:
            pipeline = self._build(slot.settings, token)
            slot.pipeline = pipeline
            keeper.attach(pipeline)
            pipeline.restore()
            run_leased(pipeline, slot.lease, slot.stop, max_events=self.max_events, keeper=keeper)
            done = self.max_events is not None and pipeline.counters.events >= self.max_events
            slot.error = None
            slot.state = "done" if done else "stopping"
        except LeaseLostError as exc:
            logger.warning("fleet: %s", exc)
            slot.state = "stopping"
        except Exception as exc:
            logger.exception("fleet: pipeline %s failed", slot.name)
            slot.error = f"{type(exc).__name__}: {exc}"
            slot.state = "failed"
        finally:
            # the renewals end first: one still running would take a released lease back
            slot.stop.set()
            keeper.join()
            if slot.state == "failed":
                with contextlib.suppress(Exception):
                    slot.lease.release()
            if pipeline is not None:
                close_pipeline(pipeline)

    def _reap(self) -> None:
        for slot in self.slots:
            if slot.thread is not None and not slot.thread.is_alive():
                slot.thread = None
                if slot.state in ("running", "stopping"):
                    slot.state = "free"
                self._on_change(slot.name, slot.state)
