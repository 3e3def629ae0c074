"""docker-compose.yml and the Dockerfile, checked by structure (no Docker engine runs here)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from stream.cli import _parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SERVICES = COMPOSE["services"]
OURS = ("worker", "replica")


def test_the_four_services_and_the_official_kafka_image_in_kraft_mode():
    assert set(SERVICES) == {"kafka", "redis", "worker", "replica"}
    kafka = SERVICES["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert not any("ZOOKEEPER" in k for k in env)
    # transactions need these at 1 on a single broker, or the worker's producer never starts
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 1 == env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]
    assert SERVICES["redis"]["image"].startswith("redis:")


@pytest.mark.parametrize("name", ["kafka", "redis", "worker", "replica"])
def test_every_service_has_a_healthcheck(name):
    check = SERVICES[name]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and check["retries"] >= 10
    assert re.fullmatch(r"\d+s", check["interval"])


@pytest.mark.parametrize("name", OURS)
def test_ours_are_built_from_the_dockerfile_and_wait_for_healthy_dependencies(name):
    svc = SERVICES[name]
    assert svc["build"] == "."
    needs = svc["depends_on"]
    assert {"redis"} <= set(needs)
    assert all(dep["condition"] == "service_healthy" for dep in needs.values())
    env = svc["environment"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092" and env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["DRIFTLINE_SNAPSHOT_KEY"].startswith("${DRIFTLINE_SNAPSHOT_KEY:?")  # refuse to start without a key


def test_the_worker_waits_for_kafka_and_the_replica_for_the_worker():
    assert set(SERVICES["worker"]["depends_on"]) == {"kafka", "redis"}
    assert set(SERVICES["replica"]["depends_on"]) == {"redis", "worker"}


@pytest.mark.parametrize("name", OURS)
def test_commands_are_ones_the_cli_accepts(name):
    command = SERVICES[name]["command"]
    args = _parser().parse_args(command)
    assert args.func.__name__ == {"worker": "cmd_worker", "replica": "cmd_serve"}[name]
    assert (args.http_host, args.http_port) == ("0.0.0.0", 8000)
    if name == "replica":  # it serves the pipeline the worker learns
        assert args.pipelines == SERVICES["worker"]["environment"]["DRIFTLINE_PIPELINE"] == "${DRIFTLINE_PIPELINE:-default}"


@pytest.mark.parametrize("name", OURS)
def test_healthchecks_ask_routes_the_api_serves_on_the_published_port(name):
    from stream.alerts import AlertLog
    from stream.api import create_app
    from stream.runtime import ModelBoard

    svc = SERVICES[name]
    probe = " ".join(svc["healthcheck"]["test"])
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", probe)
    assert url and url.group(1) == "8000" and svc["ports"][0].endswith(":8000")
    assert url.group(2) == {"worker": "/healthz", "replica": "/readyz"}[name]
    paths = set(create_app(ModelBoard(), AlertLog()).openapi()["paths"])
    assert url.group(2) in paths


def test_the_dockerfile_installs_the_packages_and_runs_the_cli():
    copied = set(re.findall(r"^COPY (\w+) ", DOCKERFILE, flags=re.M))
    assert copied == {"stream", "learners", "connectors"}  # what pyproject's packages.find includes
    assert "pip install" in DOCKERFILE and "whl/cpu" in DOCKERFILE
    entry = re.search(r"^ENTRYPOINT (.+)$", DOCKERFILE, flags=re.M)
    assert entry and shlex.split(entry.group(1).strip("[]").replace(",", " ")) == ["driftline"]
    assert re.search(r"^USER (?!root)", DOCKERFILE, flags=re.M)
