from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import pytest
from river import naive_bayes
from river.datasets import synth as river_synth

from stream import synth
from stream.synth import Event, drift_points, make_stream, sea_stream


def _error(events: Iterable[Event], predict: Callable[[dict[str, float]], int]) -> float:
    events = list(events)
    return sum(predict(x) != y for x, y in events) / len(events)


def _window(name: str, n: int, start: int, stop: int, **kw: object) -> list[Event]:
    return list(itertools.islice(make_stream(name, n, seed=3, **kw), start, stop))


@pytest.mark.parametrize("name", [*synth.PAPER_STREAMS, "sea"])
def test_same_seed_same_events_other_seed_differs(name: str) -> None:
    kw = {"drift_every": 500} if name == "sea" else {}
    a = list(make_stream(name, 2_000, seed=11, **kw))
    b = list(make_stream(name, 2_000, seed=11, **kw))
    c = list(make_stream(name, 2_000, seed=12, **kw))
    assert len(a) == 2_000
    assert a == b
    assert a != c


@pytest.mark.parametrize("name", synth.PAPER_STREAMS)
def test_event_shape(name: str) -> None:
    info = synth.STREAMS[name]
    for x, y in make_stream(name, 300, seed=1):
        assert list(x) == [f"x{i}" for i in range(info.n_features)]
        assert all(isinstance(v, int | float) for v in x.values())
        assert type(y) is int
        assert y in info.classes


def test_first_labels_pinned_under_seed_7() -> None:
    labels = {name: [y for _, y in make_stream(name, 10, seed=7)] for name in synth.PAPER_STREAMS}
    assert labels == {
        "led_a": [6, 2, 5, 4, 6, 0, 4, 8, 1, 1],
        "led_g": [6, 2, 5, 4, 6, 0, 4, 8, 1, 1],
        "sea_a": [1, 1, 1, 1, 1, 1, 0, 0, 0, 1],
        "sea_g": [1, 1, 1, 1, 1, 1, 0, 0, 0, 1],
        "rbf_m": [0, 1, 0, 1, 0, 0, 0, 1, 0, 1],
        "rbf_f": [0, 1, 0, 1, 0, 0, 0, 1, 0, 1],
    }
    x0, _ = next(make_stream("sea_a", 1, seed=7))
    assert x0["x0"] == pytest.approx(3.238328, abs=1e-6)


def test_drift_points() -> None:
    assert drift_points("sea_a", 1_000_000) == [249_975, 499_975, 749_975]
    assert drift_points("led_a", 1_000_000) == [249_975, 499_975, 749_975]
    assert drift_points("sea_g", 1_000_000) == [225_000, 475_000, 725_000]
    assert drift_points("led_g", 1_000_000) == [225_000, 475_000, 725_000]
    assert drift_points("rbf_m", 1_000_000) == []
    # a prefix keeps the paper's absolute positions
    assert drift_points("sea_a", 100_000) == []
    assert drift_points("led_g", 500_000) == [225_000, 475_000]
    assert drift_points("sea_a", 100_000, scale=True) == [24_998, 49_998, 74_998]
    assert drift_points("sea", 60_000, drift_every=20_000) == [20_000, 40_000]


def test_unknown_stream_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown stream"):
        make_stream("nope", 10, 0)
    with pytest.raises(ValueError, match="drift_every"):
        make_stream("sea", 10, 0)
    with pytest.raises(ValueError):
        sea_stream(10, 0, drift_every=0)
    with pytest.raises(ValueError):
        make_stream("sea_a", 10, 0, noise=2.0)


def test_sigmoid_switch_has_no_overflow_at_width_1() -> None:
    # river's ConceptDriftStream raises OverflowError here
    # exact: the formula gives this value exactly (a ratio of counts / its limits)
    assert synth.drift_probability(1, 1_000_000, 1) == 0.0
    assert synth.drift_probability(1_000_000, 1, 1) == 1.0
    assert synth.drift_probability(50, 50, 10) == 0.5
    before = iter([({"x0": 0.0}, 0)] * 100)
    after = iter([({"x0": 1.0}, 1)] * 100)
    ys = [y for _, y in itertools.islice(synth.concept_drift(before, after, 50, 1), 100)]
    assert ys[:49] == [0] * 49
    assert ys[51:] == [1] * 49


