"""Drift alerts with a lifecycle, the in-process history people watch, and where alerts go.

An alert is opened by a drift signal and then revised: ``warning`` (the detector warns),
``drift`` (it fires; more firings within the cool-down merge into the same alert and raise
its ``count``), ``resolved`` (the rolling error came back to the level before the drift).
Two more kinds have the same shape: ``stall`` (no event arrived for a while, resolved when
one does) and ``churn`` (a published model version flipped more of the probe set's
predictions than allowed). Every revision is a whole record with a growing ``revision``;
readers keep the latest per ``id``.

:class:`AlertManager` decides, and holds its state as plain data for the snapshot. Only
event counts and the injected clocks enter it, so a replay of the stream revises the same
alerts the same way. :class:`AlertLog` is the in-process history (the HTTP routes and SSE
read it) and fans every revision out to listeners: :class:`AlertRelay` delivers them to a
capped Redis stream and a webhook from background threads, so a slow receiver never holds
up learning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from stream.exceptions import ConfigError

logger = logging.getLogger(__name__)

KINDS = ("drift", "stall", "churn")
STATES = ("warning", "drift", "stall", "churn", "resolved")
SEVERITIES = ("low", "medium", "high", "critical")
#: rise of the error rate (after - before) from which each severity above ``low`` starts
SEVERITY_STEPS = (0.05, 0.10, 0.20)


def severity_for(change: float) -> str:
    """The severity of a change of the error rate (or churn share) of ``change``."""
    level = sum(1 for step in SEVERITY_STEPS if change >= step)
    return SEVERITIES[level]


def severity_rank(name: str) -> int:
    try:
        return SEVERITIES.index(name)
    except ValueError:
        raise ConfigError(f"severity: choose one of {', '.join(SEVERITIES)}, got {name!r}") from None


@dataclass(frozen=True)
class Alert:
    id: int
    pipeline: str
    detector: str
    signal: str
    event_index: int
    event_id: str
    topic: str
    partition: int
    offset: int
    ts: float
    loss_before: float
    loss_after: float
    window: int
    model_version: int
    kind: str = "drift"
    state: str = "drift"
    severity: str = "low"
    #: detector firings merged into this alert (warnings not counted)
    count: int = 1
    #: 0 when opened, +1 at every change; the latest revision is the alert
    revision: int = 0
    #: event index of the latest firing, and of the resolution
    last_event_index: int = -1
    resolved_index: int | None = None
    updated_ts: float = 0.0
    #: the rolling error when the alert was last revised
    error_now: float | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class AlertRules:
    """One pipeline's alert rules; all counts are events, so replays decide alike."""

    #: a firing within this many events of the open alert's last firing merges into it
    cooldown_events: int = 2000
    #: "N drifts in T": open a drift alert only once ``min_drifts`` firings fell within
    #: the last ``drift_window_events`` events
    min_drifts: int = 1
    drift_window_events: int = 10_000
    #: drift alerts below this severity are not raised
    min_severity: str = "low"
    #: resolved once the rolling error is within this of the error before the drift...
    resolve_margin: float = 0.02
    #: ...measured over a window that holds only events after the last firing
    resolve_after_events: int = 1000
    #: seconds without an event before a stall alert (0: never)
    stall_after_s: float = 0.0
    #: share of flipped probe predictions above which a churn alert is raised (0: never)
    churn_above: float = 0.0

    def __post_init__(self) -> None:
        severity_rank(self.min_severity)
        if self.min_drifts < 1:
            raise ConfigError(f"alert_min_drifts: at least 1, got {self.min_drifts}")


@dataclass(frozen=True)
class Signal:
    """What a monitor reports: a firing (``kind="drift"``) or a warning."""

    detector: str
    event_index: int
    loss_before: float
    loss_after: float
    window: int
    kind: str = "drift"
    signal: str = "loss"
    #: set by monitors whose change is not an error rate (input drift); else from the rise
    severity: str | None = None


@dataclass(frozen=True)
class Where:
    """The event a signal fired on and the model version that predicted it."""

    event_id: str
    topic: str
    partition: int
    offset: int
    model_version: int
    ts: float | None = None


