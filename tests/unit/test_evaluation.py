from __future__ import annotations

import random

import pytest
from river import metrics, utils

from stream.evaluation import Prequential


@pytest.mark.parametrize("classes", [2, 5])
def test_matches_river_metrics_cumulative_and_rolling(classes):
    rng = random.Random(classes)
    ours = Prequential(window=50)
    acc, kappa = metrics.Accuracy(), metrics.CohenKappa()
    racc = utils.Rolling(metrics.Accuracy, window_size=50)
    rkappa = utils.Rolling(metrics.CohenKappa, window_size=50)
    for i in range(2000):
        y = rng.randrange(classes)
        p = y if rng.random() < 0.7 else (None if i < 5 else rng.randrange(classes))
        ours.update(y, p)
        for m in (acc, kappa, racc, rkappa):
            m.update(y, p)
        if i % 97 == 0 or i == 1999:
            s = ours.summary()
            assert s["accuracy"] == pytest.approx(acc.get(), abs=1e-12)
            assert s["kappa"] == pytest.approx(kappa.get(), abs=1e-12)
            assert s["rolling_accuracy"] == pytest.approx(racc.get(), abs=1e-12)
            assert s["rolling_kappa"] == pytest.approx(rkappa.get(), abs=1e-12)
    assert ours.n == 2000


def test_empty_is_zero():
    # exact: the formula gives this value exactly (a ratio of counts / its limits)
    assert Prequential().summary() == {
        "labelled": 0.0, "accuracy": 0.0, "kappa": 0.0, "rolling_accuracy": 0.0, "rolling_kappa": 0.0
    }


@pytest.mark.parametrize("window", [10, 700])
def test_update_many_equals_update_on_each_pair(window):
    rng = random.Random(5)
    ys = [rng.choice("abc") for _ in range(5000)]
    ps = [rng.choice("abcd") for _ in range(5000)]
    one, many = Prequential(window), Prequential(window)
    for y, p in zip(ys, ps, strict=True):
        one.update(y, p)
    i = 0
    while i < len(ys):
        k = rng.randint(1, 900)
        many.update_many(ys[i : i + k], ps[i : i + k])
        i += k
    assert many.state_dict() == one.state_dict()
    assert many.summary() == one.summary()  # exact: the same integer counts in the same formulas
