"""Serving latency and throughput, and what serving costs learning.

    python -m bench.serving [--learner driftmoe] [--seconds 4] [--repeats 3]
                            [--clients 1 16 64] [--batch-rows 1000] [--json out.json]

Needs Redis (REDIS_URL, or `driftline services up`). Three servers, each a `driftline`
child process, the code the service runs:

- a **replica** (`driftline serve`) of a snapshot that the runtime's own ``Pipeline``
  learned from seeded SEA events and wrote to Redis;
- a **learning process** (`driftline run`, learning as fast as it can) for its own API,
  the baseline: the same requests against the API that shares a process with learning.

The load generator is this process: asyncio on uvloop, one keep-alive connection per
client, raw HTTP/1.1 over sockets (no client library on the hot path), each client sending
its next request when the last answer is in. For each number of clients it reports
requests/s and p50/p99 latency (client side, send to last byte), medians of ``--repeats``
runs; then batch rows/s; then the learning process's events/s while idle and while its
own API is under ``--load-clients`` clients, as a ratio. Numbers from a shared machine
vary; the table says which machine and the command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import uvloop
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench.child import Child

console = Console(highlight=False, width=160)
KEY = "bench-serving-key-" + "0" * 20
ROW = {"x0": 7.5, "x1": 2.5, "x2": 4.0}


def machine() -> str:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} cores, load average {load:.2f} at start, Python {platform.python_version()}"


def seed_snapshot(redis_url: str, pipeline: str, learner: str, n: int) -> int:
    """The runtime's own Pipeline learns ``n`` SEA events and writes its snapshot to Redis."""
    from connectors.memory import InMemoryLog
    from connectors.redis_store import RedisStore
    from stream.config import load_settings
    from stream.events import Event
    from stream.runtime import Pipeline
    from stream.service import learner_factory
    from stream.synth import sea_stream

    settings = load_settings(pipeline=pipeline, learner=learner, snapshot_key=KEY, redis_url=redis_url)
    log = InMemoryLog(default_partitions=1)
    for topic in (settings.events_topic, settings.predictions_topic, settings.alerts_topic, settings.dead_letter_topic):
        log.create_topic(topic, 1)
    sink = log.producer()
    for i, (x, y) in enumerate(sea_stream(n, 1, n // 2)):
        sink.send(settings.events_topic, Event(id=f"e{i}", x=x, y=y).to_json())
    store = RedisStore(redis_url)
    p = Pipeline(settings, learner_factory(settings), log.consumer([settings.events_topic], "bench"), log.producer(), store, KEY.encode())
    p.run(max_events=n)
    return int(p.snapshot_version or 0)


# ------------------------------------------------------------------- load


def _request(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _client(port: int, request: bytes, until: float, latencies: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    clock = time.perf_counter
    try:
        while clock() < until:
            t0 = clock()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(clock() - t0)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n", 1)[0].decode())
    finally:
        writer.close()


def load(port: int, path: str, body: bytes, clients: int, seconds: float) -> dict[str, float]:
    """``clients`` closed-loop keep-alive clients for ``seconds``: requests/s, p50, p99 (ms)."""
    latencies: list[float] = []
    errors: list[str] = []
    request = _request(path, body)

    async def main() -> float:
        # a short warm-up: connections open, first requests answered
        await asyncio.gather(*(_client(port, request, time.perf_counter() + 0.3, [], errors) for _ in range(clients)))
        start = time.perf_counter()
        await asyncio.gather(*(_client(port, request, start + seconds, latencies, errors) for _ in range(clients)))
        return time.perf_counter() - start

    elapsed = uvloop.run(main())
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[0]}")
    latencies.sort()
    q = lambda f: latencies[min(len(latencies) - 1, int(f * len(latencies)))] * 1000  # noqa: E731
    return {"rps": len(latencies) / elapsed, "p50_ms": q(0.50), "p99_ms": q(0.99), "n": len(latencies)}


def events_rate(port: int, seconds: float) -> float:
    """Events/s the learning process counts over ``seconds`` (from /healthz)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        e0, t0 = http.get("/healthz").json()["events"], time.perf_counter()
        time.sleep(seconds)
        e1, t1 = http.get("/healthz").json()["events"], time.perf_counter()
    return (e1 - e0) / (t1 - t0)


def rate_under_load(port: int, clients: int, seconds: float) -> tuple[float, dict[str, float]]:
    out: dict[str, Any] = {}
    body = json.dumps({"x": ROW}).encode()
    t = threading.Thread(target=lambda: out.update(load(port, "/v1/models/default/predict", body, clients, seconds + 1.0)))
    t.start()
    time.sleep(0.5)
    rate = events_rate(port, seconds)
    t.join()
    return rate, out


# -------------------------------------------------------------------- main


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _wait_ready(port: int, path: str, enough: int = 0) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        deadline = time.monotonic() + 120
        while True:
            r = http.get(path)
            if r.status_code == 200 and r.json().get("events_seen", enough) >= enough:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready: {path} answered {r.status_code}")
            time.sleep(0.2)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--learner", default="driftmoe")
    ap.add_argument("--events", type=int, default=20_000, help="events learned into the replica's snapshot")
    ap.add_argument("--seconds", type=float, default=4.0, help="seconds per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--batch-rows", type=int, default=1000)
    ap.add_argument("--load-clients", type=int, default=16, help="clients on the learning process's own API")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    command = "python -m bench.serving " + shlex.join(argv if argv is not None else sys.argv[1:])
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        console.print("[red]REDIS_URL is not set[/]: start one with `driftline services up`")
        return 2
    where = machine()
    pipeline = f"bench-serving-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ, "PYTHONUNBUFFERED": "1", "REDIS_URL": redis_url, "DRIFTLINE_SNAPSHOT_KEY": KEY,
        "DRIFTLINE_LEARNER": args.learner, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
    }  # fmt: skip
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    one = json.dumps({"x": ROW}).encode()
    batch = json.dumps({"rows": [ROW] * args.batch_rows}).encode()
    path = f"/v1/models/{pipeline}/predict"
    modes = {"in-process API (thread)": "false", "API in a child process": "true"}
    single: dict[str, dict[int, list[dict[str, float]]]] = {"replica": {}, **{m: {} for m in modes}}
    batches: list[dict[str, float]] = []
    idle: dict[str, list[float]] = {m: [] for m in modes}
    loaded: dict[str, list[tuple[float, dict[str, float]]]] = {m: [] for m in modes}

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("seeding a snapshot", total=None)
        seed_snapshot(redis_url, pipeline, args.learner, args.events)
        total = args.repeats * (len(args.clients) * (1 + len(modes)) + 1 + 2 * len(modes))
        progress.update(task, description="replica (nothing else running)", total=total, completed=0)
        # each server alone on the machine (but for other users of it): a learning
        # process running beside the replica would take the replica's core
        replica = Child(["serve", "--pipelines", pipeline, "--port", "0"], env)
        try:
            rport = replica.port()
            _wait_ready(rport, "/readyz")
            for _ in range(args.repeats):
                for c in args.clients:
                    single["replica"].setdefault(c, []).append(load(rport, path, one, c, args.seconds))
                    progress.advance(task)
                batches.append(load(rport, path, batch, 4, args.seconds))
                progress.advance(task)
        finally:
            replica.stop()
        for mode, flag in modes.items():
            progress.update(task, description=f"learning process, {mode}")
            state = tempfile.mkdtemp(prefix="bench-serving-")
            learning = Child(["run", "--port", "0", "--state-dir", state, "--seed", "1"], {**env, "DRIFTLINE_API_PROCESS": flag})
            try:
                lport = learning.port()
                _wait_ready(lport, "/v1/models/default", enough=2000)
                for _ in range(args.repeats):
                    for c in args.clients:
                        single[mode].setdefault(c, []).append(load(lport, "/v1/models/default/predict", one, c, args.seconds))
                        progress.advance(task)
                    idle[mode].append(events_rate(lport, args.seconds))
                    progress.advance(task)
                    loaded[mode].append(rate_under_load(lport, args.load_clients, args.seconds))
                    progress.advance(task)
            finally:
                learning.stop()

    table = Table(title=f"single-row POST .../predict, {args.learner}: requests/s, p50 and p99 ms; medians of {args.repeats} runs of {args.seconds:g} s")
    table.add_column("clients", justify="right")
    for name in single:
        for col in ("req/s", "p50", "p99"):
            table.add_column(f"{name}\n{col}", justify="right")
    rows = []
    for c in args.clients:
        row: dict[str, Any] = {"clients": c}
        cells = [str(c)]
        for name, runs in single.items():
            r = runs[c]
            row[name] = {k: _median(r, k) for k in ("rps", "p50_ms", "p99_ms")}
            cells += [f"{row[name]['rps']:,.0f}", f"{row[name]['p50_ms']:.2f}", f"{row[name]['p99_ms']:.2f}"]
        rows.append(row)
        table.add_row(*cells)
    console.print(table)
    base = next(iter(modes))
    for c, row in zip(args.clients, rows, strict=True):
        console.print(f"{c} client(s): replica p99 / in-process API p99 = {row['replica']['p99_ms'] / row[base]['p99_ms']:.2f}, requests/s ratio {row['replica']['rps'] / row[base]['rps']:.2f}")
    batch_rps = statistics.median(b["rps"] for b in batches) * args.batch_rows
    console.print(f"batch predict on the replica ({args.batch_rows} rows a request, 4 clients): {batch_rps:,.0f} rows/s (p50 {_median(batches, 'p50_ms'):.1f} ms a request)")
    learning_rows = {}
    for mode in modes:
        rate_idle = statistics.median(idle[mode])
        rate_loaded = statistics.median(r for r, _ in loaded[mode])
        served = statistics.median(o.get("rps", 0.0) for _, o in loaded[mode])
        learning_rows[mode] = {"idle": rate_idle, "loaded": rate_loaded, "ratio": rate_loaded / rate_idle, "served_rps": served}
        console.print(
            f"learning, {mode}: {rate_idle:,.0f} events/s with the API idle, {rate_loaded:,.0f} events/s while "
            f"{args.load_clients} clients get {served:,.0f} predictions/s from it: ratio {rate_loaded / rate_idle:.2f}"
        )
    console.print(f"command: {command}")
    console.print(f"machine: {where} (shared with other work: its load varies between runs)")
    if args.json:
        args.json.write_text(json.dumps({"command": command, "machine": where, "learner": args.learner, "single": rows, "batch_rows_per_s": batch_rps, "learning": learning_rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
