"""What the terminal shows while a pipeline runs: a live status line and each drift alert."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from stream.alerts import Alert


class StatusLine:
    """Refreshes a one-line summary; alerts are printed above it as they happen.

    On a terminal the line redraws in place; elsewhere (a log file, a test's pipe) a
    plain line is written every ``plain_every_s`` so the output stays readable.
    """

    def __init__(self, snapshot: Callable[[], dict[str, Any]], console: Console | None = None, plain_every_s: float = 5.0):
        self._snapshot = snapshot
        self.console = console or Console(highlight=False)
        if not self.console.is_terminal:
            self.console.soft_wrap = True
        self._plain_every_s = plain_every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Live | None = None
        self._rate = _Rate()

    def render(self) -> Text:
        s = self._snapshot()
        rate = self._rate.update(s["events"])
        return Text.assemble(
            ("driftline ", "bold cyan"),
            f"{s['pipeline']} ",
            (f"{s['events']:>9,} events ", "bold"),
            f"{rate:>9,.0f} ev/s  ",
            "acc ", (f"{s['rolling_accuracy']:.3f}", "green"),
            f" (all {s['accuracy']:.3f})  kappa {s['kappa']:.3f}  ",
            ("alerts ", "yellow"), f"{s['alerts']}  ",
            f"dead-letters {s['dead_letters']}  snapshot v{s['snapshot']}",
        )

    def alert(self, alert: Alert) -> None:
        self.console.print(describe_alert(alert))

    def start(self) -> None:
        if self.console.is_terminal:
            self._live = Live(self.render(), console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        self._thread = threading.Thread(target=self._loop, name="status-line", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        period = 0.25 if self._live else self._plain_every_s
        last = None
        while not self._stop.wait(period):
            if self._live:
                self._live.update(self.render())
                continue
            events = self._snapshot()["events"]
            if events != last:  # an idle worker should not fill its log with identical lines
                self.console.print(self.render())
                last = events

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        if self._live:
            self._live.update(self.render())
            self._live.stop()


class _Rate:
    """Events per second over the last few seconds (or since the previous reading, if older)."""

    def __init__(self, horizon_s: float = 3.0) -> None:
        self._horizon_s = horizon_s
        self._points: list[tuple[float, int]] = []

    def update(self, count: int) -> float:
        now = time.monotonic()
        self._points.append((now, count))
        while len(self._points) > 2 and now - self._points[0][0] > self._horizon_s:
            self._points.pop(0)
        t0, c0 = self._points[0]
        return (count - c0) / (now - t0) if now > t0 else 0.0


_STYLE = {"warning": "yellow", "drift": "bold yellow", "stall": "bold red", "churn": "magenta", "resolved": "green"}


def describe_alert(alert: Alert) -> Text:
    """One line per alert revision, for the terminal."""
    head = f"{alert.state.upper():<8} #{alert.id} {alert.pipeline} {alert.severity}"
    if alert.kind == "drift":
        body = (
            f"{alert.detector} on {alert.signal} at event {alert.event_index:,} "
            f"(id {alert.event_id}, {alert.topic}[{alert.partition}]@{alert.offset}) "
            f"error {alert.loss_before:.3f} -> {alert.loss_after:.3f}"
        )
        if alert.count > 1:
            body += f", {alert.count} firings, last at {alert.last_event_index:,}"
        if alert.state == "resolved" and alert.resolved_index is not None:
            body += f"; resolved at event {alert.resolved_index:,} (error {alert.error_now:.3f})"
        body += f" · model v{alert.model_version}"
    else:
        body = f"{alert.kind}: {alert.message or alert.state}"
    return Text(f"{head}  {body}", style=_STYLE.get(alert.state, ""))
