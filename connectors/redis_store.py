"""Snapshot store and single-writer lease on Redis.

Keys per pipeline, under a namespace ``ns``::

    {ns}:{pipeline}:snap:{version}    the blob of one version
    {ns}:{pipeline}:latest            the newest version number
    {ns}:{pipeline}:versions          sorted set of stored versions (score = version)
    {ns}:{pipeline}:version_counter   the last version number handed out
    {ns}:{pipeline}:fence             the highest fencing token seen
    {ns}:{pipeline}:fence_counter     source of lease fencing tokens
    {ns}:{pipeline}:lease             the current lease holder (expires)

A save moves all of them in one MULTI/EXEC under WATCH, so a reader sees either the old
``latest`` and its blob or the new ones, and a writer holding a stale fencing token can
never slip a version in after a newer writer took over. After the transaction commits,
the new version number is published on ``{ns}:{pipeline}:snapshots`` so serving replicas
can hot-swap without polling.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from connectors.directory import validate_pipeline_name
from connectors.exceptions import (
    ConnectorError,
    SnapshotNotFoundError,
    StaleFencingTokenError,
    StoreUnavailableError,
)

__all__ = ["RedisKeys", "RedisLease", "RedisStore", "redact_url"]

log = logging.getLogger(__name__)

_MAX_WATCH_RETRIES = 100
_NAMESPACE_CHECK = validate_pipeline_name


def redact_url(url: str) -> str:
    """``url`` with any password replaced, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)


@contextlib.contextmanager
def _unavailable_as(url: str) -> Iterator[None]:
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        msg = (
            f"Redis at {redact_url(url)} is unavailable ({exc}); start a local one with "
            f"`driftline services up`, or point REDIS_URL at a running server"
        )
        raise StoreUnavailableError(msg) from exc


class RedisKeys:
    """Names of every key and channel of one pipeline."""

    def __init__(self, namespace: str, pipeline: str) -> None:
        base = f"{namespace}:{validate_pipeline_name(pipeline)}"
        self.base = base
        self.latest = f"{base}:latest"
        self.versions = f"{base}:versions"
        self.counter = f"{base}:version_counter"
        self.fence = f"{base}:fence"
        self.fence_counter = f"{base}:fence_counter"
        self.lease = f"{base}:lease"
        self.channel = f"{base}:snapshots"

    def snap(self, version: int) -> str:
        return f"{self.base}:snap:{version}"


