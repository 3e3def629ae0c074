"""The read replica against the real Redis: it serves the latest verified snapshot of each
pipeline, swaps on PUBLISH, finds a missed announcement by polling, refuses a snapshot
signed with another key and keeps serving."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from connectors.redis_store import RedisStore
from learners.registry import make_learner
from stream.runtime.replica import Replica
from stream.snapshot import SnapshotHeader, seal
from stream.synth import sea_stream

pytestmark = pytest.mark.integration

KEY = b"r" * 32
LEARNER = "river:tree.HoeffdingTreeClassifier"


def _snapshot(n: int, key: bytes = KEY, pipeline: str = "p", seed: int = 1) -> bytes:
    """A snapshot of a tree learned on ``n`` seeded SEA events; model version = n."""
    model = make_learner(LEARNER, {}, 0)
    rows = list(sea_stream(n, seed, 10**9))
    model.learn_many([x for x, _ in rows], [y for _, y in rows])
    header = SnapshotHeader(pipeline=pipeline, model_version=n, events_seen=n, offsets={"events:0": n}, learner=LEARNER)
    return seal(header, {"learner": model.state_dict()}, key)


def _until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.fixture
def store(redis_url):
    s = RedisStore(redis_url, keep=3)
    yield s
    s.close()


def test_serves_each_pipeline_and_swaps_on_publish(store, unique_name):
    a, b = unique_name("a"), unique_name("b")
    store.save(a, _snapshot(200, pipeline=a))
    store.save(a, _snapshot(400, pipeline=a))
    store.save(b, _snapshot(300, pipeline=b))
    # polling every minute: within this test only a PUBLISH can explain a swap
    with Replica(store, KEY, [a, b], poll_s=60) as replica:
        assert replica.board.get(a).version == 400 and replica.board.get(b).version == 300
        assert replica.board.get(a).offsets == {"events:0": 400} and replica.board.get(a).snapshot_version == 2
        held = replica.board.get(a)
        started = time.monotonic()
        store.save(a, _snapshot(600, pipeline=a))
        _until(lambda: replica.board.get(a).version == 600, 5, "no swap after PUBLISH")
        assert time.monotonic() - started < 5
        # a reader that took the old copy keeps a working model
        assert held.version == 400 and held.model.predict_many([{"x0": 9.0, "x1": 9.0, "x2": 1.0}]) == [1]
        assert [v["version"] for v in replica.board.versions(a)] == [400, 600]
        assert replica.board.get(b).version == 300


def test_a_missed_announcement_is_found_by_polling(store, unique_name, monkeypatch):
    a = unique_name("a")
    store.save(a, _snapshot(200, pipeline=a))
    with Replica(store, KEY, [a], poll_s=0.3) as replica:
        writer = RedisStore(store.url)
        monkeypatch.setattr(writer._r, "publish", lambda *args: 0)  # the announcement is lost
        writer.save(a, _snapshot(500, pipeline=a))
        _until(lambda: replica.board.get(a).version == 500, 5, "the poll did not find the new snapshot")
        writer.close()


def test_a_snapshot_that_does_not_verify_is_refused_and_the_last_good_one_kept(store, unique_name):
    a = unique_name("a")
    store.save(a, _snapshot(200, pipeline=a))
    store.save(a, _snapshot(400, key=b"x" * 32, pipeline=a))
    # the latest does not verify: the one before it is served
    with Replica(store, KEY, [a], poll_s=60) as replica:
        assert replica.board.get(a).version == 200 and replica.refused == 1
        store.save(a, _snapshot(600, key=b"x" * 32, pipeline=a))
        _until(lambda: replica.refused == 2, 5, "the forged snapshot was not looked at")
        assert replica.board.get(a).version == 200
        store.save(a, _snapshot(800, pipeline=a))
        _until(lambda: replica.board.get(a).version == 800, 5, "no swap to the good snapshot")


def test_a_pipeline_with_no_snapshot_yet_is_served_once_one_arrives(store, unique_name):
    a = unique_name("a")
    with Replica(store, KEY, [a], poll_s=60) as replica:
        assert replica.board.get(a) is None
        store.save(a, _snapshot(200, pipeline=a))
        _until(lambda: replica.board.get(a) is not None, 5, "nothing served after the first snapshot")
