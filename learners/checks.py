"""The learner contract, as checks that run on every learner.

``yield_checks(learner_factory)`` yields named check functions. Each takes a factory that
builds a fresh, identically configured learner, and a small seeded stream (see
``seeded_stream``), and raises ``AssertionError`` when the learner breaks the contract:

- it can predict before learning anything (``None`` or a label; a dict of probabilities);
- predicting changes neither the model (its ``state_dict``, compared exactly: tensors,
  arrays and bytes bit for bit) nor the input dicts, and learning leaves the inputs alone;
- the same seed and the same input give the same state and the same predictions;
- ``state_dict`` → ``load_state_dict`` on a fresh instance predicts bit-identically and
  keeps learning identically; a ``state_dict`` is a snapshot, not a view of live state;
- a class or a feature first seen mid-stream is handled;
- chop invariance: the same stream learned in one call, one row a call, or split at seeded
  random points gives the same state bit for bit (a learner that learns in fixed blocks
  keeps the rows of an unfilled block in its state), and a row's prediction does not
  depend on the rows after it in the same call;
- the label-aware verbs (``predict_many_causal(X, y)``): a row's prediction depends on the
  labels of the rows before it only, never on its own label or later rows and labels, it
  changes nothing, and unknown (None) labels are accepted;
- malformed input (a non-dict ``x``, a NaN, a list value, a ``None`` label, ``X`` and ``y``
  of different lengths) raises ``InvalidInputError`` naming the field, and leaves the model
  as it was.

A learner opts out of a check by listing its name in a ``_unit_test_skips()`` classmethod.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import re
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from learners.base import Learner
from learners.exceptions import InvalidInputError

Event = tuple[dict[str, Any], Hashable]
Factory = Callable[[], Learner]
Check = Callable[[Factory, list[Event]], None]

__all__ = ["assert_state_equal", "probe_rows", "seeded_stream", "yield_checks"]


# --------------------------------------------------------------------------- data
def seeded_stream(n: int = 400, seed: int = 42) -> list[Event]:
    """A small SEA-like stream: three numeric features in [0, 10), labels "a"/"b", 10% noise."""
    rng = random.Random(seed)
    out: list[Event] = []
    for _ in range(n):
        x = {f"f{i}": round(rng.uniform(0.0, 10.0), 4) for i in range(3)}
        y = "a" if x["f0"] + x["f1"] <= 9.0 else "b"
        if rng.random() < 0.1:
            y = "b" if y == "a" else "a"
        out.append((x, y))
    return out


def seeded_regression_stream(n: int = 400, seed: int = 42) -> list[Event]:
    """The same features as ``seeded_stream``, a linear target with seeded noise."""
    rng = random.Random(seed)
    out: list[Event] = []
    for _ in range(n):
        x = {f"f{i}": round(rng.uniform(0.0, 10.0), 4) for i in range(3)}
        out.append((x, round(2.0 * x["f0"] - x["f1"] + 0.5 * x["f2"] + rng.gauss(0.0, 0.5), 4)))
    return out


def stream_for(learner: Learner, n: int = 400, seed: int = 42) -> list[Event]:
    """The seeded stream that fits the learner's task."""
    if getattr(learner, "task", "classification") == "regression":
        return seeded_regression_stream(n, seed)
    return seeded_stream(n, seed)


def probe_rows(stream: Sequence[Event], n: int = 20) -> list[dict[str, Any]]:
    """Rows to predict on: from the stream, plus one with an unseen feature and one missing one."""
    rows = [dict(x) for x, _ in stream[:n]]
    rows.append({**stream[0][0], "unseen": 1.5})
    partial = dict(stream[1][0])
    partial.pop("f2", None)
    rows.append(partial)
    return rows


def _learn(learner: Learner, events: Sequence[Event], batch: int = 25) -> None:
    for i in range(0, len(events), batch):
        chunk = events[i : i + batch]
        learner.learn_many([x for x, _ in chunk], [y for _, y in chunk])


def _predictions(learner: Learner, rows: list[dict[str, Any]]) -> tuple[Any, ...]:
    return (
        learner.predict_many(rows),
        learner.predict_proba_many(rows),
        [learner.predict_one(x) for x in rows],
        [learner.predict_proba_one(x) for x in rows],
    )


