from __future__ import annotations

import itertools
from typing import Any

import pytest

from bench import sections
from bench.sections import REST, Clock, per_event, timed_sections


def test_a_section_keeps_its_own_time_and_the_compiled_time_it_called(monkeypatch: pytest.MonkeyPatch) -> None:
    # every reading of the clock is one second after the last
    ticks = itertools.count()
    monkeypatch.setattr(sections.time, "perf_counter", lambda: float(next(ticks)))
    clock = Clock()
    kernel = clock.compiled_pass(lambda: None)  # 1 s a call

    def inner() -> None:
        kernel()

    timed_inner = clock.section(inner, "inner")

    def outer() -> None:
        kernel()
        timed_inner()
        timed_inner()

    verb = clock.section(clock.section(outer, "outer"), REST)
    verb()
    # outer: 1 s its own kernel, two inner calls of 3 s each (1 s kernel between two ticks)
    assert clock.own == {"inner": 6.0, "outer": 5.0, REST: 2.0}
    assert clock.compiled == {"outer": 1.0, "inner": 2.0}
    assert clock.total == 13.0 == sum(clock.own.values())
    assert per_event(clock, 2) == [
        ("inner", 3e6, 1e6),
        ("outer", 2.5e6, 0.5e6),
        (REST, 1e6, 0.0),
    ]
    kernel()  # outside every section: not the learner's
    assert clock.compiled == {"outer": 1.0, "inner": 2.0}


def test_the_learners_own_loop_is_timed_and_then_left_as_it_was() -> None:
    import learners.neural_kernels as kernels
    from bench.throughput import run_prequential, sea_events
    from learners.driftmoe_neural import NeuralDriftMoE
    from learners.features import FeatureSpace

    before = (NeuralDriftMoE.learn_many, FeatureSpace.transform, kernels.bank_votes)
    events = sea_events(1_024, 3)
    plain = NeuralDriftMoE(seed=3)
    _, accuracy = run_prequential(plain, events, 256)
    timed = NeuralDriftMoE(seed=3)
    with timed_sections() as clock:
        _, timed_accuracy = run_prequential(timed, events, 256)
    assert (NeuralDriftMoE.learn_many, FeatureSpace.transform, kernels.bank_votes) == before
    assert timed_accuracy == accuracy  # the timers change nothing the learner computes
    rows = {label: (us, cus) for label, us, cus in per_event(clock, len(events))}
    for label in ("neighbour vote", "steps of the experts and the router", "reading the events, prediction"):
        assert rows[label][0] > 0.0, label
    # the vote's search and the steps are compiled passes; reading the dicts is Python
    assert rows["neighbour vote"][1] > 0.0
    assert rows["steps of the experts and the router"][1] > 0.0
    assert rows["reading the events, prediction"][1] == 0.0
    for label, (us, cus) in rows.items():
        assert 0.0 <= cus <= us, label
    assert sum(clock.own.values()) == pytest.approx(clock.total)


def test_a_learner_without_the_vote_has_no_vote_time() -> None:
    from bench.throughput import run_prequential, sea_events
    from learners.driftmoe_neural import NeuralDriftMoE

    with timed_sections() as clock:
        run_prequential(NeuralDriftMoE(seed=3, neighbours=None, causal=False), sea_events(512, 3), 256)
    assert "neighbour vote" not in clock.compiled
    assert clock.own.get("neighbour vote", 0.0) < clock.own["steps of the experts and the router"]


def test_the_bench_prints_and_writes_each_neural_rows_sections(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from bench import throughput

    out = tmp_path / "rows.jsonl"
    argv = ["--n", "512", "--arf-n", "20", "--batch", "256", "--repeats", "1", "--no-ht", "--no-moa", "--no-sparse"]
    assert throughput.main([*argv, "--sections", "--variant", "neighbours=None", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    timed = {r["learner"]: r["sections"] for r in rows if "sections" in r}
    # the neural rows at micro-batch 256, never River's
    assert sorted(timed) == ["driftmoe", "driftmoe causal", "driftmoe[neighbours=None]"]
    for learner, sections_ in timed.items():
        *parts, total = sections_
        assert total["section"] == "all (timers on)"
        assert total["us"] == pytest.approx(sum(s["us"] for s in parts)), learner
        assert 0.0 < total["compiled_us"] < total["us"]
    assert printed.count("all (timers on)") == 3  # a table each
    assert "would allow" not in printed  # no MOA row to measure 50× against
