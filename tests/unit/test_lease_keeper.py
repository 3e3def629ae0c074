"""The lease keeper against a lease in memory: a renewal under way when the pipeline stops
must end before the lease is released, or it would take the lease back for nobody."""

from __future__ import annotations

import threading
import time

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