def test_sea_abrupt_concept_changes_at_the_paper_position() -> None:
    # function 1 (x0 + x1 > 8) is right before 249,975; function 2 (> 9) after
    f1 = _threshold(8.0)
    events = _window("sea_a", 252_000, 245_000, 252_000)
    before, after = events[:4_900], events[5_100:]
    assert _error(before, f1) == pytest.approx(0.10, abs=0.02)
    # 8.5% of inputs change label; with 10% noise that adds about 6.8 points
    assert _error(after, f1) - _error(before, f1) > 0.04


def _threshold(t: float) -> Callable[[dict[str, float]], int]:
    return lambda x: int(x["x0"] + x["x1"] > t)


@pytest.mark.parametrize(("name", "settle"), [("sea_a", 100), ("sea_g", 3_000)])
def test_scaled_sea_follows_functions_1_2_4_1(name: str, settle: int) -> None:
    n = 40_000
    events = list(make_stream(name, n, seed=3, scale=True))
    points = drift_points(name, n, scale=True)
    assert len(points) == 3
    thresholds = [8.0, 9.0, 9.5, 8.0]
    for k, p in enumerate(points):
        old = _threshold(thresholds[k])
        before = events[p - settle - 2_000 : p - settle]
        after = events[p + settle : p + settle + 2_000]
        assert _error(before, old) == pytest.approx(0.10, abs=0.025), (k, p)
        # the two thresholds disagree on 4.6% (9 vs 9.5) to 14.4% (9.5 vs 8) of inputs
        assert _error(after, old) > _error(before, old) + 0.02, (k, p)
        assert _error(after, _threshold(thresholds[k + 1])) == pytest.approx(0.10, abs=0.025)


@pytest.mark.parametrize(("name", "settle"), [("led_a", 100), ("led_g", 3_000)])
def test_scaled_led_concept_changes_at_each_drift_point(name: str, settle: int) -> None:
    n = 40_000
    events = list(make_stream(name, n, seed=3, scale=True))
    points = drift_points(name, n, scale=True)
    assert len(points) == 3
    for p in points:
        model = naive_bayes.GaussianNB()
        for x, y in events[p - 8_000 : p - settle]:
            model.learn_one(x, y)
        err_before = _error(events[p - settle - 2_000 : p - settle], model.predict_one)
        err_after = _error(events[p + settle : p + settle + 2_000], model.predict_one)
        assert err_after > err_before + 0.03, (name, p, err_before, err_after)


def test_rbf_concept_moves_at_its_speed() -> None:
    def frozen_errors(name: str, **kw: float) -> tuple[float, float]:
        events = list(make_stream(name, 30_000, seed=3, **kw))
        model = naive_bayes.GaussianNB()
        for x, y in events[:3_000]:
            model.learn_one(x, y)
        return _error(events[3_000:5_000], model.predict_one), _error(
            events[20_000:], model.predict_one
        )

    near, far = frozen_errors("rbf_m")
    assert far > near + 0.15
    near, far = frozen_errors("rbf_m", change_speed=0.0)
    assert far == pytest.approx(near, abs=0.04)
    # at 1e-3 per event the centroids cross the unit cube every ~1,000 events
    near_fast, _ = frozen_errors("rbf_f")
    assert near_fast > near + 0.1


def test_rbf_matches_river_event_for_event() -> None:
    ours = list(make_stream("rbf_f", 3_000, seed=5, change_speed=0.05))
    theirs = [
        ({f"x{k}": v for k, v in x.items()}, y)
        for x, y in river_synth.RandomRBFDrift(
            seed_model=5, seed_sample=5, change_speed=0.05, n_drift_centroids=50
        ).take(3_000)
    ]
    assert ours == theirs