@dataclass
class AlertManager:
    """Opens, merges, escalates and resolves one pipeline's alerts; returns each revision."""

    pipeline: str
    rules: AlertRules = field(default_factory=AlertRules)
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    next_id: int = 0
    #: per signal ("loss", or a feature's name), the open drift alert as the alert's dict
    _open: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: per signal, event indices of recent firings, for "N drifts in T"
    _firings: dict[str, deque[int]] = field(default_factory=dict)
    _stall: dict[str, Any] | None = None
    _last_event_at: float | None = None

    # ------------------------------------------------------------------ drift

    @property
    def open(self) -> bool:
        return bool(self._open)

    def on_signal(self, sig: Signal, where: Where) -> list[Alert]:
        """A monitor's warning or firing; returns the revisions to publish (maybe none)."""
        if sig.kind == "warning":
            return self._on_warning(sig, where)
        firings = self._firings.setdefault(sig.signal, deque())
        firings.append(sig.event_index)
        while firings and firings[0] <= sig.event_index - self.rules.drift_window_events:
            firings.popleft()
        cur = self._open.get(sig.signal)
        severity = sig.severity or severity_for(sig.loss_after - sig.loss_before)
        if cur is not None and (
            cur["state"] == "warning" or sig.event_index - cur["last_event_index"] <= self.rules.cooldown_events
        ):
            escalate = cur["state"] == "warning"
            cur.update(
                state="drift",
                count=cur["count"] + 1,
                last_event_index=sig.event_index,
                loss_after=round(sig.loss_after, 6),
                severity=max(cur["severity"], severity, key=SEVERITIES.index),
                detector=sig.detector,
                window=sig.window,
            )
            if escalate:
                cur.update(event_index=sig.event_index, event_id=where.event_id, topic=where.topic,
                           partition=where.partition, offset=where.offset, model_version=where.model_version,
                           loss_before=round(sig.loss_before, 6))  # fmt: skip
            return [self._revise(cur, where.ts)]
        if len(firings) < self.rules.min_drifts:
            return []
        if severity_rank(severity) < severity_rank(self.rules.min_severity):
            return []
        opened = self._open[sig.signal] = self._new("drift", "drift", severity, sig, where)
        return [self._alert(opened)]

    def _on_warning(self, sig: Signal, where: Where) -> list[Alert]:
        if sig.signal in self._open:
            return []
        severity = sig.severity or severity_for(sig.loss_after - sig.loss_before)
        opened = self._open[sig.signal] = self._new("drift", "warning", severity, sig, where)
        opened["count"] = 0
        return [self._alert(opened)]

    def on_progress(self, event_index: int, rolling_error: float) -> list[Alert]:
        """After a chunk: resolve open alerts once their signal is back to normal.

        The loss is back when the rolling error is within the margin of the error before the
        drift; an input (a feature) has settled when its detector stayed quiet as long.
        """
        out = []
        for signal, cur in list(self._open.items()):
            if event_index - cur["last_event_index"] < self.rules.resolve_after_events:
                continue
            if signal != "loss" or cur["state"] == "warning" or rolling_error <= cur["loss_before"] + self.rules.resolve_margin:
                del self._open[signal]
                cur.update(state="resolved", resolved_index=event_index, error_now=round(rolling_error, 6))
                out.append(self._revise(cur, None))
        return out

    # ------------------------------------------------------------ stall, churn

    def on_events(self) -> list[Alert]:
        """Events arrived: note the time, and resolve a stall."""
        self._last_event_at = self.clock()
        stall, self._stall = self._stall, None
        if stall is None:
            return []
        stall.update(state="resolved")
        return [self._revise(stall, None)]

    def on_idle(self, event_index: int, model_version: int) -> list[Alert]:
        """A poll returned nothing: raise a stall alert once none came for ``stall_after_s``.

        Only a stream that flowed can stall: before this process saw its first event, the
        producers have not started (or the worker is replaying nothing), which is no alarm.
        """
        after = self.rules.stall_after_s
        now = self.clock()
        if after <= 0 or self._stall is not None or self._last_event_at is None or now - self._last_event_at < after:
            return []
        sig = Signal("stall", event_index, 0.0, 0.0, 0, kind="stall", signal="events")
        where = Where("", "", -1, -1, model_version)
        self._stall = self._new("stall", "stall", "high", sig, where)
        self._stall["count"] = 0
        self._stall["message"] = f"no event for {now - self._last_event_at:.0f} s"
        return [self._alert(self._stall)]

    def on_churn(self, churn: float, previous: int, version: int, event_index: int) -> list[Alert]:
        """A published version flipped ``churn`` of the probe set against ``previous``."""
        above = self.rules.churn_above
        if above <= 0 or churn <= above:
            return []
        sig = Signal("churn", event_index, 0.0, round(churn, 6), 0, kind="churn", signal="predictions")
        alert = self._new("churn", "churn", severity_for(churn), sig, Where("", "", -1, -1, version))
        alert["message"] = f"version {version} flipped {churn:.1%} of the probe predictions of version {previous}"
        return [self._alert(alert)]

    # ------------------------------------------------------------------ state

    def _new(self, kind: str, state: str, severity: str, sig: Signal, where: Where) -> dict[str, Any]:
        ts = where.ts if where.ts is not None else self.wall_clock()
        alert = Alert(
            id=self.next_id, pipeline=self.pipeline, detector=sig.detector, signal=sig.signal,
            event_index=sig.event_index, event_id=where.event_id, topic=where.topic,
            partition=where.partition, offset=where.offset, ts=ts,
            loss_before=round(sig.loss_before, 6), loss_after=round(sig.loss_after, 6), window=sig.window,
            model_version=where.model_version, kind=kind, state=state, severity=severity,
            last_event_index=sig.event_index, updated_ts=ts,
        ).to_dict()  # fmt: skip
        self.next_id += 1
        return alert

    def _revise(self, data: dict[str, Any], ts: float | None) -> Alert:
        data["revision"] += 1
        data["updated_ts"] = ts if ts is not None else self.wall_clock()
        return self._alert(data)

    @staticmethod
    def _alert(data: dict[str, Any]) -> Alert:
        return Alert(**data)

    def state_dict(self) -> dict[str, Any]:
        # the stall timer is not kept: a monotonic time means nothing to another process
        return {
            "next_id": self.next_id,
            "open": {k: dict(v) for k, v in self._open.items()},
            "firings": {k: list(v) for k, v in self._firings.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next_id = int(state["next_id"])
        opened, firings = state["open"], state["firings"]
        if opened is None or "id" in opened:  # the first format: the loss's alert alone
            opened = {} if opened is None else {"loss": opened}
            firings = {"loss": firings}
        self._open = {k: dict(v) for k, v in opened.items()}
        self._firings = {k: deque(v) for k, v in firings.items()}


# ---------------------------------------------------------------- the history


class AlertLog:
    """Thread-safe bounded history of alert revisions; readers poll by id or by sequence.

    ``since`` gives the latest revision of each alert (what ``GET /v1/alerts`` lists);
    ``revisions`` gives every revision after a sequence number (what SSE streams), and
    ``wait`` blocks until one arrives. Listeners see each revision as it is appended.
    """

    def __init__(self, maxlen: int = 10_000):
        self._items: deque[tuple[int, Alert]] = deque(maxlen=maxlen)
        self._cond = threading.Condition()
        self._listeners: list[Callable[[Alert], None]] = []
        self.total = 0
        self.seq = 0
        #: revisions by (pipeline, kind, state, severity), for Prometheus; never trimmed
        self.counts: dict[tuple[str, str, str, str], int] = {}

    def subscribe(self, listener: Callable[[Alert], None]) -> None:
        self._listeners.append(listener)

    def append(self, alert: Alert) -> None:
        with self._cond:
            self.seq += 1
            self._items.append((self.seq, alert))
            if alert.revision == 0:
                self.total += 1
            key = (alert.pipeline, alert.kind, alert.state, alert.severity)
            self.counts[key] = self.counts.get(key, 0) + 1
            self._cond.notify_all()
        for listener in self._listeners:
            try:
                listener(alert)
            except Exception:  # a listener's fault must not stop the pipeline
                logger.exception("alert listener %r failed", listener)

    def since(self, after_id: int = -1, limit: int = 1000, **filters: Any) -> list[Alert]:
        with self._cond:
            items = [a for _, a in self._items]
        return latest_alerts(items, after_id, limit, **filters)

    def revisions(self, after_seq: int = 0, limit: int = 1000) -> list[tuple[int, Alert]]:
        with self._cond:
            return [(s, a) for s, a in self._items if s > after_seq][:limit]

    def wait(self, after_seq: int, timeout: float) -> bool:
        """Block until a revision past ``after_seq`` is in the log, or ``timeout``; True if one is."""
        with self._cond:
            return self._cond.wait_for(lambda: self.seq > after_seq, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Let listeners that deliver in the background finish (within ``timeout`` each)."""
        for listener in self._listeners:
            close = getattr(listener, "close", None)
            if callable(close):
                close(timeout)

    def __len__(self) -> int:
        return self.total


def latest_alerts(
    revisions: Iterable[Alert],
    after_id: int = -1,
    limit: int = 1000,
    *,
    pipeline: str | None = None,
    detector: str | None = None,
    severity: str | None = None,
    state: str | None = None,
    kind: str | None = None,
    since: float | None = None,
) -> list[Alert]:
    """The latest revision of each alert, oldest alert first, filtered.

    ``severity`` is a minimum; ``since`` keeps alerts revised at or after that epoch time.
    """
    latest: dict[tuple[str, int], Alert] = {}
    for a in revisions:
        key = (a.pipeline, a.id)
        if key not in latest or a.revision >= latest[key].revision:
            latest[key] = a
    rank = severity_rank(severity) if severity is not None else 0
    out = [
        a
        for a in latest.values()
        if a.id > after_id
        and (pipeline is None or a.pipeline == pipeline)
        and (detector is None or a.detector == detector)
        and (state is None or a.state == state)
        and (kind is None or a.kind == kind)
        and (since is None or a.updated_ts >= since)
        and SEVERITIES.index(a.severity) >= rank
    ]
    out.sort(key=lambda a: (a.ts, a.pipeline, a.id))
    return out[:limit]


# ----------------------------------------------------------------- delivery


class _Outbox:
    """One background sender: a bounded queue, bounded retries with backoff, never blocking."""

    def __init__(self, name: str, send: Callable[[Alert], None], *, retries: int, backoff_s: float, maxsize: int = 10_000):
        self.name = name
        self._send = send
        self._retries = retries
        self._backoff = backoff_s
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize)
        self._stop = threading.Event()
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"alerts-{name}", daemon=True)
        self._thread.start()

    def put(self, alert: Alert) -> None:
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1
            logger.warning("alerts to %s: queue full, alert %d rev %d dropped", self.name, alert.id, alert.revision)

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                return
            delay = self._backoff
            for attempt in range(self._retries + 1):
                try:
                    self._send(alert)
                    self.delivered += 1
                    break
                except Exception as exc:
                    if attempt == self._retries or self._stop.is_set():
                        self.failed += 1
                        logger.warning("alerts to %s: gave up on alert %d after %d attempts: %s", self.name, alert.id, attempt + 1, exc)
                        break
                    logger.info("alerts to %s: attempt %d failed (%s), retry in %.1fs", self.name, attempt + 1, exc, delay)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 30.0)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued within ``timeout``, then stop."""
        # a sender stuck on a dead receiver with a full queue: stop it, what is queued is lost (logged)
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._stop.set()
        if self._thread.is_alive():
            logger.warning("alerts to %s: %d revision(s) not delivered at shutdown", self.name, self._queue.qsize())


def post_json(url: str, timeout_s: float = 5.0) -> Callable[[Alert], None]:
    """A sender that POSTs each alert as JSON; any non-2xx answer is a failure to retry."""

    def send(alert: Alert) -> None:
        req = urllib.request.Request(url, data=alert.to_json(), headers={"content-type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            if not 200 <= resp.status < 300:
                raise urllib.error.HTTPError(url, resp.status, "not 2xx", resp.headers, None)

    return send


class AlertRelay:
    """Subscribe it to an AlertLog: each revision goes to the Redis stream and the webhook."""

    def __init__(
        self,
        *,
        stream: Any = None,
        webhook_url: str | None = None,
        retries: int = 5,
        backoff_s: float = 0.5,
    ):
        self.outboxes: list[_Outbox] = []
        if stream is not None:
            self.outboxes.append(_Outbox("redis", stream.append, retries=retries, backoff_s=backoff_s))
        if webhook_url:
            self.outboxes.append(_Outbox("webhook", post_json(webhook_url), retries=retries, backoff_s=backoff_s))

    def __call__(self, alert: Alert) -> None:
        for box in self.outboxes:
            box.put(alert)

    def close(self, timeout: float = 5.0) -> None:
        for box in self.outboxes:
            box.close(timeout)


def rules_from(settings: Any) -> AlertRules:
    return AlertRules(
        cooldown_events=settings.alert_cooldown_events,
        min_drifts=settings.alert_min_drifts,
        drift_window_events=settings.alert_drift_window_events,
        min_severity=settings.alert_min_severity,
        resolve_margin=settings.alert_resolve_margin,
        resolve_after_events=settings.alert_resolve_after_events or settings.rolling_window,
        stall_after_s=settings.alert_stall_after_s,
        churn_above=settings.alert_churn_above,
    )


__all__ = [
    "SEVERITIES",
    "STATES",
    "Alert",
    "AlertLog",
    "AlertManager",
    "AlertRelay",
    "AlertRules",
    "Signal",
    "Where",
    "latest_alerts",
    "rules_from",
    "severity_for",
]
