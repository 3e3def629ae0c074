"""Any allow-listed River classifier behind the learner protocol."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from learners.base import Classifier, Features, Label, validate_batch
from learners.exceptions import InvalidInputError, UnknownLearnerError
from learners.pickling import dumps_river, loads_river


def build_river_model(
    name: str, params: Mapping[str, Any], seed: int | None, *, allowed: frozenset[str] | None = None
) -> Any:
    """Instantiate ``river.<name>`` with ``params``.

    A parameter given as ``{"name": "<module>.<Class>", "params": {...}}`` is itself built
    from the allow-list, so ensembles can name their members without any code in config.
    """
    from learners.registry import RIVER_ALLOW_LIST

    allowed = RIVER_ALLOW_LIST if allowed is None else allowed
    if name not in allowed:
        raise UnknownLearnerError(
            f"River model {name!r} is not allowed; choose one of: {', '.join(sorted(allowed))}"
        )
    module_name, cls_name = name.rsplit(".", 1)
    cls = getattr(importlib.import_module(f"river.{module_name}"), cls_name)
    accepted = inspect.signature(cls).parameters
    kwargs: dict[str, Any] = {}
    for key, value in params.items():
        if key not in accepted:
            raise InvalidInputError(
                f"river.{name} has no parameter {key!r}; it takes: {', '.join(accepted)}"
            )
        if isinstance(value, Mapping) and "name" in value:
            value = build_river_model(value["name"], value.get("params", {}), seed, allowed=allowed)
        kwargs[key] = value
    if "seed" in accepted and "seed" not in kwargs:
        kwargs["seed"] = seed
    return cls(**kwargs)


#: River classifiers that take numbers only: the adapter one-hot encodes string features
NUMERIC_ONLY = frozenset(
    {
        "linear_model.LogisticRegression",
        "linear_model.Perceptron",
        "linear_model.PAClassifier",
        "naive_bayes.GaussianNB",
        "neighbors.KNNClassifier",
        "forest.AMFClassifier",
    }
)
#: binary-only River classifiers: wrapped one-vs-rest so that any labels work
BINARY_ONLY = frozenset(
    {"linear_model.LogisticRegression", "linear_model.Perceptron", "linear_model.PAClassifier"}
)


def _kind(value: Any) -> str:
    return "string" if isinstance(value, str) else "number"


class RiverClassifier(Classifier):
    """A River classifier named from the allow-list, with its parameters.

    Binary-only linear models are wrapped one-vs-rest, and models that take numbers only
    see string features one-hot encoded (``colour=red: 1.0``), so every allow-listed model
    takes the same events. River models assume a feature keeps its type: a string where a tree split on a
    number raises deep inside River. The adapter remembers each feature's kind (number or
    string) from the first event that had it and rejects a row that changes it, naming
    the feature, so the runtime can dead-letter that one event and the API answer 422.

    Its state is the River model pickled: River offers no other serialisation. That
    blob only ever travels inside a snapshot whose HMAC signature is checked first.
    """

    def __init__(self, name: str, params: Mapping[str, Any] | None = None, seed: int = 0):
        self.name = name
        self.params = dict(params or {})
        self.seed = seed
        self._model = build_river_model(name, self.params, seed)
        if name in BINARY_ONLY:
            from river.multiclass import OneVsRestClassifier

            self._model = OneVsRestClassifier(self._model)
        self._kinds: dict[str, str] = {}
        self._n_learned = 0

    def _encode(self, x: Features) -> dict[str, Any]:
        if self.name not in NUMERIC_ONLY:
            return dict(x)
        return {
            (f"{k}={v}" if isinstance(v, str) else k): (1.0 if isinstance(v, str) else float(v))
            for k, v in x.items()
        }

    def _check_kinds(self, x: Features, where: str = "x") -> None:
        for k, v in x.items():
            seen = self._kinds.get(k)
            if seen is not None and seen != _kind(v):
                raise InvalidInputError(
                    f"{where}[{k!r}] is a {_kind(v)} but the model learned it as a {seen}"
                )

    def _learn(self, x: Features, y: Label) -> None:
        self._check_kinds(x)
        for k, v in x.items():
            self._kinds.setdefault(k, _kind(v))
        self._model.learn_one(self._encode(x), y)
        self._n_learned += 1

    def __repr__(self) -> str:
        return f"RiverClassifier({self.name!r}, params={self.params!r}, seed={self.seed})"

    def learn_one(self, x: Features, y: Label) -> None:
        validate_batch([x], [y])
        self._learn(x, y)

    def learn_many(self, X: Sequence[Features], y: Sequence[Label]) -> None:
        validate_batch(X, y)
        # check the whole batch's feature kinds first: a refusal must leave the model as it was
        kinds = dict(self._kinds)
        for i, x in enumerate(X):
            for k, v in x.items():
                seen = kinds.setdefault(k, _kind(v))
                if seen != _kind(v):
                    raise InvalidInputError(
                        f"X[{i}][{k!r}] is a {_kind(v)} but the model learned it as a {seen}"
                    )
        for xi, yi in zip(X, y, strict=True):
            self._learn(xi, yi)

    def predict_proba_one(self, x: Features) -> dict[Label, float]:
        return self.predict_proba_many([x])[0]

    def predict_proba_many(self, X: Sequence[Features]) -> list[dict[Label, float]]:
        validate_batch(X)
        for i, x in enumerate(X):
            self._check_kinds(x, f"X[{i}]")
        if not self._n_learned:  # some River models build themselves lazily on first use
            return [{} for _ in X]
        return [dict(self._model.predict_proba_one(self._encode(x))) for x in X]

    def predict_one(self, x: Features) -> Label | None:
        return self.predict_many([x])[0]

    def predict_many(self, X: Sequence[Features]) -> list[Label | None]:
        validate_batch(X)
        for i, x in enumerate(X):
            self._check_kinds(x, f"X[{i}]")
        if not self._n_learned:
            return [None for _ in X]
        return [self._model.predict_one(self._encode(x)) for x in X]

    def state_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": self.params,
            "seed": self.seed,
            "model": dumps_river(self._model),
            "kinds": dict(self._kinds),
            "n_learned": self._n_learned,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("name") != self.name:
            raise InvalidInputError(
                f"state is for river.{state.get('name')}, not river.{self.name}"
            )
        self._model = loads_river(state["model"])
        self._kinds = dict(state["kinds"])
        self._n_learned = int(state["n_learned"])

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"name": "tree.HoeffdingTreeClassifier", "params": {"grace_period": 50}}


class ScaledRegressor:
    """A running standardisation (Welford's mean and variance per feature) in front of a
    regressor, updated only when learning.

    River's ``compose.Pipeline`` with a ``StandardScaler`` would also update the scaler
    while predicting, and its scaler grows an entry for every feature a prediction names,
    so predicting would change the model."""

    def __init__(self, model: Any):
        self.model = model
        self.stats: dict[str, list[float]] = {}  # feature -> [count, mean, M2]

    def _transform(self, x: dict[str, Any]) -> dict[str, float]:
        out: dict[str, float] = {}
        for k, v in x.items():
            st = self.stats.get(k)
            if st is None:
                out[k] = 0.0
                continue
            n, mean, m2 = st
            std = (m2 / n) ** 0.5 if n > 0 else 0.0
            out[k] = (v - mean) / std if std > 0 else 0.0
        return out

    def learn_one(self, x: dict[str, Any], y: float) -> None:
        for k, v in x.items():
            st = self.stats.setdefault(k, [0.0, 0.0, 0.0])
            st[0] += 1.0
            delta = v - st[1]
            st[1] += delta / st[0]
            st[2] += delta * (v - st[1])
        self.model.learn_one(self._transform(x), y)

    def predict_one(self, x: dict[str, Any]) -> float:
        return self.model.predict_one(self._transform(x))


#: regressors that take numbers only and learn by SGD: standardised, strings one-hot encoded
SCALED_REGRESSORS = frozenset({"linear_model.LinearRegression"})


class RiverRegressor(RiverClassifier):
    """An allow-listed River regressor behind the learner protocol.

    It predicts a float (River's regressors answer 0.0 before they learn anything, and so
    does this), has no class probabilities (``predict_proba_*`` answer empty dicts), and
    takes finite numbers as labels. Feature kinds are checked as for classifiers; string
    features are one-hot encoded (River's regressors fit linear models, in the trees' leaves
    too), and the linear model learns behind a running standardisation.
    """

    task = "regression"

    def __init__(self, name: str, params: Mapping[str, Any] | None = None, seed: int = 0):
        from learners.registry import RIVER_REGRESSORS

        if name not in RIVER_REGRESSORS:
            raise UnknownLearnerError(
                f"River regressor {name!r} is not allowed; choose one of: {', '.join(sorted(RIVER_REGRESSORS))}"
            )
        self.name = name
        self.params = dict(params or {})
        self.seed = seed
        self._model = build_river_model(name, self.params, seed, allowed=RIVER_REGRESSORS)
        if name in SCALED_REGRESSORS:
            # plain SGD on raw features diverges as soon as a feature spans more than a few
            # units; River's own examples put a running scaler in front
            self._model = ScaledRegressor(self._model)
        self._kinds = {}
        self._n_learned = 0

    def _encode(self, x: Features) -> dict[str, Any]:
        # River's regressors fit linear models (in the leaves of the trees too): numbers only
        return {
            (f"{k}={v}" if isinstance(v, str) else k): (1.0 if isinstance(v, str) else float(v))
            for k, v in x.items()
        }

    def __repr__(self) -> str:
        return f"RiverRegressor({self.name!r}, params={self.params!r}, seed={self.seed})"

    def learn_one(self, x: Features, y: Label) -> None:
        self.learn_many([x], [y])

    def learn_many(self, X: Sequence[Features], y: Sequence[Label]) -> None:
        validate_batch(X)
        if len(y) != len(X):
            raise InvalidInputError(f"X has {len(X)} rows but y has {len(y)} labels")
        targets = [validate_target(v, f"y[{i}]") for i, v in enumerate(y)]
        kinds = dict(self._kinds)
        for i, x in enumerate(X):
            for k, v in x.items():
                seen = kinds.setdefault(k, _kind(v))
                if seen != _kind(v):
                    raise InvalidInputError(f"X[{i}][{k!r}] is a {_kind(v)} but the model learned it as a {seen}")
        for xi, yi in zip(X, targets, strict=True):
            self._learn(xi, yi)

    def predict_proba_many(self, X: Sequence[Features]) -> list[dict[Label, float]]:
        validate_batch(X)
        for i, x in enumerate(X):
            self._check_kinds(x, f"X[{i}]")
        return [{} for _ in X]

    def predict_many(self, X: Sequence[Features]) -> list[float]:
        validate_batch(X)
        for i, x in enumerate(X):
            self._check_kinds(x, f"X[{i}]")
        if not self._n_learned:  # River's answer before learning; the forest builds itself on first use
            return [0.0 for _ in X]
        return [float(self._model.predict_one(self._encode(x))) for x in X]

    def _check_targets(self, X: Sequence[Features], y: Sequence[Any]) -> None:
        if len(y) != len(X):
            raise InvalidInputError(f"X has {len(X)} rows but y has {len(y)} labels")
        for i, v in enumerate(y):
            if v is not None:
                validate_target(v, f"y[{i}]")

    def predict_many_causal(self, X: Sequence[Features], y: Sequence[Any]) -> list[float]:
        # a regressor reads no label context: the earlier rows' targets change nothing
        self._check_targets(X, y)
        return self.predict_many(X)

    def predict_proba_many_causal(self, X: Sequence[Features], y: Sequence[Any]) -> list[dict[Label, float]]:
        self._check_targets(X, y)
        return self.predict_proba_many(X)

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {}


def validate_target(y: Any, where: str = "y") -> float:
    """A regression target: a finite number (not a bool, not a string)."""
    import math

    if isinstance(y, bool) or not isinstance(y, int | float):
        raise InvalidInputError(f"{where} must be a number for a regressor, got {y!r}")
    try:
        value = float(y)
    except OverflowError:
        raise InvalidInputError(f"{where} is too large for a float") from None
    if not math.isfinite(value):
        raise InvalidInputError(f"{where} must be finite, got {y!r}")
    return value
