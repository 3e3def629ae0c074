"""Event decoding: the runtime's ``decode_events`` against ``json.loads`` alone, the floor.

    python -m bench.decode [--n 200000] [--repeats 5]

Two streams of seeded events: SEA's three numeric features, and fifty mixed features (40
numbers, 10 strings). Rows are medians of ``--repeats`` runs of events/s, with the ratio to
``json.loads`` (which checks nothing) measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.table import Table

from bench.throughput import machine
from stream.events import Event, decode_event, decode_events
from stream.synth import sea_stream

console = Console(highlight=False, width=180)


def streams(n: int) -> dict[str, list[bytes]]:
    rng = random.Random(3)
    wide = [
        Event(
            id=f"w{i}",
            x={**{f"n{k}": rng.uniform(-5, 5) for k in range(40)}, **{f"s{k}": rng.choice("abcdef") for k in range(10)}},
            y=rng.randrange(3),
        ).to_json()
        for i in range(n // 4)
    ]
    sea = [Event(id=f"e{i}", x=x, y=y).to_json() for i, (x, y) in enumerate(sea_stream(n, 1, 10**9))]
    return {"SEA (3 features)": sea, "wide (50 features)": wide}


def rate(fn: Callable[[list[bytes]], object], values: list[bytes], repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(values)
        out.append(len(values) / (time.perf_counter() - t0))
    return statistics.median(out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    m = machine()
    table = Table(title=f"python -m bench.decode {shlex.join(sys.argv[1:])}\n{m['cpu']}, python {m['python']}")
    for col in ("stream", "events", "json.loads ev/s", "decode_events ev/s", "decode_event ev/s", "decode_events / json.loads"):
        table.add_column(col, justify="left" if col == "stream" else "right")
    for name, values in streams(args.n).items():
        floor = rate(lambda vs: [json.loads(v) for v in vs], values, args.repeats)
        batch = rate(lambda vs: decode_events(vs), values, args.repeats)
        one = rate(lambda vs: [decode_event(v) for v in vs], values, args.repeats)
        table.add_row(name, f"{len(values):,}", f"{floor:,.0f}", f"{batch:,.0f}", f"{one:,.0f}", f"{batch / floor:.1f}")
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
