from __future__ import annotations

import json
import random
import warnings

import numpy as np
import pytest
import torch

from learners.driftmoe_neural import NeuralDriftMoE
from learners.exceptions import InvalidInputError

PARAMS = NeuralDriftMoE._unit_test_params()


def _separable(n: int, seed: int) -> list[tuple[dict, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.uniform(-1, 1), rng.uniform(-1, 1)
        out.append(({"a": a, "b": b * 100.0}, "pos" if a + b / 2 > 0 else "neg"))
    return out


def _stream(model: NeuralDriftMoE, events: list[tuple[dict, object]], batch: int = 64) -> float:
    correct = 0
    for i in range(0, len(events), batch):
        chunk = events[i : i + batch]
        X = [x for x, _ in chunk]
        y = [t for _, t in chunk]
        correct += sum(p == t for p, t in zip(model.predict_many(X), y, strict=True))
        model.learn_many(X, y)
    return correct / len(events)


def test_predict_before_learning() -> None:
    m = NeuralDriftMoE(**PARAMS)
    assert m.predict_one({"a": 1.0}) is None
    assert m.predict_proba_one({"a": 1.0}) == {}
    assert m.predict_many([{"a": 1.0}, {}]) == [None, None]


def test_explicit_cpu_and_cuda_graph_flag_on_cpu() -> None:
    m = NeuralDriftMoE(**{**PARAMS, "cuda_graph": True})
    assert m._dev.type == "cpu"
    _stream(m, _separable(200, 0))
    assert m.predict_one({"a": 0.5, "b": 0.0}) in ("pos", "neg")
    assert NeuralDriftMoE(**{**PARAMS, "device": "auto"})._dev.type in ("cpu", "cuda")


def test_deterministic_for_a_seed() -> None:
    events = _separable(600, 1)
    a, b = NeuralDriftMoE(**PARAMS, seed=7), NeuralDriftMoE(**PARAMS, seed=7)
    _stream(a, events)
    _stream(b, events)
    sa, sb = a.state_dict(), b.state_dict()
    for key in ("params", "exp_avg", "exp_avg_sq", "expert_accuracy"):
        # exact: the same computation on identical state (same process, shapes and code path)
        assert torch.equal(sa[key], sb[key]), key
    c = NeuralDriftMoE(**PARAMS, seed=8)
    _stream(c, events)
    assert not torch.equal(sa["params"], c.state_dict()["params"])


def test_learns_a_separable_stream() -> None:
    m = NeuralDriftMoE(**{**PARAMS, "batch_size": 16}, seed=0)
    events = _separable(4000, 2)
    _stream(m, events[:3000])
    assert _stream(m, events[3000:]) > 0.9


def test_learn_one_predict_one() -> None:
    m = NeuralDriftMoE(**PARAMS)
    for x, y in _separable(300, 3):
        m.learn_one(x, y)
    proba = m.predict_proba_one({"a": 0.9, "b": 0.0})
    assert set(proba) == {"pos", "neg"}
    assert sum(proba.values()) == pytest.approx(1.0, abs=1e-5)
    assert m.n_seen == 300


def test_growth_new_feature_and_new_class_mid_stream() -> None:
    m = NeuralDriftMoE(**PARAMS, seed=1)
    _stream(m, _separable(500, 4))
    d_cap, c_cap = m._d_cap, m._c_cap
    before = m.predict_proba_many([{"a": 0.3, "b": 10.0}])
    # many new features past the capacity, and classes past the capacity
    rng = random.Random(5)
    extra = [
        ({"a": rng.uniform(-1, 1), "b": 0.0, **{f"f{j}": rng.random() for j in range(20)}}, c)
        for c in ("c1", "c2", "c3")
        for _ in range(50)
    ]
    m.learn_many([x for x, _ in extra], [y for _, y in extra])
    assert m._d_cap > d_cap and m._c_cap > c_cap
    proba = m.predict_proba_one({"a": 0.3, "b": 10.0, "f3": 0.5})
    assert set(proba) == {"pos", "neg", "c1", "c2", "c3"}
    assert sum(proba.values()) == pytest.approx(1.0, abs=1e-5)
    assert before[0].keys() == {"pos", "neg"}
    # keeps learning after growth
    _stream(m, extra * 4)
    assert m.predict_one({"a": 0.0, "b": 0.0, "f1": 0.2}) in ("c1", "c2", "c3", "pos", "neg")


def test_growth_preserves_function_on_known_inputs() -> None:
    m = NeuralDriftMoE(**PARAMS, seed=2)
    _stream(m, _separable(300, 6))
    probe = [{"a": 0.1 * i, "b": 5.0 * i} for i in range(-5, 6)]

    def expert_view() -> tuple[np.ndarray, np.ndarray]:
        _, _, probs, gate = m._forward_np(m._matrix(m._features.transform(probe), advance=False))
        return probs[:, :, 0] / probs[:, :, :2].sum(axis=2), gate

    ratio_before, gate_before = expert_view()
    m._features.update([{f"g{j}": 1.0 for j in range(40)}])
    m._labels.update(["z"])
    m._grow()  # capacity grows; no learning happened
    assert m._d_cap >= 41 and m._c_cap >= 3
    ratio_after, gate_after = expert_view()
    # zero-initialised new weights: each expert still ranks the old classes the same way
    np.testing.assert_allclose(ratio_after, ratio_before, rtol=1e-5)
    np.testing.assert_allclose(gate_after, gate_before, rtol=1e-5, atol=1e-6)


def test_predict_does_not_mutate() -> None:
    m = NeuralDriftMoE(**PARAMS)
    _stream(m, _separable(300, 7))
    s0 = m.state_dict()
    x = {"a": 0.2, "b": 3.0, "brand_new": 5.0, "cat": "x"}
    m.predict_many([x] * 5)
    m.predict_proba_many([x])
    s1 = m.state_dict()
    for key in ("params", "exp_avg", "exp_avg_sq", "expert_accuracy"):
        # exact: the same computation on identical state (same process, shapes and code path)
        assert torch.equal(s0[key], s1[key])
    assert s0["features"]["names"] == s1["features"]["names"]
    np.testing.assert_array_equal(s0["features"]["mean"], s1["features"]["mean"])
    assert x == {"a": 0.2, "b": 3.0, "brand_new": 5.0, "cat": "x"}


@pytest.mark.parametrize("label_context", [False, True])
def test_state_round_trip_bit_identical(label_context: bool) -> None:
    events = _separable(800, 8)
    m = NeuralDriftMoE(**PARAMS, label_context=label_context, seed=3)
    _stream(m, events[:400])
    restored = NeuralDriftMoE(**PARAMS, label_context=label_context, seed=999)
    restored.load_state_dict(m.state_dict())
    probe = [x for x, _ in events[400:500]]
    # exact: the state was restored bit for bit, then the same computation ran
    assert restored.predict_proba_many(probe) == m.predict_proba_many(probe)
    # and it keeps learning identically, including a drift reset that draws new weights
    assert m.on_drift() == restored.on_drift()
    _stream(m, events[400:])
    _stream(restored, events[400:])
    # exact: the state was restored bit for bit, then the same computation ran
    assert torch.equal(m.state_dict()["params"], restored.state_dict()["params"])
    assert restored.predict_proba_many(probe) == m.predict_proba_many(probe)


def test_state_round_trip_before_learning() -> None:
    m = NeuralDriftMoE(**PARAMS)
    r = NeuralDriftMoE(**PARAMS)
    r.load_state_dict(m.state_dict())
    assert r.predict_one({"a": 1.0}) is None


def test_on_drift_resets_an_expert() -> None:
    m = NeuralDriftMoE(**PARAMS)
    assert m.on_drift() is None
    _stream(m, _separable(300, 9))
    j = m.on_drift()
    assert j is not None and 0 <= j < m.n_experts
    assert float(m._m["w2"][j].abs().sum()) == 0.0


def test_top_k_and_top1_variants_learn() -> None:
    for extra in ({"top_k": 1}, {"combine": "top1"}):
        m = NeuralDriftMoE(**{**PARAMS, **extra}, seed=0)
        events = _separable(3000, 10)
        _stream(m, events[:2000])
        assert _stream(m, events[2000:]) > 0.85, extra


def test_invalid_input_rejected_without_side_effects() -> None:
    m = NeuralDriftMoE(**PARAMS)
    _stream(m, _separable(100, 11))
    dim = m._features.dim
    with pytest.raises(InvalidInputError):
        m.learn_many([{"a": 1.0, "new": 2.0}, {"a": float("nan")}], ["pos", "neg"])
    with pytest.raises(InvalidInputError):
        m.learn_many([{"a": 1.0}], [[1]])
    with pytest.raises(InvalidInputError):
        m.predict_many([{"a": None}])
    assert m._features.dim == dim


@pytest.mark.parametrize(
    "bad",
    [{"n_experts": 0}, {"lr": 0.0}, {"combine": "avg"}, {"device": "tpu"}, {"top_k": 0}, {"sparse_vote_floor": 1.5}],
)
def test_constructor_validation(bad: dict) -> None:
    with pytest.raises(ValueError):
        NeuralDriftMoE(**{**PARAMS, **bad})


@pytest.mark.parametrize("extra", [{}, {"top_k": 2, "label_context": True}])
def test_torch_engine_on_the_cpu_matches_numpy(extra: dict) -> None:
    """The torch step (what CUDA runs and a CUDA graph captures) against the numpy step.

    Same seed and stream; the two differ only in float rounding, so after 16 steps the
    weights agree closely and the predictions on fresh rows almost everywhere.
    """
    events = _separable(1024, 21)
    probe = [x for x, _ in _separable(400, 22)]
    base = {**PARAMS, "batch_size": 64, "neighbours": None, **extra}
    fast = NeuralDriftMoE(**base, seed=3)
    ref = NeuralDriftMoE(**{**base, "engine": "torch"}, seed=3)
    assert fast._numpy and not ref._numpy
    acc_np = _stream(fast, events, batch=256)
    acc_t = _stream(ref, events, batch=256)
    assert acc_np > 0.65 and abs(acc_np - acc_t) < 0.01
    torch.testing.assert_close(
        fast.state_dict()["params"], ref.state_dict()["params"], rtol=1e-4, atol=1e-4
    )
    agree = np.mean(
        [a == b for a, b in zip(fast.predict_many(probe), ref.predict_many(probe), strict=True)]
    )
    assert agree >= 0.99
    p_np = np.array([[p["neg"], p["pos"]] for p in fast.predict_proba_many(probe)])
    p_t = np.array([[p["neg"], p["pos"]] for p in ref.predict_proba_many(probe)])
    assert np.abs(p_np - p_t).max() < 1e-3


def test_torch_engine_on_the_cpu_matches_numpy_on_sparse_rows() -> None:
    """The sparse first layer's gather and lazy RMSprop step, torch's ops against the compiled
    passes: same seed and stream."""
    from stream.synth import text_stream

    events = list(text_stream(3_072, seed=3))
    base = {"neighbours": None, "width": 512, "device": "cpu"}
    fast, ref = NeuralDriftMoE(**base, seed=2), NeuralDriftMoE(**base, engine="torch", seed=2)
    assert fast._numpy and not ref._numpy
    acc_np, acc_t = _prequential(fast, events, causal=False), _prequential(ref, events, causal=False)
    assert fast._sparse() and ref._sparse()
    majority = 1 - sum(y for _, y in events) / len(events)
    assert acc_np > majority + 0.1 and abs(acc_np - acc_t) < 0.01, (acc_np, acc_t, majority)
    # a row's step is normalised by its own gradient's size, so where a gradient is at the
    # level of rounding its sign, and a step of lr, may differ: a few elements in a thousand
    for key in ("params", "exp_avg_sq"):
        a, b = fast.state_dict()[key], ref.state_dict()[key]
        close = torch.isclose(a, b, rtol=1e-3, atol=1e-4 if key == "params" else 1e-7)
        assert close.float().mean() > 0.995, (key, close.float().mean())
    probe = [x for x, _ in text_stream(256, seed=9)]
    agree = np.mean([p == q for p, q in zip(fast.predict_many(probe), ref.predict_many(probe), strict=True)])
    assert agree >= 0.99


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_matches_eager() -> None:
    events = _separable(640, 12)
    eager = NeuralDriftMoE(**{**PARAMS, "device": "cuda", "batch_size": 32}, seed=4)
    graph = NeuralDriftMoE(
        **{**PARAMS, "device": "cuda", "batch_size": 32, "cuda_graph": True}, seed=4
    )
    acc_e = _stream(eager, events, batch=50)  # 50 = one full and one padded step
    acc_g = _stream(graph, events, batch=50)
    assert abs(acc_e - acc_g) < 0.02
    torch.testing.assert_close(
        eager.state_dict()["params"], graph.state_dict()["params"], rtol=1e-3, atol=1e-3
    )


def _trend_stream(n: int, seed: int) -> list[tuple[dict[str, float], int]]:
    """A random-walk price whose label says whether it is above its recent average."""
    rng = np.random.default_rng(seed)
    price = np.cumsum(rng.normal(size=n))
    out = []
    for t in range(n):
        recent = price[max(0, t - 32) : t]
        above = int(price[t] > (recent.mean() if recent.size else price[t]))
        out.append(({"price": float(price[t])}, above))
    return out


def test_input_context_sees_the_recent_past_within_a_micro_batch() -> None:
    events = _trend_stream(20_000, 4)
    with_context = _stream(NeuralDriftMoE(device="cpu", seed=1), events, batch=256)
    without = _stream(NeuralDriftMoE(device="cpu", seed=1, input_halflife=None), events, batch=256)
    # the label depends on the price relative to its recent past, which a single event's
    # features cannot show
    assert with_context > 0.72 and without < 0.56, (with_context, without)


def _prequential(model: NeuralDriftMoE, events: list, causal: bool, batch: int = 256) -> float:
    correct = 0
    for i in range(0, len(events), batch):
        X = [x for x, _ in events[i : i + batch]]
        y = [t for _, t in events[i : i + batch]]
        preds = model.predict_many_causal(X, y) if causal else model.predict_many(X)
        correct += sum(p == t for p, t in zip(preds, y, strict=True))
        model.learn_many(X, y)
    return correct / len(events)


def test_sparse_words_learn_with_bounded_memory() -> None:
    from stream.synth import text_stream

    # a 1M-word vocabulary: the first layer stays within 2 * width features
    events = list(text_stream(3_072, seed=4, vocab=1_000_000))
    model = NeuralDriftMoE(device="cpu", width=512, seed=1)
    acc = _prequential(model, events, causal=False)
    majority = 1 - sum(y for _, y in events) / len(events)
    assert acc > majority + 0.1, (acc, majority)
    assert model._features.dim <= 1024
    assert model._d_cap <= 2048  # two inputs per feature, rounded up to a power of two
    assert model._sparse()


def _vote_blocks(model: NeuralDriftMoE, events: list) -> list[bool]:
    """Prequential label-aware run; whether each block (from the second) consulted the
    neighbour vote, checking that a block that did not left the vote's score as it was."""
    on = []
    for i in range(0, len(events), 256):
        X, y = [x for x, _ in events[i : i + 256]], [t for _, t in events[i : i + 256]]
        score = model._cmix_loss[1]
        if model._p:
            on.append(model._vote_on())
        model.predict_many_causal(X, y)
        model.learn_many(X, y)
        if on and not on[-1]:
            assert model._cmix_loss[1] == score
    return on


def test_a_weak_neighbour_vote_on_sparse_rows_rests_and_is_probed_again() -> None:
    from learners.driftmoe_neural import _VOTE_PROBE
    from stream.synth import runs_stream, text_stream

    # hashed bags of words: the vote earns a weight under the floor and rests, but for probes
    on = _vote_blocks(NeuralDriftMoE(device="cpu", seed=1), list(text_stream(12_288, seed=2)))
    probes = set(range(_VOTE_PROBE, len(on) + 1, _VOTE_PROBE))
    assert all(on[b - 1] for b in probes)
    # on from the start (equal scores), resting once its weight has fallen: the last 16 blocks
    assert on[:16] == [True] * 16 and [on[b - 1] for b in range(len(on) - 15, len(on) + 1) if b not in probes] == [False] * 14
    # classes in runs, with a few words that make the rows sparse: there the vote earns its place
    rng = np.random.default_rng(0)
    runs = [({**x, **{f"w{w}": 1 for w in rng.integers(0, 5000, 10).tolist()}}, y) for x, y in runs_stream(4_096, 1)]
    model = NeuralDriftMoE(device="cpu", seed=1)
    on = _vote_blocks(model, runs)
    assert model._sparse() and all(on), on
    # dense rows always consult it, and so do sparse ones with the floor at 0
    assert all(_vote_blocks(NeuralDriftMoE(device="cpu", seed=1), _trend_stream(4_096, 3)))
    assert all(_vote_blocks(NeuralDriftMoE(device="cpu", seed=1, sparse_vote_floor=0.0), list(text_stream(8_192, seed=2))))


def test_router_sigmoid_is_exact_at_both_ends_without_warnings() -> None:
    from learners.driftmoe_neural import _sigmoid

    g = np.array([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _sigmoid(g)
    assert out.dtype == np.float32
    # exact: below -88 the logistic is under float32's smallest normal number (1e-38), so
    # 0 is its value to float32 precision; 0.5 and 1 are exact
    assert out.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_no_overflow_warning_on_huge_inputs() -> None:
    rng = random.Random(0)
    events = [({"bytes": rng.choice([0.0, 1e12, 5e15]), "proto": rng.choice(["tcp", "udp"])}, rng.choice("ab")) for _ in range(512)]
    model = NeuralDriftMoE(device="cpu", seed=0, lr=1.0, router_lr=1.0)
    # an overflow is a RuntimeWarning, here an error (underflow to 0 is exact: numpy ignores it)
    with np.errstate(over="warn", invalid="warn", divide="warn"), warnings.catch_warnings():
        warnings.simplefilter("error")
        _prequential(model, events, causal=False, batch=128)
        _prequential(model, events, causal=True, batch=128)


def test_causal_path_follows_classes_arriving_in_runs() -> None:
    from stream.synth import runs_stream

    events = list(runs_stream(2_048, seed=5))
    plain = _prequential(NeuralDriftMoE(device="cpu", seed=1), events, causal=False)
    causal = _prequential(NeuralDriftMoE(device="cpu", seed=1), events, causal=True)
    # a run is predicted from its own first labels, not only after its micro-batch learned
    assert causal > plain + 0.2, (plain, causal)


def test_causal_labels_do_not_change_what_is_learned() -> None:
    events = _separable(600, 3)
    a, b = NeuralDriftMoE(**PARAMS, seed=2), NeuralDriftMoE(**PARAMS, seed=2)
    _prequential(a, events, causal=True, batch=50)
    _prequential(b, events, causal=False, batch=50)
    from learners.checks import assert_state_equal

    assert_state_equal(a.state_dict(), b.state_dict(), "causal vs plain predictions")


def test_a_version_3_state_still_loads() -> None:
    events = _separable(300, 4)
    model = NeuralDriftMoE(**PARAMS, seed=1)
    _stream(model, events)
    state = model.state_dict()
    old = {k: v for k, v in state.items() if k not in ("recent_labels", "causal_mix_loss")}
    old["version"] = 3
    old["features"] = {k: v for k, v in state["features"].items() if k not in ("width", "hash_buckets", "rows")}
    restored = NeuralDriftMoE(**PARAMS, seed=1)
    restored.load_state_dict(old)
    rows = [x for x, _ in events[:40]]
    # exact: the same weights and statistics give the same plain predictions
    assert restored.predict_proba_many(rows) == model.predict_proba_many(rows)


def test_one_thread_for_the_process_keeps_every_prediction_and_skips_the_per_call_limits() -> None:
    # in a fresh interpreter: the setting is for the rest of the process
    import subprocess
    import sys

    script = """
import json, torch
from learners.driftmoe_neural import NeuralDriftMoE, use_one_thread, _one_blas_thread
import learners.driftmoe_neural as m
rows = [{"a": float(i % 7), "b": float(i % 3)} for i in range(600)]
labels = [int(r["a"] > 3) for r in rows]
def run():
    model = NeuralDriftMoE(seed=3)
    model.learn_many(rows[:512], labels[:512])
    return model.predict_proba_many(rows[512:])
before = run()
use_one_thread()
after = run()
print(json.dumps({"threads": torch.get_num_threads(), "scoped": type(_one_blas_thread()).__name__, "same": before == after}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    # exact: one thread was already what each product ran on; only the switching is gone
    assert got == {"threads": 1, "scoped": "nullcontext", "same": True}


def test_the_compiled_sparse_step_is_numpys_passes_bit_for_bit() -> None:
    from learners import neural_kernels
    from learners.driftmoe_neural import _BETA2, _EPS

    rng = np.random.default_rng(0)
    f32 = np.float32
    w = rng.normal(size=(500, 40)).astype(f32)
    vw = (np.abs(rng.normal(size=(500, 40))) * 1e-4).astype(f32)
    lr = (rng.random(40) * 1e-2).astype(f32)
    # a step of 64 rows holding 600 entries over 500 inputs: inputs hit by several rows,
    # and by one row twice
    row_of = np.sort(rng.integers(0, 64, 600))
    idx = rng.integers(0, 500, 600)
    idx[1] = idx[0]
    vals = rng.normal(size=600).astype(f32)
    da = rng.normal(size=(64, 40)).astype(f32)
    vw[idx[5]] = 0.0  # a row never stepped: its moment starts at its gradient squared
    # the reference: numpy's passes, each in float32; np.add.at adds entry by entry in order
    rows, inv = np.unique(idx, return_inverse=True)
    grad = np.zeros((rows.size, 40), dtype=f32)
    np.add.at(grad, inv, vals[:, None] * da[row_of])
    v = np.where(vw[rows] == 0.0, grad * grad, vw[rows] * f32(_BETA2) + (grad * grad) * f32(1.0 - _BETA2))
    expected_w = w.copy()
    expected_w[rows] -= (grad * lr) / (np.sqrt(v) + f32(_EPS))
    vw0 = vw.copy()
    neural_kernels.sparse_rmsprop(w, vw, idx, vals, row_of, da, lr, f32(_BETA2), f32(1.0 - _BETA2), f32(_EPS))
    # exact: the same float32 operations in the same order, element by element
    assert np.array_equal(vw[rows], v) and np.array_equal(w, expected_w)
    first = np.searchsorted(rows, idx[5])
    assert np.array_equal(vw[idx[5]], grad[first] * grad[first])
    untouched = np.setdiff1d(np.arange(500), rows)
    assert np.array_equal(vw[untouched], vw0[untouched])


def test_learning_after_a_label_aware_prediction_reuses_its_vote_and_learns_the_same() -> None:
    from learners import checks
    from stream.synth import runs_stream

    events = list(runs_stream(2_048, seed=3))
    aware, blind = NeuralDriftMoE(device="cpu", seed=5), NeuralDriftMoE(device="cpu", seed=5)
    reused = 0
    for i in range(0, len(events), 256):
        X, y = [x for x, _ in events[i : i + 256]], [t for _, t in events[i : i + 256]]
        aware.predict_many_causal(X, y)
        reused += aware._vote_memo is not None
        aware.learn_many(X, y)
        blind.predict_many(X)
        blind.learn_many(X, y)
    assert reused == 7  # every block after the first, when the memory holds rows
    # exact: the memo holds the very vote the learning step would compute
    checks.assert_state_equal(aware.state_dict(), blind.state_dict())
