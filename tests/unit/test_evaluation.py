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
    # a restored window goes on as the one that never stopped
    restored = Prequential(window)
    restored.load_state_dict(many.state_dict())
    for target in (restored, many):
        target.update_many(ys[:333], ps[:333])
        target.update(ys[0], ps[1])
    assert restored.state_dict() == many.state_dict()
    assert restored.summary()["rolling_accuracy"] == many.summary()["rolling_accuracy"]  # exact: integer counts


def test_regression_metrics_match_river_cumulative_and_rolling():
    import random

    from river import metrics, utils

    from stream.evaluation import Regression

    rng = random.Random(5)
    ours = Regression(window=100)
    river_all = [metrics.MAE(), metrics.RMSE(), metrics.R2()]
    river_rolling = [utils.Rolling(m, window_size=100) for m in (metrics.MAE, metrics.RMSE, metrics.R2)]
    for i in range(1500):
        y = rng.gauss(10.0 if i < 700 else 40.0, 3.0)
        p = y + rng.gauss(0.0, 1.0 if i < 700 else 6.0)
        ours.score(y, p)
        for m in (*river_all, *river_rolling):
            m.update(y, p)
    s = ours.summary()
    got = [s["mae"], s["rmse"], s["r2"], s["rolling_mae"], s["rolling_rmse"], s["rolling_r2"]]
    want = [m.get() for m in (*river_all, *river_rolling)]
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9)
    assert s["labelled"] == 1500 and s["r2"] > 0.5


def test_regression_loss_is_the_error_in_units_of_the_stream_and_restores_bit_for_bit():
    from stream.evaluation import Regression

    r = Regression(window=10)
    assert r.score(4.0, 4.0) == 0.0 and r.score(6.0, 0.0) == 1.0  # fewer than two targets seen
    # targets 4 and 6: mean 5, std 1; an error of 1.5 is half of three standard deviations
    assert r.score(5.0, 6.5) == pytest.approx(0.5)
    assert r.score(5.0, 500.0) == 1.0  # capped
    for i in range(30):
        r.score(float(i % 7), float(i % 5))
    back = Regression(window=10)
    back.load_state_dict(r.state_dict())
    for i in range(30):
        # exact: the same sums restored, then the same operations
        assert back.score(float(i), 1.0) == r.score(float(i), 1.0)
    assert back.summary() == r.summary()  # exact: same state, same operations
    narrower = Regression(window=5)
    narrower.load_state_dict(r.state_dict())
    assert narrower.summary()["rolling_mae"] == pytest.approx(sum(abs(float(i) - 1.0) for i in range(25, 30)) / 5)
