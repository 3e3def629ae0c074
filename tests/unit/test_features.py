from __future__ import annotations

import numpy as np
import pytest

from learners.exceptions import InvalidInputError
from learners.features import CLIP_SD, FeatureSpace, LabelSpace


def _sample(seed: int = 0, n: int = 500) -> tuple[list[dict], np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = np.column_stack(
        [rng.normal(3.0, 2.0, n), rng.uniform(-100, 1000, n), rng.exponential(5.0, n)]
    )
    X = [{"a": float(r[0]), "b": float(r[1]), "c": float(r[2])} for r in raw]
    return X, raw


def test_standardisation_matches_numpy_in_batches() -> None:
    X, raw = _sample()
    fs = FeatureSpace()
    for i in range(0, len(X), 37):  # uneven batches exercise the parallel combine
        fs.update(X[i : i + 37])
    np.testing.assert_allclose(fs.mean, raw.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(fs.std, raw.std(axis=0), rtol=1e-10)
    Z = fs.transform(X)
    assert Z.dtype == np.float32 and Z.shape == (500, 3)
    expected = np.clip((raw - raw.mean(0)) / raw.std(0), -CLIP_SD, CLIP_SD)
    np.testing.assert_allclose(Z, expected, rtol=1e-5, atol=1e-5)
    assert fs.columns == ["a", "b", "c"]


def test_one_at_a_time_matches_numpy() -> None:
    X, raw = _sample(seed=1, n=200)
    fs = FeatureSpace()
    for x in X:
        fs.update([x])
    np.testing.assert_allclose(fs.mean, raw.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(fs.std, raw.std(axis=0), rtol=1e-9)


def test_clip_and_missing_and_unseen() -> None:
    fs = FeatureSpace()
    fs.update([{"a": float(v)} for v in range(-5, 6)])  # mean 0, sd sqrt(10)
    Z = fs.transform([{"a": 1e6}, {}, {"zzz": 3.0}])
    assert Z.shape == (3, 1)
    assert Z[0, 0] == pytest.approx(CLIP_SD)
    assert Z[1, 0] == 0.0  # missing -> mean -> 0
    assert Z[2, 0] == 0.0  # unseen feature is dropped, dim unchanged
    assert fs.dim == 1


def test_new_feature_and_category_grow_dim() -> None:
    fs = FeatureSpace()
    fs.update([{"a": 1.0, "colour": "red"}])
    assert fs.columns == ["a", "colour=red"]
    fs.update([{"a": 2.0, "colour": "blue", "flag": True}])
    assert fs.columns == ["a", "colour=red", "colour=blue", "flag"]
    Z = fs.transform([{"a": 1.5, "colour": "blue", "flag": False}])
    assert Z.shape == (1, 4)
    assert Z[0, 1] == 0.0 and Z[0, 2] == 1.0
    # the bool is numeric: flag seen once as 1 -> mean 1, constant -> unscaled
    assert Z[0, 3] == pytest.approx(-1.0)
    # many growths past the initial capacity
    fs.update([{f"f{i}": float(i) for i in range(100)}])
    assert fs.dim == 104


def test_hashing_bounds_dim() -> None:
    fs = FeatureSpace(hash_dim=8)
    fs.update([{"id": f"user{i}", "v": float(i)} for i in range(1000)])
    assert fs.dim <= 9
    Z = fs.transform([{"id": "user3", "v": 1.0}])
    assert Z[0].sum() != 0.0
    assert sum(1 for c in fs.columns if c.startswith("hash_")) == fs.dim - 1


def test_no_standardize_keeps_raw_values() -> None:
    fs = FeatureSpace(standardize=False)
    Z = fs.update_and_transform([{"a": 123.0, "s": "x"}, {"a": -4.0}])
    # exact: raw values pass through unstandardised; the one-hot column is 0 or 1
    np.testing.assert_array_equal(Z, np.array([[123.0, 1.0], [-4.0, 0.0]], dtype=np.float32))


def test_transform_does_not_mutate_stats() -> None:
    X, _ = _sample(seed=2, n=100)
    fs = FeatureSpace()
    fs.update(X[:50])
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in fs.state_dict().items()}
    fs.transform([*X[50:], {"new": 1.0, "cat": "x"}])
    after = fs.state_dict()
    assert after["names"] == before["names"]
    for k in ("count", "mean", "m2"):
        # exact: the stored statistics are compared as stored; nothing is recomputed
        np.testing.assert_array_equal(after[k], before[k])


def test_state_round_trip() -> None:
    X, _ = _sample(seed=3, n=100)
    X = [dict(x, s=("u" if i % 3 else "v"), b=bool(i % 2)) for i, x in enumerate(X)]
    for hash_dim in (None, 4):
        fs = FeatureSpace(hash_dim=hash_dim)
        fs.update(X[:60])
        state = fs.state_dict()
        # plain values: lists and numpy arrays only
        restored = FeatureSpace()
        restored.load_state_dict(
            {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in state.items()}
        )
        assert restored.columns == fs.columns
        # exact: the state was restored bit for bit, then the same computation ran
        np.testing.assert_array_equal(restored.transform(X[60:]), fs.transform(X[60:]))
        fs.update(X[60:])
        restored.update(X[60:])
        np.testing.assert_array_equal(restored.transform(X), fs.transform(X))


def test_label_space() -> None:
    ls = LabelSpace()
    assert ls.update_and_encode(["b", "a", "b"]).tolist() == [0, 1, 0]
    assert ls.encode(["a", "zzz"]).tolist() == [1, -1]
    assert len(ls) == 2 and ls.labels == ["b", "a"] and ls.decode(1) == "a"
    other = LabelSpace()
    other.load_state_dict(ls.state_dict())
    assert other.labels == ["b", "a"]
    other.update([3])
    assert other.encode([3]).tolist() == [2]


def test_learning_after_predicting_the_same_rows_matches_a_fresh_scan():
    import random as _random

    rng = _random.Random(3)
    rows = [
        {"a": rng.random(), "b": rng.choice(["u", "v"]), "c": rng.randint(0, 9)} for _ in range(64)
    ]
    warm = [{"a": 0.5, "b": "u", "c": 1}, {"a": 0.1, "b": "v", "c": 2}]
    reused, fresh = FeatureSpace(), FeatureSpace()
    for fs in (reused, fresh):
        fs.update(warm)
    reused.transform(rows)  # leaves a scan of these very dicts behind
    out_reused = reused.update_and_transform(list(rows))
    out_fresh = fresh.update_and_transform(rows)
    # exact: the same computation on identical state (same process, shapes and code path)
    assert np.array_equal(out_reused, out_fresh)
    assert np.array_equal(reused.mean, fresh.mean) and reused.columns == fresh.columns
    # rows with an unseen feature are scanned afresh, so the new column is learned
    new = [{**r, "d": 1.0} for r in rows[:4]]
    reused.transform(new)
    assert reused.update_and_transform(new).shape == (4, fresh.dim + 1)


def test_rows_of_numbers_and_strings_match_the_item_by_item_scan():
    rng = np.random.default_rng(5)
    rows = [
        {"date": float(rng.random()), "day": str(rng.integers(1, 8)), "n": int(rng.integers(9))}
        for _ in range(300)
    ]
    # numpy scalars are not plain values, so this copy of the rows is read item by item
    item_rows = [{**r, "date": np.float64(r["date"])} for r in rows]
    fast, slow = FeatureSpace(), FeatureSpace()
    for batch in (slice(0, 7), slice(7, 300)):
        out_fast = fast.update_and_transform(rows[batch])
        out_slow = slow.update_and_transform(item_rows[batch])
        # exact: the vectorised and item-by-item scans do the same float32 arithmetic per element
        assert np.array_equal(out_fast, out_slow)
    assert fast.columns == slow.columns
    assert fast.columns[:3] == ["date", f"day={rows[0]['day']}", "n"]
    assert sorted(c for c in fast.columns if c.startswith("day=")) == [
        f"day={d}" for d in range(1, 8)
    ]
    assert np.array_equal(fast.mean, slow.mean) and np.array_equal(fast.std, slow.std)
    with pytest.raises(InvalidInputError, match=r"X\[1\]\[.n.\] must be finite"):
        fast.update(
            [{"date": 0.1, "day": "1", "n": 1}, {"date": 0.1, "day": "2", "n": float("nan")}]
        )


def test_width_hashes_later_features_into_shared_columns() -> None:
    fs = FeatureSpace(width=16, hash_buckets=32)
    # a 1M-word vocabulary, in bags of 40 words
    rng = np.random.default_rng(0)
    for _ in range(20):
        words = rng.integers(0, 1_000_000, (256, 40))
        fs.update([{f"w{w}": 1 for w in row} for row in words.tolist()])
    assert fs.dim == 16 + 32  # bounded whatever the vocabulary
    assert sum(c.startswith("overflow_") for c in fs.columns) == 32
    # strings past the width share the same buckets
    fs.update([{"user": "u1"}])
    assert fs.dim == 48
    # the same word always lands in the same column, in another space too
    other = FeatureSpace(width=16, hash_buckets=32)
    other.load_state_dict(fs.state_dict())
    row = [{"w123456789": 1, "w42": 1}]
    np.testing.assert_array_equal(fs.transform(row), other.transform(row))


def test_sparse_columns_keep_presence_and_dense_ones_are_centred() -> None:
    fs = FeatureSpace()
    rows = [{"dense": float(i), "word": 1} if i % 4 == 0 else {"dense": float(i)} for i in range(400)]
    fs.update(rows)
    Z = fs.transform([{"dense": 0.0, "word": 1}, {"dense": 0.0}])
    # "word" is present in a quarter of the rows and always 1: it stays 1 (present) and 0
    # (absent); centred on its mean it would be 0 in both rows
    assert Z[0, 1] == pytest.approx(1.0)
    assert Z[1, 1] == 0.0
    # "dense" is in every row: standardised as before
    assert Z[0, 0] == pytest.approx((0.0 - 199.5) / np.std(np.arange(400.0)), rel=1e-5)


def test_transform_sparse_matches_the_dense_transform() -> None:
    fs = FeatureSpace(width=4, hash_buckets=3)
    rng = np.random.default_rng(1)
    batch = [{f"f{w}": float(v) for w, v in zip(rng.integers(0, 12, 5).tolist(), rng.normal(size=5).tolist(), strict=True)} for _ in range(50)]
    batch += [{"s": "a", "f1": 2.0}, {}]
    indptr, cols, vals = fs.update_and_transform_sparse(batch)
    dense = np.zeros((len(batch), fs.dim), dtype=np.float32)
    rows = np.repeat(np.arange(len(batch)), np.diff(indptr))
    np.add.at(dense, (rows, cols), vals)
    np.testing.assert_allclose(dense, fs.transform(batch), rtol=1e-6, atol=1e-7)
    assert indptr[-1] == cols.size and (indptr[-2] == indptr[-1])  # the empty row


def test_names_past_the_width_find_the_columns_the_item_by_item_scan_finds() -> None:
    rng = np.random.default_rng(2)
    fast, slow = FeatureSpace(width=64, hash_buckets=50), FeatureSpace(width=64, hash_buckets=50)
    # names the compiled pass leaves to the dict lookups: non-ASCII, a zero byte, a non-str
    odd = [{"wé": 1.0}, {"w\0x": 1.0}, {"Ünï": 2.0, "w7": 1.0}]
    for b in range(8):
        rows = [{f"w{w}": 1 for w in rng.integers(0, 3000, 20).tolist()} for _ in range(64)]
        rows[5][""] = 3.0
        if b % 3 == 2:
            rows[9:12] = odd
        fast.update(rows)
        # a numpy scalar in every row sends the whole batch item by item, through the dicts
        slow.update([{k: np.float64(v) if j == 0 else v for j, (k, v) in enumerate(r.items())} for r in rows])
        if b == 1:
            assert fast._words is not None  # the width is full: the compiled pass read this batch
    assert fast.columns == slow.columns and fast.dim == 64 + 50
    np.testing.assert_array_equal(fast.mean, slow.mean)
    # unseen names past the width land in their buckets; nothing grows on a transform
    probe = [{f"w{w}": 1 for w in rng.integers(0, 10**6, 30).tolist()} for _ in range(32)]
    for a, b in zip(fast.transform_sparse(probe), slow.transform_sparse([{**r} for r in probe]), strict=True):
        np.testing.assert_array_equal(a, b)
    restored = FeatureSpace(width=64, hash_buckets=50)
    restored.load_state_dict(fast.state_dict())
    np.testing.assert_array_equal(restored.transform(probe), fast.transform(probe))
    assert restored._words is not None


def test_word_columns_hash_as_zlib_crc32() -> None:
    import zlib

    from learners.neural_kernels import CRC_TABLE, word_columns

    rng = np.random.default_rng(0)
    names = ["", "a", "w123", "x" * 300]
    names += ["".join(chr(c) for c in rng.integers(1, 128, rng.integers(1, 40))) for _ in range(200)]
    blob = np.frombuffer("\0".join(names).encode("ascii"), dtype=np.uint8)
    buckets = 977
    out = np.empty(len(names), dtype=np.int64)
    no_names = np.zeros(0, dtype=np.int64)
    word_columns(blob, blob[:0], no_names, no_names, np.full(2, -1, dtype=np.int64), np.arange(buckets), CRC_TABLE, out)
    assert out.tolist() == [zlib.crc32(n.encode()) % buckets for n in names]
