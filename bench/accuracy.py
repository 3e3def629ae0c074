"""Prequential accuracy benchmark on the DriftMoE paper's streams and on the user regimes.

    python -m bench.accuracy --quick --jobs 2      # first 100k events of every stream
    python -m bench.accuracy                       # full length: 1M synthetic, real files whole

Every (stream, learner, length, seed) row runs test-then-train from the first event in its
own spawned process (so ``ru_maxrss`` is that row's peak memory) and is cached as JSON under
``--results``; an interrupted run resumes where it stopped and ``--force`` recomputes.
The reports cover the rows this run asked for plus every other learner's cached row for the
same streams, length and seed, so runs of different learners add up to one table.
Outputs: ``accuracy.md`` (table with the paper's numbers beside ours), one
``accuracy_<stream>.png`` per stream (rolling accuracy, drift points marked), and with
``--json`` one JSON object per row.

Beside the paper's eight streams, ``text``, ``runs`` and ``short`` (``stream.synth``) are the
regimes users send: sparse bags of words with topic drift, 40 classes arriving in runs, and
a stream of 3,000 events; each runs at its own length (``--quick`` and ``--n`` cap it).
MOA's ARF(10) and Hoeffding tree (``moa-arf``, ``moa-ht``) run through CapyMOA when it is
installed (``pip install -e '.[bench]'``); without it their rows fail with the reason and
the others go on.

Synthetic drift positions are the paper's absolute ones, so ``--quick`` compares learners on
the paper streams' first 100k events, which hold no SEA or LED drift (RBF drifts
continuously). ``--scale-drifts`` moves the three drifts inside ``n`` instead.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import math
import multiprocessing as mp
import os
import platform
import re
import resource
import statistics
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import datasets
from bench.params import VARIANT, format_params, parse_params, split_keys
from stream import synth

SYNTHETIC = ("led_a", "led_g", "sea_a", "sea_g", "rbf_m", "rbf_f")
REAL = ("elec", "covt")
PAPER_EIGHT = (*SYNTHETIC, *REAL)
USER = synth.USER_STREAMS
STREAMS = (*SYNTHETIC, *REAL, *USER)
QUICK_N = 100_000
CURVE_WINDOW = 1_000
CURVE_POINTS = 500
ROW_VERSION = 1

AIRLINES_NOTE = (
    "Airlines (539,383 events) is not run: no copy of the MOA airlines.arff is available "
    "here. The paper's numbers for it are listed for reference."
)


@dataclass(frozen=True)
class LearnerSpec:
    """How the bench builds and drives one learner."""

    key: str
    registry_name: str
    params: dict[str, Any] = field(default_factory=dict)
    #: rows per predict/learn call; 1 means predict_one/learn_one per event
    batch: int = 1
    #: column of the paper's table this learner is compared with, if any
    paper: str | None = None
    #: predict with ``predict_many_causal(X, y)``: each row with the labels of the rows
    #: before it in its micro-batch, as a per-event learner has them
    causal: bool = False
    note: str = ""


LEARNERS: dict[str, LearnerSpec] = {
    s.key: s
    for s in (
        LearnerSpec("driftmoe-ht-data", "driftmoe-ht-data", paper="MoE-Data"),
        LearnerSpec("driftmoe-ht-task", "driftmoe-ht-task", paper="MoE-Task"),
        LearnerSpec("driftmoe", "driftmoe", batch=256, note="neural experts, micro-batch 256"),
        LearnerSpec(
            "driftmoe-causal",
            "driftmoe",
            batch=256,
            causal=True,
            note="neural experts, micro-batch 256, earlier rows' labels used (predict_many_causal)",
        ),
        LearnerSpec(
            "arf",
            "river:forest.ARFClassifier",
            {"n_models": 10},
            paper="ARF",
            note="10 trees (paper: 100)",
        ),
        LearnerSpec(
            "srp",
            "river:ensemble.SRPClassifier",
            {"n_models": 10},
            paper="SRP",
            note="10 members (paper: 100)",
        ),
        LearnerSpec(
            "levbag",
            "river:ensemble.LeveragingBaggingClassifier",
            {"model": {"name": "tree.HoeffdingTreeClassifier"}, "n_models": 10},
            paper="LevBag",
            note="10 Hoeffding trees (paper: 100)",
        ),
        LearnerSpec("ht", "river:tree.HoeffdingTreeClassifier"),
        LearnerSpec("hat", "river:tree.HoeffdingAdaptiveTreeClassifier"),
        LearnerSpec("moa-arf", "moa:arf", note="MOA ARF, 10 trees, via CapyMOA"),
        LearnerSpec("moa-ht", "moa:ht", note="MOA Hoeffding tree, via CapyMOA"),
    )
}
#: registry names are accepted wherever a key is
_ALIASES: dict[str, str] = {}
for _spec in LEARNERS.values():  # a registry name goes to the first learner built from it
    _ALIASES.setdefault(_spec.registry_name, _spec.key)
RIVER_BASELINES = ("arf", "srp", "levbag", "ht", "hat")

#: the paper's prequential accuracy (%) over 1M events (real streams: whole), mean of 10 seeds;
#: MoE columns exact, the ensembles (100 members, CapyMOA) read off a bar chart (±0.1)
PAPER: dict[str, dict[str, float]] = {
    "airl": {"MoE-Data": 70.33, "MoE-Task": 60.92, "ARF": 64.6, "LevBag": 63.5, "SRP": 68.6},
    "elec": {"MoE-Data": 83.76, "MoE-Task": 68.73, "ARF": 90.1, "LevBag": 89.1, "SRP": 89.6},
    "covt": {"MoE-Data": 81.28, "MoE-Task": 58.28, "ARF": 94.7, "LevBag": 93.3, "SRP": 95.2},
    "led_a": {"MoE-Data": 73.77, "MoE-Task": 71.11, "ARF": 74.0, "LevBag": 73.8, "SRP": 74.0},
    "led_g": {"MoE-Data": 73.11, "MoE-Task": 70.82, "ARF": 73.0, "LevBag": 73.2, "SRP": 73.2},
    "sea_a": {"MoE-Data": 89.09, "MoE-Task": 88.04, "ARF": 89.7, "LevBag": 88.2, "SRP": 87.4},
    "sea_g": {"MoE-Data": 88.74, "MoE-Task": 87.76, "ARF": 89.3, "LevBag": 88.8, "SRP": 87.0},
    "rbf_f": {"MoE-Data": 61.90, "MoE-Task": 75.45, "ARF": 86.4, "LevBag": 84.5, "SRP": 82.7},
    "rbf_m": {"MoE-Data": 79.89, "MoE-Task": 88.65, "ARF": 92.0, "LevBag": 91.0, "SRP": 90.5},
}
PAPER_COLUMNS = ("MoE-Data", "MoE-Task", "ARF", "SRP", "LevBag")


# ---------------------------------------------------------------------------- streams


def stream_length(stream: str, n: int | None) -> int:
    """Events a row of ``stream`` really has: ``n`` capped at a real file's rows."""
    if stream in REAL:
        rows = datasets.DATASETS[stream].rows
        return rows if n is None else min(n, rows)
    if stream in SYNTHETIC:
        return synth.PAPER_LENGTH if n is None else n
    if stream in USER:
        length = synth.STREAMS[stream].length
        assert length is not None
        return length if n is None else min(n, length)
    raise ValueError(f"unknown stream {stream!r}; choose from: {', '.join(STREAMS)}")


