from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import SnapshotStore
from connectors.exceptions import (
    SnapshotNotFoundError,
    StaleFencingTokenError,
    StoreUnavailableError,
)
from connectors.redis_store import RedisLease, RedisStore, redact_url

pytestmark = pytest.mark.integration


def test_versions_increase_and_latest_moves(store: SnapshotStore) -> None:
    assert store.load_latest("p") is None
    assert store.versions("p") == []
    for i in range(1, 4):
        assert store.save("p", f"blob-{i}".encode()) == i
        assert store.load_latest("p") == (i, f"blob-{i}".encode())
    assert store.versions("p") == [1, 2, 3]
    assert store.load("p", 2) == b"blob-2"
    # Pipelines are independent.
    assert store.load_latest("other") is None
    assert store.save("other", b"o") == 1


def test_pruning_keeps_the_newest(store: SnapshotStore) -> None:
    for i in range(1, 8):
        store.save("p", bytes([i]))
    assert store.versions("p") == [5, 6, 7]  # the fixture's stores keep 3
    assert store.load_latest("p") == (7, b"\x07")
    with pytest.raises(SnapshotNotFoundError):
        store.load("p", 4)
    with pytest.raises(KeyError):  # SnapshotNotFoundError is a KeyError too
        store.load("p", 1)


def test_stale_fencing_token_rejected(store: SnapshotStore) -> None:
    assert store.save("p", b"old-owner", fencing_token=3) == 1
    assert store.save("p", b"new-owner", fencing_token=4) == 2
    with pytest.raises(StaleFencingTokenError, match="fencing token 3"):
        store.save("p", b"zombie", fencing_token=3)
    assert store.load_latest("p") == (2, b"new-owner")
    assert store.versions("p") == [1, 2]
    # An equal token is the same owner writing again.
    assert store.save("p", b"new-owner-again", fencing_token=4) == 3


def test_invalid_pipeline_names_rejected(store: SnapshotStore) -> None:
    for name in ["../x", "a:b", "", "a b"]:
        with pytest.raises(ValueError, match="pipeline"):
            store.save(name, b"x")


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(blobs=st.lists(st.binary(max_size=2048), min_size=1, max_size=4))
def test_blobs_round_trip_exactly(store: SnapshotStore, blobs: list[bytes]) -> None:
    saved = [(store.save("rt", b), b) for b in blobs]
    for version, blob in saved[-3:]:
        assert store.load("rt", version) == blob
    assert store.load_latest("rt") == saved[-1]


# -- Redis only ------------------------------------------------------------------------


@pytest.fixture
def redis_store(redis_url: str, unique_name: Callable[[str], str]) -> RedisStore:
    s = RedisStore(redis_url, namespace=unique_name("ns"), keep=3)
    yield s
    s.close()


def test_redis_keys_and_one_transaction(redis_store: RedisStore, redis_url: str) -> None:
    redis_store.save("p", b"a", fencing_token=2)
    redis_store.save("p", b"b", fencing_token=2)
    k = redis_store.keys("p")
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.get(k.latest) == b"2"
        assert client.get(k.snap(2)) == b"b"
        assert client.zrange(k.versions, 0, -1, withscores=True) == [(b"1", 1.0), (b"2", 2.0)]
        assert client.get(k.fence) == b"2"
        assert k.snap(2) == f"{redis_store.namespace}:p:snap:2"
    finally:
        client.close()


def test_redis_publishes_each_new_version(redis_store: RedisStore, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe(redis_store.channel("p"))
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
    versions = [redis_store.save("p", b"x") for _ in range(3)]
    received = []
    deadline = time.monotonic() + 5
    while len(received) < 3 and time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=1)
        if msg and msg["type"] == "message":
            received.append(int(msg["data"]))
    pubsub.close()
    client.close()
    assert received == versions == [1, 2, 3]


def test_redis_concurrent_writers_get_distinct_versions(
    redis_url: str, unique_name: Callable[[str], str]
) -> None:
    namespace = unique_name("ns")
    results: list[int] = []
    lock = threading.Lock()

    def writer(tag: int) -> None:
        s = RedisStore(redis_url, namespace=namespace, keep=3)
        for i in range(10):
            v = s.save("p", f"{tag}-{i}".encode())
            with lock:
                results.append(v)
        s.close()

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == list(range(1, 41))
    s = RedisStore(redis_url, namespace=namespace, keep=3)
    assert s.versions("p") == [38, 39, 40]
    latest = s.load_latest("p")
    assert latest is not None and latest[0] == 40
    s.close()


def test_redis_unavailable_is_a_clear_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = RedisStore(f"redis://:secret@127.0.0.1:{port}/0")
    with pytest.raises(StoreUnavailableError, match="driftline services up") as info:
        store.save("p", b"x")
    assert "secret" not in str(info.value)
    with pytest.raises(StoreUnavailableError):
        store.load_latest("p")
    assert redact_url("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"


def test_lease_single_holder_tokens_increase_and_fence_old_owner(
    redis_url: str, unique_name: Callable[[str], str]
) -> None:
    namespace = unique_name("ns")
    store = RedisStore(redis_url, namespace=namespace)
    a = RedisLease(redis_url, "p", namespace=namespace, ttl_ms=300, owner="a")
    b = RedisLease(redis_url, "p", namespace=namespace, ttl_ms=5000, owner="b")
    token_a = a.acquire()
    assert token_a == 1
    assert a.acquire() == 1  # re-acquiring while held renews
    assert b.acquire() is None
    assert a.holder() == "a"
    store.save("p", b"from-a", fencing_token=token_a)

    # a stops renewing; wait (bounded) for Redis to expire its lease
    deadline = time.monotonic() + 30
    while a.holder() is not None:
        assert time.monotonic() < deadline, "the 300 ms lease never expired"
        time.sleep(0.02)
    token_b = b.acquire()
    assert token_b == 2
    assert store.fence("p") == 2  # taking the lease fences the previous owner at once
    with pytest.raises(StaleFencingTokenError):
        store.save("p", b"late-from-a", fencing_token=token_a)
    assert a.renew() is False
    assert a.token is None
    assert a.release() is False  # cannot delete b's lease
    assert b.holder() == "b"
    assert b.renew() is True
    assert b.release() is True
    assert b.holder() is None
    assert a.acquire() == 3
    assert store.load_latest("p") == (1, b"from-a")
    for c in (a, b, store):
        c.close()
