"""The lease keeper against a lease in memory: a renewal under way when the pipeline stops
must end before the lease is released, or it would take the lease back for nobody."""

from __future__ import annotations

import threading
import time

import pytest

from stream.runtime.worker import run_leased


class SlowLease:
    """A lease whose renewal is in flight when the pipeline stops, and answers late."""

    ttl_ms = 30  # renewals every 10 ms

    def __init__(self, stop: threading.Event):
        self._stop = stop
        self.held = True
        self.token = 1
        self.calls: list[str] = []
        self.renewing = threading.Event()

    def renew(self) -> bool:
        self.calls.append("renew")
        self.renewing.set()
        self._stop.wait()
        time.sleep(0.05)  # the answer comes after the stop
        return self.held

    def acquire(self):
        self.calls.append("acquire")
        if self.held:
            return None
        self.held, self.token = True, self.token + 1
        return self.token

    def release(self) -> bool:
        self.calls.append("release")
        was, self.held = self.held, False
        return was

    def holder(self):
        return "us" if self.held else None


class _Store:
    def load_latest(self, name):
        return (5, b"")


class StoppingPipeline:
    """Runs until the keeper's renewal is under way, then stops (max_events reached)."""

    name = "p"
    snapshot_version = 5  # the newest snapshot is ours: a retake would be allowed
    store = _Store()

    def __init__(self, lease: SlowLease):
        self._lease = lease
        self.fencing_token = 1

    def run(self, max_events=None, stop=None):
        assert self._lease.renewing.wait(5)

    def halt(self, reason):
        raise AssertionError(reason)


def test_the_lease_is_released_only_after_the_renewal_under_way_ends():
    stop = threading.Event()
    lease = SlowLease(stop)
    run_leased(StoppingPipeline(lease), lease, stop)
    for thread in threading.enumerate():
        if thread.name == "lease-p":
            thread.join(5)  # whatever the keeper still does, let it finish
    assert lease.held is False
    assert lease.calls[-1] == "release" and "acquire" not in lease.calls


class CountingLease:
    """Renews while ``keep`` is set; afterwards another worker holds it."""

    ttl_ms = 30

    def __init__(self):
        self.keep = True
        self.renewals = 0
        self.thrice = threading.Event()

    def renew(self) -> bool:
        self.renewals += 1
        if self.renewals >= 3:
            self.thrice.set()
        return self.keep

    def acquire(self):
        return None

    def release(self) -> bool:
        return False

    def holder(self):
        return "other:1"


class NeverRun(StoppingPipeline):
    def run(self, max_events=None, stop=None):
        raise AssertionError("a pipeline whose lease was lost while it started must not run")


def test_the_lease_is_renewed_while_the_pipeline_is_built_and_lost_then_it_never_runs():
    from stream.exceptions import LeaseLostError
    from stream.runtime.worker import LeaseKeeper

    stop = threading.Event()
    lease = CountingLease()
    keeper = LeaseKeeper(lease, "p", stop)
    keeper.start()  # taken: renewed from now, with no pipeline built yet
    assert lease.thrice.wait(5) and not keeper.lost.is_set()
    lease.keep = False  # the build outlasted the lease: another worker took it
    assert keeper.lost.wait(5) and stop.is_set()
    with pytest.raises(LeaseLostError, match="lost while the pipeline started"):
        run_leased(NeverRun(SlowLease(stop)), lease, stop, keeper=keeper)
