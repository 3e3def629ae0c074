"""MOA's learners beside ours, through CapyMOA (a bench extra: ``pip install -e '.[bench]'``).

MOA runs in a JVM (Java 17 here) behind JPype; CapyMOA's ``prequential_evaluation`` runs
the test-then-train loop one event at a time inside it. Our events are dicts, MOA's
instances dense vectors, so ``to_arrays`` lays the events out as a matrix: every feature
seen gets a column (absent → 0), string values become integer codes in first-seen order
(MOA reads them as numbers, not nominal attributes), and labels become 0..C-1 (CapyMOA's
``NumpyStream`` numbers the classes itself and mislabels any other coding). A stream too
wide for a dense matrix (the sparse ``text`` stream) is refused with ``MoaUnavailable``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

#: bench learner key -> what it builds
LEARNERS = {
    "moa-arf": "MOA AdaptiveRandomForest, 10 trees, one thread",
    "moa-ht": "MOA HoeffdingTree, defaults",
}
#: widest event layout handed to MOA as a dense matrix
MAX_COLUMNS = 2_000


class MoaUnavailable(RuntimeError):
    """CapyMOA or Java is missing, or the stream cannot be given to MOA."""


def available() -> str | None:
    """None when MOA can run here, else why not (for a skip message)."""
    if shutil.which("java") is None:
        return "no java on PATH (MOA needs Java 17)"
    try:
        import capymoa  # noqa: F401
    except Exception as exc:  # ImportError, or the JVM failing to start
        return f"capymoa not importable ({type(exc).__name__}: {exc}); pip install -e '.[bench]'"
    return None


def to_arrays(events: Sequence[tuple[dict[str, Any], Any]]) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """``(X float64 (n, d), y int (n,), classes)`` for MOA; see the module docstring."""
    columns: dict[str, int] = {}
    codes: dict[tuple[str, str], int] = {}
    for x, _ in events:
        for k in x:
            if k not in columns:
                columns[k] = len(columns)
                if len(columns) > MAX_COLUMNS:
                    raise MoaUnavailable(
                        f"the events have over {MAX_COLUMNS:,} distinct features: too wide for "
                        "a dense MOA instance"
                    )
    X = np.zeros((len(events), len(columns)))
    for i, (x, _) in enumerate(events):
        for k, v in x.items():
            if isinstance(v, str):
                v = codes.setdefault((k, v), sum(1 for key in codes if key[0] == k))
            X[i, columns[k]] = float(v)
    classes = sorted({y for _, y in events}, key=lambda c: (str(type(c)), c))
    index = {c: i for i, c in enumerate(classes)}
    y = np.fromiter((index[label] for _, label in events), dtype=np.int64, count=len(events))
    return X, y, classes


def build(key: str, schema: Any, seed: int) -> Any:
    from capymoa.classifier import AdaptiveRandomForestClassifier, HoeffdingTree

    if key == "moa-arf":
        return AdaptiveRandomForestClassifier(
            schema=schema, ensemble_size=10, number_of_jobs=1, random_seed=seed
        )
    if key == "moa-ht":
        return HoeffdingTree(schema=schema, random_seed=seed)
    raise ValueError(f"unknown MOA learner {key!r}; choose from {', '.join(LEARNERS)}")


def prequential(
    key: str, events: Sequence[tuple[dict[str, Any], Any]], seed: int, warmup: int = 0
) -> tuple[list[Any], float, float]:
    """MOA's test-then-train over ``events``: (predictions as our labels, wall s, CPU s).

    ``warmup`` events first go through a throw-away model, so the JIT has compiled MOA's
    hot paths before the timed run (a JVM's first thousands of events run interpreted)."""
    why = available()
    if why is not None:
        raise MoaUnavailable(why)
    from capymoa.evaluation import prequential_evaluation
    from capymoa.stream import NumpyStream

    X, y, classes = to_arrays(events)
    stream = NumpyStream(X, y, target_type="categorical")
    if warmup:
        prequential_evaluation(
            stream=stream, learner=build(key, stream.get_schema(), seed), max_instances=warmup
        )
    learner = build(key, stream.get_schema(), seed)
    t0, c0 = time.perf_counter(), time.process_time()
    result = prequential_evaluation(
        stream=stream, learner=learner, max_instances=len(events), store_predictions=True
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    preds = [None if p is None else classes[int(p)] for p in result.predictions()]
    return preds, wall, cpu