class RedisStore:
    """:class:`~connectors.base.SnapshotStore` on Redis.

    Parameters
    ----------
    url
        ``redis://host:port/db`` (``rediss://`` for TLS).
    namespace
        Prefix of every key, so several deployments can share one server.
    keep
        How many of the newest versions survive pruning (at least 1).
    """

    def __init__(self, url: str, *, namespace: str = "driftline", keep: int = 5) -> None:
        if keep < 1:
            msg = f"keep must be >= 1, got {keep}"
            raise ValueError(msg)
        try:
            _NAMESPACE_CHECK(namespace)
        except ValueError:
            msg = f"namespace must be 1-100 characters of letters, digits, '_', '.', '-', got {namespace!r}"
            raise ValueError(msg) from None
        self.url = url
        self.namespace = namespace
        self.keep = keep
        self._r = _connect(url)

    def keys(self, pipeline: str) -> RedisKeys:
        return RedisKeys(self.namespace, pipeline)

    def channel(self, pipeline: str) -> str:
        """The pub/sub channel on which each new version number of ``pipeline`` is published."""
        return self.keys(pipeline).channel

    def save(self, pipeline: str, blob: bytes, *, fencing_token: int | None = None) -> int:
        """Store ``blob`` as a new version, move ``latest``, prune, then publish the version.

        A ``fencing_token`` lower than the pipeline's fence raises
        :class:`StaleFencingTokenError` and writes nothing. ``None`` is allowed only while
        no lease was ever taken on the pipeline: once one was, every writer must hold it.
        """
        k = self.keys(pipeline)
        blob = bytes(blob)
        with _unavailable_as(self.url), self._r.pipeline(transaction=True) as pipe:
            for _ in range(_MAX_WATCH_RETRIES):
                try:
                    pipe.watch(k.counter, k.fence, k.versions)
                    fence_raw = pipe.get(k.fence)
                    fence = int(fence_raw) if fence_raw is not None else None
                    if fence is not None and (fencing_token is None or fencing_token < fence):
                        held = "no fencing token" if fencing_token is None else f"fencing token {fencing_token}, older than {fence}"
                        msg = (
                            f"pipeline {pipeline!r}: a write with {held}; the pipeline is "
                            "leased and another worker owns it"
                        )
                        raise StaleFencingTokenError(msg)
                    version = int(pipe.get(k.counter) or 0) + 1
                    existing = [int(v) for v in pipe.zrange(k.versions, 0, -1)]
                    doomed = [*existing, version][: -self.keep]
                    pipe.multi()
                    pipe.incr(k.counter)
                    pipe.set(k.snap(version), blob)
                    pipe.zadd(k.versions, {str(version): version})
                    pipe.set(k.latest, version)
                    if fencing_token is not None and (fence is None or fencing_token > fence):
                        pipe.set(k.fence, fencing_token)
                    if doomed:
                        pipe.zrem(k.versions, *[str(v) for v in doomed])
                        pipe.delete(*[k.snap(v) for v in doomed])
                    pipe.execute()
                    break
                except WatchError:
                    continue
            else:
                msg = f"pipeline {pipeline!r}: save kept colliding with other writers; gave up"
                raise ConnectorError(msg)
        try:
            self._r.publish(k.channel, str(version))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            # The version is durable; failing here would make the caller save it twice.
            log.warning("snapshot v%d of %r saved but not announced: %s", version, pipeline, exc)
        return version

    def load_latest(self, pipeline: str) -> tuple[int, bytes] | None:
        k = self.keys(pipeline)
        with _unavailable_as(self.url), self._r.pipeline(transaction=True) as pipe:
            for _ in range(_MAX_WATCH_RETRIES):
                try:
                    # Watching ``latest`` means a save that prunes this version between
                    # the two reads aborts the read, which then retries on the new one.
                    pipe.watch(k.latest)
                    raw = pipe.get(k.latest)
                    if raw is None:
                        return None
                    version = int(raw)
                    pipe.multi()
                    pipe.get(k.snap(version))
                    (blob,) = pipe.execute()
                except WatchError:
                    continue
                if blob is None:
                    msg = f"pipeline {pipeline!r}: latest names version {version}, which is missing"
                    raise SnapshotNotFoundError(msg)
                return version, bytes(blob)
        msg = f"pipeline {pipeline!r}: latest kept moving while being read; gave up"
        raise ConnectorError(msg)

    def load(self, pipeline: str, version: int) -> bytes:
        k = self.keys(pipeline)
        with _unavailable_as(self.url):
            blob = self._r.get(k.snap(version))
        if blob is None:
            msg = f"pipeline {pipeline!r} has no snapshot version {version}"
            raise SnapshotNotFoundError(msg)
        return bytes(blob)

    def versions(self, pipeline: str) -> list[int]:
        k = self.keys(pipeline)
        with _unavailable_as(self.url):
            return [int(v) for v in self._r.zrange(k.versions, 0, -1)]

    def fence(self, pipeline: str) -> int | None:
        """The highest fencing token seen for ``pipeline``, or None."""
        with _unavailable_as(self.url):
            raw = self._r.get(self.keys(pipeline).fence)
        return int(raw) if raw is not None else None

    def ping(self) -> None:
        """Raise :class:`StoreUnavailableError` unless the server answers."""
        with _unavailable_as(self.url):
            self._r.ping()

    def close(self) -> None:
        self._r.close()


