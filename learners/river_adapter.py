"""Any allow-listed River classifier behind the learner protocol."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from learners.base import Classifier, Features, Label, validate_batch
from learners.exceptions import InvalidInputError, UnknownLearnerError
from learners.pickling import dumps_river, loads_river


def build_river_model(name: str, params: Mapping[str, Any], seed: int | None) -> Any:
    """Instantiate ``river.<name>`` with ``params``.

    A parameter given as ``{"name": "<module>.<Class>", "params": {...}}`` is itself built
    from the allow-list, so ensembles can name their members without any code in config.
    """
    from learners.registry import RIVER_ALLOW_LIST

    if name not in RIVER_ALLOW_LIST:
        raise UnknownLearnerError(
            f"River model {name!r} is not allowed; choose one of: {', '.join(sorted(RIVER_ALLOW_LIST))}"
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
            value = build_river_model(value["name"], value.get("params", {}), seed)
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
