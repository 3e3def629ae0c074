"""The README's configuration table lists every setting, under its environment name."""

from __future__ import annotations

from pathlib import Path

from stream.config import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
CONVENTIONAL = {"kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS", "redis_url": "REDIS_URL"}


def test_every_setting_is_documented():
    missing = [
        name
        for name in Settings.model_fields
        if f"| `{CONVENTIONAL.get(name, 'DRIFTLINE_' + name.upper())}` |" not in README
    ]
    assert missing == []


def test_the_two_set_up_commands_come_first():
    setup = README.index("## Set up")
    assert README.index("make run", setup) < README.index("make test", setup) < README.index("## Kafka in")
