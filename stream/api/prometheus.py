"""Prometheus metrics of one app: a latency histogram the predict route feeds, and gauges
read from the board, the alert history and the process's progress at each scrape.

Each app has its own registry (tests build many apps in one process). Progress comes
from ``State.status()``; the keys it may hold: ``pipeline``, ``events``,
``dead_letters_by_kind`` ({kind: n}), ``checkpoint_age_s``; consumer lag comes from the
``lag`` callable (``{pipeline: records behind}``), which may be slow, so it is asked
only at a scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

#: predictions take well under a millisecond to a few; batches longer
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServingMetrics:
    def __init__(self, state: Any, lag: Callable[[], dict[str, int]] | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        self.predict_seconds = Histogram(
            "driftline_predict_seconds", "Time to answer a predict request, in the handler.",
            ["pipeline"], buckets=_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.predict_rows = Histogram(
            "driftline_predict_rows", "Rows per predict request.", ["pipeline"],
            buckets=(1, 2, 8, 32, 128, 512, 2048, 10_000), registry=self.registry,
        )  # fmt: skip
        self._children: dict[str, tuple[Any, Any]] = {}
        self.registry.register(_StateCollector(state, lag))

    def observe_predict(self, pipeline: str, rows: int, seconds: float) -> None:
        pair = self._children.get(pipeline)
        if pair is None:
            pair = self._children[pipeline] = (self.predict_seconds.labels(pipeline), self.predict_rows.labels(pipeline))
        pair[0].observe(seconds)
        pair[1].observe(rows)


class _StateCollector(Collector):
    def __init__(self, state: Any, lag: Callable[[], dict[str, int]] | None):
        self._state = state
        self._lag = lag

    def describe(self) -> list[Any]:
        return []  # collected fresh at each scrape; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        state = self._state
        now = time.time()
        version = GaugeMetricFamily("driftline_model_version", "Version of the served model.", labels=["pipeline"])
        seen = GaugeMetricFamily("driftline_model_events_seen", "Events the served model learned from.", labels=["pipeline"])
        age = GaugeMetricFamily("driftline_model_age_seconds", "Seconds since the served copy was taken.", labels=["pipeline"])
        for m in state.board.all():
            version.add_metric([m.name], m.version)
            seen.add_metric([m.name], m.events_seen)
            if m.published_at:
                age.add_metric([m.name], max(0.0, now - m.published_at))
        yield from (version, seen, age)
        churn = GaugeMetricFamily("driftline_model_churn", "Share of the probe predictions the served version flipped against the one before it.", labels=["pipeline"])
        for m in state.board.all():
            if m.metrics.get("churn") is not None:
                churn.add_metric([m.name], m.metrics["churn"])
        yield churn

        progress = state.progress()
        pipeline = str(progress.get("pipeline", ""))
        if "events" in progress:
            c = CounterMetricFamily("driftline_events", "Valid events processed by this worker.", labels=["pipeline"])
            c.add_metric([pipeline], progress["events"])
            yield c
        kinds = progress.get("dead_letters_by_kind")
        if kinds is not None:
            c = CounterMetricFamily("driftline_dead_letters", "Events sent to the dead-letter topic, by kind of reason.", labels=["pipeline", "reason"])
            for kind, n in sorted(kinds.items()):
                c.add_metric([pipeline, kind], n)
            yield c
        if progress.get("checkpoint_age_s") is not None:
            g = GaugeMetricFamily("driftline_checkpoint_age_seconds", "Seconds since the last snapshot was written.", labels=["pipeline"])
            g.add_metric([pipeline], progress["checkpoint_age_s"])
            yield g

        c = CounterMetricFamily("driftline_alerts", "Alert revisions, by kind, state and severity.", labels=["pipeline", "kind", "state", "severity"])
        for key, n in sorted(dict(state.alerts.counts).items()):
            c.add_metric(list(key), n)
        yield c

        if self._lag is not None:
            try:
                lags = self._lag()
            except Exception as exc:  # a scrape must not fail because the broker is slow
                logger.warning("consumer lag unavailable: %s", exc)
                lags = {}
            g = GaugeMetricFamily("driftline_consumer_lag", "Records on the input topic past the position of the model.", labels=["pipeline"])
            for p, n in sorted(lags.items()):
                g.add_metric([p], n)
            yield g
