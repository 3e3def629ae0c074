"""What both Kafka clients share: option translation and the bounds on a stalled source."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from connectors.exceptions import ConnectorError

log = logging.getLogger("connectors.kafka")

#: a poll that has not heard from the broker for this long is logged
DEFAULT_STALL_WARN_S = 30.0
#: ... and past this long ends the source (ConnectorError, or the watchdog's exit)
DEFAULT_GIVE_UP_S = 300.0
#: the exit status of a process whose poll the watchdog found stuck (EX_SOFTWARE)
STUCK_EXIT_STATUS = 70

# -- options ------------------------------------------------------------------------------

_CONSUMER, _PRODUCER, _ADMIN = "consumer", "producer", "admin"
_ALL = frozenset({_CONSUMER, _PRODUCER, _ADMIN})


def _int(value: Any) -> int:
    return int(value)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        msg = f"not a boolean: {value!r}"
        raise ValueError(msg)
    return bool(value)


def _upper(value: Any) -> str:
    return str(value).upper()


def _compression(value: Any) -> str | None:
    text = str(value).lower()
    return None if text == "none" else text


def _acks(value: Any) -> int | str:
    text = str(value).lower()
    return "all" if text in ("all", "-1") else int(text)


def _hostname_check(value: Any) -> bool:
    return str(value).lower() == "https"


# librdkafka name -> (kafka-python name, converter, the kafka-python classes that take it)
_KAFKA_PYTHON_OPTIONS: dict[str, tuple[str, Callable[[Any], Any], frozenset[str]]] = {
    "client.id": ("client_id", str, _ALL),
    "security.protocol": ("security_protocol", _upper, _ALL),
    "sasl.mechanism": ("sasl_mechanism", _upper, _ALL),
    "sasl.mechanisms": ("sasl_mechanism", _upper, _ALL),
    "sasl.username": ("sasl_plain_username", str, _ALL),
    "sasl.password": ("sasl_plain_password", str, _ALL),
    "sasl.kerberos.service.name": ("sasl_kerberos_service_name", str, _ALL),
    "ssl.ca.location": ("ssl_cafile", str, _ALL),
    "ssl.certificate.location": ("ssl_certfile", str, _ALL),
    "ssl.key.location": ("ssl_keyfile", str, _ALL),
    "ssl.key.password": ("ssl_password", str, _ALL),
    "ssl.crl.location": ("ssl_crlfile", str, _ALL),
    "ssl.endpoint.identification.algorithm": ("ssl_check_hostname", _hostname_check, _ALL),
    "request.timeout.ms": ("request_timeout_ms", _int, _ALL),
    "retry.backoff.ms": ("retry_backoff_ms", _int, _ALL),
    "reconnect.backoff.ms": ("reconnect_backoff_ms", _int, _ALL),
    "reconnect.backoff.max.ms": ("reconnect_backoff_max_ms", _int, _ALL),
    "connections.max.idle.ms": ("connections_max_idle_ms", _int, _ALL),
    "metadata.max.age.ms": ("metadata_max_age_ms", _int, _ALL),
    "session.timeout.ms": ("session_timeout_ms", _int, frozenset({_CONSUMER})),
    "heartbeat.interval.ms": ("heartbeat_interval_ms", _int, frozenset({_CONSUMER})),
    "max.poll.interval.ms": ("max_poll_interval_ms", _int, frozenset({_CONSUMER})),
    "auto.offset.reset": ("auto_offset_reset", str, frozenset({_CONSUMER})),
    "isolation.level": ("isolation_level", str, frozenset({_CONSUMER})),
    "fetch.min.bytes": ("fetch_min_bytes", _int, frozenset({_CONSUMER})),
    "fetch.max.bytes": ("fetch_max_bytes", _int, frozenset({_CONSUMER})),
    "fetch.wait.max.ms": ("fetch_max_wait_ms", _int, frozenset({_CONSUMER})),
    "max.partition.fetch.bytes": ("max_partition_fetch_bytes", _int, frozenset({_CONSUMER})),
    "client.rack": ("client_rack", str, frozenset({_CONSUMER})),
    "acks": ("acks", _acks, frozenset({_PRODUCER})),
    "linger.ms": ("linger_ms", _int, frozenset({_PRODUCER})),
    "batch.size": ("batch_size", _int, frozenset({_PRODUCER})),
    "compression.type": ("compression_type", _compression, frozenset({_PRODUCER})),
    "compression.codec": ("compression_type", _compression, frozenset({_PRODUCER})),
    "message.max.bytes": ("max_request_size", _int, frozenset({_PRODUCER})),
    "enable.idempotence": ("enable_idempotence", _bool, frozenset({_PRODUCER})),
    "transaction.timeout.ms": ("transaction_timeout_ms", _int, frozenset({_PRODUCER})),
    "delivery.timeout.ms": ("delivery_timeout_ms", _int, frozenset({_PRODUCER})),
    "retries": ("retries", _int, frozenset({_PRODUCER})),
    "max.in.flight.requests.per.connection": (
        "max_in_flight_requests_per_connection",
        _int,
        frozenset({_PRODUCER}),
    ),
}


def kafka_python_config(options: Mapping[str, Any] | None, role: str) -> dict[str, Any]:
    """librdkafka-named ``options`` as kafka-python keyword arguments for ``role``.

    An option that only applies to another role (``isolation.level`` for a producer) is
    dropped, as librdkafka ignores it too; one kafka-python has no equivalent for raises
    :class:`ConnectorError` naming it, rather than being silently lost.
    """
    out: dict[str, Any] = {}
    for name, value in (options or {}).items():
        entry = _KAFKA_PYTHON_OPTIONS.get(name)
        if entry is None:
            msg = f"Kafka option {name!r} has no kafka-python equivalent; use the confluent client or drop it"
            raise ConnectorError(msg)
        target, convert, roles = entry
        if role not in roles:
            continue
        try:
            out[target] = convert(value)
        except (TypeError, ValueError) as exc:
            msg = f"Kafka option {name!r}: bad value {value!r}: {exc}"
            raise ConnectorError(msg) from exc
    return out


def confluent_config(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` for librdkafka: verbatim, but booleans spelled as librdkafka spells them."""
    out: dict[str, Any] = {}
    for name, value in (options or {}).items():
        if not isinstance(name, str) or not name:
            msg = f"Kafka option names are strings, got {name!r}"
            raise ConnectorError(msg)
        out[name] = ("true" if value else "false") if isinstance(value, bool) else value
    return out