def open_stream(stream: str, n: int, seed: int, scale: bool) -> Iterator[tuple[dict, Any]]:
    if stream in REAL:
        # the real streams have one fixed order; the seed only seeds the learner
        return datasets.load(stream, n)
    return synth.make_stream(stream, n, seed, scale=scale)


def true_drifts(stream: str, n: int, scale: bool) -> list[tuple[int, int]]:
    """(centre, width) of the stream's concept changes within ``n`` events."""
    if stream not in SYNTHETIC:
        return []
    info = synth.STREAMS[stream]
    points = set(synth.drift_points(stream, n, scale=scale))
    f = n / synth.PAPER_LENGTH if scale else 1.0
    return [(round(p * f), max(1, round(w * f))) for p, w in info.drifts if round(p * f) in points]


# ---------------------------------------------------------------------------- metrics


class _Scores:
    """Cumulative accuracy, Cohen's κ, κ_M (vs the majority class so far) and κ_T (vs no-change),
    the way MOA's prequential evaluator counts them, plus a rolling accuracy curve."""

    def __init__(self, n: int, window: int = CURVE_WINDOW, points: int = CURVE_POINTS) -> None:
        from river import metrics

        self.kappa = metrics.CohenKappa()
        self.n = 0
        self.correct = 0
        self.majority_correct = 0
        self.nochange_correct = 0
        self.counts: Counter[Any] = Counter()
        self.last: Any = None
        self.window: deque[int] = deque(maxlen=window)
        self.window_correct = 0
        self.every = max(1, n // points)
        self.curve_t: list[int] = []
        self.curve_acc: list[float] = []

    def update(self, y: Any, p: Any) -> None:
        ok = int(p == y)
        self.n += 1
        self.correct += ok
        self.kappa.update(y, p)
        if self.counts:
            majority = max(self.counts, key=self.counts.__getitem__)
            self.majority_correct += majority == y
        self.nochange_correct += self.last == y
        self.counts[y] += 1
        self.last = y
        if len(self.window) == self.window.maxlen:
            self.window_correct -= self.window[0]
        self.window.append(ok)
        self.window_correct += ok
        if self.n % self.every == 0:
            self.curve_t.append(self.n)
            self.curve_acc.append(round(self.window_correct / len(self.window), 5))

    @staticmethod
    def _kappa_vs(acc: float, baseline: float) -> float:
        return (acc - baseline) / (1.0 - baseline) if baseline < 1.0 else 0.0

    def summary(self) -> dict[str, Any]:
        n = max(self.n, 1)
        acc = self.correct / n
        return {
            "accuracy": acc,
            "kappa": float(self.kappa.get()),
            "kappa_m": self._kappa_vs(acc, self.majority_correct / n),
            "kappa_t": self._kappa_vs(acc, self.nochange_correct / n),
            "curve": {"window": self.window.maxlen, "t": self.curve_t, "acc": self.curve_acc},
        }


# ---------------------------------------------------------------------------- one row


def resolve_learner(key: str) -> LearnerSpec:
    """The spec of a learner key or registry name, or of a variant ``key[name=value; ...]``:
    that learner with those parameters set (checked by building it once)."""
    variant = VARIANT.match(key)
    if variant is not None:
        base = resolve_learner(variant["base"].strip())
        if base.registry_name.startswith("moa:"):
            raise ValueError(f"{key!r}: MOA's learners take no parameters here")
        from learners.registry import make_learner

        given = parse_params(variant["params"])
        params = {**base.params, **given}
        try:
            make_learner(base.registry_name, params)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{key!r}: {base.registry_name} refuses {given}: {exc}") from None
        label = format_params(given)
        return replace(
            base, key=f"{base.key}[{label}]", params=params, paper=None, note=f"{base.key} with {label}"
        )
    key = _ALIASES.get(key, key)
    try:
        return LEARNERS[key]
    except KeyError:
        known = ", ".join(f"{k} ({s.registry_name})" for k, s in LEARNERS.items())
        raise ValueError(
            f"unknown learner {key!r}; choose from: {known}, or one of them with parameters, "
            "e.g. driftmoe[neighbours=None; n_experts=4]"
        ) from None


def row_path(results: Path, stream: str, learner: str, n: int, seed: int, scale: bool) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", learner)
    suffix = "_scaled" if scale and stream in SYNTHETIC else ""
    return results / "rows" / f"{stream}__{slug}__n{n}__s{seed}{suffix}.json"


def _device_of(learner: Any) -> str:
    for attr in ("resolved_device", "_dev", "device"):
        value = getattr(learner, attr, None)
        if value is not None and str(value) != "auto":
            return str(value)
    return "cpu"


def _peak_mb() -> float:
    # Linux reports ru_maxrss in KiB, macOS in bytes
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


class _Progress:
    """A rate line on stderr, silent when ``enabled`` is false.

    Alone on a terminal the line is redrawn in place every 2 s; when several rows share
    stderr (parallel jobs) or it is a file, each row prints a whole line every 30 s.
    """

    def __init__(self, label: str, total: int, enabled: bool, shared: bool = False) -> None:
        self.label = label
        self.total = total
        self.enabled = enabled
        self.start = time.perf_counter()
        self.next_at = self.start + 2.0
        self.tty = sys.stderr.isatty() and not shared
        self.finished = False

    def tick(self, done: int) -> None:
        if not self.enabled or self.finished:
            return
        now = time.perf_counter()
        if now < self.next_at and done < self.total:
            return
        self.finished = done >= self.total
        self.next_at = now + (2.0 if self.tty else 30.0)
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else math.inf
        line = f"{self.label}: {done:,}/{self.total:,} {rate:,.0f} ev/s eta {eta:,.0f}s"
        end = "\n" if done >= self.total or not self.tty else ""
        print(("\r" if self.tty else "") + line, end=end, file=sys.stderr, flush=True)


def _batches(events: Iterable[tuple[dict, Any]], size: int) -> Iterator[tuple[list, list]]:
    X: list[dict] = []
    Y: list[Any] = []
    for x, y in events:
        X.append(x)
        Y.append(y)
        if len(X) == size:
            yield X, Y
            X, Y = [], []
    if X:
        yield X, Y


def prequential(
    learner: Any,
    events: Iterable[tuple[dict, Any]],
    n: int,
    batch: int = 1,
    progress: _Progress | None = None,
    causal: bool = False,
) -> tuple[_Scores, float, float]:
    """Test-then-train over ``events``; returns the scores and the learner's wall and CPU seconds.

    Only the learner's own calls are timed, so the stream's generation cost is not charged to it.
    """
    scores = _Scores(n)
    wall = 0.0
    cpu = 0.0
    clock, cpu_clock = time.perf_counter, time.process_time
    if batch == 1:
        for i, (x, y) in enumerate(events, 1):
            t0, c0 = clock(), cpu_clock()
            p = learner.predict_one(x)
            learner.learn_one(x, y)
            wall += clock() - t0
            cpu += cpu_clock() - c0
            scores.update(y, p)
            if progress is not None and i % 1000 == 0:
                progress.tick(i)
    else:
        for X, Y in _batches(events, batch):
            t0, c0 = clock(), cpu_clock()
            preds = learner.predict_many_causal(X, Y) if causal else learner.predict_many(X)
            learner.learn_many(X, Y)
            wall += clock() - t0
            cpu += cpu_clock() - c0
            for y, p in zip(Y, preds, strict=True):
                scores.update(y, p)
            if progress is not None:
                progress.tick(scores.n)
    if progress is not None:
        progress.tick(scores.n)
    return scores, wall, cpu


def compute_row(
    stream: str,
    learner_key: str,
    n: int,
    seed: int,
    scale: bool = False,
    progress: bool = False,
    shared: bool = False,
) -> dict[str, Any]:
    """Run one (stream, learner, n, seed) prequentially and return its result row."""
    from learners.registry import make_learner

    spec = resolve_learner(learner_key)
    n = stream_length(stream, n)
    base_mb = _peak_mb()
    started = time.perf_counter()
    if spec.registry_name.startswith("moa:"):
        from bench import moa

        learner: Any = None
        events = list(open_stream(stream, n, seed, scale))
        preds, wall, cpu = moa.prequential(spec.key, events, seed)
        scores = _Scores(n)
        for (_, y), p in zip(events, preds, strict=True):
            scores.update(y, p)
    else:
        learner = make_learner(spec.registry_name, spec.params, seed=seed)
        base_mb = _peak_mb()
        bar = _Progress(f"{stream} {spec.key} seed {seed}", n, progress, shared)
        scores, wall, cpu = prequential(
            learner, open_stream(stream, n, seed, scale), n, spec.batch, bar, spec.causal
        )
    total = time.perf_counter() - started
    if scores.n != n:
        raise RuntimeError(f"{stream} gave {scores.n} events, expected {n}")
    row: dict[str, Any] = {
        "version": ROW_VERSION,
        "stream": stream,
        "learner": spec.key,
        "registry_name": spec.registry_name,
        "params": spec.params,
        "batch": spec.batch,
        "n": n,
        "seed": seed,
        "scaled_drifts": bool(scale and stream in SYNTHETIC),
        "drifts": true_drifts(stream, n, scale),
        **scores.summary(),
        "events_per_s": n / wall if wall > 0 else math.inf,
        "events_per_cpu_s": n / cpu if cpu > 0 else math.inf,
        "learner_s": wall,
        "total_s": total,
        "peak_mb": _peak_mb(),
        "base_mb": base_mb,
        "device": "jvm" if learner is None else _device_of(learner),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
    }
    return row


def run_row(
    stream: str,
    learner_key: str,
    n: int | None,
    seed: int,
    results: Path,
    *,
    scale: bool = False,
    force: bool = False,
    progress: bool = False,
    shared: bool = False,
) -> dict[str, Any]:
    """The cached row for these settings, computed (and written) if absent or ``force``."""
    spec = resolve_learner(learner_key)
    n_eff = stream_length(stream, n)
    path = row_path(results, stream, spec.key, n_eff, seed, scale)
    if path.is_file() and not force:
        row = json.loads(path.read_text())
        if row.get("version") == ROW_VERSION:
            row["cached"] = True
            return row
    row = compute_row(stream, spec.key, n_eff, seed, scale=scale, progress=progress, shared=shared)
    path.parent.mkdir(parents=True, exist_ok=True)
    # write-then-rename so a row killed mid-write never looks cached
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(row))
    tmp.replace(path)
    row["cached"] = False
    return row


