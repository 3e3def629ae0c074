"""Learn+predict throughput of the learners, in-process, against River's and MOA's ARF in the
same run.

    python -m bench.throughput [--n 20000] [--arf-n 3000] [--batch 1 32 256 1024]
                               [--repeats 3] [--json rows.jsonl] [--no-moa] [--no-sparse]
                               [--variant PARAMS ...] [--sections]

Every row runs prequentially on the same pre-generated SEA events (fixed seed): predict the
micro-batch, then learn it. ARF(10) learns one event at a time (it has no batch path), on the
first ``--arf-n`` events because it is slow. Rows report the median over ``--repeats`` runs of
events/s (predict + learn, wall clock), the ratio to ARF, the prequential accuracy and the peak
memory (process RSS high-water mark on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU).
CPU rows run with one BLAS/torch thread, the setting a worker shares a machine with. Each
timed run holds the pre-made events out of the cyclic collector's sight (``gc.freeze``), as
a worker holds only the batch it is on; what the learner allocates is collected as usual.

MOA's ARF(10) and Hoeffding tree (CapyMOA, when installed: ``pip install -e '.[bench]'``) run
on the same ``--n`` SEA events inside their JVM, after a throw-away warm-up run of 5,000
events so the JIT has compiled them; "× MOA ARF" is the ratio to that row. The
``driftmoe causal`` row predicts with ``predict_many_causal`` (the labels of a micro-batch's
earlier rows). The sparse rows compare the ``text`` stream (about 34 words present per
event, of a 50,000-word vocabulary, and of a 1,000,000-word one) with a dense stream of as
many numeric features per event, all present; "state MB" is the learner's pickled state,
which the hashing width bounds whatever the vocabulary.

``--sections`` runs each SEA row of the neural DriftMoE at micro-batch 256 ``--repeats``
times more with timers around its sections and compiled passes (``bench/sections.py``) and
prints where its time goes, in µs an event, beside the time 50× MOA's ARF would allow.
"""

from __future__ import annotations

import os

# before numpy loads: tiny matrices gain nothing from BLAS threads and lose a lot to them
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import contextlib
import gc
import json
import pickle
import platform
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from bench.params import format_params, parse_params

Event = tuple[dict[str, Any], Any]


