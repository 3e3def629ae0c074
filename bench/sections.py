"""Where the neural DriftMoE's time goes: its own loop, with timers around its sections and
its compiled passes (``python -m bench.throughput --sections``).

A section is one of the learner's steps (reading the events, the neighbour vote, the steps
of the experts...). Its time is its own: a section called inside another counts for
itself, not for the one around it. The compiled passes (numba's, in
``learners.neural_kernels``) are timed too, and their time is shown inside the section
that called them: the "compiled" column is what no Python or numpy overhead is in, the
floor a section keeps however its Python is written. Whatever the verbs spend outside every
section is "the rest". The timers cost about a microsecond a call, a few dozen calls a
micro-batch: the timed total is a percent or two above the learner's time without them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: (label, class, method); the class is found by name in ``learners.driftmoe_neural``
#: (``NeuralDriftMoE``) or ``learners.features`` (``FeatureSpace``, ``LabelSpace``)
SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("reading the events, prediction", "FeatureSpace", "transform"),
    ("reading the events, learning", "FeatureSpace", "update_scan"),
    ("standardising the learned rows", "FeatureSpace", "dense"),
    ("labels", "LabelSpace", "update_and_encode"),
    ("input context rows", "NeuralDriftMoE", "_matrix"),
    ("prediction: first layer and mix", "NeuralDriftMoE", "_moe_probs"),
    ("neighbour vote", "NeuralDriftMoE", "_neighbour_parts"),
    ("label-aware prediction's mix", "NeuralDriftMoE", "_causal_mix"),
    ("label-aware scoring", "NeuralDriftMoE", "_score_causal"),
    ("plain mixture's scoring", "NeuralDriftMoE", "_score_mix"),
    ("steps of the experts and the router", "NeuralDriftMoE", "_dense_steps_np"),
    ("neighbour memory update", "NeuralDriftMoE", "_remember"),
    ("recent-label profile", "NeuralDriftMoE", "_update_context"),
)
#: the verbs a prequential loop calls: their calls are the total
VERBS = ("predict_many", "predict_many_causal", "learn_many")
REST = "the rest"


@dataclass
class Clock:
    """Seconds spent in each section (its own) and in the compiled passes it called."""

    own: dict[str, float] = field(default_factory=dict)
    compiled: dict[str, float] = field(default_factory=dict)
    total: float = 0.0
    # open sections: [label, start, seconds of the sections inside it]
    _open: list[list[Any]] = field(default_factory=list)

    def section(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            frame = [label, time.perf_counter(), 0.0]
            self._open.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                secs = time.perf_counter() - frame[1]
                self._open.pop()
                self.own[label] = self.own.get(label, 0.0) + secs - frame[2]
                if self._open:
                    self._open[-1][2] += secs
                else:
                    self.total += secs

        return timed

    def compiled_pass(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                # called outside any verb (a bench's own warm-up) it is not the learner's
                if self._open:
                    host = self._open[-1][0]
                    self.compiled[host] = self.compiled.get(host, 0.0) + time.perf_counter() - t

        return timed


@contextlib.contextmanager
def timed_sections() -> Iterator[Clock]:
    """Time every neural DriftMoE in the process while the block runs (the methods are
    wrapped on their classes, the compiled passes in their module); restored after."""
    import learners.driftmoe_neural as neural
    import learners.features as features
    import learners.neural_kernels as kernels

    clock = Clock()
    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, wrapper: Any) -> None:
        saved.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, wrapper)

    try:
        for label, cls_name, method in SECTIONS:
            owner = getattr(neural, cls_name, None) or getattr(features, cls_name)
            patch(owner, method, clock.section(getattr(owner, method), label))
        for verb in VERBS:
            patch(neural.NeuralDriftMoE, verb, clock.section(getattr(neural.NeuralDriftMoE, verb), REST))
        for name, fn in list(vars(kernels).items()):
            if hasattr(fn, "py_func") and not name.startswith("_"):  # a numba dispatcher
                patch(kernels, name, clock.compiled_pass(fn))
        yield clock
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def per_event(clock: Clock, events: int) -> list[tuple[str, float, float]]:
    """``(section, µs an event, of which compiled)``, largest first, the rest last."""
    rows = [(label, secs * 1e6 / events, clock.compiled.get(label, 0.0) * 1e6 / events) for label, secs in clock.own.items()]
    rows.sort(key=lambda r: (r[0] == REST, -r[1]))
    return rows
