"""DriftMoE with Hoeffding-tree experts: the published algorithm, checked with values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from river import tree as river_tree

from learners import checks
from learners.driftmoe_ht import (
    DriftMoEData,
    DriftMoETask,
    _clone_rng,
    _log_votes,
    _new_tree,
    correctness_mask,
)

torch.set_num_threads(1)

STREAM = checks.seeded_stream(n=700, seed=11)
X = [x for x, _ in STREAM]
Y = [y for _, y in STREAM]


def _three_class(n: int = 300, seed: int = 5) -> tuple[list[dict], list[str]]:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _ in range(n):
        c = int(rng.integers(3))
        xs.append({"u": float(rng.normal(c * 3.0, 1.0)), "v": float(rng.normal(-c, 1.0))})
        ys.append("abc"[c])
    return xs, ys


# --------------------------------------------------------------------------- MoE-Data
def test_data_defaults_match_the_paper() -> None:
    m = DriftMoEData()
    assert (m.n_experts, m.top_k, m.router_batch, m.lr, m.temperature) == (12, 3, 256, 2e-3, 0.8)
    assert len(m._experts) == 12
    e = m._experts[0]
    assert isinstance(e, river_tree.HoeffdingTreeClassifier)
    assert (e.grace_period, e.delta, e.leaf_prediction) == (50, 1e-7, "nba")


def test_exactly_top_k_experts_learn_each_event() -> None:
    m = DriftMoEData(seed=1)
    previous = m.expert_updates
    for x, y in STREAM[:300]:
        m.learn_one(x, y)
        now = m.expert_updates
        step = now - previous
        assert sorted(step.tolist()) == [0] * 9 + [1] * 3
        previous = now
    assert m.expert_updates.sum() == 3 * 300
    assert sum(e._train_weight_seen_by_model for e in m._experts) == 3 * 300


def test_the_trained_experts_are_the_router_top_k() -> None:
    m = DriftMoEData(seed=2)
    m.learn_many(X[:300], Y[:300])
    x, y = STREAM[300]
    v = m._matrix([x])[0]
    w = m._weights(m._router.logits(v))
    before = m.expert_updates
    m.learn_one(x, y)
    trained = set(np.flatnonzero(m.expert_updates - before).tolist())
    assert trained == set(np.argsort(-w, kind="stable")[:3].tolist())


def test_router_steps_every_256_events() -> None:
    m = DriftMoEData(seed=3)
    seen = 0
    for size in (100, 155, 1, 200, 56, 1, 198):
        m.learn_many(X[seen : seen + size], Y[seen : seen + size])
        seen += size
        assert m.router_steps == seen // 256, seen
    assert seen == 711
    assert m.router_steps == 2


def test_router_is_fixed_between_steps() -> None:
    m = DriftMoEData(seed=4)
    m.learn_many(X[:10], Y[:10])
    w1 = m._router.p["w1"].copy()
    m.learn_many(X[10:255], Y[10:255])
    # exact: weights are compared as stored, not recomputed
    assert np.array_equal(w1, m._router.p["w1"])
    m.learn_one(X[255], Y[255])
    assert not np.array_equal(w1, m._router.p["w1"])


def test_mask_marks_every_correct_expert() -> None:
    ninf = -np.inf
    votes = np.array([[0.0, -1.0], [-2.0, -1.0], [ninf, ninf], [-0.5, -0.1]])
    assert correctness_mask(votes, 1).tolist() == [0, 1, 0, 1]
    assert correctness_mask(votes, 0).tolist() == [1, 0, 1, 0]  # empty expert → class 0


def test_mask_falls_back_to_the_best_vote_for_the_label() -> None:
    # nobody predicts class 2; expert 1 has the largest raw vote for it
    votes = np.log(np.array([[5.0, 1.0, 0.5], [9.0, 3.0, 2.0], [0.1, 4.0, 0.2]]))
    assert correctness_mask(votes, 2).tolist() == [0, 1, 0]
    # no votes at all: the first expert
    assert correctness_mask(np.full((3, 2), -np.inf), 1).tolist() == [1, 0, 0]


def test_fallback_compares_raw_not_normalised_votes() -> None:
    # both trees predict class 0 for this point; tree A: 10 vs 3 events, tree B: 60 vs 15.
    # Normalised, A's vote for class 1 (3/13 = .23) beats B's (15/75 = .20); raw, B's wins.
    x = {"f": 1.0}
    a, b = _new_tree(50, 1e-7), _new_tree(50, 1e-7)
    for tree_, n0, n1 in ((a, 10, 3), (b, 60, 15)):
        for _ in range(n0):
            tree_.learn_one(x, 0)
        for _ in range(n1):
            tree_.learn_one(x, 1)
    votes = np.stack([_log_votes(a, x, 2), _log_votes(b, x, 2)])
    assert votes.argmax(axis=1).tolist() == [0, 0]
    assert correctness_mask(votes, 1).tolist() == [0, 1]
    pa, pb = a.predict_proba_one(x), b.predict_proba_one(x)
    assert pa[1] > pb[1]


def test_empty_expert_predicts_the_first_label_seen() -> None:
    assert _log_votes(_new_tree(50, 1e-7), {"f": 1.0}, 3).tolist() == [-np.inf] * 3
    m = DriftMoEData(seed=0, top_k=1)
    m.learn_one({"f": 1.0}, "first")
    m.learn_one({"f": 2.0}, "second")
    # 10 of the 12 experts are still empty; any of them predicts "first"
    empty = [i for i, n in enumerate(m.expert_updates) if n == 0]
    assert len(empty) >= 10
    lv = _log_votes(m._experts[empty[0]], {"f": 2.0}, 2)
    assert m._labels.decode(int(lv.argmax())) == "first"


def test_prediction_is_the_top_routed_experts_class() -> None:
    m = DriftMoEData(seed=6)
    m.learn_many(X[:400], Y[:400])
    n_classes = len(m._labels)
    for x in X[400:430]:
        v = m._matrix([x])[0]
        e = int(np.argmax(m._router.logits(v)))
        lv = _log_votes(m._experts[e], x, n_classes)
        assert m.predict_one(x) == m._labels.decode(int(lv.argmax()))


def test_data_learns_sea_like_stream() -> None:
    m = DriftMoEData(seed=7)
    hits = 0
    for x, y in STREAM:
        hits += m.predict_one(x) == y
        m.learn_one(x, y)
    assert hits / len(STREAM) > 0.75


# --------------------------------------------------------------------------- MoE-Task
def test_task_has_one_binary_expert_per_class_and_trains_all() -> None:
    xs, ys = _three_class()
    m = DriftMoETask(seed=1)
    m.learn_many(xs, ys)
    assert len(m._experts) == 3
    assert m._router.n_out == 3
    assert m.router_steps == len(xs)  # one Adam step per event
    seen = [e._train_weight_seen_by_model for e in m._experts]
    first = [ys.index(c) for c in "abc"]
    # a class's expert exists, and learns every event, from the event its class first appears
    assert seen == [len(xs) - i for i in sorted(first)]
    for i, e in enumerate(m._experts):
        assert set(e.classes) <= {0, 1}, i


def test_task_prediction_is_argmax_of_router_logits_with_dropout() -> None:
    xs, ys = _three_class()
    m = DriftMoETask(seed=2)
    m.learn_many(xs[:200], ys[:200])
    rng = _clone_rng(m._drop_rng)
    rows = xs[200:240]
    preds = m.predict_many(rows)
    for x, p in zip(rows, preds, strict=True):
        logits = m._router.logits(m._matrix([x])[0], m._keep(rng))
        assert p == m._labels.decode(int(np.argmax(logits)))


def test_task_predict_uses_the_mask_the_next_learn_uses() -> None:
    xs, ys = _three_class()
    m = DriftMoETask(seed=3)
    m.learn_many(xs[:50], ys[:50])
    clone = _clone_rng(m._drop_rng)
    m._keep(clone)
    m.predict_many(xs[50:60])
    m.learn_one(xs[50], ys[50])
    assert m._drop_rng.bit_generator.state == clone.bit_generator.state


def test_task_trees_never_reach_the_prediction() -> None:
    xs, ys = _three_class()
    m = DriftMoETask(seed=4)
    m.learn_many(xs[:200], ys[:200])
    before = m.predict_proba_many(xs[200:])
    m._experts = [river_tree.HoeffdingTreeClassifier() for _ in m._experts]
    # exact: the same computation on identical state (same process, shapes and code path)
    assert m.predict_proba_many(xs[200:]) == before


def test_task_deviation_lets_the_trees_shape_predictions() -> None:
    xs, ys = _three_class()
    m = DriftMoETask(seed=4, task_experts_shape_prediction=True)
    hits = 0
    for x, y in zip(xs, ys, strict=True):
        hits += m.predict_one(x) == y
        m.learn_one(x, y)
    assert hits / len(xs) > 0.8
    before = m.predict_proba_many(xs[:50])
    m._experts = [_new_tree(50, 1e-7) for _ in m._experts]
    assert m.predict_proba_many(xs[:50]) != before


def test_task_learns_three_classes() -> None:
    xs, ys = _three_class(n=600)
    m = DriftMoETask(seed=5)
    hits = 0
    for x, y in zip(xs, ys, strict=True):
        hits += m.predict_one(x) == y
        m.learn_one(x, y)
    assert hits / len(xs) > 0.8


# --------------------------------------------------------------------------- both
@pytest.mark.parametrize("cls", [DriftMoEData, DriftMoETask])
def test_same_seed_same_model_other_seed_other_router(cls: type) -> None:
    a, b, c = cls(seed=9), cls(seed=9), cls(seed=10)
    for m in (a, b, c):
        m.learn_many(X[:300], Y[:300])
    # exact: the same computation on identical state (same process, shapes and code path)
    checks.assert_state_equal(a.state_dict(), b.state_dict())
    assert a.predict_proba_many(X[300:350]) == b.predict_proba_many(X[300:350])
    assert not np.array_equal(a._router.p["w1"], c._router.p["w1"])


@pytest.mark.parametrize("cls", [DriftMoEData, DriftMoETask])
def test_micro_batching_does_not_change_the_model(cls: type) -> None:
    one, many = cls(seed=12), cls(seed=12)
    for x, y in STREAM[:400]:
        one.learn_one(x, y)
    for i in range(0, 400, 37):
        many.learn_many(X[i : min(i + 37, 400)], Y[i : min(i + 37, 400)])
    # exact: micro-batching changes only how rows are handed over, the steps are the same
    checks.assert_state_equal(one.state_dict(), many.state_dict())


@pytest.mark.parametrize("cls", [DriftMoEData, DriftMoETask])
def test_router_grows_with_new_features_and_classes(cls: type) -> None:
    m = cls(seed=13)
    m.learn_many(X[:100], Y[:100])
    d = m._router.d
    m.learn_one({**X[100], "extra": 2.0, "colour": "red"}, "new-class")
    assert m._router.d == d + 2
    assert len(m._labels) == 3
    if cls is DriftMoETask:
        assert m._router.n_out == 3 and len(m._experts) == 3
    else:
        assert m._router.n_out == 12
    assert m.predict_one({**X[101], "colour": "blue"}) in {"a", "b", "new-class"}


def test_new_input_column_does_not_change_old_logits() -> None:
    m = DriftMoEData(seed=14)
    m.learn_many(X[:100], Y[:100])  # no router step yet
    probe = m._matrix([X[200]])[0]
    w_before = {k: v.copy() for k, v in m._router.p.items()}
    before = m._router.logits(probe)
    m.learn_one({**X[100], "extra": 5.0}, Y[100])
    d = probe.shape[0]
    # exact: growing copies the old weights and appends a column; nothing is recomputed
    assert m._router.p["w1"].shape[1] == d + 1
    assert m._router.p["w1"][:, :d].tobytes() == w_before["w1"].tobytes()
    for k in w_before.keys() - {"w1"}:
        assert m._router.p[k].tobytes() == w_before[k].tobytes(), k
    after = m._router.logits(np.append(probe, 0.0).astype(np.float32))
    # a tolerance, not equality: the extra product is exactly 0, but BLAS sums d and d+1
    # products in kernel-dependent orders (SkylakeX differs from Haswell in the last ulp)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [DriftMoEData, DriftMoETask])
def test_round_trip_predicts_bit_identically(cls: type) -> None:
    m = cls(seed=15)
    m.learn_many(X[:300], Y[:300])
    r = cls(seed=15)
    r.load_state_dict(m.state_dict())
    # exact: the state was restored bit for bit, then the same computation ran
    assert m.predict_proba_many(X[300:]) == r.predict_proba_many(X[300:])
    m.learn_many(X[300:500], Y[300:500])
    r.learn_many(X[300:500], Y[300:500])
    checks.assert_state_equal(m.state_dict(), r.state_dict())


def test_load_refuses_other_hyperparameters() -> None:
    state = DriftMoEData(seed=1).state_dict()
    with pytest.raises(ValueError, match="n_experts"):
        DriftMoEData(seed=1, n_experts=4).load_state_dict(state)
    with pytest.raises(ValueError, match="driftmoe-ht-data"):
        DriftMoETask(seed=1).load_state_dict(state)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"n_experts": 0}, "n_experts"), ({"top_k": 13}, "top_k"), ({"lr": 0.0}, "lr")],
)
def test_constructor_validates(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        DriftMoEData(**kwargs)
