from __future__ import annotations

import pytest

from learners.exceptions import InvalidInputError, UnknownLearnerError
from learners.registry import available, make_learner


def test_builds_allow_listed_models_with_params_and_seed():
    m = make_learner("river:forest.ARFClassifier", {"n_models": 3}, seed=5)
    assert m._model.n_models == 3 and m._model.seed == 5


def test_nested_members_are_named_not_pickled():
    m = make_learner(
        "river:ensemble.LeveragingBaggingClassifier",
        {"model": {"name": "tree.HoeffdingTreeClassifier", "params": {"grace_period": 20}}, "n_models": 2},
        seed=1,
    )
    assert type(m._model.model).__name__ == "HoeffdingTreeClassifier" and m._model.model.grace_period == 20


@pytest.mark.parametrize("name", ["river:os.system", "river:compose.FuncTransformer", "sklearn", "river:tree"])
def test_names_off_the_allow_list_are_refused(name):
    with pytest.raises(UnknownLearnerError, match="choose one of"):
        make_learner(name)


def test_unknown_parameter_names_the_parameter():
    with pytest.raises(InvalidInputError, match="has no parameter 'depth'"):
        make_learner("river:tree.HoeffdingTreeClassifier", {"depth": 3})


def test_a_feature_that_changes_type_is_rejected_by_name():
    m = make_learner("river:tree.HoeffdingTreeClassifier")
    for i in range(300):
        m.learn_one({"a": float(i % 7), "c": "u" if i % 2 else "v"}, i % 2)
    with pytest.raises(InvalidInputError, match=r"X\[0\]\['a'\] is a string but the model learned it as a number"):
        m.predict_many([{"a": "NaN", "c": "u"}])
    with pytest.raises(InvalidInputError, match=r"\['c'\] is a number"):
        m.learn_one({"a": 1.0, "c": 3}, 0)
    assert m.predict_one({"a": 1.0, "c": "u"}) in (0, 1)


def test_available_lists_native_and_river_names():
    names = available()
    assert "driftmoe" in names and "river:forest.ARFClassifier" in names
