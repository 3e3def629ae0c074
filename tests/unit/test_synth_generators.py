"""The producer's seeded generators: drift types at the stated points, class imbalance, noise."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from stream.synth import GENERATORS, generate, generate_drift_points

SEA_THRESHOLD = {0: 8.0, 1: 9.0, 2: 7.0, 3: 9.5}  # river's SEA variants


def _sea_rule_holds(events, threshold):
    return sum(int(x["x0"] + x["x1"] > threshold) == y for x, y in events) / len(events)


@pytest.mark.parametrize("name", GENERATORS)
def test_the_same_seed_gives_the_same_events_and_another_seed_others(name):
    a = list(generate(name, 300, 3, drift="gradual", drift_every=100, drift_width=20, noise=0.1, imbalance=0.7))
    b = list(generate(name, 300, 3, drift="gradual", drift_every=100, drift_width=20, noise=0.1, imbalance=0.7))
    c = list(generate(name, 300, 4, drift="gradual", drift_every=100, drift_width=20, noise=0.1, imbalance=0.7))
    assert a == b  # exact: the same local RNGs draw the same numbers
    assert a != c
    assert all(isinstance(k, str) for x, _ in a for k in x) and all(isinstance(y, int) for _, y in a)


def test_sudden_drift_changes_the_rule_exactly_at_each_point():
    events = list(generate("sea", 3000, 1, drift="sudden", drift_every=1000))
    for k in range(3):
        segment = events[1000 * k : 1000 * (k + 1)]
        assert _sea_rule_holds(segment, SEA_THRESHOLD[k]) == 1.0  # exact: noise 0, the rule itself
    assert _sea_rule_holds(events[1000:2000], SEA_THRESHOLD[0]) < 0.95
    assert generate_drift_points(3000, "sudden", 1000) == [1000, 2000]


def test_recurring_drift_comes_back_to_the_first_concept():
    events = list(generate("sea", 4000, 1, drift="recurring", drift_every=1000))
    assert [_sea_rule_holds(events[i : i + 1000], SEA_THRESHOLD[0]) == 1.0 for i in range(0, 4000, 1000)] == [True, False, True, False]
    assert all(_sea_rule_holds(events[i : i + 1000], SEA_THRESHOLD[1]) == 1.0 for i in (1000, 3000))


def test_gradual_drift_mixes_the_two_concepts_around_the_point():
    events = list(generate("sea", 2000, 2, drift="gradual", drift_every=1000, drift_width=200))

    def share_new(lo, hi):
        # events the two rules label differently tell which concept drew them
        told = [(x, y) for x, y in events[lo:hi] if 8.0 < x["x0"] + x["x1"] <= 9.0]
        return sum(y == 0 for _, y in told) / len(told)

    # exact (for this seed): a sigmoid 200 events wide is all one concept 300 events off
    assert share_new(0, 700) == 0.0
    assert 0.3 < share_new(900, 1100) < 0.7
    assert 0.0 < share_new(900, 1000) < share_new(1000, 1100) < 1.0
    assert share_new(1300, 1700) == 1.0


def test_incremental_drift_moves_the_sea_threshold_every_event():
    events = list(generate("sea", 2000, 5, drift="incremental", drift_every=1000))
    assert _sea_rule_holds(events[:100], 8.05) > 0.97 and _sea_rule_holds(events[900:1000], 8.95) > 0.97
    with pytest.raises(ValueError, match="only sea, rbf, hyperplane"):
        next(generate("led", 10, 0, drift="incremental"))


@pytest.mark.parametrize(("name", "n_classes"), [("sea", 2), ("agrawal", 2), ("led", 10)])
def test_imbalance_sets_the_share_of_class_zero(name, n_classes):
    counts = Counter(y for _, y in generate(name, 4000, 7, drift="sudden", drift_every=1000, imbalance=0.9))
    assert abs(counts[0] / 4000 - 0.9) < 0.02
    assert set(counts) == set(range(n_classes))


def test_noise_flips_that_share_of_the_labels():
    clean = list(generate("hyperplane", 5000, 1, drift="none"))
    noisy = list(generate("hyperplane", 5000, 1, drift="none", noise=0.2))
    assert [x for x, _ in clean] == [x for x, _ in noisy]  # exact: the inputs are drawn alike
    flipped = sum(a != b for (_, a), (_, b) in zip(clean, noisy, strict=True)) / 5000
    assert abs(flipped - 0.2) < 0.02


def test_bad_arguments_are_refused_with_the_allowed_values():
    with pytest.raises(ValueError, match="sea, led, rbf, agrawal, hyperplane, random-tree"):
        next(generate("waves", 1, 0))
    with pytest.raises(ValueError, match="sudden, gradual"):
        next(generate("sea", 1, 0, drift="sideways"))
    with pytest.raises(ValueError, match=r"imbalance .* \(0, 1\)"):
        next(generate("sea", 1, 0, imbalance=1.0))
    assert len(list(itertools.islice(generate("rbf", None, 0), 5))) == 5
