"""Learn+predict throughput of the learners, in-process, against River's ARF in the same run.

    python -m bench.throughput [--n 20000] [--arf-n 3000] [--batch 1 32 256 1024]
                               [--repeats 3] [--json rows.jsonl]

Every row runs prequentially on the same pre-generated SEA events (fixed seed): predict the
micro-batch, then learn it. ARF(10) learns one event at a time (it has no batch path), on the
first ``--arf-n`` events because it is slow. Rows report the median over ``--repeats`` runs of
events/s (predict + learn, wall clock), the ratio to ARF, the prequential accuracy and the peak
memory (process RSS high-water mark on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU).
CPU rows run with one BLAS/torch thread, the setting a worker shares a machine with.
"""

from __future__ import annotations

import os

# before numpy loads: tiny matrices gain nothing from BLAS threads and lose a lot to them
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import platform
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

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


def run_prequential(model: Any, events: Sequence[Event], batch: int) -> tuple[float, float]:
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
            correct += sum(p == t for p, t in zip(model.predict_many(X), y, strict=True))
            model.learn_many(X, y)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, correct / max(1, len(events))


def measure(
    build: Callable[[], Any], events: Sequence[Event], batch: int, repeats: int, cuda: bool
) -> dict[str, float]:
    rates, accs, peaks = [], [], []
    for _ in range(repeats):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        model = build()
        secs, acc = run_prequential(model, events, batch)
        rates.append(len(events) / secs)
        accs.append(acc)
        peaks.append(torch.cuda.max_memory_allocated() / 2**20 if cuda else rss_peak_mb())
    return {
        "events_per_s": statistics.median(rates),
        "accuracy": statistics.median(accs),
        "peak_mb": max(peaks),
    }


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
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    from river import forest

    from learners.driftmoe_neural import NeuralDriftMoE

    console = Console(width=140)
    events = sea_events(max(args.n, args.arf_n), args.seed)
    stream = "sea_a"
    jobs: list[tuple[str, int, int | None, str, Callable[[], Any], int]] = []
    jobs.append(
        ("river:forest.ARFClassifier(10)", 1, None, "cpu",
         lambda: forest.ARFClassifier(n_models=10, seed=args.seed), args.arf_n)
    )  # fmt: skip
    for b in args.batch:
        jobs.append(
            ("driftmoe", b, 8, "cpu",
             lambda: NeuralDriftMoE(device="cpu", seed=args.seed), args.n)
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

                    jobs.append((name, b, k, "cuda", build, args.n))

    rows: list[dict[str, Any]] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("measuring", total=len(jobs))
        for learner, b, k, device, build, n in jobs:
            progress.update(task, description=f"{learner} b={b} k={k} {device}")
            res = measure(build, events[:n], b, args.repeats, device == "cuda")
            rows.append(
                {"stream": stream, "learner": learner, "batch": b, "n_experts": k,
                 "device": device, "events": n, **res}
            )  # fmt: skip
            progress.advance(task)
    arf = rows[0]["events_per_s"]
    for r in rows:
        r["ratio_to_arf"] = r["events_per_s"] / arf

    info = machine()
    command = "python -m bench.throughput " + " ".join(
        shlex.quote(a) for a in (argv or sys.argv[1:])
    )
    table = Table(title=f"learn+predict throughput, median of {args.repeats} ({stream})")
    for col in ("learner", "device", "batch", "K", "events", "events/s", "× ARF", "accuracy",
                "peak MB"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("learner", "device") else "right")
    for r in rows:
        table.add_row(
            r["learner"], r["device"], str(r["batch"]), str(r["n_experts"] or "-"),
            str(r["events"]), f"{r['events_per_s']:,.0f}", f"{r['ratio_to_arf']:.1f}",
            f"{r['accuracy']:.4f}", f"{r['peak_mb']:.0f}",
        )  # fmt: skip
    console.print(f"command: {command}")
    console.print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()) + ", threads=1")
    console.print(table)
    if args.json:
        with open(args.json, "w") as fh:
            for r in rows:
                fh.write(json.dumps({**r, "machine": info, "command": command}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
