"""Prequential evaluation: every labelled event is scored before the model learns it.

Accuracy and Cohen's kappa, cumulative and over a rolling window, kept as confusion
counts so one update costs a few dictionary operations: this runs once per event on the
hot path, where River's metric objects cost ten times more. The values equal River's
``metrics.Accuracy`` / ``metrics.CohenKappa`` (and ``utils.Rolling`` of them); a test
checks it.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Hashable, Sequence
from typing import Any


class _Confusion:
    __slots__ = ("cols", "correct", "n", "rows")

    def __init__(self) -> None:
        self.n = 0
        self.correct = 0
        self.rows: Counter[Hashable] = Counter()  # true labels
        self.cols: Counter[Hashable] = Counter()  # predicted labels

    def add(self, y: Hashable, p: Hashable | None, w: int) -> None:
        self.n += w
        self.correct += w if y == p else 0
        self.rows[y] += w
        self.cols[p] += w

    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    def kappa(self) -> float:
        if not self.n:
            return 0.0
        po = self.correct / self.n
        pe = sum(c * self.cols.get(label, 0) for label, c in self.rows.items()) / (self.n * self.n)
        return (po - pe) / (1.0 - pe) if pe != 1.0 else 0.0


class Prequential:
    """Cumulative and rolling accuracy and Cohen's kappa."""

    def __init__(self, window: int = 1000):
        self.window = window
        self._all = _Confusion()
        self._recent = _Confusion()
        self._pairs: deque[tuple[Hashable, Hashable | None]] = deque()

    @property
    def n(self) -> int:
        return self._all.n

    def update(self, y_true: Hashable, y_pred: Hashable | None) -> None:
        hit = 1 if y_true == y_pred else 0
        a, r = self._all, self._recent
        a.n += 1
        a.correct += hit
        a.rows[y_true] += 1
        a.cols[y_pred] += 1
        r.n += 1
        r.correct += hit
        r.rows[y_true] += 1
        r.cols[y_pred] += 1
        pairs = self._pairs
        pairs.append((y_true, y_pred))
        if len(pairs) > self.window:
            r.add(*pairs.popleft(), -1)

    def update_many(self, y_true: Sequence[Hashable], y_pred: Sequence[Hashable | None]) -> None:
        """The same as ``update`` on each pair in order, in a few C-level passes."""
        hits = sum(1 for y, p in zip(y_true, y_pred, strict=True) if y == p)
        a, r = self._all, self._recent
        a.n += len(y_true)
        a.correct += hits
        a.rows.update(y_true)
        a.cols.update(y_pred)
        r.n += len(y_true)
        r.correct += hits
        r.rows.update(y_true)
        r.cols.update(y_pred)
        pairs = self._pairs
        pairs.extend(zip(y_true, y_pred, strict=True))
        # adding all before dropping the oldest gives the same counts (keys are never deleted)
        excess = len(pairs) - self.window
        if excess > 0:
            old = [pairs.popleft() for _ in range(excess)]
            r.n -= excess
            r.correct -= sum(1 for y, p in old if y == p)
            r.rows.subtract(Counter(y for y, _ in old))
            r.cols.subtract(Counter(p for _, p in old))

    def state_dict(self) -> dict[str, Any]:
        """Plain data: the confusion counts are rebuilt from the labelled pairs they count."""
        return {
            "window": self.window,
            "all": [self._all.n, self._all.correct, list(self._all.rows.items()), list(self._all.cols.items())],
            "pairs": [list(p) for p in self._pairs],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore; a window changed in configuration since keeps the newest pairs that fit."""
        n, correct, rows, cols = state["all"]
        self._all = _Confusion()
        self._all.n, self._all.correct = int(n), int(correct)
        self._all.rows.update(dict(rows))
        self._all.cols.update(dict(cols))
        pairs = [tuple(p) for p in state["pairs"]][-self.window :]
        self._recent = _Confusion()
        self._pairs = deque()
        for y, p in pairs:
            self._recent.add(y, p, 1)
            self._pairs.append((y, p))

    def summary(self) -> dict[str, float]:
        return {
            "labelled": float(self._all.n),
            "accuracy": self._all.accuracy(),
            "kappa": self._all.kappa(),
            "rolling_accuracy": self._recent.accuracy(),
            "rolling_kappa": self._recent.kappa(),
        }


def predictive_churn(before: list[Hashable], after: list[Hashable]) -> float:
    """Share of the predictions that differ between two versions on the same inputs."""
    if len(before) != len(after):
        raise ValueError(f"churn compares predictions of the same rows: {len(before)} vs {len(after)}")
    if not before:
        return 0.0
    return sum(1 for a, b in zip(before, after, strict=True) if a != b) / len(before)