def test_sea_stream_changes_every_drift_every() -> None:
    events = list(sea_stream(60_000, seed=7, drift_every=20_000))
    assert len(events) == 60_000
    for k, (start, t_right, t_wrong) in enumerate(
        [(0, 7.0, 9.5), (20_000, 9.5, 7.0), (40_000, 7.0, 9.5)]
    ):
        window = events[start : start + 20_000]
        assert _error(window, _threshold(t_right)) == pytest.approx(0.10, abs=0.01), k
        # thresholds 7 and 9.5 disagree on about 20% of inputs
        assert _error(window, _threshold(t_wrong)) > 0.25, k


def test_sea_stream_changes_are_caught_by_a_tree_and_adwin() -> None:
    from river import drift, tree

    model = tree.HoeffdingTreeClassifier()
    detector = drift.ADWIN()
    alerts = []
    for i, (x, y) in enumerate(sea_stream(42_000, seed=0, drift_every=20_000)):
        detector.update(int(model.predict_one(x) != y))
        model.learn_one(x, y)
        if detector.drift_detected:
            alerts.append(i)
    for change in (20_000, 40_000):
        assert any(change <= a < change + 2_000 for a in alerts), (change, alerts)


# ----------------------------------------------------------------------------- user regimes


@pytest.mark.parametrize("name", synth.USER_STREAMS)
def test_user_streams_are_seeded(name: str) -> None:
    a = list(make_stream(name, 600, seed=11))
    assert len(a) == 600
    assert a == list(make_stream(name, 600, seed=11))
    assert a != list(make_stream(name, 600, seed=12))
    assert all(y in synth.STREAMS[name].classes for _, y in a)


def test_text_events_are_sparse_bags_of_words() -> None:
    events = list(make_stream("text", 2_000, seed=1))
    sizes = [len(x) for x, _ in events]
    assert 30 <= sum(sizes) / len(sizes) <= 40
    assert all(k.startswith("w") and v == 1 for x, _ in events for k, v in x.items())
    vocab = {k for x, _ in events for k in x}
    assert len(vocab) > 10_000  # wide: most words are rare
    assert 0.25 <= sum(y for _, y in events) / len(events) <= 0.35


def test_text_topic_words_drift() -> None:
    events = list(make_stream("text", 10_000, seed=2))

    def rate(segment: list[Event], words: set[str]) -> float:
        ones = [x for x, y in segment if y == 1]
        return sum(len(words & x.keys()) for x in ones) / len(ones)

    first = events[:5_000]
    count1: dict[str, int] = {}
    count0: dict[str, int] = {}
    for x, y in first:
        for w in x:
            (count1 if y else count0)[w] = (count1 if y else count0).get(w, 0) + 1
    # class 1's topic words: frequent in class 1, absent from class 0, before the drift
    topic = {w for w, c in count1.items() if c >= 10 and count0.get(w, 0) == 0}
    assert len(topic) > 100
    before, after = rate(events[4_000:5_000], topic), rate(events[5_000:6_000], topic)
    # half of the topic words are replaced at event 5,000
    assert after < 0.7 * before, (before, after)
    assert after > 0.3 * before, (before, after)
    assert drift_points("text", 20_000) == [5_000, 10_000, 15_000]


def test_runs_stream_has_forty_classes_in_runs_of_about_ten() -> None:
    events = list(make_stream("runs", 4_000, seed=3))
    ys = [y for _, y in events]
    assert set(ys) == set(range(40))
    same = sum(a == b for a, b in itertools.pairwise(ys)) / (len(ys) - 1)
    assert 0.85 < same < 0.95  # a run ends with probability 1/10
    assert list(events[0][0]) == [f"x{i}" for i in range(20)]


def test_short_stream_mixes_types_and_drifts_at_its_middle() -> None:
    events = list(make_stream("short", 3_000, seed=1))
    x0 = events[0][0]
    assert {k for k, v in x0.items() if isinstance(v, str)} == {"car", "zipcode", "elevel"}

    def young_or_old(x: dict) -> int:  # River's Agrawal function 1 labels these 1
        return int(x["age"] < 40 or x["age"] >= 60)

    def agree(segment: list[Event]) -> float:
        return sum(young_or_old(x) == y for x, y in segment) / len(segment)

    assert agree(events[:1_500]) > 0.9
    assert agree(events[1_500:]) < 0.7
    assert drift_points("short", 3_000) == [1_500]
