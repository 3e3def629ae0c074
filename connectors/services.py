"""Start, stop and inspect a local Apache Kafka broker and Redis server without Docker.

Kafka runs from its Maven Central jars (fetched once with ``mvn`` from the packaged
``kafka_pom.xml``) as a single KRaft node in combined broker+controller mode; Redis runs
from Debian's ``redis-server``. Both listen on free loopback ports only and run in their
own session, so they outlive the Python process that started them. A JSON state file
records their PIDs and ports; a later ``up`` finds them there, and ``down`` stops exactly
those PIDs.

State lives in ``$DRIFTLINE_SERVICES_DIR`` (default ``~/.cache/driftline/services``).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import importlib.resources
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from connectors.exceptions import ServiceStartError

__all__ = [
    "KAFKA_VERSION",
    "default_state_dir",
    "down",
    "ensure_kafka_jars",
    "kafka_libs_dir",
    "status",
    "up",
    "up_kafka",
    "up_redis",
]

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
STATE_FILE = "services.json"
#: Seconds Kafka may take from launch to answering describe_cluster (JVM start is slow
#: on two shared cores).
KAFKA_START_TIMEOUT_S = 90.0
REDIS_START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 30.0

_SERVICES = ("kafka", "redis")


# -- paths and state --------------------------------------------------------------------


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "driftline"


def default_state_dir() -> Path:
    env = os.environ.get("DRIFTLINE_SERVICES_DIR")
    return Path(env) if env else _cache_root() / "services"


def kafka_libs_dir() -> Path:
    return _cache_root() / f"kafka-{KAFKA_VERSION}" / "libs"


def _resolve(state_dir: Path | str | None) -> Path:
    d = Path(state_dir) if state_dir is not None else default_state_dir()
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _read_state(d: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((d / STATE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(d: Path, state: dict[str, dict[str, Any]]) -> None:
    tmp = d / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    os.replace(tmp, d / STATE_FILE)


# -- processes and ports ----------------------------------------------------------------

# Children started by this process: reaping them on stop keeps them from lingering as
# zombies that still answer ``kill(pid, 0)``.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _alive(pid: int, marker: str | None = None) -> bool:
    """Whether ``pid`` runs and, when ``marker`` is given, is still the process we started.

    The marker (a path or port only our process has on its command line) guards against
    a recycled PID after a reboot, so ``down`` never signals an unrelated process.
    """
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    if marker is not None:
        cmd = _cmdline(pid)
        if cmd is not None and marker not in cmd:
            return False
    return True


def _tail(paths: list[Path], lines: int = 20) -> str:
    out: list[str] = []
    for p in paths:
        with contextlib.suppress(OSError):
            text = p.read_text(errors="replace").splitlines()
            if text:
                out.append(f"--- {p} ---")
                out.extend(text[-lines:])
    return "\n".join(out) if out else "(no log output)"


def _spawn(cmd: list[str], cwd: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    _children[proc.pid] = proc
    return proc


def _stop_pid(pid: int, marker: str | None, timeout_s: float) -> bool:
    """SIGTERM, then SIGKILL after ``timeout_s``; True when something was stopped."""
    if not _alive(pid, marker):
        _children.pop(pid, None)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.1)
    else:
        log.warning("pid %d did not stop within %.0f s of SIGTERM; sending SIGKILL", pid, timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < kill_deadline:
            time.sleep(0.1)
    child = _children.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1)
    return True


# -- Kafka ------------------------------------------------------------------------------


def ensure_kafka_jars(libs_dir: Path | None = None, *, timeout_s: float = 900.0) -> Path:
    """Fetch the broker jars with Maven once; later calls return at once."""
    libs = libs_dir if libs_dir is not None else kafka_libs_dir()
    marker = libs / ".complete"
    if marker.exists():
        return libs
    with _flock(libs.parent / ".fetch.lock"):
        if marker.exists():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            msg = (
                "Maven (mvn) is needed once to fetch the Kafka broker jars: "
                "apt-get install -y maven openjdk-17-jre-headless"
            )
            raise ServiceStartError(msg)
        work = libs.parent
        pom = work / "pom.xml"
        pom.write_bytes(
            importlib.resources.files("connectors").joinpath("kafka_pom.xml").read_bytes()
        )
        staging = work / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
        ]  # fmt: skip
        log.info("fetching Kafka %s jars into %s", KAFKA_VERSION, libs)
        try:
            res = subprocess.run(cmd, cwd=work, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            msg = f"mvn did not fetch the Kafka jars within {timeout_s:.0f} s"
            raise ServiceStartError(msg) from exc
        jars = list(staging.glob("*.jar")) if staging.is_dir() else []
        if res.returncode != 0 or not any(j.name.startswith("kafka_2.13-") for j in jars):
            output = (res.stdout + res.stderr).decode(errors="replace").splitlines()[-20:]
            msg = f"fetching the Kafka jars with mvn failed (exit {res.returncode}):\n" + "\n".join(
                output
            )
            raise ServiceStartError(msg)
        shutil.rmtree(libs, ignore_errors=True)
        os.replace(staging, libs)
        marker.write_text(KAFKA_VERSION)
    return libs


def _server_properties(run_dir: Path, port: int, controller_port: int) -> str:
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={run_dir / "data"}
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
auto.create.topics.enable=true
"""


