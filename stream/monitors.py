"""Drift monitors: River's detectors on the per-event prequential loss."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from river import drift
from river.drift import binary

from stream.exceptions import ConfigError

#: detectors that may be named in configuration
DETECTORS: dict[str, type] = {
    "adwin": drift.ADWIN,
    "page_hinkley": drift.PageHinkley,
    "kswin": drift.KSWIN,
    "ddm": binary.DDM,
    "eddm": binary.EDDM,
    "hddm_a": binary.HDDMA,
    "hddm_w": binary.HDDMW,
}


@dataclass(frozen=True)
class Drift:
    """One detection: where it fired and the loss before and after it."""

    detector: str
    event_index: int
    loss_before: float
    loss_after: float
    window: int


def make_detector(name: str, params: dict[str, Any], seed: int = 0) -> Any:
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ConfigError(f"detector: unknown {name!r}; choose one of {sorted(DETECTORS)}") from None
    params = dict(params)
    if name == "kswin":
        params.setdefault("seed", seed)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"detector_params for {name}: {exc}") from exc


class LossMonitor:
    """Feeds the per-event 0/1 loss to a detector and reports each drift with context.

    ``loss_before`` is the mean loss over the ``window`` events that preceded the last
    drift (or the stream start) up to the detection, ``loss_after`` the mean over the most
    recent ``window // 10`` events: the jump an operator wants to see in the alert.
    """

    def __init__(self, name: str = "adwin", params: dict[str, Any] | None = None, seed: int = 0, window: int = 1000):
        self.name = name
        self.params = dict(params or {})
        self.window = window
        self._detector = make_detector(name, self.params, seed)
        self._recent: deque[float] = deque(maxlen=window)
        self._since_drift_sum = 0.0
        self._since_drift_n = 0

    def update(self, loss: float, event_index: int) -> Drift | None:
        self._recent.append(loss)
        self._since_drift_sum += loss
        self._since_drift_n += 1
        self._detector.update(loss)
        if not self._detector.drift_detected:
            return None
        tail = list(self._recent)[-max(1, self.window // 10) :]
        found = Drift(
            detector=self.name,
            event_index=event_index,
            loss_before=self._since_drift_sum / self._since_drift_n,
            loss_after=sum(tail) / len(tail),
            window=self.window,
        )
        self._since_drift_sum = 0.0
        self._since_drift_n = 0
        return found