# Take the lease only when free; the fencing token comes from a counter that never goes
# back, and the fence moves up with it at once, so the previous holder's next save is
# refused even if it has not noticed it lost the lease.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local fence = tonumber(redis.call('GET', KEYS[3]) or '0')
if token > fence then redis.call('SET', KEYS[3], token) end
return token
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisLease:
    """An expiring single-writer lease on one pipeline, with a fencing token.

    ``acquire`` returns a token that is larger than every token handed out before for
    the pipeline; pass it to :meth:`RedisStore.save` so that a worker that lost the lease
    (paused, partitioned) cannot overwrite its successor's snapshots.
    """

    def __init__(
        self,
        url: str,
        pipeline: str,
        *,
        ttl_ms: int = 10_000,
        namespace: str = "driftline",
        owner: str | None = None,
    ) -> None:
        if ttl_ms < 1:
            msg = f"ttl_ms must be >= 1, got {ttl_ms}"
            raise ValueError(msg)
        self.url = url
        self.pipeline = pipeline
        self.ttl_ms = ttl_ms
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._keys = RedisKeys(namespace, pipeline)
        self._r = _connect(url)
        self._acquire = self._r.register_script(_ACQUIRE)
        self._renew = self._r.register_script(_RENEW)
        self._release = self._r.register_script(_RELEASE)
        self.token: int | None = None

    def acquire(self) -> int | None:
        """Take the lease if it is free; return the fencing token, or None when it is held.

        Calling it again while holding the lease renews it and returns the same token.
        """
        if self.token is not None and self.renew():
            return self.token
        k = self._keys
        with _unavailable_as(self.url):
            token = self._acquire(
                keys=[k.lease, k.fence_counter, k.fence], args=[self.owner, self.ttl_ms]
            )
        self.token = int(token) if token is not None else None
        return self.token

    def renew(self) -> bool:
        """Extend the lease by ``ttl_ms``; False (and the token dropped) when it was lost."""
        with _unavailable_as(self.url):
            ok = bool(self._renew(keys=[self._keys.lease], args=[self.owner, self.ttl_ms]))
        if not ok:
            self.token = None
        return ok

    def release(self) -> bool:
        """Give the lease up if this owner still holds it; True when it did."""
        with _unavailable_as(self.url):
            ok = bool(self._release(keys=[self._keys.lease], args=[self.owner]))
        self.token = None
        return ok

    def holder(self) -> str | None:
        """The owner string of whoever holds the lease now."""
        with _unavailable_as(self.url):
            raw = self._r.get(self._keys.lease)
        return raw.decode() if raw is not None else None

    def close(self) -> None:
        self._r.close()


class RedisRoster:
    """The live worker processes sharing one set of pipelines: a key per process, with a TTL.

    ``beat`` refreshes this process's key; a process that stops beating drops out after
    ``ttl_ms``. ``members`` lists the keys alive now (SCAN, so a big keyspace is not
    blocked). ``group`` names the set of pipelines, so processes of other configs are not
    counted.
    """

    def __init__(self, url: str, group: str, *, ttl_ms: int = 10_000, namespace: str = "driftline", member: str | None = None) -> None:
        self.url = url
        self.ttl_ms = ttl_ms
        self.member = member or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._prefix = f"{namespace}:roster:{group}:"
        self._r = _connect(url)

    def beat(self) -> None:
        with _unavailable_as(self.url):
            self._r.set(self._prefix + self.member, b"1", px=self.ttl_ms)

    def members(self) -> list[str]:
        with _unavailable_as(self.url):
            keys = list(self._r.scan_iter(match=self._prefix + "*", count=1000))
        return sorted(k.decode()[len(self._prefix) :] for k in keys)

    def leave(self) -> None:
        with _unavailable_as(self.url):
            self._r.delete(self._prefix + self.member)

    def close(self) -> None:
        self._r.close()
