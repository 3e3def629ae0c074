"""The compiled passes of the neural DriftMoE against the numpy passes they replace."""

from __future__ import annotations

import random

import numpy as np
import pytest

from learners import neural_kernels as nk
from learners.driftmoe_neural import _BETA1, _BETA2, _EPS, NeuralDriftMoE

PARAMS = NeuralDriftMoE._unit_test_params()


def _three_classes(n: int, seed: int) -> list[tuple[dict, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.uniform(-1, 1), rng.uniform(-1, 1)
        out.append(({"a": a, "b": b}, "lo" if a < -0.3 else ("mid" if a + b < 0.5 else "hi")))
    return out


def _learned(**extra: object) -> tuple[NeuralDriftMoE, np.ndarray, np.ndarray]:
    """A model that learned 96 rows of three classes (class capacity 4: one padded logit),
    and 48 fresh rows as its step reads them, with their class indices."""
    m = NeuralDriftMoE(**{**PARAMS, **extra}, seed=5)
    events = _three_classes(144, 9)
    m.learn_many([x for x, _ in events[:96]], [y for _, y in events[:96]])
    assert m._fused and m._c_cap == 4 and len(m._labels) == 3
    rows = events[96:]
    xm = m._matrix(m._features.transform([x for x, _ in rows]), advance=False)
    yi = np.array([m._labels.labels.index(y) for _, y in rows], dtype=np.int64)
    return m, xm, yi


def _first_layer(m: NeuralDriftMoE, xm: np.ndarray) -> np.ndarray:
    p = m._np["p"]
    return xm @ p["w1"] + p["b1"]


@pytest.mark.parametrize("combine,temperature", [("mixture", 1.0), ("mixture", 0.5), ("top1", 1.0)])
def test_the_compiled_prediction_is_the_numpy_forward_and_mix(combine: str, temperature: float) -> None:
    m, xm, _ = _learned(combine=combine, temperature=temperature)
    a = _first_layer(m, xm)
    _, _, probs, g = m._forward_np(None, a.copy())
    expected = m._combine_np(probs, g)
    got = m._mix_np(a)
    # float32 sums in another order: equal to rounding
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert np.all(got[:, 3] == 0.0)  # the padded class gets nothing
    np.testing.assert_allclose(got[:, :3].sum(axis=1), 1.0, rtol=1e-5)
    # exact: a row's prediction is computed from that row alone
    assert np.array_equal(m._mix_np(a[7:9]), got[7:9])


def test_the_compiled_step_writes_the_numpy_steps_gradients() -> None:
    fused, xm, yi = _learned()
    plain = NeuralDriftMoE(**PARAMS, seed=5)
    plain.load_state_dict(fused.state_dict())
    plain._fused = False
    # some rows have no expert right: the router's mask then marks the most probable one
    probs = fused._forward_np(xm)[2]
    assert (probs.argmax(axis=2) != yi).all(axis=0).any()
    for m in (fused, plain):
        m._train_step_np(xm, yi)
    np.testing.assert_allclose(fused._np["gflat"], plain._np["gflat"], rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(fused._np["acc"], plain._np["acc"], rtol=1e-6)
    np.testing.assert_allclose(fused._np["flat"], plain._np["flat"], rtol=1e-4, atol=1e-6)


def test_the_compiled_adam_is_numpys_passes_bit_for_bit() -> None:
    rng = np.random.default_rng(1)
    f32 = np.float32
    w, g = rng.normal(size=3000).astype(f32), rng.normal(size=3000).astype(f32)
    m = (rng.normal(size=3000) * 1e-3).astype(f32)
    v = (np.abs(rng.normal(size=3000)) * 1e-4).astype(f32)
    lr = (rng.random(3000) * 1e-2).astype(f32)
    bc1, bc2 = 1.0 - _BETA1**5.0, 1.0 - _BETA2**5.0
    em = m * f32(_BETA1) + f32(1.0 - _BETA1) * g
    ev = v * f32(_BETA2) + f32(1.0 - _BETA2) * g * g
    ew = w - (em * lr) * f32(1.0 / bc1) / (np.sqrt(ev * f32(1.0 / bc2)) + f32(_EPS))
    step = np.array([4.0], dtype=f32)  # four steps taken: this is the fifth
    got = nk.adam(w, m, v, g, lr, step, _BETA1, _BETA2, _EPS)
    # exact: the same float32 operations in the same order, the same bias corrections
    assert np.array_equal(m, em) and np.array_equal(v, ev) and np.array_equal(w, ew)
    assert step[0] == 5.0 and got == (bc1, bc2)


def _grid_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    # small integers: every product and sum is exact in float32, so the reference's order of
    # operations cannot move a tie
    return rng.integers(-3, 4, size=(n, d)).astype(np.float32)


@pytest.mark.parametrize(
    "n,grid",
    # grids: ties at the cut; continuous rows: most groups of the memory skipped; the
    # memory in 128 groups (from 512 rows) and in 64 (from 256), each a whole number of
    # groups and with a remainder, and under four entries a group
    [(300, True), (400, False), (1024, True), (1024, False), (1000, False), (600, False), (150, False)],
)
@pytest.mark.parametrize("narrow", [True, False])
@pytest.mark.parametrize("k", [3, 8, 11])  # the search's bound from 8 sets of groups, or from k
def test_the_bank_vote_keeps_the_k_nearest_earlier_row_first_on_ties(narrow: bool, n: int, grid: bool, k: int) -> None:
    rng = np.random.default_rng(2)
    if grid:
        bank, q = _grid_rows(rng, n, 3), _grid_rows(rng, 40, 3)
    else:
        bank, q = rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(40, 3)).astype(np.float32)
    labels = rng.integers(0, 3, n)
    c = 4
    prod = q @ bank.T
    bank_sq = (bank * bank).sum(axis=1)
    near_d, near_y = np.empty((40, k), np.float32), np.empty((40, k), np.int64)
    votes = np.empty((40, c))
    none = np.zeros((0, 0), np.float32)
    if narrow:  # the distances made in the pass from the rows and the bank's columns
        nk.bank_votes(q, np.ascontiguousarray(bank.T), none, none.ravel(), labels, k, near_d, near_y, votes)
    else:  # from the products and norms a GEMM made
        nk.bank_votes(q, none, prod, bank_sq, labels, k, near_d, near_y, votes)
    d2 = prod * np.float32(-2.0) + bank_sq
    if narrow and not grid:
        # continuous rows round by the order of operations: the pass's own, column by column
        sq, acc = np.zeros(n, np.float32), np.zeros((40, n), np.float32)
        for t in range(3):
            sq += bank[:, t] * bank[:, t]
            acc += q[:, t : t + 1] * bank[:, t][None, :]
        d2 = acc * np.float32(-2.0) + sq
    order = np.argsort(d2, axis=1, kind="stable")[:, :k]
    if grid:
        assert (np.diff(np.sort(d2, axis=1)[:, k - 1 : k + 1], axis=1) == 0).any()  # ties at the cut
    # exact: the same float32 distances, the same (distance, row) order
    assert np.array_equal(near_d, np.take_along_axis(d2, order, axis=1))
    assert np.array_equal(near_y, labels[order])
    counts = np.stack([np.bincount(r, minlength=c) for r in labels[order]])
    np.testing.assert_allclose(votes, (counts + 0.1) / (k + 0.1 * c), rtol=1e-12)


@pytest.mark.parametrize("given", [False, True])
@pytest.mark.parametrize("with_bank", [True, False])
def test_the_causal_vote_reads_only_earlier_rows_with_their_labels(with_bank: bool, given: bool) -> None:
    rng = np.random.default_rng(3)
    m, d, k, c = 50, 3, 6, 3
    q = _grid_rows(rng, m, d)
    y = rng.integers(0, c, m)
    y[rng.random(m) < 0.2] = -1  # unknown labels
    kb = 4 if with_bank else 0
    near_d = np.sort(rng.integers(0, 20, size=(m, kb)).astype(np.float32), axis=1)
    near_y = rng.integers(0, c, size=(m, kb))
    votes = np.empty((m, c))
    sq = (q * q).sum(axis=1)
    # given: the distances a GEMM made (wide rows); else made from the rows (narrow rows)
    between = (sq[None, :] - 2 * q @ q.T).astype(np.float32)
    if not given:
        nk.earlier_distances(q, np.ascontiguousarray(q.T), between)
    nk.causal_votes(between, near_d, near_y, y, k, votes)
    for i in range(m):
        cand = [(float(near_d[i, t]), t, int(near_y[i, t])) for t in range(kb)]
        cand += [(float(sq[j] - 2 * q[i] @ q[j]), kb + j, int(y[j])) for j in range(i) if y[j] >= 0]
        chosen = sorted(cand)[:k]
        counts = np.bincount([lab for _, _, lab in chosen], minlength=c)
        expected = (counts + 0.1) / (len(chosen) + 0.1 * c)
        np.testing.assert_allclose(votes[i], expected, rtol=1e-12, err_msg=f"row {i}")
    # a later row's label never reaches an earlier row's vote
    flipped = y.copy()
    flipped[30:] = (flipped[30:] + 1) % c
    again = np.empty((m, c))
    nk.causal_votes(between, near_d, near_y, flipped, k, again)
    assert np.array_equal(again[:31], votes[:31])


def test_a_blocks_compiled_steps_learn_what_the_numpy_steps_learn() -> None:
    """``moe_steps`` (first layer, gradients, Adam, step after step in one call) against the
    numpy steps on the same block: the same number of steps, weights equal to rounding."""
    fused, _, _ = _learned()
    plain = NeuralDriftMoE(**PARAMS, seed=5)
    plain.load_state_dict(fused.state_dict())
    plain._fused = False
    events = _three_classes(64, 11)
    for m in (fused, plain):
        m.learn_many([x for x, _ in events], [y for _, y in events])
    assert float(fused._step) == float(plain._step) > 0
    np.testing.assert_allclose(fused._np["flat"], plain._np["flat"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fused._np["m"], plain._np["m"], rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(fused._np["acc"], plain._np["acc"], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_running_average_is_scipys_filter_bit_for_bit(dtype: type) -> None:
    from scipy.signal import lfilter

    rng = np.random.default_rng(4)
    x, start, a = rng.normal(size=(300, 5)).astype(dtype), rng.normal(size=5), 0.5 ** (1 / 32)
    running = lfilter([1.0 - a], [1.0, -a], x, axis=0, zi=(a * start)[None, :])[0]
    before = np.empty(x.shape)
    last = nk.running_average(x, start, a, before)
    # exact: the same float64 operations in the same order
    assert np.array_equal(before, np.vstack([start[None, :], running[:-1]]))
    assert np.array_equal(last, running[-1])


@pytest.mark.parametrize("d", [1, 3, 4, 6, 9])
def test_a_rows_distances_are_the_column_by_column_float32_sums_bit_for_bit(d: int) -> None:
    rng = np.random.default_rng(d)
    cols = rng.normal(size=(d, 300)).astype(np.float32)
    sq = np.zeros(300, np.float32)
    for t in range(d):
        sq += cols[t] * cols[t]
    # rows with none to all of their entries nonzero: the fused pass (up to four) and the
    # pass a column (more) must both add the products as the reference does, in order
    for zeros in range(d + 1):
        q = rng.normal(size=d).astype(np.float32)
        q[rng.permutation(d)[:zeros]] = 0.0
        acc = np.zeros(300, np.float32)
        for t in np.flatnonzero(q):
            acc += q[t] * cols[t]
        out = np.empty(300, np.float32)
        nk._distances(q, cols, sq, 300, out)
        assert np.array_equal(out, acc * np.float32(-2.0) + sq)


def test_earlier_distances_of_mostly_zero_rows_are_the_products_and_their_own() -> None:
    rng = np.random.default_rng(5)
    q = _grid_rows(rng, 60, 40)
    q[rng.random(q.shape) < 0.85] = 0.0  # hashed words: most entries zero
    out = np.empty((60, 60), np.float32)
    nk.earlier_distances(q, np.ascontiguousarray(q.T), out)
    expected = (q * q).sum(axis=1)[None, :] - 2 * q @ q.T
    lower = np.tril_indices(60, -1)
    # exact on a grid: every product and sum is an integer
    assert np.array_equal(out[lower], expected[lower])
    # a row's entries are its own: the same bits with fewer rows after it
    head = np.empty((25, 25), np.float32)
    nk.earlier_distances(q[:25], np.ascontiguousarray(q[:25].T), head)
    assert np.array_equal(head[np.tril_indices(25, -1)], out[:25, :25][np.tril_indices(25, -1)])


def test_the_compiled_projection_is_the_numpy_hashing_bit_for_bit() -> None:
    rng = np.random.default_rng(4)
    width, rows = 16, 40
    lens = rng.integers(0, 12, rows)
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    # near columns keep their place, far ones share 16 slots: many collisions, both signs
    cols = rng.integers(0, 400, int(indptr[-1])).astype(np.int64)
    vals = rng.normal(size=cols.shape[0]).astype(np.float32)
    h = (cols.astype(np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    far = cols >= width
    slot = np.where(far, (h >> np.uint64(1)) % np.uint64(width), cols.astype(np.uint64)).astype(np.int64)
    sign = np.where(far & ((h & np.uint64(1)) == 1), -1.0, 1.0).astype(np.float32)
    expected = np.zeros(rows * width, dtype=np.float32)
    np.add.at(expected, np.repeat(np.arange(rows), lens) * width + slot, vals * sign)
    got = np.full((rows, width), np.nan, dtype=np.float32)
    nk.project(indptr, cols, vals, width, got)
    assert (sign < 0).any() and len(set(zip(np.repeat(np.arange(rows), lens), slot, strict=True))) < cols.shape[0]
    assert np.array_equal(got.ravel(), expected)


def test_the_compiled_fold_is_chans_combine_in_numpy_bit_for_bit() -> None:
    rng = np.random.default_rng(6)
    d = 12
    count = rng.integers(0, 50, d).astype(np.float64)
    mean, m2 = rng.normal(size=d) * 3, rng.random(d) * count
    c = rng.integers(0, d - 3, 500)  # the last three columns unseen in the batch
    v = rng.normal(size=500) * 5 + 2
    # the numpy passes the fold replaced
    n_b = np.bincount(c, minlength=d).astype(np.float64)
    sum_b = np.bincount(c, weights=v, minlength=d)
    seen = n_b > 0
    mean_b = np.zeros(d)
    mean_b[seen] = sum_b[seen] / n_b[seen]
    m2_b = np.bincount(c, weights=(v - mean_b[c]) ** 2, minlength=d)
    n = count + n_b
    delta = mean_b - mean
    safe_n = np.where(seen, n, 1.0)
    expected = (
        n,
        np.where(seen, mean + delta * n_b / safe_n, mean),
        np.where(seen, m2 + m2_b + delta**2 * count * n_b / safe_n, m2),
    )
    got = (count.copy(), mean.copy(), m2.copy())
    nk.fold_moments(c, v, *got)
    for g, e in zip(got, expected, strict=True):
        assert np.array_equal(g, e)


def test_the_context_rows_are_the_numpy_average_and_deviation_bit_for_bit() -> None:
    rng = np.random.default_rng(8)
    z = rng.normal(size=(40, 5)).astype(np.float32) * 3
    start, a = rng.normal(size=5), 0.5 ** (1.0 / 32)
    before = np.empty(z.shape)
    expected_last = nk.running_average(z, start, a, before)
    expected = np.zeros((40, 16), np.float32)
    expected[:, 0:10:2] = z
    expected[:, 1:10:2] = z - before  # float64 deviation, rounded to float32 by the assignment
    got = np.zeros((40, 16), np.float32)
    last = nk.context_rows(z, start, a, got)
    assert np.array_equal(got, expected)
    assert np.array_equal(last, expected_last)


def test_adam_sets_moments_that_decay_below_the_normal_range_to_zero() -> None:
    f32 = np.float32
    tiny = np.finfo(f32).tiny
    # a subnormal moment times 0.9 rounds back to itself: without the flush it never leaves
    m = np.array([f32(3e-45), tiny * f32(1.05), f32(1e-30), f32(2e-3)], dtype=f32)
    v = np.array([f32(3e-45), tiny * f32(1.0005), f32(1e-30), f32(4e-6)], dtype=f32)
    w, g, lr = np.ones(4, f32), np.zeros(4, f32), np.full(4, 1e-3, f32)
    expected_m, expected_v = m * f32(0.9), v * f32(0.999)
    nk.adam(w, m, v, g, lr, np.zeros(1, f32), 0.9, 0.999, 1e-8)
    assert expected_m[0] == f32(3e-45)  # stuck, as the flush's reason says
    assert m[0] == 0.0 and v[0] == 0.0
    assert m[1] == 0.0 and v[1] == 0.0  # 1.05 * tiny * 0.9 is subnormal
    assert np.array_equal(m[2:], expected_m[2:]) and np.array_equal(v[2:], expected_v[2:])
    assert w[0] == 1.0 and w[1] == 1.0


def test_csr_values_are_numpys_standardising_passes_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    n, d = 40, 300
    r = np.sort(rng.integers(0, n, 900))
    c = rng.integers(0, d, 900)
    v = rng.normal(0, 50, 900) * (rng.random(900) < 0.5) + 1.0
    shift, scale = rng.normal(size=d), rng.uniform(0.01, 3.0, d)
    for clip in (10.0, 0.0):
        indptr, z = np.empty(n + 1, dtype=np.int64), np.empty(900, dtype=np.float32)
        assert nk.csr_values(r, c, v, shift, scale, clip, indptr, z)
        ref = (v - shift[c]) * scale[c]
        if clip:
            np.minimum(np.maximum(ref, -clip, out=ref), clip, out=ref)
            assert (np.abs(ref) == clip).any()  # some values were clipped
        assert z.tobytes() == ref.astype(np.float32).tobytes()
        assert indptr.tolist() == [0, *np.cumsum(np.bincount(r, minlength=n)).tolist()]
    # rows out of order: refused, the caller sorts them
    assert not nk.csr_values(r[::-1].copy(), c, v, shift, scale, 10.0, indptr, z)


def test_gather_rows_sums_the_bags_embedding_bag_sums() -> None:
    import torch

    rng = np.random.default_rng(4)
    w = rng.normal(size=(300, 24)).astype(np.float32)
    b = rng.normal(size=24).astype(np.float32)
    lens = rng.integers(0, 9, 50)
    lens[[0, 7, 49]] = 0  # empty rows, the last among them
    offsets = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    idx = rng.integers(0, 300, int(lens.sum()))
    idx[1] = idx[0]  # one input twice in a row
    vals = rng.normal(size=idx.size).astype(np.float32)
    out = np.empty((50, 24), dtype=np.float32)
    nk.gather_rows(offsets, idx, vals, w, b, out)
    ref = torch.nn.functional.embedding_bag(
        torch.from_numpy(idx), torch.from_numpy(w), torch.from_numpy(offsets), mode="sum",
        per_sample_weights=torch.from_numpy(vals),
    ).numpy() + b  # fmt: skip
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out[[0, 7, 49]], np.broadcast_to(b, (3, 24)))
