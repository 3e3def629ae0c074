"""Every learner against the learner contract (``learners.checks``).

Native learners come from ``learners.registry.NATIVE`` with their class's
``_unit_test_params()``; River learners from a representative set of allow-listed names.
A learner whose module does not import still gets every check, each failing with the
import error: nothing is skipped silently.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest
import torch

from learners import checks
from learners.base import Learner
from learners.registry import NATIVE, make_learner

torch.set_num_threads(1)

#: River names and small parameters for the suite
RIVER_LEARNERS: dict[str, dict[str, Any]] = {
    "river:tree.HoeffdingTreeClassifier": {"grace_period": 20},
    "river:forest.ARFClassifier": {"n_models": 3},
    "river:linear_model.LogisticRegression": {},
    "river:naive_bayes.GaussianNB": {},
    # regressors: the same contract on a numeric target
    "river:linear_model.LinearRegression": {},
    "river:tree.HoeffdingTreeRegressor": {"grace_period": 20},
    "river:forest.ARFRegressor": {"n_models": 3},
}


def _native_factory(name: str, extra: dict[str, Any] | None = None) -> Callable[[], Learner]:
    def build() -> Learner:
        module_name, cls_name = NATIVE[name].split(":")
        cls = getattr(importlib.import_module(module_name), cls_name)
        return make_learner(name, {**cls._unit_test_params(), **(extra or {})}, seed=3)

    return build


def _river_factory(name: str, params: dict[str, Any]) -> Callable[[], Learner]:
    def build() -> Learner:
        return make_learner(name, params, seed=3)

    return build


def _factories() -> dict[str, Callable[[], Learner]]:
    out = {name: _native_factory(name) for name in sorted(NATIVE)}
    # the torch step CUDA runs, here on the CPU
    out["driftmoe[engine=torch]"] = _native_factory("driftmoe", {"engine": "torch"})
    # the sparse first layer (gather, scatter-add, lazy RMSprop) from the first feature on,
    # with overflow hashing past two named features, on both engines
    sparse = {"sparse_above": 1, "width": 2}
    out["driftmoe[sparse]"] = _native_factory("driftmoe", sparse)
    out["driftmoe[sparse,engine=torch]"] = _native_factory("driftmoe", {**sparse, "engine": "torch"})
    out.update({name: _river_factory(name, p) for name, p in RIVER_LEARNERS.items()})
    return out


def _cases() -> list[Any]:
    cases = []
    for name, factory in _factories().items():
        for check in checks.yield_checks(factory):
            cases.append(pytest.param(factory, check, id=f"{name}-{check.__name__}"))
    return cases


@pytest.mark.parametrize(("factory", "check"), _cases())
def test_learner_contract(factory: Callable[[], Learner], check: checks.Check) -> None:
    check(factory, checks.stream_for(factory()))


def test_every_learner_gets_every_check_it_does_not_declare_skipping() -> None:
    per_learner: dict[str, set[str]] = {}
    for c in _cases():
        name, _, check = c.id.partition("-check_")
        per_learner.setdefault(name, set()).add("check_" + check)
    assert set(NATIVE) <= set(per_learner)
    every = {check.__name__ for check in checks._CHECKS}
    for name, factory in _factories().items():
        opt_out = getattr(factory(), "_unit_test_skips", None)
        skips = set(opt_out()) if callable(opt_out) else set()
        if getattr(factory(), "task", "classification") == "regression":
            skips |= checks.CLASSIFICATION_ONLY
        assert per_learner[name] == every - skips, name
