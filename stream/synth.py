"""Seeded synthetic streams with concept drift.

Two families:

- The DriftMoE benchmark streams (``sea_a``, ``sea_g``, ``led_a``, ``led_g``, ``rbf_m``,
  ``rbf_f``), built the way the paper's CapyMOA setup builds them: one generator per concept,
  all seeded with the run seed, joined by MOA ``ConceptDriftStream`` sigmoid switches nested to
  the left, each switch drawing from its own ``random.Random(1)``. Drift positions are absolute
  event counts of the paper's 1,000,000-event streams, so a shorter ``n`` is a prefix of the
  same stream: only drifts before ``n`` happen (a 100k prefix of SEA or LED has no drift at
  all). Pass ``scale=True`` to shrink positions and widths to ``n`` instead; that is a
  different stream from the paper's.
- ``sea_stream``: SEA with an abrupt change every ``drift_every`` events, for demos and
  drift-alert tests.
- The streams users send that the paper's do not cover: ``text`` (sparse bags of words
  from a large vocabulary, whose class topics drift), ``runs`` (40 classes arriving in
  runs of about ten) and ``short`` (3,000 mixed numeric and categorical events with one
  drift). Each has a natural length (``StreamInfo.length``) a bench uses by default.

Every event is ``(x, y)`` with ``x`` a ``{"x0": value, ...}`` dict of numbers (``text``:
``{"w<id>": 1, ...}`` for the words present; ``short``: some values are strings) and ``y``
an ``int`` class. The same ``(name, n, seed, kwargs)`` always yields the same events: only
local RNGs are used.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from river.datasets import synth as river_synth

Event = tuple[dict[str, float], int]

#: length of the paper's synthetic streams; drift positions refer to it
PAPER_LENGTH = 1_000_000

#: (position, width) of each MOA ConceptDriftStream switch
ABRUPT_DRIFTS: tuple[tuple[int, int], ...] = ((249_975, 50), (499_975, 50), (749_975, 50))
GRADUAL_DRIFTS: tuple[tuple[int, int], ...] = (
    (225_000, 50_000),
    (475_000, 50_000),
    (725_000, 50_000),
)

#: MOA SEA function number -> threshold on x0 + x1 (river's variants 0..3 are functions 1..4)
SEA_THRESHOLDS: dict[int, float] = {1: 8.0, 2: 9.0, 3: 7.0, 4: 9.5}
#: the paper's SEA concept sequence
SEA_FUNCTIONS: tuple[int, ...] = (1, 2, 4, 1)
#: the paper's LED concept sequence (number of drifting attributes)
LED_DRIFT_FEATURES: tuple[int, ...] = (1, 3, 5, 7)
#: functions 3 and 4 have the thresholds furthest apart (7 vs 9.5): a model of one concept
#: mislabels about 20% of the other's inputs, which makes each change easy to detect
SEA_DEMO_FUNCTIONS: tuple[int, ...] = (3, 4)

RBF_CHANGE_SPEED: dict[str, float] = {"rbf_m": 1e-4, "rbf_f": 1e-3}

# MOA evaluates Math.exp without guarding; beyond this the sigmoid is exactly 0 or 1 anyway
# and math.exp would raise OverflowError (river's ConceptDriftStream does, at width 1).
_EXP_LIMIT = 700.0


@dataclass(frozen=True)
class StreamInfo:
    """What a consumer needs to know about a named stream."""

    name: str
    description: str
    n_features: int
    classes: tuple[int, ...]
    #: (position, width) of each sigmoid switch over the paper's 1M events; empty if none
    drifts: tuple[tuple[int, int], ...]
    #: the drift is continuous (every event moves the concept)
    incremental: bool = False
    #: events the stream has by default (None: as many as asked for)
    length: int | None = None


STREAMS: dict[str, StreamInfo] = {
    "sea_a": StreamInfo(
        "sea_a", "SEA, functions 1→2→4→1, noise 10%, abrupt drifts", 3, (0, 1), ABRUPT_DRIFTS
    ),
    "sea_g": StreamInfo(
        "sea_g", "SEA, functions 1→2→4→1, noise 10%, gradual drifts", 3, (0, 1), GRADUAL_DRIFTS
    ),
    "led_a": StreamInfo(
        "led_a",
        "LED, 24 attributes, noise 10%, drifting attributes 1→3→5→7, abrupt drifts",
        24,
        tuple(range(10)),
        ABRUPT_DRIFTS,
    ),
    "led_g": StreamInfo(
        "led_g",
        "LED, 24 attributes, noise 10%, drifting attributes 1→3→5→7, gradual drifts",
        24,
        tuple(range(10)),
        GRADUAL_DRIFTS,
    ),
    "rbf_m": StreamInfo(
        "rbf_m",
        "Random RBF, 10 attributes, 50 centroids all drifting, speed 1e-4",
        10,
        (0, 1),
        (),
        incremental=True,
    ),
    "rbf_f": StreamInfo(
        "rbf_f",
        "Random RBF, 10 attributes, 50 centroids all drifting, speed 1e-3",
        10,
        (0, 1),
        (),
        incremental=True,
    ),
    "sea": StreamInfo(
        "sea",
        "SEA, functions 3↔4 (thresholds 7 and 9.5), noise 10%, abrupt change every "
        "drift_every events",
        3,
        (0, 1),
        (),
    ),
    "text": StreamInfo(
        "text",
        "sparse bags of words (about 40 of a 50,000-word Zipf vocabulary), 2 classes 70/30, "
        "each class's topic words half replaced every 5,000 events",
        50_000,
        (0, 1),
        (),
        length=20_000,
    ),
    "runs": StreamInfo(
        "runs",
        "40 classes arriving in runs of about ten events, 20 Gaussian attributes "
        "(class centre + a per-run offset + noise)",
        20,
        tuple(range(40)),
        (),
        length=4_000,
    ),
    "short": StreamInfo(
        "short",
        "Agrawal, function 1 then 3 from the middle on, 5% perturbation; car, zipcode and "
        "elevel as strings",
        9,
        (0, 1),
        (),
        length=3_000,
    ),
}

#: streams of the regimes users send beyond the paper's: sparse and wide, many classes in
#: runs, short
USER_STREAMS: tuple[str, ...] = ("text", "runs", "short")

#: the paper's synthetic benchmark streams
PAPER_STREAMS: tuple[str, ...] = ("led_a", "led_g", "sea_a", "sea_g", "rbf_m", "rbf_f")


def stream_names() -> list[str]:
    return list(STREAMS)


def _info(name: str) -> StreamInfo:
    try:
        return STREAMS[name]
    except KeyError:
        raise ValueError(f"unknown stream {name!r}; choose one of: {', '.join(STREAMS)}") from None


def _scaled(
    drifts: tuple[tuple[int, int], ...], n: int | None, scale: bool
) -> tuple[tuple[int, int], ...]:
    if not scale:
        return drifts
    if n is None:
        raise ValueError("scale=True needs a finite n")
    f = n / PAPER_LENGTH
    return tuple((round(p * f), max(1, round(w * f))) for p, w in drifts)


def drift_probability(t: int, position: int, width: int) -> float:
    """MOA ConceptDriftStream's chance that the ``t``-th event (1-based) is from the new concept."""
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    v = -4.0 * (t - position) / width
    if v > _EXP_LIMIT:
        return 0.0
    if v < -_EXP_LIMIT:
        return 1.0
    return 1.0 / (1.0 + math.exp(v))