def cached_rows(
    results: Path, streams: Iterable[str], n: int | None, seed: int, scale: bool
) -> list[dict[str, Any]]:
    """Every learner's cached row for these streams and settings, whichever run computed it."""
    rows = []
    for stream in streams:
        for key in LEARNERS:
            path = row_path(results, stream, key, stream_length(stream, n), seed, scale)
            if path.is_file():
                row = json.loads(path.read_text())
                if row.get("version") == ROW_VERSION:
                    rows.append({**row, "cached": True})
    return rows


def _row_in_child(kwargs: dict[str, Any]) -> dict[str, Any]:
    threads = kwargs.pop("threads")
    # two rows on a 2-core box must not each start a full intra-op thread pool
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if resolve_learner(kwargs["learner_key"]).registry_name.startswith("driftmoe"):
        import torch  # those learners import it anyway; River rows stay free of its memory

        torch.set_num_threads(threads)
    return run_row(**kwargs)


# ---------------------------------------------------------------------------- reports


def machine_info() -> dict[str, str]:
    info = {
        "cpu": _cpu_name(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for mod in ("river", "torch", "numpy"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = "not installed"
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def _rate(v: float) -> str:
    if not math.isfinite(v):
        return "–"
    return f"{v / 1000:.1f}k" if v >= 10_000 else f"{v:,.0f}"


def _in_table_order(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows sorted as the paper lists streams, then in the learner table's order."""
    order = {s: i for i, s in enumerate(STREAMS)}
    lorder = {k: i for i, k in enumerate(LEARNERS)}
    return sorted(items, key=lambda r: (order.get(r["stream"], 99), lorder.get(r["learner"], 99)))


def _paper_cell(stream: str, learner: str) -> str:
    spec = LEARNERS.get(learner)
    paper = PAPER.get(stream, {}).get(spec.paper) if spec and spec.paper else None
    return "–" if paper is None else f"{paper:.2f}"


def markdown_table(rows: Sequence[dict[str, Any]], command: str, quick: bool) -> str:
    info = machine_info()
    lines = [
        "# Prequential accuracy",
        "",
        f"- command: `{command}`",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {info['cpu']}, {info['cores']} cores; python {info['python']}, "
        f"torch {info['torch']}, river {info['river']}, numpy {info['numpy']}",
        "- metric: test-then-train from the first event, cumulative over the whole stream "
        "(accuracy, Cohen's κ, κ_M vs the majority class so far); events/s counts the "
        "learner's predict+learn time only; peak MB is the row process's max RSS "
        "(imports included: torch alone is several hundred MB), in brackets its growth "
        "after the learner was built.",
        "- paper %: the DriftMoE paper's mean over 10 seeds at full length (1M synthetic "
        "events, whole real streams); its ARF/SRP/LevBag are 100-member CapyMOA ensembles "
        "read off a chart (±0.1), ours have 10 members.",
    ]
    if quick:
        lines.append(
            f"- quick mode: the first {QUICK_N:,} events of each stream (the SEA/LED drifts "
            "at 225k+ are outside it), so the paper column is not like-for-like."
        )
    lines += [
        f"- {AIRLINES_NOTE}",
        "",
        "| stream | learner | n | seed | accuracy % | κ % | κ_M % | events/s | peak MB | device | paper % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in _in_table_order(rows):
        lines.append(
            f"| {r['stream']}{' (scaled drifts)' if r.get('scaled_drifts') else ''} "
            f"| {r['learner']} | {r['n']:,} | {r['seed']} | {_pct(r['accuracy'])} "
            f"| {_pct(r['kappa'])} | {_pct(r['kappa_m'])} | {_rate(r['events_per_s'])} "
            f"| {r['peak_mb']:.0f} (+{r['peak_mb'] - r['base_mb']:.0f}) | {r['device']} "
            f"| {_paper_cell(r['stream'], r['learner'])} |"
        )
    means = seed_means(rows)
    if means:
        lines += [
            "",
            "## Mean ± standard deviation over seeds",
            "",
            "| stream | learner | n | seeds | accuracy % | κ % | paper % |",
            "|---|---|---:|---|---:|---:|---:|",
        ]
        for m in _in_table_order(means):
            lines.append(
                f"| {m['stream']} | {m['learner']} | {m['n']:,} "
                f"| {','.join(map(str, m['seeds']))} "
                f"| {m['accuracy']:.2f} ± {m['accuracy_sd']:.2f} "
                f"| {m['kappa']:.2f} ± {m['kappa_sd']:.2f} "
                f"| {_paper_cell(m['stream'], m['learner'])} |"
            )
    lines += ["", "## The paper's table (accuracy %)", ""]
    lines.append("| stream | " + " | ".join(PAPER_COLUMNS) + " |")
    lines.append("|---|" + "---:|" * len(PAPER_COLUMNS))
    for s in ("airl", *PAPER_EIGHT):
        vals = PAPER[s]
        lines.append(f"| {s} | " + " | ".join(f"{vals[c]:.2f}" for c in PAPER_COLUMNS) + " |")
    lines += ["", summary_line(rows), ""]
    for ours in ("driftmoe", "driftmoe-causal"):
        for streams, group in ((PAPER_EIGHT, "the paper's"), (USER, "the user regimes'")):
            for baseline in ("arf", "moa-arf"):
                if (ours, baseline, streams) == ("driftmoe", "arf", PAPER_EIGHT):
                    continue  # the first line
                extra = summary_line(rows, baseline, streams, group, ours)
                if not extra.startswith("Summary: needs"):
                    lines += [extra, ""]
    return "\n".join(lines)


def seed_means(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation (in %) per (stream, learner, n) run with 2+ seeds."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["stream"], r["learner"], r["n"]), []).append(r)
    out = []
    for (stream, learner, n), rs in groups.items():
        if len(rs) < 2:
            continue
        acc = [100 * r["accuracy"] for r in rs]
        kappa = [100 * r["kappa"] for r in rs]
        out.append(
            {
                "stream": stream,
                "learner": learner,
                "n": n,
                "seeds": sorted(r["seed"] for r in rs),
                "accuracy": statistics.mean(acc),
                "accuracy_sd": statistics.stdev(acc),
                "kappa": statistics.mean(kappa),
                "kappa_sd": statistics.stdev(kappa),
            }
        )
    return out


def summary_line(
    rows: Sequence[dict[str, Any]],
    baseline: str = "arf",
    streams: Sequence[str] = PAPER_EIGHT,
    group: str = "the paper's",
    ours: str = "driftmoe",
) -> str:
    """Neural DriftMoE vs ``baseline``: mean accuracy over the ``streams`` both ran, and the
    speed ratio.

    A stream run with several seeds counts once, with its mean over them.
    """
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["stream"], r["learner"]), []).append(r)
    common = [s for s in streams if (s, ours) in by and (s, baseline) in by]
    if not common:
        return f"Summary: needs rows of both `{ours}` and `{baseline}` on the same streams."
    name = {"arf": "ARF", "moa-arf": "MOA's ARF"}.get(baseline, baseline)

    def avg(stream: str, learner: str, key: str) -> float:
        return statistics.mean(r[key] for r in by[(stream, learner)])

    # CPU-time rates: wall-clock rates of rows that ran at different times on a shared
    # machine compare the load, not the learners
    ratios = [
        avg(s, ours, "events_per_cpu_s") / avg(s, baseline, "events_per_cpu_s") for s in common
    ]
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    moe = 100 * statistics.mean(avg(s, ours, "accuracy") for s in common)
    arf = 100 * statistics.mean(avg(s, baseline, "accuracy") for s in common)
    return (
        f"Summary over {len(common)} of {group} {len(streams)} streams ({', '.join(common)}): "
        f"{'neural DriftMoE' if ours == 'driftmoe' else ours} mean accuracy {moe:.2f}% vs {name} {arf:.2f}% "
        f"({moe - arf:+.2f} points); it is {geo:.1f}× {name}'s events per "
        "CPU-second (geometric mean of per-stream ratios)."
    )


def plot_stream(stream: str, rows: Sequence[dict[str, Any]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    for r in rows:
        c = r["curve"]
        ax.plot(
            c["t"],
            [100 * a for a in c["acc"]],
            lw=1.0,
            label=f"{r['learner']} ({_pct(r['accuracy'])}%)",
        )
    drifts = rows[0].get("drifts", []) if rows else []
    for i, (p, w) in enumerate(drifts):
        ax.axvline(p, color="k", ls="--", lw=0.8, label="true drift" if i == 0 else None)
        if w > 1:
            ax.axvspan(p - w / 2, p + w / 2, color="k", alpha=0.06)
    info = synth.STREAMS.get(stream)
    if info is not None and info.incremental:
        ax.text(0.01, 0.02, "incremental drift throughout", transform=ax.transAxes, fontsize=8)
    n = rows[0]["n"] if rows else 0
    window = rows[0]["curve"]["window"] if rows else CURVE_WINDOW
    ax.set_title(f"{stream}: rolling accuracy (window {window:,}), {n:,} events")
    ax.set_xlabel("event")
    ax.set_ylabel("accuracy %")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_reports(
    rows: Sequence[dict[str, Any]],
    results: Path,
    command: str,
    quick: bool,
    json_path: Path | None = None,
) -> str:
    """Write ``accuracy.md``, one PNG per stream and optionally the JSON lines; return the table."""
    results.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows, command, quick)
    (results / "accuracy.md").write_text(table)
    for stream in dict.fromkeys(r["stream"] for r in rows):
        plot_stream(
            stream, [r for r in rows if r["stream"] == stream], results / f"accuracy_{stream}.png"
        )
    if json_path is not None:
        keys = (
            "stream", "learner", "registry_name", "n", "seed", "accuracy", "kappa", "kappa_m",
            "kappa_t", "events_per_s", "events_per_cpu_s", "peak_mb", "device", "scaled_drifts",
        )  # fmt: skip
        json_path.parent.mkdir(parents=True, exist_ok=True)
        with json_path.open("w") as fh:
            for r in rows:
                fh.write(json.dumps({k: r.get(k) for k in keys}) + "\n")
    return table


# ---------------------------------------------------------------------------- CLI


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed")
    return list(dict.fromkeys(seeds))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.accuracy",
        description="Prequential accuracy of DriftMoE and River baselines on the paper's streams.",
    )
    p.add_argument("--quick", action="store_true", help=f"first {QUICK_N:,} events of each stream")
    p.add_argument("--n", type=int, help="events per stream (real streams stop at their end)")
    p.add_argument(
        "--streams", type=_csv, default=list(STREAMS), help=f"comma list [{','.join(STREAMS)}]"
    )
    p.add_argument(
        "--learners",
        type=split_keys,
        default=list(LEARNERS),
        help="comma list of keys or registry names, or variants such as "
        f"'driftmoe[neighbours=None; n_experts=4]' [{','.join(LEARNERS)}]",
    )
    p.add_argument(
        "--seed",
        type=_seeds,
        default=[1],
        help="seeds the synthetic streams and the learners; a comma list runs each and "
        "reports the mean and spread over them, as the paper does [1]",
    )
    p.add_argument("--jobs", type=int, default=1, help="rows run in parallel processes [1]")
    p.add_argument("--threads", type=int, default=1, help="torch/BLAS threads per row [1]")
    p.add_argument(
        "--results",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="where rows are cached and reports written [bench/results]",
    )
    p.add_argument("--force", action="store_true", help="recompute rows that are cached")
    p.add_argument("--scale-drifts", action="store_true", help="move the SEA/LED drifts inside n")
    p.add_argument("--json", type=Path, help="also write one JSON object per row to this file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the children must unpickle run_row from its module, not from __main__
    from bench import accuracy as this

    if args.n is not None and args.quick:
        build_parser().error("--quick and --n are exclusive")
    n = QUICK_N if args.quick else args.n
    unknown = [s for s in args.streams if s not in STREAMS]
    if "airl" in args.streams:
        print(AIRLINES_NOTE, file=sys.stderr)
        args.streams = [s for s in args.streams if s != "airl"]
        unknown = [s for s in unknown if s != "airl"]
    if unknown:
        build_parser().error(f"unknown streams {unknown}; choose from {', '.join(STREAMS)}")
    try:
        learners = [resolve_learner(k).key for k in args.learners]
    except ValueError as exc:
        build_parser().error(str(exc))
    if any(s in REAL for s in args.streams):
        for s in (s for s in args.streams if s in REAL):
            try:
                datasets.dataset_path(s)  # fail now, naming the path, not hours into the run
            except datasets.DatasetMissingError as exc:
                build_parser().error(str(exc))
    command = "python -m bench.accuracy " + " ".join(argv if argv is not None else sys.argv[1:])
    jobs = [
        {
            "stream": s,
            "learner_key": k,
            "n": n,
            "seed": seed,
            "results": args.results,
            "scale": args.scale_drifts,
            "force": args.force,
            "progress": True,
            "shared": args.jobs > 1,
            "threads": args.threads,
        }
        for s in args.streams
        for k in learners
        for seed in args.seed
    ]
    print(AIRLINES_NOTE)
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(
        max_workers=max(1, args.jobs), mp_context=ctx, max_tasks_per_child=1
    ) as pool:
        futures = {pool.submit(this._row_in_child, dict(j)): j for j in jobs}
        for fut in cf.as_completed(futures):
            j = futures[fut]
            label = f"{j['stream']} {j['learner_key']}"
            if len(args.seed) > 1:
                label += f" seed {j['seed']}"
            try:
                r = fut.result()
            except Exception as exc:  # one broken row must not lose the others
                failed.append(f"{label}: {type(exc).__name__}: {exc}")
                print(f"FAILED {label}: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            rows.append(r)
            state = "cached" if r.get("cached") else f"{r['total_s']:,.0f}s"
            print(
                f"{label}: acc {_pct(r['accuracy'])}%  κ {_pct(r['kappa'])}%  "
                f"{_rate(r['events_per_s'])} ev/s  {r['peak_mb']:.0f} MB  [{state}]",
                flush=True,
            )
    if rows:
        done = {(r["stream"], r["learner"], r["seed"]) for r in rows}
        others = [
            r
            for seed in args.seed
            for r in cached_rows(args.results, args.streams, n, seed, args.scale_drifts)
            if (r["stream"], r["learner"], r["seed"]) not in done
        ]
        table = write_reports(rows + others, args.results, command, args.quick, args.json)
        print()
        print(table)
        print(f"wrote {args.results / 'accuracy.md'} and accuracy_<stream>.png there")
    if failed:
        print(f"{len(failed)} rows failed:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
