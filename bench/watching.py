"""What watching costs the learning loop: churn scoring and input-drift monitors.

    python -m bench.watching [--n 60000] [--learners river:tree.HoeffdingTreeClassifier,driftmoe] [--repeats 3]

Each row runs the runtime's own ``Pipeline`` (the loop ``driftline run`` and ``driftline
worker`` run: decode, predict, score, drift monitor, alerts, learn, checkpoint, publish
every 0.5 s) over the same seeded SEA events in the in-process log, from the first event to
the final checkpoint. Configurations, taking turns within each repeat:

- baseline: no churn scoring (``churn_probe_size=0``), no input monitors;
- churn: each published version scored against the previous one on the last 256 inputs
  (the default), and DriftMoE's router choices on them;
- churn + inputs: also an ADWIN on each of the three features (``feature_monitors``).

Rates are medians over ``--repeats``; the ratio is to the baseline measured in the same run.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.throughput import machine

console = Console(highlight=False, width=160)
CONFIGS = {
    "baseline": {"churn_probe_size": 0},
    "churn": {},
    "churn + inputs": {"feature_monitors": ["x0", "x1", "x2"]},
}


def run_once(learner: str, events: list[bytes], batch: int, extra: dict) -> float:
    from connectors.directory import DirectoryStore
    from connectors.memory import InMemoryLog
    from learners.registry import make_learner
    from stream.config import load_settings
    from stream.runtime import Pipeline

    log = InMemoryLog(default_partitions=1)
    sink = log.producer()
    for raw in events:
        sink.send("events", raw)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(learner=learner, pipeline="bench", batch_size=batch, batch_timeout_ms=1,
                                 alert_stall_after_s=0, publish_predictions=True, **extra)  # fmt: skip
        pipe = Pipeline(settings, lambda: make_learner(learner, {}, 0), log.consumer(["events"], "g"), log.producer(),
                        DirectoryStore(Path(tmp)), b"b" * 32)  # fmt: skip
        started = time.perf_counter()
        pipe.run(max_events=len(events))
        return len(events) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=60_000)
    parser.add_argument("--learners", default="river:tree.HoeffdingTreeClassifier,driftmoe")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    from stream.events import Event
    from stream.synth import sea_stream

    events = [Event(id=f"e{i}", x=x, y=y).to_json() for i, (x, y) in enumerate(sea_stream(args.n, args.seed, args.n // 3))]
    table = Table(title=f"watching overhead · {args.n:,} SEA events · micro-batch {args.batch} · medians of {args.repeats}")
    for col in ("learner", "configuration", "events/s", "ratio to baseline"):
        table.add_column(col, justify="right" if col != "learner" else "left")
    for learner in args.learners.split(","):
        rates: dict[str, list[float]] = {name: [] for name in CONFIGS}
        for r in range(args.repeats):
            for name, extra in CONFIGS.items():
                rates[name].append(run_once(learner, events, args.batch, extra))
                console.print(f"  {learner} · {name} · run {r + 1}: {rates[name][-1]:,.0f} events/s")
        base = statistics.median(rates["baseline"])
        for name in CONFIGS:
            med = statistics.median(rates[name])
            table.add_row(learner, name, f"{med:,.0f}", f"{med / base:.2f}")
    console.print(f"command: python -m bench.watching {shlex.join(sys.argv[1:] if argv is None else argv)}")
    console.print(f"machine: {machine()}")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
