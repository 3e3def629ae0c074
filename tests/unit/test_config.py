from __future__ import annotations

import os

import pytest

from stream.config import load_settings
from stream.exceptions import ConfigError


def test_defaults():
    s = load_settings()
    assert s.learner == "driftmoe" and s.detector == "adwin" and s.batch_size == 256
    assert s.consumer_group == "driftline-default"


def test_environment_and_conventional_names(monkeypatch):
    monkeypatch.setenv("DRIFTLINE_BATCH_SIZE", "32")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9999")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("DRIFTLINE_LEARNER_PARAMS", '{"grace_period": 10}')
    s = load_settings()
    assert s.batch_size == 32
    assert s.kafka_bootstrap_servers == "127.0.0.1:9999" and s.redis_url == "redis://127.0.0.1:1/0"
    assert s.learner_params == {"grace_period": 10}
    assert load_settings(batch_size=8).batch_size == 8  # explicit beats environment


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("batch_size", 0, "batch_size (env DRIFTLINE_BATCH_SIZE): Input should be greater than or equal to 1"),
        ("learner", "sklearn:SVC", "learner (env DRIFTLINE_LEARNER): Value error, unknown learner"),
        ("learner", "river:os.system", "learner (env DRIFTLINE_LEARNER): Value error, unknown learner"),
        ("detector", "magic", "detector (env DRIFTLINE_DETECTOR): Value error, choose one of"),
        ("pipeline", "../etc", "pipeline (env DRIFTLINE_PIPELINE): Value error, use 1-100 letters"),
        ("snapshot_key", "short", "snapshot_key (env DRIFTLINE_SNAPSHOT_KEY): Value error, must be at least 32"),
        ("drift_reaction", "panic", "drift_reaction (env DRIFTLINE_DRIFT_REACTION): Value error, choose"),
    ],
)
def test_errors_name_the_field_and_the_fix(field, value, message):
    with pytest.raises(ConfigError) as info:
        load_settings(**{field: value})
    assert message in str(info.value)


def test_unknown_setting_is_an_error():
    with pytest.raises(ConfigError, match="batchsize"):
        load_settings(batchsize=3)


def test_the_api_runs_in_a_child_process_where_a_second_cpu_is_free_unless_configured(monkeypatch):
    from stream.service import api_in_child

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert api_in_child(load_settings()) is True
    assert api_in_child(load_settings(api_process=False)) is False
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert api_in_child(load_settings()) is False
    assert api_in_child(load_settings(api_process=True)) is True
    monkeypatch.setenv("DRIFTLINE_API_PROCESS", "false")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert api_in_child(load_settings()) is False
