"""Build learners by name from an allow-list: configuration never carries code or pickles.

Names:
- ``river:<module>.<Class>`` for the River classifiers in ``RIVER_ALLOW_LIST`` and the
  River regressors in ``RIVER_REGRESSORS``;
- ``driftmoe`` (neural experts, the service's default), ``driftmoe-ht-data`` and
  ``driftmoe-ht-task`` (Hoeffding-tree experts, as published).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from learners.base import Learner
from learners.exceptions import UnknownLearnerError

#: our own learners: name -> "module:Class"
NATIVE: dict[str, str] = {
    "driftmoe": "learners.driftmoe_neural:NeuralDriftMoE",
    "driftmoe-ht-data": "learners.driftmoe_ht:DriftMoEData",
    "driftmoe-ht-task": "learners.driftmoe_ht:DriftMoETask",
}

#: River classifiers that may be named in configuration
RIVER_ALLOW_LIST: frozenset[str] = frozenset(
    {
        "tree.HoeffdingTreeClassifier",
        "tree.HoeffdingAdaptiveTreeClassifier",
        "tree.ExtremelyFastDecisionTreeClassifier",
        "forest.ARFClassifier",
        "forest.AMFClassifier",
        "ensemble.SRPClassifier",
        "ensemble.LeveragingBaggingClassifier",
        "ensemble.ADWINBaggingClassifier",
        "ensemble.BaggingClassifier",
        "linear_model.LogisticRegression",
        "linear_model.Perceptron",
        "linear_model.PAClassifier",
        "naive_bayes.GaussianNB",
        "neighbors.KNNClassifier",
        "dummy.NoChangeClassifier",
        "dummy.PriorClassifier",
    }
)


#: River regressors that may be named in configuration (a pipeline of task "regression")
RIVER_REGRESSORS: frozenset[str] = frozenset(
    {"linear_model.LinearRegression", "tree.HoeffdingTreeRegressor", "forest.ARFRegressor"}
)


def available() -> list[str]:
    """Every name ``make_learner`` accepts."""
    return sorted(NATIVE) + sorted(f"river:{n}" for n in RIVER_ALLOW_LIST | RIVER_REGRESSORS)


def task_of(name: str) -> str | None:
    """``"classification"`` or ``"regression"`` for a learner name, None for an unknown one."""
    if name in NATIVE or (name.startswith("river:") and name.removeprefix("river:") in RIVER_ALLOW_LIST):
        return "classification"
    if name.startswith("river:") and name.removeprefix("river:") in RIVER_REGRESSORS:
        return "regression"
    return None


def learner_class(name: str) -> type:
    """The class whose constructor takes the learner's parameters (for validating them)."""
    if name.startswith("river:"):
        module_name, cls_name = name.removeprefix("river:").rsplit(".", 1)
        return getattr(importlib.import_module(f"river.{module_name}"), cls_name)
    module_name, cls_name = NATIVE[name].split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def make_learner(name: str, params: Mapping[str, Any] | None = None, seed: int = 0) -> Learner:
    """Build the learner called ``name`` with ``params``; ``seed`` seeds it where it takes one."""
    params = dict(params or {})
    if name.startswith("river:") and name.removeprefix("river:") in RIVER_REGRESSORS:
        from learners.river_adapter import RiverRegressor

        return RiverRegressor(name.removeprefix("river:"), params=params, seed=seed)
    if name.startswith("river:"):
        from learners.river_adapter import RiverClassifier

        return RiverClassifier(name.removeprefix("river:"), params=params, seed=seed)
    if name not in NATIVE:
        raise UnknownLearnerError(
            f"unknown learner {name!r}; choose one of: {', '.join(available())}"
        )
    module_name, cls_name = NATIVE[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    params.setdefault("seed", seed)
    return cls(**params)
