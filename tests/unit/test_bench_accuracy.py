from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import accuracy

ROW_FIELDS = {
    "stream",
    "learner",
    "n",
    "seed",
    "accuracy",
    "kappa",
    "kappa_m",
    "kappa_t",
    "events_per_s",
    "peak_mb",
    "device",
    "curve",
    "drifts",
}


@pytest.fixture
def row_and_dir(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    results = tmp_path / "results"
    row = accuracy.run_row("sea_a", "ht", 2_000, seed=3, results=results)
    return row, results


def test_row_fields(row_and_dir: tuple[dict[str, Any], Path]) -> None:
    row, _ = row_and_dir
    assert set(row) >= ROW_FIELDS
    assert row["stream"] == "sea_a"
    assert row["learner"] == "ht"
    assert row["registry_name"] == "river:tree.HoeffdingTreeClassifier"
    assert (row["n"], row["seed"]) == (2_000, 3)
    assert row["cached"] is False
    # a Hoeffding tree on SEA with 10% label noise
    assert 0.75 < row["accuracy"] < 0.92
    assert 0.3 < row["kappa"] < row["accuracy"]
    assert row["events_per_s"] > 0
    assert row["peak_mb"] > 0
    assert row["device"] == "cpu"
    # the paper's drifts are at 225k+; a 2k prefix has none
    assert row["drifts"] == []
    curve = row["curve"]
    assert curve["window"] == 1_000
    assert len(curve["t"]) == len(curve["acc"]) == 500
    assert curve["t"][-1] == 2_000
    assert all(0.0 <= a <= 1.0 for a in curve["acc"])


def test_row_is_cached_not_recomputed(
    row_and_dir: tuple[dict[str, Any], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    row, results = row_and_dir
    path = accuracy.row_path(results, "sea_a", "ht", 2_000, 3, scale=False)
    assert path.is_file()
    mtime = path.stat().st_mtime_ns

    def boom(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("a cached row was recomputed")

    monkeypatch.setattr(accuracy, "compute_row", boom)
    again = accuracy.run_row("sea_a", "river:tree.HoeffdingTreeClassifier", 2_000, 3, results)
    assert again["cached"] is True
    # exact: a float survives the JSON round trip unchanged
    assert again["accuracy"] == row["accuracy"]
    assert path.stat().st_mtime_ns == mtime
    # another seed or length is another row
    with pytest.raises(AssertionError, match="recomputed"):
        accuracy.run_row("sea_a", "ht", 2_000, 4, results)
    with pytest.raises(AssertionError, match="recomputed"):
        accuracy.run_row("sea_a", "ht", 2_000, 3, results, force=True)


def test_reports(row_and_dir: tuple[dict[str, Any], Path]) -> None:
    row, results = row_and_dir
    jsonl = results / "rows.jsonl"
    table = accuracy.write_reports(
        [row], results, "python -m bench.accuracy --n 2000", False, jsonl
    )
    md = (results / "accuracy.md").read_text()
    assert md == table
    assert f"| sea_a | ht | 2,000 | 3 | {100 * row['accuracy']:.2f} |" in md
    assert "Airlines" in md
    png = results / "accuracy_sea_a.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a later run of another learner finds this row and reports both
    (found,) = accuracy.cached_rows(results, ["sea_a"], 2_000, 3, False)
    assert (found["learner"], found["accuracy"]) == ("ht", row["accuracy"])
    (line,) = jsonl.read_text().splitlines()
    # exact: a float survives the JSON round trip unchanged
    assert json.loads(line)["accuracy"] == row["accuracy"]


def test_scores_match_moa_definitions() -> None:
    scores = accuracy._Scores(n=6, window=3, points=6)
    # y:    a a b a b b ; predictions: a b b a a b
    for y, p in zip("aababb", "abbaab", strict=True):
        scores.update(y, p)
    s = scores.summary()
    assert s["accuracy"] == pytest.approx(4 / 6)
    # majority so far predicts (none), a, a, a, a, a: right on events 2 and 4 -> 2/6
    assert s["kappa_m"] == pytest.approx((4 / 6 - 2 / 6) / (1 - 2 / 6))
    # no-change predicts (none), a, a, b, a, b: right on 2 and 6 -> 2/6
    assert s["kappa_t"] == pytest.approx((4 / 6 - 2 / 6) / (1 - 2 / 6))
    assert s["curve"]["acc"] == pytest.approx([1.0, 0.5, 2 / 3, 2 / 3, 2 / 3, 2 / 3], abs=1e-5)


def test_learner_names_and_lengths() -> None:
    assert accuracy.resolve_learner("river:forest.ARFClassifier").key == "arf"
    assert accuracy.LEARNERS["levbag"].params["model"] == {"name": "tree.HoeffdingTreeClassifier"}
    with pytest.raises(ValueError, match="unknown learner"):
        accuracy.resolve_learner("nope")
    assert accuracy.stream_length("elec", None) == 45_312
    assert accuracy.stream_length("elec", 100_000) == 45_312
    assert accuracy.stream_length("sea_a", None) == 1_000_000
    assert accuracy.true_drifts("sea_g", 500_000, scale=False) == [
        (225_000, 50_000),
        (475_000, 50_000),
    ]
    assert accuracy.true_drifts("sea_a", 100_000, scale=True) == [
        (24_998, 5),
        (49_998, 5),
        (74_998, 5),
    ]


def test_dataset_rows_in_file_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    from bench import datasets

    with gzip.open(tmp_path / "electricity.csv.gz", "wt") as fh:
        fh.write(
            "date,day,period,nswprice,class\n0,2,0,0.05,UP\n0,2,0.02,0.04,DOWN\n0,3,0.04,0.06,UP\n"
        )
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path))
    rows = list(datasets.load("elec", 2))
    assert rows == [
        ({"date": 0.0, "day": "2", "period": 0.0, "nswprice": 0.05}, "UP"),
        ({"date": 0.0, "day": "2", "period": 0.02, "nswprice": 0.04}, "DOWN"),
    ]
    assert len(list(datasets.load("elec"))) == 3


def test_missing_dataset_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import datasets

    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(
        datasets.DatasetMissingError, match=str(tmp_path / "nowhere" / "covtype.csv.gz")
    ):
        datasets.load("covt", 10)


def _fake_row(stream: str, learner: str, seed: int, acc: float, cpu_rate: float) -> dict[str, Any]:
    return {
        "stream": stream,
        "learner": learner,
        "n": 1_000,
        "seed": seed,
        "accuracy": acc,
        "kappa": acc - 0.1,
        "kappa_m": acc - 0.2,
        "events_per_s": cpu_rate,
        "events_per_cpu_s": cpu_rate,
        "peak_mb": 100.0,
        "base_mb": 90.0,
        "device": "cpu",
    }


def test_seed_means_and_summary_over_seeds() -> None:
    rows = [
        _fake_row("elec", "driftmoe", 1, 0.80, 2_000.0),
        _fake_row("elec", "driftmoe", 2, 0.90, 6_000.0),
        _fake_row("elec", "arf", 1, 0.84, 40.0),
        _fake_row("sea_a", "driftmoe", 1, 0.88, 1_000.0),
    ]
    (m,) = accuracy.seed_means(rows)
    assert (m["stream"], m["learner"], m["seeds"]) == ("elec", "driftmoe", [1, 2])
    assert m["accuracy"] == pytest.approx(85.0)
    assert m["accuracy_sd"] == pytest.approx(7.0710678, rel=1e-6)
    # one stream both ran; the two driftmoe seeds count once, as their mean
    line = accuracy.summary_line(rows)
    assert "Summary over 1 of the paper's 8 streams (elec)" in line
    assert "85.00% vs ARF 84.00% (+1.00 points)" in line
    assert "it is 100.0× ARF's events per CPU-second" in line
    table = accuracy.markdown_table(rows, "python -m bench.accuracy --seed 1,2", False)
    assert "| elec | driftmoe | 1,000 | 1,2 | 85.00 ± 7.07 | 75.00 ± 7.07 | – |" in table


def test_seed_list_parsing() -> None:
    parser = accuracy.build_parser()
    assert parser.parse_args(["--seed", "3,1,3"]).seed == [3, 1]
    assert parser.parse_args([]).seed == [1]
    with pytest.raises(SystemExit):
        parser.parse_args(["--seed", "1,x"])


def test_user_streams_run_at_their_own_length() -> None:
    assert accuracy.stream_length("runs", accuracy.QUICK_N) == 4_000
    assert accuracy.stream_length("short", 1_000) == 1_000
    assert accuracy.stream_length("text", None) == 20_000
    assert accuracy.resolve_learner("driftmoe-causal").causal
    assert not accuracy.resolve_learner("driftmoe").causal


def test_moa_arrays_number_classes_and_codes_strings() -> None:
    from bench import moa

    events = [({"a": 1.5, "s": "x"}, 7), ({"b": 2, "s": "y"}, 5), ({"a": 0.5, "s": "x"}, 7)]
    X, y, classes = moa.to_arrays(events)
    assert classes == [5, 7] and y.tolist() == [1, 0, 1]
    assert X.tolist() == [[1.5, 0.0, 0.0], [0.0, 1.0, 2.0], [0.5, 0.0, 0.0]]
    wide = [({f"w{i}": 1}, 0) for i in range(moa.MAX_COLUMNS + 1)]
    with pytest.raises(moa.MoaUnavailable, match="too wide"):
        moa.to_arrays(wide)


def test_moa_learners_run_when_capymoa_is_installed() -> None:
    from bench import moa

    why = moa.available()
    if why is not None:
        pytest.skip(why)
    from stream.synth import make_stream

    events = list(make_stream("sea_a", 2_000, seed=1))
    for key in moa.LEARNERS:
        preds, wall, cpu = moa.prequential(key, events, seed=1)
        acc = sum(p == y for p, (_, y) in zip(preds, events, strict=True)) / len(events)
        assert 0.75 < acc < 0.95, (key, acc)
        assert wall > 0 and cpu > 0
