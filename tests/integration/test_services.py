from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectors import services
from connectors.exceptions import ServiceStartError

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _answers(address: str) -> bool:
    host_port = address.removeprefix("redis://").split("/")[0]
    host, port = host_port.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_is_idempotent_and_status_reports_running(services_state_dir: Path) -> None:
    env = services.up(services_state_dir)
    assert set(env) == {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL"}
    assert env["KAFKA_BOOTSTRAP_SERVERS"].startswith("127.0.0.1:")
    assert env["REDIS_URL"].startswith("redis://127.0.0.1:")
    assert env["REDIS_URL"].endswith("/0")

    started = time.monotonic()
    again = services.up(services_state_dir)
    assert time.monotonic() - started < 3.0
    assert again == env

    st = services.status(services_state_dir)
    assert st["kafka"]["running"] is True
    assert st["redis"]["running"] is True
    assert st["kafka"]["address"] == env["KAFKA_BOOTSTRAP_SERVERS"]
    assert st["redis"]["address"] == env["REDIS_URL"]
    for name in ("kafka", "redis"):
        pid = st[name]["pid"]
        assert _pid_alive(pid)
        assert os.getsid(pid) == pid  # own session: outlives whoever started it
        assert _answers(st[name]["address"])


def test_services_outlive_the_process_that_started_them(tmp_path: Path) -> None:
    code = f"from connectors import services; print(services.up_redis({str(tmp_path)!r}))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
        timeout=60,
    )  # fmt: skip
    url = out.stdout.strip().splitlines()[-1]
    try:
        st = services.status(tmp_path)["redis"]
        assert st["running"] is True
        assert st["address"] == url
        assert services.up_redis(tmp_path) == url
    finally:
        stopped = services.down(tmp_path, timeout_s=10)
    assert stopped == ["redis"]
    assert not _pid_alive(st["pid"]) or _zombie(st["pid"])
    assert services.status(tmp_path)["redis"] == {"running": False, "pid": None, "address": None}


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return False


def test_dead_recorded_service_is_replaced(tmp_path: Path) -> None:
    url = services.up_redis(tmp_path)
    state_file = tmp_path / services.STATE_FILE
    state = json.loads(state_file.read_text())
    old_pid = state["redis"]["pid"]
    try:
        services.down(tmp_path, timeout_s=10)
        # Put the dead entry back, as after a reboot or an OOM kill.
        state_file.write_text(json.dumps(state))
        assert services.status(tmp_path)["redis"]["running"] is False
        new_url = services.up_redis(tmp_path)
        new_pid = services.status(tmp_path)["redis"]["pid"]
        assert new_pid != old_pid
        assert _answers(new_url)
        assert isinstance(url, str)
    finally:
        services.down(tmp_path, timeout_s=10)


def test_never_signals_a_process_it_did_not_start(tmp_path: Path) -> None:
    # A recorded PID that now belongs to someone else (here: this test process).
    fake = {"redis": {"pid": os.getpid(), "port": 1, "address": "redis://127.0.0.1:1/0",
                      "marker": ":1-not-our-command-line"}}  # fmt: skip
    (tmp_path / services.STATE_FILE).write_text(json.dumps(fake))
    assert services.status(tmp_path)["redis"]["running"] is False
    assert services.down(tmp_path, timeout_s=1) == []
    assert _pid_alive(os.getpid())


def test_missing_redis_server_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ServiceStartError, match="apt-get install -y redis-server"):
        services.up_redis(tmp_path / "state")


def test_state_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_SERVICES_DIR", str(tmp_path / "custom"))
    assert services.default_state_dir() == tmp_path / "custom"
    assert services.status() == {
        "kafka": {"running": False, "pid": None, "address": None},
        "redis": {"running": False, "pid": None, "address": None},
    }
