"""Drift monitors: River's detectors on the per-event prequential loss."""

from __future__ import annotations

import operator
import pickle
from collections import deque
from collections.abc import Sequence
from functools import reduce
from typing import Any

from river import drift
from river.drift import binary

from stream.alerts import Signal
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

#: detectors of a 0/1 error signal: classification only
BINARY_DETECTORS = frozenset({"ddm", "eddm", "hddm_a", "hddm_w"})


#: one detection (or, for detectors that have one, a warning): where, and the loss before and after
Drift = Signal


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

    ``loss_before`` is the detector's window estimate just before the detection where it
    keeps one (ADWIN), else the mean loss since the previous drift; ``loss_after`` is the
    mean over the last ``window // 10`` events, which a detection a few hundred events
    after a change covers with the new concept. Detectors also fire when the loss *falls* (the model
    recovered, or the stream got easier); with ``direction="increase"`` (the default)
    those are not reported, since nobody needs paging for a model getting better.

    Detectors with a warning zone (DDM, EDDM, HDDM) also report the first event of each
    warning spell, as a ``Signal`` of kind ``"warning"``.
    """

    def __init__(
        self,
        name: str = "adwin",
        params: dict[str, Any] | None = None,
        seed: int = 0,
        window: int = 1000,
        direction: str = "increase",
    ):
        if direction not in ("increase", "both"):
            raise ConfigError(f"drift_direction: choose 'increase' or 'both', got {direction!r}")
        self.name = name
        self.params = dict(params or {})
        self.window = window
        self.direction = direction
        self._detector = make_detector(name, self.params, seed)
        self._recent: deque[float] = deque(maxlen=max(1, window // 10))
        self._since_drift_sum = 0.0
        self._since_drift_n = 0
        self._warns = hasattr(self._detector, "warning_detected")
        self._warned = False

    def state_dict(self) -> dict[str, Any]:
        # River's detectors offer no state of their own but their pickle, which names only
        # River's classes; everything of ours is plain data.
        return {
            "name": self.name,
            "params": dict(self.params),
            "detector": pickle.dumps(self._detector, protocol=pickle.HIGHEST_PROTOCOL),
            "recent": list(self._recent),
            "since_drift": [self._since_drift_sum, self._since_drift_n],
            "warned": self._warned,
        }

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Restore; return False (and keep the fresh detector) when the detector's settings changed.

        Only ever called on a verified snapshot's payload.
        """
        if state["name"] != self.name or state["params"] != self.params:
            return False
        self._detector = pickle.loads(state["detector"])  # noqa: S301 - from a signed snapshot
        self._recent.extend(state["recent"])
        self._since_drift_sum, self._since_drift_n = state["since_drift"]
        self._warned = bool(state.get("warned", False))
        return True

    def update_many(self, losses: Sequence[float], event_indexes: Sequence[int]) -> list[tuple[int, Drift]]:
        """``update`` on each loss in order; return (position in ``losses``, drift) for each report."""
        if type(self._detector) is not drift.ADWIN:
            found = []
            for i, (loss, index) in enumerate(zip(losses, event_indexes, strict=True)):
                d = self.update(loss, index)
                if d is not None:
                    found.append((i, d))
            return found
        # ADWIN, the default: its estimation property costs more than the
        # update itself, so the window is read from its engine directly (same numbers;
        # a test holds this loop to ``update``'s)
        det = self._detector
        helper = det._helper
        update = helper.update
        recent = self._recent
        s, n = self._since_drift_sum, self._since_drift_n
        found = []
        # the window's sum and width, followed here: an update that finds no change only adds
        # its value (the same float additions as the engine's); one that finds one drops
        # buckets, and they are read again from the engine. The recent losses and the sum
        # since the last drift are taken a run of losses at a time, between drifts.
        total, width = helper.get_total(), helper.get_width()
        fired = det._drift_detected
        since = 0
        for i, loss in enumerate(losses):
            if fired:
                # a detector that fired is reset before its next update, as ``update`` does
                det._reset()
                helper = det._helper
                update = helper.update
                total, width = helper.get_total(), helper.get_width()
            fired = update(loss)
            if not fired:
                total += loss
                width += 1
                continue
            before = total / width if width else 0.0
            total, width = helper.get_total(), helper.get_width()
            recent.extend(losses[since : i + 1])
            since = i + 1
            after = sum(recent) / len(recent)
            s, n = 0.0, 0
            if self.direction != "increase" or after > before:
                found.append((i, Drift(self.name, event_indexes[i], float(before), after, self.window)))
        det._drift_detected = fired
        rest = losses[since:]
        recent.extend(rest)
        # one addition after another, as ``update`` adds them
        self._since_drift_sum, self._since_drift_n = reduce(operator.add, rest, s), n + len(rest)
        return found

    def update(self, loss: float, event_index: int) -> Drift | None:
        self._recent.append(loss)
        self._since_drift_sum += loss
        self._since_drift_n += 1
        before = getattr(self._detector, "estimation", None)
        self._detector.update(loss)
        if not self._detector.drift_detected:
            if self._warns:
                return self._warning(event_index)
            return None
        self._warned = False
        if before is None:
            before = self._since_drift_sum / self._since_drift_n
        after = sum(self._recent) / len(self._recent)
        self._since_drift_sum = 0.0
        self._since_drift_n = 0
        if self.direction == "increase" and after <= before:
            return None
        return Drift(self.name, event_index, float(before), after, self.window)

    def _warning(self, event_index: int) -> Drift | None:
        if not self._detector.warning_detected:
            self._warned = False
            return None
        if self._warned:
            return None
        self._warned = True
        before = self._since_drift_sum / self._since_drift_n
        after = sum(self._recent) / len(self._recent)
        if self.direction == "increase" and after <= before:
            return None
        return Drift(self.name, event_index, float(before), after, self.window, kind="warning")


