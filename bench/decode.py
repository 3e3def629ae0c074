"""Decode throughput of the event contract, against bare JSON parsing as the floor.

    python -m bench.decode [--n 200000] [--features 3 50] [--batch 256] [--repeats 5]
                           [--seed 42]

Two sets of ``--n`` encoded events (``Event.to_json``, as producers send them): SEA from
``stream.synth`` (3 float features, an id and a label) and ``--features`` mixed features
(four in five uniform floats, the rest one-letter strings).
Each is cut into polls of ``--batch`` values, the size the worker polls by default. Rows:

- ``json.loads``: the standard library parse alone, no checks (the cost the decoder once
  paid before its checks);
- ``msgspec untyped``: msgspec's parse into dicts, no checks;
- ``decode_event``: the production one-event call in a loop, as a caller catching
  ``EventError`` writes it;
- ``decode_events``: the production batch call, one per poll.

A row is the median over ``--repeats`` timed rounds of events/s (wall clock); the rows
take turns within a round, after one untimed warm-up round, so that a noisy neighbour
slows all of them alike. The spread is the slowest round over the fastest.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import msgspec
from rich.console import Console
from rich.table import Table

from stream.events import Event, decode_event, decode_events
from stream.exceptions import EventError

Decoder = Callable[[list[bytes]], object]


def sea_values(n: int, seed: int) -> list[bytes]:
    from stream.synth import make_stream

    return [Event(id=f"e{i}", x=x, y=y).to_json() for i, (x, y) in enumerate(make_stream("sea_a", n, seed))]


def wide_values(n: int, n_features: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    n_strings = n_features // 5
    numbers = [f"n{k}" for k in range(n_features - n_strings)]
    strings = [f"s{k}" for k in range(n_strings)]
    out = []
    for i in range(n):
        x: dict[str, float | str] = {name: rng.uniform(-5.0, 5.0) for name in numbers}
        x.update((name, rng.choice("abcdef")) for name in strings)
        out.append(Event(id=f"w{i}", x=x, y=rng.randrange(3)).to_json())
    return out


def _loads(poll: list[bytes]) -> object:
    loads = json.loads
    return [loads(v) for v in poll]


def _msgspec_untyped(poll: list[bytes]) -> object:
    decode = msgspec.json.decode
    return [decode(v) for v in poll]


def _one_by_one(poll: list[bytes]) -> object:
    out: list[Event | EventError] = []
    for v in poll:
        try:
            out.append(decode_event(v))
        except EventError as exc:
            out.append(exc)
    return out


ROWS: dict[str, Decoder] = {
    "json.loads (floor)": _loads,
    "msgspec untyped (floor)": _msgspec_untyped,
    "decode_event": _one_by_one,
    "decode_events": decode_events,
}


def measure(values: list[bytes], batch: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Median events/s and spread of every row over ``values`` in polls of ``batch``."""
    polls = [values[i : i + batch] for i in range(0, len(values), batch)]
    seconds: dict[str, list[float]] = {name: [] for name in ROWS}
    for round_ in range(repeats + 1):
        for name, decode in ROWS.items():
            gc.collect()
            t0 = time.perf_counter()
            for poll in polls:
                decode(poll)
            elapsed = time.perf_counter() - t0
            if round_:
                seconds[name].append(elapsed)
    return {
        name: (len(values) / statistics.median(secs), min(secs) / max(secs))
        for name, secs in seconds.items()
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def check_agreement(values: Sequence[bytes]) -> None:
    """The batch and one-event calls must give the same answers on the benchmark's data."""
    batch = decode_events(values)
    if any(type(ev) is not Event for ev in batch) or batch != [decode_event(v) for v in values]:
        raise SystemExit("decode_events and decode_event disagree on the benchmark data")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.decode", description=__doc__)
    ap.add_argument("--n", type=int, default=200_000, help="events per data set")
    ap.add_argument("--features", type=int, default=50, help="features of the wide data set")
    ap.add_argument("--batch", type=int, default=256, help="values per poll")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    console = Console(width=160, highlight=False)
    command = shlex.join(["python", "-m", "bench.decode", *(sys.argv[1:] if argv is None else argv)])
    console.print(f"command: {command}")
    console.print(
        f"machine: {platform.platform()}; CPU {cpu_model()} ({os.cpu_count()} cores); "
        f"Python {platform.python_version()}; msgspec {msgspec.__version__}"
    )
    sets = {
        f"SEA, 3 features, {args.n:,} events": sea_values(args.n, args.seed),
        f"{args.features} mixed features, {args.n:,} events": wide_values(args.n, args.features, args.seed),
    }
    table = Table(title=f"events/s, median of {args.repeats} rounds, polls of {args.batch}")
    table.add_column("data")
    table.add_column("bytes/event", justify="right")
    table.add_column("decoder")
    table.add_column("events/s", justify="right")
    table.add_column("vs json.loads", justify="right")
    table.add_column("spread", justify="right")
    for label, values in sets.items():
        check_agreement(values[:10_000])
        rates = measure(values, args.batch, args.repeats)
        floor = rates["json.loads (floor)"][0]
        size = sum(map(len, values)) / len(values)
        for name, (rate, spread) in rates.items():
            table.add_row(label, f"{size:.0f}", name, f"{rate:,.0f}", f"{rate / floor:.2f}x", f"{spread:.2f}")
        table.add_section()
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