def concept_drift(
    before: Iterator[Event], after: Iterator[Event], position: int, width: int, seed: int = 1
) -> Iterator[Event]:
    """Join two streams with a sigmoid switch, drawing as MOA ``ConceptDriftStream`` does.

    Each side advances only when it is drawn from, so the new concept starts at its own
    first event. ``seed`` seeds the switch's own RNG (MOA's default is 1).
    """
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    rng = random.Random(seed)
    for t in itertools.count(1):
        # same draw order as MOA: one uniform per event, compared with the sigmoid
        if rng.random() > drift_probability(t, position, width):
            yield next(before)
        else:
            yield next(after)


def _named(source: Iterable[tuple[dict[int, Any], Any]], n_features: int) -> Iterator[Event]:
    names = [f"x{i}" for i in range(n_features)]
    for x, y in source:
        yield {names[k]: v for k, v in x.items()}, int(y)


def _chain(concepts: list[Iterator[Event]], drifts: tuple[tuple[int, int], ...]) -> Iterator[Event]:
    # CapyMOA nests to the left: ((c0 → c1) → c2) → c3, every switch with its own RNG(1)
    stream = concepts[0]
    for nxt, (position, width) in zip(concepts[1:], drifts, strict=True):
        stream = concept_drift(stream, nxt, position, width)
    return stream


