"""Build learners by name from an allow-list: configuration never carries code or pickles.

Names:
- ``river:<module>.<Class>`` for the River classifiers in ``RIVER_ALLOW_LIST``;
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


def available() -> list[str]:
    """Every name ``make_learner`` accepts."""
    return sorted(NATIVE) + sorted(f"river:{n}" for n in RIVER_ALLOW_LIST)


def make_learner(name: str, params: Mapping[str, Any] | None = None, seed: int = 0) -> Learner:
    """Build the learner called ``name`` with ``params``; ``seed`` seeds it where it takes one."""
    params = dict(params or {})
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
