"""Session-wide services and factories shared by the test suite.

Real Kafka and Redis come, in order of preference, from ``KAFKA_BOOTSTRAP_SERVERS`` /
``REDIS_URL``; from testcontainers when a Docker engine answers; else from
``connectors.services`` started once for the session in a temporary state directory and
stopped at its end. Failing to get a service fails the tests that need it: a suite that
silently skips its integration tests proves nothing.
"""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.base import SnapshotStore

log = logging.getLogger(__name__)

_HOW_TO_GET_SERVICES = (
    "Integration tests need a real Kafka broker and Redis server. Either export "
    "KAFKA_BOOTSTRAP_SERVERS / REDIS_URL pointing at running ones, start a Docker engine "
    "(testcontainers), or install the local launcher's prerequisites "
    "(apt-get install -y redis-server maven openjdk-17-jre-headless) so that "
    "`driftline services up` works."
)


class _Services:
    """Starts each service lazily, at most once per session, and stops what it started."""

    def __init__(self, tmp_dir: Path) -> None:
        self._tmp_dir = tmp_dir
        self._state_dir: Path | None = None
        self._containers: list[Any] = []
        self._cache: dict[str, str] = {}

    def _docker_container(self, name: str) -> str | None:
        try:
            if name == "kafka":
                from testcontainers.community.kafka import KafkaContainer

                kafka = KafkaContainer()
                kafka.start()
                self._containers.append(kafka)
                return str(kafka.get_bootstrap_server())
            from testcontainers.community.redis import RedisContainer

            redis_container = RedisContainer()
            redis_container.start()
            self._containers.append(redis_container)
            host = redis_container.get_container_host_ip()
            port = redis_container.get_exposed_port(redis_container.port)
            return f"redis://{host}:{port}/0"
        except Exception as exc:  # no Docker engine: constructors raise DockerException
            log.info("testcontainers unavailable for %s (%s); using local processes", name, exc)
            return None

    @property
    def state_dir(self) -> Path:
        """Where this session's local services (if any) record their state."""
        if self._state_dir is None:
            self._state_dir = self._tmp_dir / "services"
        return self._state_dir

    def _local(self, name: str) -> str:
        from connectors import services

        try:
            if name == "kafka":
                return services.up_kafka(self.state_dir)
            return services.up_redis(self.state_dir)
        except Exception as exc:
            pytest.fail(
                f"could not start a local {name}: {exc}\n\n{_HOW_TO_GET_SERVICES}", pytrace=False
            )

    def get(self, name: str, env_var: str) -> str:
        if name not in self._cache:
            value = os.environ.get(env_var) or self._docker_container(name) or self._local(name)
            self._cache[name] = value
        return self._cache[name]

    def stop(self) -> None:
        for container in self._containers:
            try:
                container.stop()
            except Exception as exc:
                log.warning("stopping %r failed: %s", container, exc)
        if self._state_dir is not None:
            from connectors import services

            services.down(self._state_dir, timeout_s=20)


@pytest.fixture(scope="session")
def _services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Services]:
    svc = _Services(tmp_path_factory.mktemp("driftline"))
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def services_state_dir(_services: _Services) -> Path:
    """State directory of the session's own local services; stopped at session end."""
    return _services.state_dir


@pytest.fixture(scope="session")
def kafka_bootstrap(_services: _Services) -> str:
    """Bootstrap address of a real Kafka broker that answers ``describe_cluster``."""
    from connectors.kafka import KafkaAdmin

    bootstrap = _services.get("kafka", "KAFKA_BOOTSTRAP_SERVERS")
    try:
        admin = KafkaAdmin(bootstrap)
        try:
            admin.wait_ready(timeout_s=60)
        finally:
            admin.close()
    except Exception as exc:
        pytest.fail(
            f"Kafka at {bootstrap} is not usable: {exc}\n\n{_HOW_TO_GET_SERVICES}", pytrace=False
        )
    return bootstrap


@pytest.fixture(scope="session")
def redis_url(_services: _Services) -> str:
    """URL of a real Redis server that answers PING."""
    import redis

    url = _services.get("redis", "REDIS_URL")
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        pytest.fail(f"Redis at {url} is not usable: {exc}\n\n{_HOW_TO_GET_SERVICES}", pytrace=False)
    return url


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Names that no other test (or earlier run against the same server) has used."""
    counter = itertools.count()
    run = uuid.uuid4().hex[:8]
    test = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]

    def make(prefix: str) -> str:
        return f"{prefix}-{test}-{run}-{next(counter)}"

    return make


@pytest.fixture
def topic_factory(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> Iterator[Callable[..., str]]:
    """``topic_factory(partitions=3) -> name``: a fresh topic, created and ready."""
    from connectors.kafka import KafkaAdmin

    admin = KafkaAdmin(kafka_bootstrap)

    def make(partitions: int = 1, prefix: str = "t") -> str:
        name = unique_name(prefix)
        admin.create_topics([name], partitions)
        return name

    yield make
    admin.close()


@pytest.fixture(params=["directory", "redis"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, unique_name: Callable[[str], str]
) -> Iterator[SnapshotStore]:
    """Each snapshot store implementation, empty, with ``keep=3``."""
    if request.param == "directory":
        from connectors.directory import DirectoryStore

        s: SnapshotStore = DirectoryStore(tmp_path / "snapshots", keep=3)
    else:
        from connectors.redis_store import RedisStore

        url = request.getfixturevalue("redis_url")
        s = RedisStore(url, namespace=unique_name("ns"), keep=3)
    yield s
    s.close()
