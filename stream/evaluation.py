"""Prequential evaluation: every labelled event is scored before the model learns it.

Two tasks: classification (``Prequential``) and regression (``Regression``: MAE, RMSE and
R²). Each metric's ``score(y, prediction)`` updates it and returns the per-event loss that
the drift monitor watches.

Accuracy and Cohen's kappa, cumulative and over a rolling window, kept as confusion
counts so one update costs a few dictionary operations: this runs once per event on the
hot path, where River's metric objects cost ten times more. The values equal River's
``metrics.Accuracy`` / ``metrics.CohenKappa`` (and ``utils.Rolling`` of them); a test
checks it.
"""

from __future__ import annotations

import math
import operator
from collections import Counter, deque
from collections.abc import Hashable, Sequence
from itertools import chain
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

    task = "classification"

    def __init__(self, window: int = 1000):
        self.window = window
        self._all = _Confusion()
        self._recent = _Confusion()
        #: the rolling window's (true labels, predictions), a scored chunk a pair of lists,
        #: oldest first: a chunk enters and leaves in a few C-level passes
        self._chunks: deque[tuple[list[Hashable], list[Hashable | None]]] = deque()
        self._in_window = 0
        self._window_counted = True

    @property
    def n(self) -> int:
        return self._all.n

    def update(self, y_true: Hashable, y_pred: Hashable | None) -> None:
        self._add_many([y_true], [y_pred], 1 if y_true == y_pred else 0)

    def update_many(self, y_true: Sequence[Hashable], y_pred: Sequence[Hashable | None]) -> None:
        """The same as ``update`` on each pair in order, in a few C-level passes."""
        self._add_many(y_true, y_pred, sum(1 for y, p in zip(y_true, y_pred, strict=True) if y == p))

    def _add_many(self, y_true: Sequence[Hashable], y_pred: Sequence[Hashable | None], hits: int) -> None:
        # the callers' strict zips have checked the lengths. A Counter counts a list's labels
        # in C, new ones in the order they first appear: the order one by one gives them
        a, r = self._all, self._recent
        a.n += len(y_true)
        a.correct += hits
        a.rows.update(y_true)
        a.cols.update(y_pred)
        r.n += len(y_true)
        r.correct += hits
        self._chunks.append((list(y_true), list(y_pred)))
        self._in_window += len(y_true)
        # the window's label counts serve only its kappa: they are counted when it is read
        self._window_counted = False
        excess = self._in_window - self.window
        while excess > 0:
            ys, ps = self._chunks[0]
            if len(ys) <= excess:
                self._chunks.popleft()
            else:
                self._chunks[0] = (ys[excess:], ps[excess:])
                ys, ps = ys[:excess], ps[:excess]
            r.n -= len(ys)
            r.correct -= sum(map(operator.eq, ys, ps))
            self._in_window -= len(ys)
            excess -= len(ys)

    def _window(self) -> _Confusion:
        """The rolling window's confusion counts, labels counted in the order they appear in it."""
        r = self._recent
        if not self._window_counted:
            r.rows = Counter(chain.from_iterable(ys for ys, _ in self._chunks))
            r.cols = Counter(chain.from_iterable(ps for _, ps in self._chunks))
            self._window_counted = True
        return r

    def score(self, y_true: Hashable, y_pred: Hashable | None) -> float:
        """Update with one labelled prediction; return its loss for the drift monitor (0 or 1)."""
        self.update(y_true, y_pred)
        return 0.0 if y_true == y_pred else 1.0

    def score_many(self, y_true: Sequence[Hashable], y_pred: Sequence[Hashable | None]) -> list[float]:
        """``update_many``, returning each pair's loss for the drift monitor (0 or 1)."""
        losses = [0.0 if y == p else 1.0 for y, p in zip(y_true, y_pred, strict=True)]
        self._add_many(y_true, y_pred, len(losses) - int(sum(losses)))
        return losses

    def rolling_error(self) -> float:
        """The mean loss over the rolling window (the error rate)."""
        return 1.0 - self._recent.accuracy()

    def state_dict(self) -> dict[str, Any]:
        """Plain data: the confusion counts are rebuilt from the labelled pairs they count."""
        return {
            "window": self.window,
            "all": [self._all.n, self._all.correct, list(self._all.rows.items()), list(self._all.cols.items())],
            "pairs": [[y, p] for ys, ps in self._chunks for y, p in zip(ys, ps, strict=True)],
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
        for y, p in pairs:
            self._recent.add(y, p, 1)
        self._chunks = deque([([y for y, _ in pairs], [p for _, p in pairs])]) if pairs else deque()
        self._in_window = len(pairs)
        self._window_counted = True

    def summary(self) -> dict[str, float]:
        return {
            "labelled": float(self._all.n),
            "accuracy": self._all.accuracy(),
            "kappa": self._all.kappa(),
            "rolling_accuracy": self._recent.accuracy(),
            "rolling_kappa": self._window().kappa(),
        }



class _Errors:
    """Sums over a set of (target, prediction) pairs: enough for MAE, RMSE and R²."""

    __slots__ = ("abs", "n", "sq", "y", "y2")

    def __init__(self) -> None:
        self.n = 0
        self.abs = 0.0
        self.sq = 0.0
        self.y = 0.0
        self.y2 = 0.0

    def add(self, y: float, p: float, w: int) -> None:
        e = y - p
        self.n += w
        self.abs += w * abs(e)
        self.sq += w * e * e
        self.y += w * y
        self.y2 += w * y * y

    def mae(self) -> float:
        return self.abs / self.n if self.n else 0.0

    def rmse(self) -> float:
        return math.sqrt(max(self.sq, 0.0) / self.n) if self.n else 0.0

    def r2(self) -> float:
        if self.n < 2:
            return 0.0
        sst = self.y2 - self.y * self.y / self.n
        return 1.0 - self.sq / sst if sst > 1e-12 else 0.0

    def state(self) -> list[float]:
        return [self.n, self.abs, self.sq, self.y, self.y2]

    def load(self, s: list[float]) -> None:
        self.n, self.abs, self.sq, self.y, self.y2 = int(s[0]), *map(float, s[1:])


class Regression:
    """Cumulative and rolling MAE, RMSE and R² of a regressor, scored before it learns.

    The drift monitor's loss is the absolute error scaled to the stream: in units of three
    standard deviations of the targets seen before this one (Welford's running variance),
    capped at 1, so one detector setting works whatever the target's unit; 0 while fewer
    than two targets were seen and the error is 0, else 1.

    The state keeps the running sums themselves, not only the pairs, so a restored run's
    numbers are the uninterrupted run's bit for bit (recomputing sums of floats in another
    order would change their last bits).
    """

    task = "regression"

    def __init__(self, window: int = 1000):
        self.window = window
        self._all = _Errors()
        self._recent = _Errors()
        self._pairs: deque[tuple[float, float]] = deque()
        self._scale = [0, 0.0, 0.0]  # Welford over targets: n, mean, M2
        self._losses: deque[float] = deque()
        self._loss_sum = 0.0

    @property
    def n(self) -> int:
        return self._all.n

    def update(self, y_true: float, y_pred: float | None) -> None:
        self.score(y_true, y_pred)

    def score(self, y_true: float, y_pred: float | None) -> float:
        y = float(y_true)
        p = 0.0 if y_pred is None else float(y_pred)
        n, mean, m2 = self._scale
        std = math.sqrt(m2 / n) if n >= 2 else 0.0
        err = abs(y - p)
        loss = min(1.0, err / (3.0 * std)) if std > 0.0 else (0.0 if err == 0.0 else 1.0)
        n += 1
        delta = y - mean
        mean += delta / n
        m2 += delta * (y - mean)
        self._scale = [n, mean, m2]
        self._all.add(y, p, 1)
        self._recent.add(y, p, 1)
        self._pairs.append((y, p))
        self._losses.append(loss)
        self._loss_sum += loss
        if len(self._pairs) > self.window:
            self._recent.add(*self._pairs.popleft(), -1)
            self._loss_sum -= self._losses.popleft()
        return loss

    def update_many(self, y_true: Sequence[float], y_pred: Sequence[float | None]) -> None:
        self.score_many(y_true, y_pred)

    def score_many(self, y_true: Sequence[float], y_pred: Sequence[float | None]) -> list[float]:
        score = self.score
        return [score(y, p) for y, p in zip(y_true, y_pred, strict=True)]

    def rolling_error(self) -> float:
        """The mean scaled loss over the rolling window, in [0, 1] like an error rate."""
        return self._loss_sum / len(self._losses) if self._losses else 0.0

    def state_dict(self) -> dict[str, Any]:
        return {
            "task": "regression",
            "window": self.window,
            "all": self._all.state(),
            "recent": self._recent.state(),
            "pairs": [list(p) for p in self._pairs],
            "scale": list(self._scale),
            "losses": list(self._losses),
            "loss_sum": self._loss_sum,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore; a window changed in configuration since keeps the newest pairs that fit."""
        self._all = _Errors()
        self._all.load(state["all"])
        self._scale = [int(state["scale"][0]), float(state["scale"][1]), float(state["scale"][2])]
        pairs = [(float(y), float(p)) for y, p in state["pairs"]]
        self._recent = _Errors()
        if state["window"] == self.window:
            self._recent.load(state["recent"])
            self._pairs = deque(pairs)
            self._losses = deque(float(v) for v in state["losses"])
            self._loss_sum = float(state["loss_sum"])
            return
        self._pairs = deque()
        for y, p in pairs[-self.window :]:
            self._recent.add(y, p, 1)
            self._pairs.append((y, p))
        self._losses = deque(float(v) for v in state["losses"][-self.window :])
        self._loss_sum = sum(self._losses)

    def summary(self) -> dict[str, float]:
        return {
            "labelled": float(self._all.n),
            "mae": self._all.mae(),
            "rmse": self._all.rmse(),
            "r2": self._all.r2(),
            "rolling_mae": self._recent.mae(),
            "rolling_rmse": self._recent.rmse(),
            "rolling_r2": self._recent.r2(),
        }


def make_metrics(task: str, window: int) -> Prequential | Regression:
    """The prequential metrics of a pipeline's task."""
    return Regression(window) if task == "regression" else Prequential(window)


def predictive_churn(before: list[Hashable], after: list[Hashable]) -> float:
    """Share of the predictions that differ between two versions on the same inputs."""
    if len(before) != len(after):
        raise ValueError(f"churn compares predictions of the same rows: {len(before)} vs {len(after)}")
    if not before:
        return 0.0
    return sum(1 for a, b in zip(before, after, strict=True) if a != b) / len(before)