def bootstrap_list(bootstrap_servers: str | list[str]) -> str:
    return bootstrap_servers if isinstance(bootstrap_servers, str) else ",".join(bootstrap_servers)


def any_bootstrap_reachable(bootstrap_servers: str | list[str], timeout_s: float) -> bool:
    """Whether a TCP connection to any bootstrap address opens within ``timeout_s``."""
    for address in bootstrap_list(bootstrap_servers).split(","):
        host, _, port = address.strip().rpartition(":")
        host = host.strip("[]")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


def check_bounds(stall_warn_s: float, give_up_s: float) -> None:
    if not 0 < stall_warn_s <= give_up_s:
        msg = f"need 0 < stall_warn_s <= give_up_s, got {stall_warn_s} and {give_up_s}"
        raise ValueError(msg)


# -- bounds -------------------------------------------------------------------------------


class BrokerContact:
    """When the source last heard from the broker, and what to do when that was long ago.

    An idle poll is normal; an idle poll while the broker does not answer a metadata probe
    is not. Probes back off exponentially while they fail; past ``stall_warn_s`` without
    contact it warns, past ``give_up_s`` :meth:`failed` raises ConnectorError so that the
    process ends and its supervisor restarts it.
    """

    def __init__(self, what: str, stall_warn_s: float, give_up_s: float) -> None:
        self.what = what
        self.stall_warn_s = stall_warn_s
        self.give_up_s = give_up_s
        self.last = time.monotonic()
        self._failures = 0
        self._next_probe = 0.0
        self._warned_at: float | None = None
        # an idle but healthy source probes this often; small bounds probe sooner
        self._probe_after = min(5.0, stall_warn_s)
        #: the longest one probe may block
        self.max_probe_s = min(5.0, stall_warn_s)

    def ok(self) -> None:
        now = time.monotonic()
        if self._warned_at is not None:
            log.warning("%s: broker answers again after %.1f s", self.what, now - self.last)
        self.last = now
        self._failures = 0
        self._next_probe = 0.0
        self._warned_at = None

    def probe_due(self) -> bool:
        now = time.monotonic()
        return now - self.last >= self._probe_after and now >= self._next_probe

    def probe_timeout_s(self) -> float:
        """A probe may take this long without pushing the give-up past its bound."""
        left = self.give_up_s - (time.monotonic() - self.last)
        return min(self.max_probe_s, max(0.1, left))

    def failed(self, exc: BaseException | str) -> None:
        now = time.monotonic()
        self._failures += 1
        backoff = min(0.25 * 2**self._failures, 30.0, self.stall_warn_s)
        self._next_probe = now + backoff
        silent = now - self.last
        if silent >= self.give_up_s:
            msg = f"{self.what}: no answer from the broker for {silent:.1f} s (bound {self.give_up_s:g} s): {exc}"
            raise ConnectorError(msg)
        if silent >= self.stall_warn_s and (
            self._warned_at is None or now - self._warned_at >= self.stall_warn_s
        ):
            self._warned_at = now
            log.warning(
                "%s: no answer from the broker for %.1f s, retrying (giving up at %g s): %s",
                self.what,
                silent,
                self.give_up_s,
                exc,
            )


