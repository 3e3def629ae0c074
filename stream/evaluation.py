"""Prequential evaluation: every labelled event is scored before the model learns it."""

from __future__ import annotations

from collections.abc import Hashable

from river import metrics, utils


class Prequential:
    """Cumulative and rolling accuracy and Cohen's kappa."""

    def __init__(self, window: int = 1000):
        self.window = window
        self.accuracy = metrics.Accuracy()
        self.kappa = metrics.CohenKappa()
        self.rolling_accuracy = utils.Rolling(metrics.Accuracy, window_size=window)
        self.rolling_kappa = utils.Rolling(metrics.CohenKappa, window_size=window)
        self.n = 0

    def update(self, y_true: Hashable, y_pred: Hashable | None) -> None:
        self.n += 1
        for m in (self.accuracy, self.kappa, self.rolling_accuracy, self.rolling_kappa):
            m.update(y_true, y_pred)

    def summary(self) -> dict[str, float]:
        return {
            "labelled": float(self.n),
            "accuracy": float(self.accuracy.get()),
            "kappa": float(self.kappa.get()),
            "rolling_accuracy": float(self.rolling_accuracy.get()),
            "rolling_kappa": float(self.rolling_kappa.get()),
        }
