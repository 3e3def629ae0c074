"""The alerts' lifecycle as pure logic: merge within the cool-down, rules, resolution, stall,
churn, the plain-data state; and delivery to a real HTTP receiver with retries."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from stream.alerts import (
    AlertLog,
    AlertManager,
    AlertRelay,
    AlertRules,
    Signal,
    Where,
    latest_alerts,
    severity_for,
)
from stream.exceptions import ConfigError


def _fire(m: AlertManager, at: int, before=0.1, after=0.3, kind="drift"):
    return m.on_signal(Signal("adwin", at, before, after, 1000, kind=kind), Where(f"e{at}", "events", 0, at, at // 100, ts=float(at)))


def test_severity_grows_with_the_rise_of_the_error():
    assert [severity_for(c) for c in (0.0, 0.049, 0.05, 0.1, 0.19, 0.2, 0.9)] == [
        "low", "low", "medium", "high", "high", "critical", "critical"
    ]


def test_firings_within_the_cool_down_merge_into_one_alert_with_a_count():
    m = AlertManager("p", AlertRules(cooldown_events=500))
    [a] = _fire(m, 1000, after=0.2)
    [b] = _fire(m, 1300, after=0.35)
    [c] = _fire(m, 1790, after=0.25)
    assert [(x.id, x.revision, x.count, x.last_event_index, x.severity) for x in (a, b, c)] == [
        (0, 0, 1, 1000, "high"), (0, 1, 2, 1300, "critical"), (0, 2, 3, 1790, "critical")
    ]
    assert (c.event_index, c.event_id, c.offset, c.loss_after) == (1000, "e1000", 1000, 0.25)
    [d] = _fire(m, 2291)  # 501 events after the last firing: a new alert
    assert (d.id, d.count, d.revision) == (1, 1, 0)


def test_n_drifts_in_t_and_the_minimum_severity_gate_new_alerts():
    m = AlertManager("p", AlertRules(min_drifts=3, drift_window_events=1000, cooldown_events=10))
    assert _fire(m, 100) == [] and _fire(m, 600) == []
    assert _fire(m, 1500) == []  # the firing at 100 fell out of the window
    [a] = _fire(m, 1550)
    assert (a.id, a.event_index) == (0, 1550)
    m = AlertManager("p", AlertRules(min_severity="high"))
    assert _fire(m, 100, 0.1, 0.15) == []
    assert [a.severity for a in _fire(m, 5000, 0.1, 0.25)] == ["high"]


def test_a_warning_escalates_to_drift_then_resolves_when_the_error_is_back():
    m = AlertManager("p", AlertRules(resolve_after_events=1000, resolve_margin=0.02))
    [w] = _fire(m, 100, 0.1, 0.14, kind="warning")
    assert (w.state, w.count) == ("warning", 0)
    assert _fire(m, 150, kind="warning") == []  # one open alert at a time
    [d] = _fire(m, 200, 0.1, 0.3)
    assert (d.id, d.state, d.count, d.event_index, d.revision) == (0, "drift", 1, 200, 1)
    assert m.on_progress(1100, 0.11) == []  # too soon: the rolling window still holds the old concept
    assert m.on_progress(1300, 0.125) == []  # still above 0.1 + 0.02
    [r] = m.on_progress(1400, 0.115)
    assert (r.state, r.resolved_index, r.error_now, r.revision, m.open) == ("resolved", 1400, 0.115, 2, False)


def test_a_stall_fires_after_the_quiet_period_and_resolves_on_the_next_event():
    now = [0.0]
    m = AlertManager("p", AlertRules(stall_after_s=30), clock=lambda: now[0], wall_clock=lambda: 1e9)
    now[0] = 100.0
    assert m.on_idle(0, 0) == []  # no event yet: nothing has stalled
    now[0] = 0.0
    m.on_events()
    now[0] = 29.0
    assert m.on_idle(500, 4) == []
    now[0] = 31.0
    [s] = m.on_idle(500, 4)
    assert (s.kind, s.state, s.severity, s.model_version, s.message) == ("stall", "stall", "high", 4, "no event for 31 s")
    assert m.on_idle(500, 4) == []
    [r] = m.on_events()
    assert (r.id, r.state, r.revision) == (s.id, "resolved", 1)


def test_churn_above_the_threshold_is_an_alert():
    m = AlertManager("p", AlertRules(churn_above=0.1))
    assert m.on_churn(0.1, 3, 4, 900) == []
    [c] = m.on_churn(0.25, 4, 5, 1000)
    assert (c.kind, c.state, c.severity, c.loss_after, c.model_version) == ("churn", "churn", "critical", 0.25, 5)
    assert "flipped 25.0%" in c.message
    assert AlertManager("p").on_churn(0.9, 1, 2, 3) == []  # off by default


def test_state_is_plain_data_and_restores_the_same_lifecycle():
    a = AlertManager("p", AlertRules(cooldown_events=500))
    _fire(a, 1000)
    state = json.loads(json.dumps(a.state_dict()))
    b = AlertManager("p", AlertRules(cooldown_events=500))
    b.load_state_dict(state)
    assert _fire(a, 1200) == _fire(b, 1200)
    assert a.state_dict() == b.state_dict()


def test_rules_refuse_unknown_severities():
    with pytest.raises(ConfigError, match="severity"):
        AlertRules(min_severity="urgent")


def test_the_log_lists_the_latest_revision_of_each_alert_and_filters():
    log = AlertLog()
    m = AlertManager("p", AlertRules(cooldown_events=500))
    for a in [*_fire(m, 1000, 0.1, 0.12), *_fire(m, 1200, 0.1, 0.4), *_fire(m, 9000, 0.1, 0.16)]:
        log.append(a)
    assert log.total == 2 and log.seq == 3
    assert [(a.id, a.revision, a.count) for a in log.since()] == [(0, 1, 2), (1, 0, 1)]
    assert [a.id for a in log.since(severity="high")] == [0]
    assert [a.id for a in log.since(state="drift", since=9000.0)] == [1]
    assert log.since(pipeline="q") == []
    assert [(s, a.id) for s, a in log.revisions(1)] == [(2, 0), (3, 1)]
    assert latest_alerts([a for _, a in log.revisions()], after_id=0) == log.since(0)


def test_wait_wakes_when_a_revision_arrives():
    log = AlertLog()
    m = AlertManager("p")
    threading.Timer(0.05, lambda: log.append(_fire(m, 10)[0])).start()
    assert log.wait(0, timeout=10.0)
    assert not log.wait(log.seq, timeout=0.01)


class _Receiver(BaseHTTPRequestHandler):
    failures_left = 0
    got: ClassVar[list] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        cls = type(self)
        if cls.failures_left > 0:
            cls.failures_left -= 1
            self.send_response(503)
        else:
            cls.got.append(body)
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_webhook_gets_each_revision_after_retries_without_blocking_the_caller():
    _Receiver.failures_left, _Receiver.got = 2, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    relay = AlertRelay(webhook_url=f"http://127.0.0.1:{server.server_address[1]}/hook", retries=3, backoff_s=0.05)
    m = AlertManager("p", AlertRules(cooldown_events=500))
    started = time.perf_counter()
    for a in [*_fire(m, 1000), *_fire(m, 1100)]:
        relay(a)
    handed_over = time.perf_counter() - started
    relay.close(timeout=10)
    server.shutdown()
    assert [(b["id"], b["revision"], b["count"], b["state"]) for b in _Receiver.got] == [(0, 0, 1, "drift"), (0, 1, 2, "drift")]
    box = relay.outboxes[0]
    assert (box.delivered, box.failed, box.dropped) == (2, 0, 0)
    assert handed_over < 0.05 * 2, "the relay must not wait for the receiver"


def test_a_dead_webhook_is_given_up_after_the_retries():
    relay = AlertRelay(webhook_url="http://127.0.0.1:9/nothing-listens", retries=2, backoff_s=0.01)
    relay(_fire(AlertManager("p"), 10)[0])
    relay.close(timeout=10)
    assert (relay.outboxes[0].delivered, relay.outboxes[0].failed) == (0, 1)
