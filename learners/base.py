"""The learner protocol: batch-first, with River's verbs.

Every learner in Driftline is a classifier over feature dicts. ``X`` is a list of
``{feature: number | str | bool}`` dicts and ``y`` a list of hashable labels. Learners
are deterministic given their seed and input order, and their whole state round-trips
through ``state_dict`` / ``load_state_dict``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from learners.exceptions import InvalidInputError

Features = Mapping[str, float | int | str | bool]
Label = Hashable


@runtime_checkable
class Learner(Protocol):
    """What the runtime needs from a model."""

    def learn_one(self, x: Features, y: Label) -> None: ...
    def predict_one(self, x: Features) -> Label | None: ...
    def predict_proba_one(self, x: Features) -> dict[Label, float]: ...
    def learn_many(self, X: Sequence[Features], y: Sequence[Label]) -> None: ...
    def predict_many(self, X: Sequence[Features]) -> list[Label | None]: ...
    def predict_proba_many(self, X: Sequence[Features]) -> list[dict[Label, float]]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def validate_x(x: Any, where: str = "x") -> Features:
    """Return ``x`` if it is a usable feature dict, else raise InvalidInputError naming the field."""
    if not isinstance(x, Mapping):
        raise InvalidInputError(
            f"{where} must be a dict of feature -> value, got {type(x).__name__}"
        )
    for k, v in x.items():
        if not isinstance(k, str):
            raise InvalidInputError(f"{where}: feature names must be strings, got {k!r}")
        if isinstance(v, bool | str):
            continue
        if isinstance(v, float):
            if not math.isfinite(v):
                raise InvalidInputError(f"{where}[{k!r}] must be finite, got {v!r}")
            continue
        if isinstance(v, int):
            try:
                float(v)
            except OverflowError:
                digits = int(v.bit_length() * 0.30103)
                digits += abs(v) >= 10**digits
                raise InvalidInputError(
                    f"{where}[{k!r}] is an integer of {digits} digits, too large for a float"
                ) from None
            continue
        raise InvalidInputError(
            f"{where}[{k!r}] must be a number, string or bool, got {type(v).__name__}"
        )
    return x


def validate_y(y: Any, where: str = "y") -> Label:
    """Return ``y`` if it is a usable class label (str, int or bool)."""
    if isinstance(y, bool | int | str):
        return y
    if isinstance(y, float) and y.is_integer():
        return int(y)
    raise InvalidInputError(f"{where} must be a class label (str, int or bool), got {y!r}")


def validate_batch(X: Sequence[Any], y: Sequence[Any] | None = None) -> None:
    for i, x in enumerate(X):
        validate_x(x, f"X[{i}]")
    if y is not None:
        if len(y) != len(X):
            raise InvalidInputError(f"X has {len(X)} rows but y has {len(y)} labels")
        for i, label in enumerate(y):
            validate_y(label, f"y[{i}]")


def _check_labels(X: Sequence[Any], y: Sequence[Any]) -> None:
    if len(y) != len(X):
        raise InvalidInputError(f"X has {len(X)} rows but y has {len(y)} labels")
    for i, label in enumerate(y):
        if label is not None:
            validate_y(label, f"y[{i}]")


class Classifier:
    """Convenience base: the ``_many`` verbs loop over the ``_one`` verbs and vice versa.

    Subclasses implement at least one of each pair. Hyperparameters are the constructor
    arguments, stored under the same names; ``_reset`` rebuilds all learned state.
    """

    #: name under which the registry builds this learner
    registry_name: ClassVar[str] = ""

    def learn_one(self, x: Features, y: Label) -> None:
        self.learn_many([x], [y])

    def predict_one(self, x: Features) -> Label | None:
        return self.predict_many([x])[0]

    def predict_proba_one(self, x: Features) -> dict[Label, float]:
        return self.predict_proba_many([x])[0]

    def learn_many(self, X: Sequence[Features], y: Sequence[Label]) -> None:
        for xi, yi in zip(X, y, strict=True):
            self.learn_one(xi, yi)

    def predict_many(self, X: Sequence[Features]) -> list[Label | None]:
        out: list[Label | None] = []
        for p in self.predict_proba_many(X):
            out.append(max(p, key=p.__getitem__) if p else None)
        return out

    def predict_proba_many(self, X: Sequence[Features]) -> list[dict[Label, float]]:
        return [self.predict_proba_one(x) for x in X]

    # The label-aware verbs: in a prequential stream the labels of a call's earlier rows
    # are known when its later rows are predicted. ``y[j]`` (None: unknown) may shape the
    # prediction of rows after j only, never row j's own or an earlier one's, and the model
    # is not changed. A learner that cannot use them predicts as ``predict_many`` does.
    def predict_many_causal(
        self, X: Sequence[Features], y: Sequence[Label | None]
    ) -> list[Label | None]:
        _check_labels(X, y)
        return self.predict_many(X)

    def predict_proba_many_causal(
        self, X: Sequence[Features], y: Sequence[Label | None]
    ) -> list[dict[Label, float]]:
        _check_labels(X, y)
        return self.predict_proba_many(X)

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        """Small, fast parameters for the contract suite."""
        return {}