#: shift of a feature's mean, in standard deviations before the change, from which each
#: severity above ``low`` starts
FEATURE_SEVERITY_STEPS = (0.5, 1.0, 2.0)


class FeatureMonitor:
    """ADWIN on one numeric feature's values: input drift, whatever the labels say.

    A detection is reported with ``signal`` the feature's name, ``loss_before`` and
    ``loss_after`` holding the feature's mean since the previous detection and over the last
    ``window // 10`` values, and a severity from the shift in standard deviations. Events
    without the feature, or with a non-numeric value for it, are skipped.
    """

    def __init__(self, feature: str, params: dict[str, Any] | None = None, window: int = 1000):
        self.feature = feature
        self.params = dict(params or {})
        self.window = window
        self._detector = make_detector("adwin", self.params)
        self._recent: deque[float] = deque(maxlen=max(1, window // 10))
        self._n, self._mean, self._m2 = 0, 0.0, 0.0

    def update(self, value: float, event_index: int) -> Drift | None:
        self._recent.append(value)
        self._n += 1
        delta = value - self._mean
        self._mean += delta / self._n
        self._m2 += delta * (value - self._mean)
        self._detector.update(value)
        if not self._detector.drift_detected:
            return None
        before = self._mean
        std = (self._m2 / (self._n - 1)) ** 0.5 if self._n > 1 else 0.0
        after = sum(self._recent) / len(self._recent)
        self._n, self._mean, self._m2 = 0, 0.0, 0.0
        shift = abs(after - before) / std if std > 0 else float("inf")
        severity = ("low", "medium", "high", "critical")[sum(1 for s in FEATURE_SEVERITY_STEPS if shift >= s)]
        return Drift("adwin", event_index, before, after, self.window, signal=self.feature, severity=severity)

    def state_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "params": dict(self.params),
            "detector": pickle.dumps(self._detector, protocol=pickle.HIGHEST_PROTOCOL),
            "recent": list(self._recent),
            "welford": [self._n, self._mean, self._m2],
        }

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        if state["feature"] != self.feature or state["params"] != self.params:
            return False
        self._detector = pickle.loads(state["detector"])  # noqa: S301 - from a signed snapshot
        self._recent.extend(state["recent"])
        self._n, self._mean, self._m2 = state["welford"]
        return True