class PollWatchdog:
    """Ends the process when one poll stays inside the client library for too long.

    A stuck client (kafka-python has been seen to loop for many minutes inside its
    coordinator and fetcher code) cannot be interrupted from Python: the call holds no
    cancellation point and a thread cannot be killed. The only way to get a healthy
    consumer back is a new process, so past the bound this logs CRITICAL with the stuck
    call's stack and calls ``os._exit`` (no cleanup can be trusted to return either); a
    supervisor restarts the worker, which resumes from its snapshot.
    """

    def __init__(self, what: str, stall_warn_s: float, give_up_s: float) -> None:
        self.what = what
        self.stall_warn_s = stall_warn_s
        self.give_up_s = give_up_s
        self._lock = threading.Lock()
        self._started: float | None = None
        self._allowed_s = 0.0
        self._thread_id: int | None = None
        self._warned = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def enter(self, allowed_s: float) -> None:
        """A call begins that may legitimately take ``allowed_s`` (its timeouts)."""
        with self._lock:
            self._started = time.monotonic()
            self._allowed_s = allowed_s
            self._thread_id = threading.get_ident()
            self._warned = False
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name=f"poll-watchdog {self.what}", daemon=True
                )
                self._thread.start()

    def leave(self) -> None:
        with self._lock:
            self._started = None

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def _stack(self, thread_id: int | None) -> str:
        frame = sys._current_frames().get(thread_id) if thread_id is not None else None
        return "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)"

    def _watch(self) -> None:
        tick = min(1.0, self.stall_warn_s / 4)
        while not self._stop.wait(tick):
            with self._lock:
                if self._started is None:
                    continue
                stuck = time.monotonic() - self._started - self._allowed_s
                thread_id = self._thread_id
                warn = stuck >= self.stall_warn_s and not self._warned
                if warn:
                    self._warned = True
            if stuck >= self.give_up_s:
                log.critical(
                    "%s: poll stuck inside the Kafka client for %.1f s (bound %g s); "
                    "exiting with status %d so that the worker is restarted. Stack:\n%s",
                    self.what,
                    stuck,
                    self.give_up_s,
                    STUCK_EXIT_STATUS,
                    self._stack(thread_id),
                )
                for handler in logging.getLogger().handlers:
                    handler.flush()
                sys.stderr.flush()
                os._exit(STUCK_EXIT_STATUS)
            if warn:
                log.warning(
                    "%s: poll stuck inside the Kafka client for %.1f s; exiting at %g s. Stack:\n%s",
                    self.what,
                    stuck,
                    self.give_up_s,
                    self._stack(thread_id),
                )