def _log4j2_properties(log_file: Path) -> str:
    return f"""\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
"""


def _kafka_healthy(entry: dict[str, Any]) -> bool:
    return _alive(int(entry["pid"]), entry.get("marker")) and _port_open(int(entry["port"]))


def _describe_cluster(bootstrap: str) -> dict[str, Any]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=5000, client_id="driftline-services"
    )
    try:
        return admin.describe_cluster()
    finally:
        admin.close()


def _start_kafka(d: Path, timeout_s: float, again: dict[str, Any] | None = None) -> dict[str, Any]:
    """Start a broker: a new cluster, or with ``again`` (a stopped broker's entry) that one
    on its data, ports and cluster id, as an operator's restart does."""
    java = shutil.which("java")
    if java is None:
        msg = "Java 17+ is needed to run Kafka: apt-get install -y openjdk-17-jre-headless"
        raise ServiceStartError(msg)
    libs = ensure_kafka_jars()
    run_dir = d / "kafka"
    props = run_dir / "server.properties"
    log_file = run_dir / "server.log"
    log4j = run_dir / "log4j2.properties"
    out_file = run_dir / "kafka.out"
    classpath = f"{libs}/*"
    common = [java, f"-Dlog4j2.configurationFile={log4j}", "-Djava.awt.headless=true"]
    if again is not None:
        port, controller_port, cluster_id = again["port"], again["controller_port"], again["cluster_id"]
    else:
        # A stopped broker's data is not worth keeping: a fresh cluster id and empty log
        # dirs make every start the same.
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        port, controller_port = _free_port(), _free_port()
        while controller_port == port:
            controller_port = _free_port()
        props.write_text(_server_properties(run_dir, port, controller_port))
        log4j.write_text(_log4j2_properties(log_file))
        cluster_id = "-"
        while cluster_id.startswith("-"):  # the storage tool's argument parser takes "-x..." for an option
            cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        fmt = subprocess.run(
            [*common, "-Xmx512m", "-cp", classpath, "kafka.tools.StorageTool", "format",
             "-t", cluster_id, "-c", str(props)],
            cwd=run_dir, capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        if fmt.returncode != 0:
            output = (fmt.stdout + fmt.stderr).decode(errors="replace").splitlines()[-20:]
            msg = f"formatting Kafka storage failed (exit {fmt.returncode}):\n" + "\n".join(output)
            raise ServiceStartError(msg)
    proc = _spawn(
        [
            *common,
            "-Xms512m",
            "-Xmx1g",
            "-XX:+UseG1GC",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(props),
        ],
        run_dir,
        out_file,
    )
    bootstrap = f"127.0.0.1:{port}"
    entry = {
        "pid": proc.pid,
        "port": port,
        "controller_port": controller_port,
        "address": bootstrap,
        "run_dir": str(run_dir),
        "marker": str(props),
        "cluster_id": cluster_id,
    }
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        if proc.poll() is not None:
            why = f"Kafka exited with code {proc.returncode} during start"
            break
        if time.monotonic() > deadline:
            why = f"Kafka did not become ready on {bootstrap} within {timeout_s:.0f} s"
            if last_error is not None:
                why += f" (last error: {last_error!r})"
            break
        if _port_open(port):
            try:
                info = _describe_cluster(bootstrap)
            except Exception as exc:  # not ready yet: any client error means retry
                last_error = exc
            else:
                if info.get("brokers"):
                    log.info("Kafka %s ready on %s (pid %d)", KAFKA_VERSION, bootstrap, proc.pid)
                    return entry
        time.sleep(0.5)
    _stop_pid(proc.pid, None, 10)
    msg = f"{why}; logs in {run_dir}:\n{_tail([out_file, log_file])}"
    raise ServiceStartError(msg)


# -- Redis ------------------------------------------------------------------------------


def _redis_ping(port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _redis_healthy(entry: dict[str, Any]) -> bool:
    return _alive(int(entry["pid"]), entry.get("marker")) and _redis_ping(int(entry["port"]))


def _start_redis(d: Path, timeout_s: float) -> dict[str, Any]:
    server = shutil.which("redis-server")
    if server is None:
        msg = (
            "redis-server is not installed: apt-get install -y redis-server "
            "(or run `make test`, which installs it)"
        )
        raise ServiceStartError(msg)
    run_dir = d / "redis"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    port = _free_port()
    out_file = run_dir / "redis.log"
    proc = _spawn(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--daemonize", "no", "--dir", str(run_dir)],
        run_dir,
        out_file,
    )  # fmt: skip
    entry = {
        "pid": proc.pid,
        "port": port,
        "address": f"redis://127.0.0.1:{port}/0",
        "run_dir": str(run_dir),
        "marker": f":{port}",
    }
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            why = f"redis-server exited with code {proc.returncode} during start"
            break
        if _redis_ping(port):
            log.info("Redis ready on 127.0.0.1:%d (pid %d)", port, proc.pid)
            return entry
        time.sleep(0.05)
    else:
        why = f"redis-server did not answer PING on port {port} within {timeout_s:.0f} s"
    _stop_pid(proc.pid, None, 5)
    msg = f"{why}; log {out_file}:\n{_tail([out_file])}"
    raise ServiceStartError(msg)


# -- public API -------------------------------------------------------------------------


def _up_one(name: str, state_dir: Path | str | None, timeout_s: float | None) -> str:
    d = _resolve(state_dir)
    with _flock(d / ".lock"):
        state = _read_state(d)
        entry = state.get(name)
        healthy = _kafka_healthy if name == "kafka" else _redis_healthy
        if entry is not None and healthy(entry):
            return str(entry["address"])
        if entry is not None:
            # Recorded but not answering: a half-dead process must not keep the old port.
            _stop_pid(int(entry["pid"]), entry.get("marker"), STOP_TIMEOUT_S)
        if name == "kafka":
            entry = _start_kafka(d, KAFKA_START_TIMEOUT_S if timeout_s is None else timeout_s)
        else:
            entry = _start_redis(d, REDIS_START_TIMEOUT_S if timeout_s is None else timeout_s)
        state[name] = entry
        _write_state(d, state)
        return str(entry["address"])


def up_kafka(state_dir: Path | str | None = None, *, timeout_s: float | None = None) -> str:
    """Ensure the local broker runs; return its bootstrap address ``127.0.0.1:<port>``."""
    return _up_one("kafka", state_dir, timeout_s)


def up_redis(state_dir: Path | str | None = None, *, timeout_s: float | None = None) -> str:
    """Ensure the local Redis runs; return its URL ``redis://127.0.0.1:<port>/0``."""
    return _up_one("redis", state_dir, timeout_s)


def restart_kafka(state_dir: Path | str | None = None, *, kill: bool = False, down_s: float = 0.0, timeout_s: float | None = None) -> str:
    """Stop the recorded broker (SIGTERM, or SIGKILL with ``kill``), stay down ``down_s``
    seconds, then start it again on the same data and ports; return its address."""
    d = _resolve(state_dir)
    with _flock(d / ".lock"):
        state = _read_state(d)
        entry = state.get("kafka")
        if entry is None:
            msg = f"no broker recorded in {d} to restart"
            raise ServiceStartError(msg)
        pid = int(entry["pid"])
        if kill and _alive(pid, entry.get("marker")):
            os.kill(pid, signal.SIGKILL)
        _stop_pid(pid, entry.get("marker"), STOP_TIMEOUT_S)
        time.sleep(down_s)
        entry = _start_kafka(d, KAFKA_START_TIMEOUT_S if timeout_s is None else timeout_s, again=entry)
        state["kafka"] = entry
        _write_state(d, state)
        return str(entry["address"])


def up(state_dir: Path | str | None = None) -> dict[str, str]:
    """Ensure both services run; return the environment that points clients at them.

    Idempotent: services recorded as running and answering are reused as they are.
    """
    redis_url = up_redis(state_dir)
    bootstrap = up_kafka(state_dir)
    return {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "REDIS_URL": redis_url}


def down(state_dir: Path | str | None = None, *, timeout_s: float = STOP_TIMEOUT_S) -> list[str]:
    """Stop the recorded services by PID; return the names of those that were running."""
    d = _resolve(state_dir)
    stopped: list[str] = []
    with _flock(d / ".lock"):
        state = _read_state(d)
        for name in _SERVICES:
            entry = state.pop(name, None)
            if entry is not None and _stop_pid(int(entry["pid"]), entry.get("marker"), timeout_s):
                stopped.append(name)
        _write_state(d, state)
    return stopped


def status(state_dir: Path | str | None = None) -> dict[str, dict[str, Any]]:
    """Per service: ``running`` (bool), ``pid`` and ``address`` (None when never started)."""
    d = _resolve(state_dir)
    state = _read_state(d)
    out: dict[str, dict[str, Any]] = {}
    for name in _SERVICES:
        entry = state.get(name)
        if entry is None:
            out[name] = {"running": False, "pid": None, "address": None}
            continue
        healthy = _kafka_healthy if name == "kafka" else _redis_healthy
        out[name] = {
            "running": healthy(entry),
            "pid": int(entry["pid"]),
            "address": entry["address"],
            "run_dir": entry.get("run_dir"),
        }
    return out


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m connectors.services")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        if args.command == "up":
            for key, value in up(args.state_dir).items():
                sys.stdout.write(f"{key}={value}\n")
        elif args.command == "down":
            sys.stdout.write(f"stopped: {', '.join(down(args.state_dir)) or 'nothing'}\n")
        else:
            sys.stdout.write(json.dumps(status(args.state_dir), indent=2) + "\n")
    except ServiceStartError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