def _sea_concepts(seed: int, noise: float, functions: tuple[int, ...]) -> list[Iterator[Event]]:
    return [_named(river_synth.SEA(variant=f - 1, noise=noise, seed=seed), 3) for f in functions]


def _led_concepts(
    seed: int, noise: float, drift_features: tuple[int, ...]
) -> list[Iterator[Event]]:
    return [
        _named(
            river_synth.LEDDrift(
                seed=seed,
                # River flips a segment when 0.01 + U(0,1) <= p, i.e. with probability
                # p - 0.01; MOA flips with probability p. Shift so the rate is MOA's.
                noise_percentage=min(1.0, noise + 0.01) if noise > 0 else 0.0,
                irrelevant_features=True,
                n_drift_features=k,
            ),
            24,
        )
        for k in drift_features
    ]


def _rbf(seed: int, change_speed: float) -> Iterator[Event]:
    """River's ``RandomRBFDrift`` (all 50 centroids moving), event for event, about 30× faster.

    River moves the centroids in a Python double loop (500 updates per event); the same
    float64 additions and reflections done with numpy give bit-identical centres.
    """
    gen = river_synth.RandomRBFDrift(
        seed_model=seed,
        seed_sample=seed,
        n_classes=2,
        n_features=10,
        n_centroids=50,
        change_speed=change_speed,
        n_drift_centroids=50,
    )
    gen._generate_centroids()
    centres = np.array([c.centre for c in gen.centroids], dtype=np.float64)
    step = np.array(gen.centroid_speed, dtype=np.float64) * change_speed
    std = [c.std_dev for c in gen.centroids]
    labels = [int(c.class_label) for c in gen.centroids]
    weights = gen.centroid_weights
    total_weight = sum(weights)
    n_features = gen.n_features
    names = [f"x{i}" for i in range(n_features)]
    rng = random.Random(seed)
    while True:
        centres += step
        over = centres > 1.0
        under = centres < 0.0
        if over.any() or under.any():
            out = over | under
            centres[over] = 1.0
            centres[under] = 0.0
            step[out] = -step[out]
        # centroid choice, offsets and scale: river's draw order, see random_index_based_on_weights
        val = rng.random() * total_weight
        idx = 0
        acc = 0.0
        while acc <= val and idx < len(weights):
            acc += weights[idx]
            idx += 1
        idx -= 1
        offsets = [rng.random() * 2.0 - 1.0 for _ in range(n_features)]
        magnitude = sum(a * a for a in offsets) ** 0.5
        scale = rng.gauss(0, 1) * std[idx] / magnitude
        centre = centres[idx].tolist()
        yield {names[i]: centre[i] + offsets[i] * scale for i in range(n_features)}, labels[idx]


def _check_noise(noise: float) -> None:
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {noise}")


def _check_n(n: int | None) -> None:
    if n is not None and n < 0:
        raise ValueError(f"n must be >= 0, got {n}")


def make_stream(
    name: str,
    n: int | None,
    seed: int,
    *,
    scale: bool = False,
    noise: float = 0.1,
    change_speed: float | None = None,
    drift_every: int | None = None,
) -> Iterator[Event]:
    """Yield ``n`` events (endless if ``n`` is None) of the stream called ``name``.

    ``noise`` applies to SEA and LED; ``change_speed`` overrides the RBF speed;
    ``drift_every`` is required for ``"sea"`` (see ``sea_stream``); ``scale`` maps the
    paper's drift positions and widths onto ``n`` events instead of 1M.
    """
    info = _info(name)
    _check_n(n)
    if name == "sea":
        if drift_every is None:
            raise ValueError("stream 'sea' needs drift_every")
        return sea_stream(n, seed, drift_every, noise=noise)
    if name == "text":
        return text_stream(n, seed, **({} if drift_every is None else {"drift_every": drift_every}))
    if name == "runs":
        return runs_stream(n, seed)
    if name == "short":
        return short_stream(n, seed)
    source: Iterator[Event]
    if name.startswith("sea_"):
        _check_noise(noise)
        source = _chain(_sea_concepts(seed, noise, SEA_FUNCTIONS), _scaled(info.drifts, n, scale))
    elif name.startswith("led_"):
        _check_noise(noise)
        source = _chain(
            _led_concepts(seed, noise, LED_DRIFT_FEATURES), _scaled(info.drifts, n, scale)
        )
    else:
        speed = RBF_CHANGE_SPEED[name] if change_speed is None else change_speed
        source = _rbf(seed, speed)
    return source if n is None else itertools.islice(source, n)