def sea_events(n: int, seed: int) -> list[Event]:
    """SEA with abrupt drifts, from the project's stream module when present, else River's."""
    try:
        from stream.synth import make_stream  # type: ignore[import-not-found]

        return list(make_stream("sea_a", n, seed))
    except (ImportError, KeyError, TypeError, ValueError):
        from river.datasets import synth

        out: list[Event] = []
        quarter = max(1, n // 4)
        for i, variant in enumerate((0, 1, 3, 0)):
            gen = synth.SEA(variant=variant, noise=0.1, seed=seed + i)
            for x, y in gen.take(min(quarter, n - len(out)) if i < 3 else n - len(out)):
                out.append(({f"x{k}": float(v) for k, v in x.items()}, y))
        return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def dense_twin(n: int, seed: int, k: int) -> list[Event]:
    """A dense stream of ``k`` numeric features, all present: the same nonzeros per event as
    a sparse one with ``k`` words, for the sparse path's cost against the dense one."""
    import numpy as np

    rng = np.random.default_rng(seed)
    w = rng.normal(size=k)
    X = rng.normal(size=(n, k))
    names = [f"x{i}" for i in range(k)]
    return [(dict(zip(names, row, strict=True)), int(row @ w > 0)) for row in X.tolist()]


def state_mb(model: Any) -> float:
    state = getattr(model, "state_dict", None)
    return len(pickle.dumps(state())) / 2**20 if callable(state) else float("nan")


def run_prequential(
    model: Any, events: Sequence[Event], batch: int, causal: bool = False
) -> tuple[float, float]:
    """Seconds and accuracy of predict-then-learn over ``events`` in micro-batches."""
    correct = 0
    t0 = time.perf_counter()
    if batch == 1 and not hasattr(model, "learn_many"):
        for x, y in events:
            correct += model.predict_one(x) == y
            model.learn_one(x, y)
    else:
        for i in range(0, len(events), batch):
            chunk = events[i : i + batch]
            X = [x for x, _ in chunk]
            y = [t for _, t in chunk]
            preds = model.predict_many_causal(X, y) if causal else model.predict_many(X)
            correct += sum(p == t for p, t in zip(preds, y, strict=True))
            model.learn_many(X, y)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, correct / max(1, len(events))


@contextlib.contextmanager
def events_out_of_gc() -> Iterator[None]:
    """Time a row with the bench's pre-made events out of the cyclic collector's sight.

    They are tens of thousands of dicts made before any row runs, which a worker never
    holds at once (it decodes a batch, learns it and lets it go); left in sight, a full
    collection that a learner's own allocations trigger scans them all, a tenth of a
    second each, and which row pays for it is chance (the JVM's objects, once MOA's rows
    have run, make it likelier). What the learner allocates is still collected as usual."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def measure(
    build: Callable[[], Any],
    events: Sequence[Event],
    batch: int,
    repeats: int,
    cuda: bool,
    causal: bool = False,
) -> dict[str, float]:
    rates, accs, peaks = [], [], []
    model = None
    for _ in range(repeats):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        model = build()
        with events_out_of_gc():
            secs, acc = run_prequential(model, events, batch, causal)
        rates.append(len(events) / secs)
        accs.append(acc)
        peaks.append(torch.cuda.max_memory_allocated() / 2**20 if cuda else rss_peak_mb())
    return {
        "events_per_s": statistics.median(rates),
        "accuracy": statistics.median(accs),
        "peak_mb": max(peaks),
        "state_mb": state_mb(model),
    }


def measure_sections(
    build: Callable[[], Any], events: Sequence[Event], repeats: int, causal: bool
) -> list[dict[str, float | str]]:
    """Median µs an event of each section of the neural learner (``bench.sections``) over
    ``repeats`` prequential runs at micro-batch 256, the timers on."""
    from bench.sections import per_event, timed_sections

    runs: list[dict[str, tuple[float, float]]] = []
    totals: list[float] = []
    for _ in range(repeats):
        model = build()
        with timed_sections() as clock, events_out_of_gc():
            run_prequential(model, events, 256, causal)
        runs.append({label: (us, cus) for label, us, cus in per_event(clock, len(events))})
        totals.append(clock.total * 1e6 / len(events))
    order = list(runs[len(runs) // 2])  # labels, largest first as one run ordered them
    out: list[dict[str, float | str]] = [
        {
            "section": label,
            "us": statistics.median(r.get(label, (0.0, 0.0))[0] for r in runs),
            "compiled_us": statistics.median(r.get(label, (0.0, 0.0))[1] for r in runs),
        }
        for label in order
    ]
    out.append({"section": "all (timers on)", "us": statistics.median(totals),
                "compiled_us": statistics.median(sum(c for _, c in r.values()) for r in runs)})  # fmt: skip
    return out


def measure_moa(key: str, events: Sequence[Event], repeats: int, seed: int) -> dict[str, float]:
    from bench import moa

    rates, accs = [], []
    for _ in range(repeats):
        with events_out_of_gc():
            preds, wall, _ = moa.prequential(key, events, seed, warmup=min(5_000, len(events)))
        rates.append(len(events) / wall)
        accs.append(sum(p == y for p, (_, y) in zip(preds, events, strict=True)) / len(events))
    return {
        "events_per_s": statistics.median(rates),
        "accuracy": statistics.median(accs),
        "peak_mb": rss_peak_mb(),
        "state_mb": float("nan"),
    }


def sections_table(row: dict[str, Any], moa_arf: float | None) -> Table:
    """Where a row's time goes (``--sections``), beside the time a 50× ratio would allow."""
    table = Table(title=f"{escape(row['learner'])}, SEA, batch 256: µs an event")
    for col in ("section", "µs / event", "compiled", "share"):
        table.add_column(col, justify="left" if col == "section" else "right")
    *parts, total = row["sections"]

    def cells(s: dict[str, Any]) -> tuple[str, ...]:
        return str(s["section"]), f"{s['us']:.3f}", f"{s['compiled_us']:.3f}", f"{100 * s['us'] / total['us']:.0f}%"

    for s in parts:
        table.add_row(*cells(s))
    table.add_section()
    table.add_row(*cells(total))
    table.add_row("learner alone (timers off)", f"{1e6 / row['events_per_s']:.3f}", "", "")
    if moa_arf is not None:
        table.add_row("50× MOA's ARF would allow", f"{1e6 / (50 * moa_arf):.3f}", "", "")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    ap.add_argument("--n", type=int, default=20_000, help="events per row")
    ap.add_argument("--arf-n", type=int, default=3_000, help="events for the ARF baseline row")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32, 256, 1024])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", help="write one JSON object per row to this file")
    ap.add_argument("--no-ht", action="store_true", help="skip the DriftMoE-HT row")
    ap.add_argument("--no-cuda", action="store_true", help="skip the CUDA rows")
    ap.add_argument("--no-moa", action="store_true", help="skip MOA's rows")
    ap.add_argument("--no-sparse", action="store_true", help="skip the sparse-input rows")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="PARAMS",
        help="also a SEA row of the neural DriftMoE (micro-batch 256) with these parameters, "
        "e.g. 'neighbours=None; causal=False'; repeatable",
    )
    ap.add_argument(
        "--sections",
        action="store_true",
        help="also time each section of the neural DriftMoE's SEA rows at micro-batch 256 "
        "(µs an event, medians over the repeats; bench/sections.py)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    from river import forest

    from learners.driftmoe_neural import NeuralDriftMoE
    from learners.neural_kernels import warm

    variants: list[tuple[str, dict[str, Any]]] = []
    for text in args.variant:
        try:
            params = parse_params(text)
            NeuralDriftMoE(device="cpu", seed=args.seed, **params)  # as its row builds it
        except (TypeError, ValueError) as exc:
            ap.error(f"--variant {text!r}: {exc}")
        variants.append((f"driftmoe[{format_params(params)}]", params))
    warm()  # the compiled passes load before any row is timed, not in the first one

    console = Console(width=140)
    sea = sea_events(max(args.n, args.arf_n), args.seed)
    streams: dict[str, list[Event]] = {"sea_a": sea}
    # (learner, batch, K, device, build, events, stream, causal); build None: a MOA row
    jobs: list[tuple[str, int, int | None, str, Callable[[], Any] | None, int, str, bool]] = []
    jobs.append(
        ("river:forest.ARFClassifier(10)", 1, None, "cpu",
         lambda: forest.ARFClassifier(n_models=10, seed=args.seed), args.arf_n, "sea_a", False)
    )  # fmt: skip
    if not args.no_moa:
        from bench import moa

        why = moa.available()
        if why is None:
            for key in ("moa-arf", "moa-ht"):
                jobs.append((key, 1, None, "jvm", None, args.n, "sea_a", False))
        else:
            console.print(f"[yellow]MOA rows skipped: {why}[/yellow]")
    for b in args.batch:
        jobs.append(
            ("driftmoe", b, 8, "cpu",
             lambda: NeuralDriftMoE(device="cpu", seed=args.seed), args.n, "sea_a", False)
        )  # fmt: skip
    if 256 in args.batch:
        jobs.append(
            ("driftmoe causal", 256, 8, "cpu",
             lambda: NeuralDriftMoE(device="cpu", seed=args.seed), args.n, "sea_a", True)
        )  # fmt: skip
    for label, params in variants:
        jobs.append(
            (label, 256, params.get("n_experts", 8), "cpu",
             lambda params=params: NeuralDriftMoE(device="cpu", seed=args.seed, **params), args.n,
             "sea_a", False)
        )  # fmt: skip
    if not args.no_sparse:
        from stream.synth import text_stream

        streams["text"] = list(text_stream(args.n, args.seed))
        streams["text, 1M words"] = list(text_stream(args.n, args.seed, vocab=1_000_000))
        k = round(sum(len(x) for x, _ in streams["text"]) / len(streams["text"]))
        streams[f"dense, {k} features"] = dense_twin(args.n, args.seed, k)
        for name in ("text", "text, 1M words", f"dense, {k} features"):
            jobs.append(
                ("driftmoe", 256, 8, "cpu",
                 lambda: NeuralDriftMoE(device="cpu", seed=args.seed), args.n, name, False)
            )  # fmt: skip
    if not args.no_ht:
        try:
            from learners.registry import make_learner

            make_learner("driftmoe-ht-data", seed=args.seed)
            jobs.append(
                ("driftmoe-ht-data", 256, 12, "cpu",
                 lambda: make_learner("driftmoe-ht-data", seed=args.seed), args.arf_n)
            )  # fmt: skip
        except Exception as exc:  # the HT learner is optional here
            console.print(f"[yellow]driftmoe-ht-data skipped: {exc}[/yellow]")
    if torch.cuda.is_available() and not args.no_cuda:
        for graph in (False, True):
            for k in (8, 32, 128):
                for b in (256, 4096):
                    name = "driftmoe+cuda_graph" if graph else "driftmoe"

                    def build(k: int = k, b: int = b, graph: bool = graph) -> Any:
                        # one optimiser step per micro-batch on the GPU
                        return NeuralDriftMoE(
                            n_experts=k, batch_size=b, device="cuda", cuda_graph=graph,
                            seed=args.seed,
                        )  # fmt: skip

                    jobs.append((name, b, k, "cuda", build, args.n, "sea_a", False))

    rows: list[dict[str, Any]] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("measuring", total=len(jobs))
        for learner, b, k, device, build, n, stream, causal in jobs:
            progress.update(task, description=f"{learner} b={b} k={k} {device} {stream}")
            events = streams[stream][:n]
            if build is None:
                res = measure_moa(learner, events, args.repeats, args.seed)
            else:
                res = measure(build, events, b, args.repeats, device == "cuda", causal)
            neural_sea = learner.startswith("driftmoe") and not learner.startswith("driftmoe-ht") and stream == "sea_a"
            if args.sections and build is not None and neural_sea and b == 256 and device == "cpu":
                progress.update(task, description=f"{learner} b={b}: sections, timers on")
                res["sections"] = measure_sections(build, events, args.repeats, causal)
            rows.append(
                {"stream": stream, "learner": learner, "batch": b, "n_experts": k,
                 "device": device, "events": n, **res}
            )  # fmt: skip
            progress.advance(task)
    arf = rows[0]["events_per_s"]
    moa_arf = next((r["events_per_s"] for r in rows if r["learner"] == "moa-arf"), None)
    for r in rows:
        r["ratio_to_arf"] = r["events_per_s"] / arf
        r["ratio_to_moa_arf"] = None if moa_arf is None else r["events_per_s"] / moa_arf

    info = machine()
    command = "python -m bench.throughput " + " ".join(
        shlex.quote(a) for a in (argv or sys.argv[1:])
    )
    table = Table(title=f"learn+predict throughput, median of {args.repeats}")
    for col in ("stream", "learner", "device", "batch", "K", "events", "events/s", "× ARF",
                "× MOA ARF", "accuracy", "peak MB", "state MB"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("stream", "learner", "device") else "right")
    for r in rows:
        ratio = r["ratio_to_moa_arf"]
        table.add_row(
            escape(r["stream"]), escape(r["learner"]), r["device"], str(r["batch"]), str(r["n_experts"] or "-"),
            str(r["events"]), f"{r['events_per_s']:,.0f}", f"{r['ratio_to_arf']:.1f}",
            "-" if ratio is None else f"{ratio:.1f}", f"{r['accuracy']:.4f}",
            f"{r['peak_mb']:.0f}", "-" if r["state_mb"] != r["state_mb"] else f"{r['state_mb']:.1f}",
        )  # fmt: skip
    console.print(f"command: {command}")
    console.print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()) + ", threads=1")
    console.print(table)
    for r in rows:
        if "sections" in r:
            console.print(sections_table(r, moa_arf))
    if args.json:
        with open(args.json, "w") as fh:
            for r in rows:
                fh.write(json.dumps({**r, "machine": info, "command": command}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