# --------------------------------------------------------------------------- comparison
def assert_state_equal(a: Any, b: Any, path: str = "state") -> None:
    """Assert two states are identical: tensors and arrays bit for bit, bytes byte for byte."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor), f"{path}: type differs"
        assert a.dtype == b.dtype, f"{path}: dtype {a.dtype} != {b.dtype}"
        assert a.shape == b.shape, f"{path}: shape {tuple(a.shape)} != {tuple(b.shape)}"
        ab = a.detach().cpu().contiguous().view(-1).view(torch.uint8) if a.numel() else a
        bb = b.detach().cpu().contiguous().view(-1).view(torch.uint8) if b.numel() else b
        assert torch.equal(ab, bb), f"{path}: tensor values differ"
        return
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), f"{path}: type differs"
        assert a.dtype == b.dtype, f"{path}: dtype {a.dtype} != {b.dtype}"
        assert a.shape == b.shape, f"{path}: shape {a.shape} != {b.shape}"
        if a.dtype == object:
            for i, (u, v) in enumerate(zip(a.ravel(), b.ravel(), strict=True)):
                assert_state_equal(u, v, f"{path}[{i}]")
        else:
            assert a.tobytes() == b.tobytes(), f"{path}: array values differ"
        return
    if isinstance(a, Mapping):
        assert isinstance(b, Mapping), f"{path}: {type(a).__name__} vs {type(b).__name__}"
        assert list(a.keys()) == list(b.keys()), (
            f"{path}: keys differ: {sorted(map(str, set(a) ^ set(b)))} (or their order)"
        )
        for k in a:
            assert_state_equal(a[k], b[k], f"{path}[{k!r}]")
        return
    if isinstance(a, list | tuple):
        assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            assert_state_equal(u, v, f"{path}[{i}]")
        return
    if isinstance(a, bytes | bytearray):
        assert a == b, (
            f"{path}: bytes differ ({len(a)} vs {len(b) if isinstance(b, bytes | bytearray) else '?'} bytes)"
        )
        return
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return
    assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
    assert a == b, f"{path}: {a!r} != {b!r}"


def _assert_same_predictions(a: tuple[Any, ...], b: tuple[Any, ...], what: str) -> None:
    for name, u, v in zip(
        ("predict_many", "predict_proba_many", "predict_one", "predict_proba_one"),
        a,
        b,
        strict=True,
    ):
        assert_state_equal(u, v, f"{what}: {name}")


# --------------------------------------------------------------------------- checks
def check_predict_before_learning(factory: Factory, stream: list[Event]) -> None:
    learner = factory()
    rows = probe_rows(stream, 5)
    y = learner.predict_one(rows[0])
    assert y is None or isinstance(y, Hashable), f"predict_one returned {y!r}"
    p = learner.predict_proba_one(rows[0])
    assert isinstance(p, dict), f"predict_proba_one returned {type(p).__name__}, not a dict"
    many = learner.predict_many(rows)
    assert isinstance(many, list) and len(many) == len(rows), "predict_many: one answer per row"
    probas = learner.predict_proba_many(rows)
    assert isinstance(probas, list) and len(probas) == len(rows), "predict_proba_many: one per row"
    assert all(isinstance(q, dict) for q in probas), "predict_proba_many: dicts"


def check_predict_does_not_mutate_model(factory: Factory, stream: list[Event]) -> None:
    learner = factory()
    rows = probe_rows(stream)
    before_learning = learner.state_dict()
    _predictions(learner, rows)
    assert_state_equal(before_learning, learner.state_dict(), "untrained state after predicting")
    _learn(learner, stream[:150])
    before = learner.state_dict()
    _predictions(learner, rows)
    assert_state_equal(before, learner.state_dict(), "state after predicting")


def check_does_not_mutate_input(factory: Factory, stream: list[Event]) -> None:
    learner = factory()
    rows = probe_rows(stream)
    events = copy.deepcopy(stream[:100])
    X = [x for x, _ in events]
    y = [label for _, label in events]
    X_copy, y_copy, rows_copy = copy.deepcopy(X), list(y), copy.deepcopy(rows)
    learner.learn_many(X, y)
    learner.learn_one(X[0], y[0])
    _predictions(learner, rows)
    assert X_copy == X, "learn_many/learn_one changed the feature dicts it was given"
    assert y == y_copy, "learn_many changed the labels it was given"
    assert rows == rows_copy, "a predict verb changed the feature dicts it was given"


def check_deterministic(factory: Factory, stream: list[Event]) -> None:
    a, b = factory(), factory()
    _learn(a, stream[:250])
    _learn(b, stream[:250])
    assert_state_equal(a.state_dict(), b.state_dict(), "two runs on the same input")
    rows = probe_rows(stream)
    _assert_same_predictions(_predictions(a, rows), _predictions(b, rows), "two runs")


def check_state_round_trip(factory: Factory, stream: list[Event]) -> None:
    learner = factory()
    _learn(learner, stream[:200])
    restored = factory()
    restored.load_state_dict(learner.state_dict())
    rows = probe_rows(stream)
    _assert_same_predictions(_predictions(learner, rows), _predictions(restored, rows), "restored")


def check_state_round_trip_untrained(factory: Factory, stream: list[Event]) -> None:
    learner = factory()
    restored = factory()
    restored.load_state_dict(learner.state_dict())
    _learn(learner, stream[:60])
    _learn(restored, stream[:60])
    rows = probe_rows(stream)
    _assert_same_predictions(_predictions(learner, rows), _predictions(restored, rows), "restored")


def check_restored_learns_identically(factory: Factory, stream: list[Event]) -> None:
    learner = factory()
    _learn(learner, stream[:200])
    restored = factory()
    restored.load_state_dict(learner.state_dict())
    _learn(learner, stream[200:300])
    _learn(restored, stream[200:300])
    rows = probe_rows(stream)
    _assert_same_predictions(
        _predictions(learner, rows), _predictions(restored, rows), "restored, then 100 more"
    )


def check_state_dict_is_a_snapshot(factory: Factory, stream: list[Event]) -> None:
    learner = factory()
    _learn(learner, stream[:150])
    state = learner.state_dict()
    frozen = copy.deepcopy(state)
    _learn(learner, stream[150:250])
    assert_state_equal(frozen, state, "a state_dict after the learner learned more")
    restored = factory()
    restored.load_state_dict(state)
    _learn(restored, stream[250:300])
    assert_state_equal(frozen, state, "a state_dict after a learner loaded from it learned")


def check_new_class_mid_stream(factory: Factory, stream: list[Event]) -> None:
    learner = factory()
    _learn(learner, stream[:150])
    new: list[Event] = [(x, "c" if x["f2"] > 5.0 else y) for x, y in stream[150:350]]
    _learn(learner, new)
    rows = [x for x, _ in stream[:200]]
    preds = learner.predict_many(rows)
    assert len(preds) == len(rows)
    probas = learner.predict_proba_many(rows)
    p_c = [p.get("c", 0.0) for p in probas]
    inside = [p for p, x in zip(p_c, rows, strict=True) if x["f2"] > 5.0]
    outside = [p for p, x in zip(p_c, rows, strict=True) if x["f2"] <= 5.0]
    # the new class owns the region f2 > 5: a learner that took it in gives it more
    # probability there than elsewhere, and predicts it for some of those rows
    assert sum(inside) / len(inside) > sum(outside) / len(outside), (
        f"a class learned mid-stream gets no more probability in its region "
        f"({sum(inside) / len(inside):.3f}) than outside it ({sum(outside) / len(outside):.3f})"
    )
    assert any(p == "c" for p, x in zip(preds, rows, strict=True) if x["f2"] > 5.0), (
        "a class learned mid-stream is never predicted, even in its own region"
    )


def check_new_feature_mid_stream(factory: Factory, stream: list[Event]) -> None:
    learner = factory()
    _learn(learner, stream[:100])
    rng = random.Random(7)
    grown: list[Event] = [
        ({**x, "f_new": round(rng.uniform(-1.0, 1.0), 4), "colour": rng.choice(["red", "blue"])}, y)
        for x, y in stream[100:200]
    ]
    _learn(learner, grown)
    rows = probe_rows(grown)
    preds = learner.predict_many(rows)
    assert len(preds) == len(rows)
    restored = factory()
    restored.load_state_dict(learner.state_dict())
    _assert_same_predictions(_predictions(learner, rows), _predictions(restored, rows), "restored")


def check_chop_invariant(factory: Factory, stream: list[Event]) -> None:
    events = stream[:300]
    whole = factory()
    whole.learn_many([x for x, _ in events], [y for _, y in events])
    one_by_one = factory()
    for x, y in events:
        one_by_one.learn_many([x], [y])
    rng = random.Random(11)
    cuts = sorted({0, len(events), *rng.sample(range(1, len(events)), 9)})
    split = factory()
    for a, b in itertools.pairwise(cuts):
        split.learn_many([x for x, _ in events[a:b]], [y for _, y in events[a:b]])
    rows = probe_rows(stream)
    reference = whole.state_dict()
    for name, other in (("one row a call", one_by_one), ("split at random points", split)):
        assert_state_equal(reference, other.state_dict(), f"learned {name} against in one call")
        _assert_same_predictions(_predictions(whole, rows), _predictions(other, rows), name)


def check_prediction_ignores_later_rows(factory: Factory, stream: list[Event]) -> None:
    learner = factory()
    _learn(learner, stream[:200])
    rows = [x for x, _ in stream[200:260]]
    full = learner.predict_proba_many(rows)
    labels = learner.predict_many(rows)
    for n in (1, 17, 59):
        # exact: each prefix row is computed by the same code on the same inputs
        assert learner.predict_proba_many(rows[:n]) == full[:n], f"predict_proba_many of the first {n} rows"
        assert learner.predict_many(rows[:n]) == labels[:n], f"predict_many of the first {n} rows"


def check_causal_prediction_uses_only_earlier_labels(factory: Factory, stream: list[Event]) -> None:
    learner = factory()
    _learn(learner, stream[:200])
    rows = [x for x, _ in stream[200:260]]
    labels = [y for _, y in stream[200:260]]
    before = learner.state_dict()
    full = learner.predict_proba_many_causal(rows, labels)
    hard = learner.predict_many_causal(rows, labels)
    assert len(full) == len(rows) and len(hard) == len(rows), "one answer per row"
    other = {"a": "b", "b": "a"}
    for n in (1, 17, 59):
        # exact: each prefix row is computed by the same code on the same inputs
        assert learner.predict_proba_many_causal(rows[:n], labels[:n]) == full[:n], (
            f"predict_proba_many_causal of the first {n} rows"
        )
        assert learner.predict_many_causal(rows[:n], labels[:n]) == hard[:n], (
            f"predict_many_causal of the first {n} rows"
        )
        # the last row's own label, unknown or wrong, never reaches its prediction
        for own in (None, other.get(labels[n - 1], labels[n - 1])):
            got = learner.predict_proba_many_causal(rows[:n], [*labels[: n - 1], own])
            # exact: the same rows and earlier labels, so the same computation
            assert got == full[:n], f"row {n - 1}'s prediction read its own label"
    unknown = learner.predict_many_causal(rows, [None] * len(rows))
    assert len(unknown) == len(rows), "unknown labels: one answer per row"
    assert_state_equal(before, learner.state_dict(), "state after causal predictions")
    _expect_invalid(
        lambda: learner.predict_many_causal(rows[:3], labels[:2]), "y", "3 rows and 2 labels"
    )


def _names(message: str, field: str) -> bool:
    if field == "x":
        # a *_one verb may name its argument x, or the row X[0] when it delegates to *_many
        return re.search(r"(^|[^A-Za-z_])(x|X\[0\])([^A-Za-z_]|$)", message) is not None
    return field in message


def _expect_invalid(fn: Callable[[], Any], must_name: str, what: str) -> None:
    try:
        fn()
    except InvalidInputError as e:
        assert _names(str(e), must_name), (
            f"{what}: the error {str(e)!r} does not name {must_name!r}"
        )
        return
    except Exception as e:
        raise AssertionError(
            f"{what}: raised {type(e).__name__}: {e}, not InvalidInputError"
        ) from e
    raise AssertionError(f"{what}: accepted")


def check_rejects_malformed_input(factory: Factory, stream: list[Event]) -> None:
    learner = factory()
    _learn(learner, stream[:100])
    before = learner.state_dict()
    good_x, good_y = stream[100]
    # (bad row, field a *_one verb must name, field a *_many verb must name, description)
    bad_rows: list[tuple[Any, str, str, str]] = [
        ([1.0, 2.0], "x", "X[1]", "a list instead of a dict"),
        ({**good_x, "f1": float("nan")}, "f1", "f1", "a NaN value"),
        ({**good_x, "f2": [1, 2]}, "f2", "f2", "a list value"),
    ]
    for bad, one, many, what in bad_rows:
        _expect_invalid(
            lambda bad=bad: learner.learn_one(bad, good_y), one, f"learn_one with {what}"
        )
        _expect_invalid(lambda bad=bad: learner.predict_one(bad), one, f"predict_one with {what}")
        _expect_invalid(
            lambda bad=bad: learner.predict_proba_one(bad), one, f"predict_proba_one with {what}"
        )
        X = [good_x, bad, good_x]
        _expect_invalid(
            lambda X=X: learner.learn_many(X, [good_y] * 3), many, f"learn_many with {what}"
        )
        _expect_invalid(lambda X=X: learner.predict_many(X), many, f"predict_many with {what}")
        _expect_invalid(
            lambda X=X: learner.predict_proba_many(X), many, f"predict_proba_many with {what}"
        )
    _expect_invalid(lambda: learner.learn_one(good_x, None), "y", "learn_one with a None label")
    _expect_invalid(
        lambda: learner.learn_many([good_x, good_x], [good_y, None]),
        "y",
        "learn_many with a None label",
    )
    assert_state_equal(before, learner.state_dict(), "state after rejected input")


def check_learn_many_length_mismatch(factory: Factory, stream: list[Event]) -> None:
    learner = factory()
    X = [x for x, _ in stream[:10]]
    y = [label for _, label in stream[:9]]
    before = learner.state_dict()
    _expect_invalid(lambda: learner.learn_many(X, y), "y", "learn_many with 10 rows and 9 labels")
    assert_state_equal(before, learner.state_dict(), "state after a rejected learn_many")


_CHECKS: tuple[Check, ...] = (
    check_predict_before_learning,
    check_predict_does_not_mutate_model,
    check_does_not_mutate_input,
    check_deterministic,
    check_state_round_trip,
    check_state_round_trip_untrained,
    check_restored_learns_identically,
    check_state_dict_is_a_snapshot,
    check_new_class_mid_stream,
    check_new_feature_mid_stream,
    check_chop_invariant,
    check_prediction_ignores_later_rows,
    check_causal_prediction_uses_only_earlier_labels,
    check_rejects_malformed_input,
    check_learn_many_length_mismatch,
)


def check_regressor_predicts_finite_numbers(factory: Factory, stream: list[Event]) -> None:
    learner = factory()
    if getattr(learner, "task", "classification") != "regression":
        return
    rows = probe_rows(stream)
    before = learner.predict_many(rows)
    assert all(isinstance(p, float) and math.isfinite(p) for p in before), f"before learning: {before[:3]!r}"
    _learn(learner, stream[:300])
    preds = learner.predict_many(rows)
    assert all(isinstance(p, float) and math.isfinite(p) for p in preds), f"after learning: {preds[:3]!r}"
    assert learner.predict_proba_many(rows) == [{} for _ in rows], "a regressor has no class probabilities"
    # it learned something: its error on the stream is below the spread of the target
    ys = [y for _, y in stream[:20]]
    mean = sum(ys) / len(ys)
    mae = sum(abs(p - y) for p, y in zip(preds[:20], ys, strict=True)) / len(ys)
    spread = sum(abs(y - mean) for y in ys) / len(ys)
    assert mae < spread, f"mean absolute error {mae:.3f} is not below the target's spread {spread:.3f}"
    for bad in ("a", True, float("nan")):
        _expect_invalid(lambda b=bad: learner.learn_many([stream[0][0]], [b]), "y", f"learn_many with the target {bad!r}")


_CHECKS = (*_CHECKS, check_regressor_predicts_finite_numbers)
#: checks about classes, which a regressor has none of
CLASSIFICATION_ONLY = frozenset({"check_new_class_mid_stream"})


def yield_checks(learner_factory: Factory) -> Iterator[Check]:
    """The checks that apply to the learners ``learner_factory`` builds.

    A learner that cannot be built gets every check, so that each fails loudly rather than
    the learner being skipped. A regressor (``task == "regression"``) skips the checks about
    classes; run it on ``stream_for(learner)``.
    """
    skips: set[str] = set()
    try:
        learner = learner_factory()
    except Exception:
        learner = None
    if learner is not None:
        opt_out = getattr(learner, "_unit_test_skips", None)
        if callable(opt_out):
            skips = set(opt_out())
        if getattr(learner, "task", "classification") == "regression":
            skips |= CLASSIFICATION_ONLY
    for check in _CHECKS:
        if check.__name__ not in skips:
            yield check