def drift_points(
    name: str, n: int | None, *, scale: bool = False, drift_every: int | None = None, **_: Any
) -> list[int]:
    """Centres of the concept changes of stream ``name`` that fall within its first ``n`` events.

    Positions count events from 1, as MOA does; an abrupt switch of width 50 at ``p`` takes
    event ``p`` from the new concept with probability 1/2. Incremental streams (RBF) have no
    points. Extra keyword arguments of ``make_stream`` are accepted and ignored so callers can
    pass the same ``**kw`` to both.
    """
    info = _info(name)
    _check_n(n)
    if name == "sea":
        if drift_every is None:
            raise ValueError("stream 'sea' needs drift_every")
        return sea_drift_points(n, drift_every)
    if name in USER_STREAMS:
        if n is None:
            raise ValueError(f"drift_points of {name!r} needs a finite n")
        if name == "text":
            return list(range(drift_every or TEXT_DRIFT_EVERY, n, drift_every or TEXT_DRIFT_EVERY))
        return [SHORT_LENGTH // 2] if name == "short" and n > SHORT_LENGTH // 2 else []
    return [p for p, _w in _scaled(info.drifts, n, scale) if n is None or p < n]


def sea_stream(
    n: int | None,
    seed: int,
    drift_every: int,
    noise: float = 0.1,
    functions: tuple[int, ...] = SEA_DEMO_FUNCTIONS,
) -> Iterator[Event]:
    """SEA whose concept switches abruptly at events ``drift_every``, ``2·drift_every``, ...

    Concepts cycle through the MOA SEA ``functions`` (default 3↔4, the two thresholds furthest
    apart). One RNG draws the inputs, so the input distribution never changes; only the
    labelling rule does. Event ``k·drift_every`` (0-based) is the first of concept ``k``.
    """
    _check_n(n)
    _check_noise(noise)
    if drift_every <= 0:
        raise ValueError(f"drift_every must be positive, got {drift_every}")
    unknown = [f for f in functions if f not in SEA_THRESHOLDS]
    if not functions or unknown:
        raise ValueError(f"SEA functions must be among {sorted(SEA_THRESHOLDS)}, got {functions}")
    thresholds = [SEA_THRESHOLDS[f] for f in functions]
    return _sea_switching(n, random.Random(seed), drift_every, noise, thresholds)


def _sea_switching(
    n: int | None, rng: random.Random, drift_every: int, noise: float, thresholds: list[float]
) -> Iterator[Event]:
    counter = itertools.count() if n is None else range(n)
    for i in counter:
        threshold = thresholds[(i // drift_every) % len(thresholds)]
        a, b, c = rng.uniform(0, 10), rng.uniform(0, 10), rng.uniform(0, 10)
        y = int(a + b > threshold)
        if noise and rng.random() < noise:
            y = 1 - y
        yield {"x0": a, "x1": b, "x2": c}, y


def sea_drift_points(n: int | None, drift_every: int) -> list[int]:
    """First event (0-based) of every new concept of ``sea_stream`` within ``n`` events."""
    if n is None:
        raise ValueError("sea_drift_points needs a finite n")
    return list(range(drift_every, n, drift_every))


# ----------------------------------------------------------------------------- user regimes

TEXT_DRIFT_EVERY = 5_000
SHORT_LENGTH = 3_000


def text_stream(
    n: int | None,
    seed: int,
    *,
    vocab: int = 50_000,
    words: int = 40,
    topic_words: int = 300,
    signal: float = 0.25,
    prior: float = 0.3,
    drift_every: int = TEXT_DRIFT_EVERY,
) -> Iterator[Event]:
    """Sparse text-like events: ``{"w<id>": 1}`` for each distinct word of an event.

    An event of class 1 (probability ``prior``) or 0 draws ``words`` tokens: each is, with
    probability ``signal``, one of its class's ``topic_words`` topic words, else a word of
    the shared background (Zipf with exponent 1.1 over ``vocab`` words, in a seeded random
    order, so frequent words carry no class). Every ``drift_every`` events half of each
    class's topic words are replaced by fresh ones: the words that signal a class drift,
    as the subjects of a mailbox do. About 35 distinct words per event.
    """
    _check_n(n)
    if vocab < 2 * topic_words or words < 1 or not 0.0 <= signal <= 1.0 or drift_every < 1:
        raise ValueError("text_stream needs vocab >= 2*topic_words, words >= 1, signal in [0, 1]")
    rng = np.random.default_rng(seed)
    ids = rng.permutation(vocab)
    cdf = np.cumsum(1.0 / np.arange(1, vocab + 1) ** 1.1)
    cdf /= cdf[-1]
    topics = [rng.choice(vocab, topic_words, replace=False) for _ in range(2)]
    counter = itertools.count() if n is None else range(n)
    for i in counter:
        if i and i % drift_every == 0:
            for t in topics:
                keep = rng.permutation(topic_words)[: topic_words // 2]
                t[: topic_words // 2] = t[keep]
                t[topic_words // 2 :] = rng.choice(vocab, topic_words - topic_words // 2)
        y = int(rng.random() < prior)
        k = int(rng.binomial(words, signal))
        drawn = np.concatenate(
            [topics[y][rng.integers(0, topic_words, k)], ids[np.searchsorted(cdf, rng.random(words - k))]]
        )
        yield {f"w{w}": 1 for w in drawn.tolist()}, y


def runs_stream(
    n: int | None,
    seed: int,
    *,
    n_classes: int = 40,
    run_length: float = 10.0,
    n_features: int = 20,
    spread: float = 1.0,
    run_spread: float = 0.8,
    noise: float = 1.0,
) -> Iterator[Event]:
    """Many classes arriving in runs: run lengths geometric with mean ``run_length``, each
    run of a class other than the last one's, drawn uniformly. An event is its class's
    centre (N(0, ``spread``) per attribute) plus its run's offset (N(0, ``run_spread``),
    shared by the run) plus noise (N(0, ``noise``)): a run's events resemble each other more
    than their class's other runs, as the sessions of one user or one machine do."""
    _check_n(n)
    if n_classes < 2 or run_length < 1.0 or n_features < 1:
        raise ValueError("runs_stream needs n_classes >= 2, run_length >= 1, n_features >= 1")
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, spread, (n_classes, n_features))
    names = [f"x{i}" for i in range(n_features)]
    y, left, offset = -1, 0, np.zeros(n_features)
    counter = itertools.count() if n is None else range(n)
    for _ in counter:
        if left == 0:
            y = int((y + 1 + rng.integers(0, n_classes - 1)) % n_classes) if y >= 0 else int(rng.integers(0, n_classes))
            left = int(rng.geometric(1.0 / run_length))
            offset = rng.normal(0.0, run_spread, n_features)
        left -= 1
        x = centres[y] + offset + rng.normal(0.0, noise, n_features)
        yield dict(zip(names, x.tolist(), strict=True)), y


def short_stream(n: int | None, seed: int, *, length: int = SHORT_LENGTH) -> Iterator[Event]:
    """A short mixed stream: River's Agrawal (5% perturbation), classification function 1
    for the first half of ``length`` events and function 3 after; the nominal attributes
    (car, zipcode, elevel) as strings, the others numbers."""
    _check_n(n)
    half = length // 2
    before = river_synth.Agrawal(classification_function=0, seed=seed, perturbation=0.05)
    after = river_synth.Agrawal(classification_function=2, seed=seed + 1, perturbation=0.05)
    nominal = {"car": "car", "zipcode": "zip", "elevel": "level"}
    source = itertools.chain(before.take(half), after)
    if n is not None:
        source = itertools.islice(source, n)
    for x, y in source:
        yield {k: f"{nominal[k]}{v}" if k in nominal else v for k, v in x.items()}, int(y)


# --------------------------------------------------------------- the producer's streams

#: generators ``driftline produce --stream`` offers
GENERATORS: tuple[str, ...] = ("sea", "led", "rbf", "agrawal", "hyperplane", "random-tree")
#: drift types, as stream-learn's StreamGenerator names them
DRIFT_TYPES: tuple[str, ...] = ("none", "sudden", "gradual", "incremental", "recurring")
#: generators whose concept can move continuously
INCREMENTAL: tuple[str, ...] = ("sea", "rbf", "hyperplane")
#: river's SEA functions 1..4 as thresholds on x0 + x1, in the order concepts take them
_SEA_CYCLE: tuple[float, ...] = (8.0, 9.0, 7.0, 9.5)


def _keys(x: dict[Any, Any]) -> dict[str, Any]:
    return {(f"x{k}" if isinstance(k, int) else str(k)): (float(v) if isinstance(v, bool) else v) for k, v in x.items()}


def _concept(name: str, k: int, seed: int, noise: float) -> Iterator[Event]:
    """Concept ``k`` of generator ``name``: its own seeded river generator."""
    s = seed * 1000 + k
    if name == "sea":
        gen: Iterable[tuple[dict[Any, Any], Any]] = river_synth.SEA(variant=k % 4, seed=s)
    elif name == "led":
        gen = river_synth.LEDDrift(seed=s, noise_percentage=noise, irrelevant_features=True, n_drift_features=(1, 3, 5, 7)[k % 4])
    elif name == "rbf":
        gen = river_synth.RandomRBF(seed_model=s, seed_sample=seed, n_classes=2, n_features=10, n_centroids=50)
    elif name == "agrawal":
        gen = river_synth.Agrawal(classification_function=k % 10, seed=s)
    elif name == "hyperplane":
        gen = river_synth.Hyperplane(seed=s, n_features=10, noise_percentage=0.0)
    elif name == "random-tree":
        gen = river_synth.RandomTree(seed_tree=s, seed_sample=seed * 1000 + 500 + k, n_classes=2)
    else:
        raise ValueError(f"unknown stream {name!r}; choose one of: {', '.join(GENERATORS)}")
    return ((_keys(x), int(y)) for x, y in gen)


def _classes(name: str) -> tuple[int, ...]:
    return tuple(range(10)) if name == "led" else (0, 1)


def _incremental(name: str, seed: int, drift_every: int) -> Iterator[Event]:
    if name == "rbf":
        return _rbf(seed, 1.0 / drift_every)
    if name == "hyperplane":
        gen = river_synth.Hyperplane(seed=seed, n_features=10, n_drift_features=5, mag_change=10.0 / drift_every, noise_percentage=0.0)
        return ((_keys(x), int(y)) for x, y in gen)
    if name == "sea":
        return _sea_moving(seed, drift_every)
    raise ValueError(f"incremental drift: only {', '.join(INCREMENTAL)} move their concept continuously, not {name!r}")


def _sea_moving(seed: int, drift_every: int) -> Iterator[Event]:
    # the threshold slides from one SEA function's to the next's over each segment
    rng = random.Random(seed)
    for t in itertools.count():
        k, frac = divmod(t, drift_every)
        a0, a1 = _SEA_CYCLE[k % 4], _SEA_CYCLE[(k + 1) % 4]
        threshold = a0 + (a1 - a0) * frac / drift_every
        x0, x1, x2 = rng.uniform(0, 10), rng.uniform(0, 10), rng.uniform(0, 10)
        yield {"x0": x0, "x1": x1, "x2": x2}, int(x0 + x1 > threshold)


def generate(
    name: str,
    n: int | None = None,
    seed: int = 0,
    *,
    drift: str = "sudden",
    drift_every: int = 10_000,
    drift_width: int = 1000,
    noise: float = 0.0,
    imbalance: float | None = None,
    max_draws: int = 100_000,
) -> Iterator[Event]:
    """``n`` events (endless if None) of generator ``name`` with concept drift, seeded.

    Concepts are river generators with the concept's own seed (SEA's function, Agrawal's
    classification function, a fresh hyperplane, tree or set of centroids per concept).
    ``drift``: ``sudden`` moves to a new concept at every ``drift_every``-th event;
    ``recurring`` alternates between two; ``gradual`` switches around each of those points
    with a sigmoid of ``drift_width`` events (MOA's ConceptDriftStream: each event is drawn
    from the new concept with a probability that rises from 0 to 1); ``incremental`` moves
    the concept a little at every event (SEA's threshold, the hyperplane's weights, the RBF
    centroids); ``none`` keeps the first concept. ``imbalance`` is the share of class 0
    (the rest split evenly), reached by drawing from the concept until the class drawn from
    the prior comes up, so each class keeps its concept's inputs. ``noise`` flips that share
    of the labels (to another class; LED instead flips that share of its segments).
    """
    _check_n(n)
    _check_noise(noise)
    if drift not in DRIFT_TYPES:
        raise ValueError(f"drift must be one of {', '.join(DRIFT_TYPES)}, got {drift!r}")
    if name not in GENERATORS:
        raise ValueError(f"unknown stream {name!r}; choose one of: {', '.join(GENERATORS)}")
    if drift_every <= 0 or drift_width <= 0:
        raise ValueError(f"drift_every and drift_width must be positive, got {drift_every} and {drift_width}")
    if imbalance is not None and not 0.0 < imbalance < 1.0:
        raise ValueError(f"imbalance (the share of class 0) must be in (0, 1), got {imbalance}")
    source = _drifting(name, seed, drift, drift_every, drift_width, noise, imbalance, max_draws)
    return source if n is None else itertools.islice(source, n)


def _drifting(
    name: str, seed: int, drift: str, every: int, width: int, noise: float, imbalance: float | None, max_draws: int
) -> Iterator[Event]:
    rng = random.Random(seed)
    classes = _classes(name)
    label_noise = noise if name != "led" else 0.0
    concepts: dict[int, Iterator[Event]] = {}
    moving = _incremental(name, seed, every) if drift == "incremental" else None

    def concept(k: int) -> Iterator[Event]:
        if k not in concepts:
            concepts[k] = _concept(name, k, seed, noise)
        return concepts[k]

    for t in itertools.count():
        if moving is not None:
            src = moving
        elif drift == "none":
            src = concept(0)
        elif drift == "gradual":
            j = max(1, round(t / every))
            src = concept(j if rng.random() < drift_probability(t, j * every, width) else j - 1)
        else:
            k = t // every
            src = concept(k % 2 if drift == "recurring" else k)
        if imbalance is None:
            x, y = next(src)
        else:
            target = classes[0] if rng.random() < imbalance else rng.choice(classes[1:])
            for _ in range(max_draws):
                x, y = next(src)
                if y == target:
                    break
            else:
                raise ValueError(f"stream {name!r} drew no class {target} in {max_draws} events; lower the imbalance")
        if label_noise and rng.random() < label_noise:
            y = rng.choice([c for c in classes if c != y])
        yield x, y


def generate_drift_points(n: int, drift: str, drift_every: int) -> list[int]:
    """Where ``generate``'s concept changes (0-based event index; centres for gradual)."""
    if drift in ("none", "incremental"):
        return []
    return list(range(drift_every, n, drift_every))


def delayed_labels(
    n: int,
    seed: int,
    *,
    max_delay: int = 5_000,
    missing: float = 0.02,
    duplicated: float = 0.01,
    unknown: float = 0.0,
) -> list[tuple[str, int, int]]:
    """A seeded schedule of ``n`` events and their labels arriving later, merged in time.

    Returns ``(kind, event_index, time)`` in log order, ``kind`` one of ``"event"``,
    ``"label"`` or ``"unknown"`` (a label for an id no event has), time in milliseconds
    from the start: event ``i`` at ``i``, its label ``0..max_delay`` events later. A share
    ``missing`` of the labels never comes, a share ``duplicated`` comes twice (the copy up
    to 100 events after the first), and ``unknown`` adds labels for events that do not exist.
    """
    rng = random.Random(seed)
    timed: list[tuple[int, int, str, int]] = []  # time, tie-break, kind, index
    for i in range(n):
        timed.append((i, 0, "event", i))
        if rng.random() < missing:
            continue
        t = i + rng.randint(0, max_delay)
        timed.append((t, 1, "label", i))
        if rng.random() < duplicated:
            timed.append((t + rng.randint(0, 100), 1, "label", i))
        if rng.random() < unknown:
            timed.append((t, 1, "unknown", i))
    timed.sort()
    return [(kind, i, t) for t, _, kind, i in timed]
