"""End-to-end throughput: events topic → the worker's own loop → checkpoints in Redis.

    python -m bench.e2e [--n 200000] [--learners river:tree.HoeffdingTreeClassifier,driftmoe]
                        [--clients confluent,kafka-python] [--repeats 3] [--batch 256]

For each learner and Kafka client, in the same run and on the same topic of seeded SEA
events:
- worker: ``stream.service.build_worker`` (the pipeline ``driftline worker`` runs: decode,
  predict, score, monitor, transactional outputs, learn, checkpoints to Redis), from the
  first event to the final checkpoint of the ``n``-th;
- raw consume: the same client reading the same topic with ``json.loads`` on each value and
  nothing else: the ceiling the event path can reach;
- learner alone: ``bench.throughput``'s prequential loop over the same events in memory,
  predicting with the verb the worker uses (``predict_many_causal``; ``--blind``: ``predict_many``).
The three take turns within each of ``--repeats`` runs; rates are medians over the runs, and
the ratio is the median of each run's worker / learner alone. Checkpoint
time and snapshot size are those of the final checkpoint. Kafka and Redis come from
``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL``, else the local launcher starts them.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import shlex
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.throughput import machine, measure, sea_events
from stream.runtime import collector

console = Console(highlight=False, width=180)
KEY = "e2e-bench-" + "k" * 32


def _services() -> tuple[str, str]:
    kafka, redis = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("REDIS_URL")
    if kafka and redis:
        return kafka, redis
    from connectors import services

    env = services.up()
    return env["KAFKA_BOOTSTRAP_SERVERS"], env["REDIS_URL"]


def _produce(kafka: str, topic: str, events: Sequence[tuple[dict[str, Any], Any]]) -> None:
    from connectors.kafka import KafkaAdmin, open_sink
    from stream.events import Event

    admin = KafkaAdmin(kafka)
    admin.create_topics([topic], 1)
    admin.close()
    sink = open_sink("confluent", kafka)
    for i, (x, y) in enumerate(events):
        sink.send(topic, Event(id=f"e{i}", x=x, y=y).to_json())
    sink.flush(120)
    sink.close()


def raw_consume(client: str, kafka: str, topic: str, n: int) -> float:
    from connectors.kafka import open_source

    source = open_source(client, kafka, [topic], f"bench-raw-{uuid.uuid4().hex[:8]}")
    got = 0
    t0 = None
    while got < n:
        batch = source.poll(2000, 1000)
        if batch and t0 is None:
            t0 = time.perf_counter()
        for r in batch:
            json.loads(r.value)
        got += len(batch)
    secs = time.perf_counter() - (t0 or time.perf_counter())
    source.close()
    return n / secs


#: (what the table calls it, the object's attribute path on the pipeline, the method)
STAGES = (
    ("learner: predict", "learner", "predict_many_causal"),
    ("learner: predict", "learner", "predict_many"),
    ("learner: learn", "learner", "learn_many"),
    ("consume and build records", "source", "poll"),
    ("decode", None, "decode_events"),
    ("encode predictions", "", "_encode_predictions"),
    ("produce predictions", None, "send_many"),
    ("prequential metrics", "metrics", "score_many"),
    ("drift monitor", "monitor", "update_many"),
    ("checkpoints and commits", "", "maybe_checkpoint"),
    ("served model refresh", "", "publish"),
)


def _timed(pipeline: Any) -> dict[str, float]:
    """Wrap each stage of ``pipeline`` in a timer; return the seconds spent in each, filled
    as it runs. The wrappers cost about a microsecond a call: a few hundred calls a run."""
    import stream.runtime.pipeline as loop

    spent: dict[str, float] = {}

    def wrap(owner: Any, method: str, label: str) -> None:
        inner = getattr(owner, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t

        setattr(owner, method, timed)

    # only the verb the pipeline calls: a learner's other verb may call it, and count twice
    unused = "predict_many" if pipeline.settings.label_aware_predictions else "predict_many_causal"
    for label, where, method in STAGES:
        owner = loop if where is None else pipeline if where == "" else getattr(pipeline, where)
        if hasattr(owner, method) and not (where == "learner" and method == unused):
            wrap(owner, method, label)
    return spent


def worker(
    client: str, kafka: str, redis: str, topic: str, learner: str, n: int, batch: int, label_aware: bool = True, stages: bool = False
) -> dict[str, Any]:
    from stream.config import load_settings
    from stream.service import build_worker

    name = f"bench-{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        pipeline=name, learner=learner, events_topic=topic, kafka_client=client,
        kafka_bootstrap_servers=kafka, redis_url=redis, snapshot_key=KEY, batch_size=batch, label_aware_predictions=label_aware,
        predictions_topic=f"{name}-predictions", alerts_topic=f"{name}-alerts", dead_letter_topic=f"{name}-dead",
    )
    pipeline = build_worker(settings)
    pipeline.restore()
    # the clock starts at the first record, as the raw consume's does
    while not pipeline.step(batch):
        pass
    spent = _timed(pipeline) if stages else {}
    # as `driftline worker` sets the collector before its loop (stream.runtime.collector)
    before = collector.settle()
    try:
        t0 = time.perf_counter()
        pipeline.run(max_events=n)
        secs = time.perf_counter() - t0
    finally:
        collector.restore(before)
    out = {
        "events_per_s": (n - batch) / secs if n > batch else n / secs,
        "checkpoint_ms": pipeline.last_checkpoint_s * 1000,
        "snapshot_kb": pipeline.last_snapshot_bytes / 1024,
        "accuracy": pipeline.metrics.summary()["accuracy"],
        "stages_us": {label: secs_in * 1e6 / n for label, secs_in in spent.items()},
        "total_us": secs * 1e6 / n,
    }
    pipeline.source.close()
    pipeline.sink.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--learners", default="river:tree.HoeffdingTreeClassifier,driftmoe")
    p.add_argument("--clients", default="confluent,kafka-python")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--stages", action="store_true", help="also time each stage of the worker (µs an event, medians over the runs)")
    p.add_argument("--blind", action="store_true", help="the worker predicts with predict_many (label_aware_predictions=false), and so does the learner alone")
    args = p.parse_args(argv)

    from learners.driftmoe_neural import use_one_thread
    from learners.registry import make_learner

    use_one_thread()  # as `driftline worker` runs, for the worker and the learner alone
    kafka, redis = _services()
    events = sea_events(args.n, 1)
    topic = f"bench-e2e-{uuid.uuid4().hex[:8]}"
    console.print(f"producing {args.n:,} SEA events to {topic} ...")
    _produce(kafka, topic, events)

    rows = []
    for learner in args.learners.split(","):
        for client in args.clients.split(","):
            raws, runs, alones, ratios = [], [], [], []
            for r in range(args.repeats):
                # the three take turns, so a noisy moment weighs on all of them alike
                console.print(f"[{learner} / {client}] run {r + 1}/{args.repeats}: learner alone, raw consume, worker ...")
                # the learner alone predicts with the verb the worker uses
                alone = measure(lambda learner=learner: make_learner(learner, {}, 0), events, args.batch, 1, cuda=False, causal=not args.blind)
                alones.append(alone["events_per_s"])
                raws.append(raw_consume(client, kafka, topic, args.n))
                runs.append(worker(client, kafka, redis, topic, learner, args.n, args.batch, label_aware=not args.blind, stages=args.stages))
                ratios.append(runs[-1]["events_per_s"] / alones[-1])
            rows.append({
                "learner": learner, "client": client, "worker": statistics.median(x["events_per_s"] for x in runs),
                "alone": statistics.median(alones), "ratio": statistics.median(ratios), "raw": statistics.median(raws),
                "checkpoint_ms": statistics.median(x["checkpoint_ms"] for x in runs),
                "snapshot_kb": statistics.median(x["snapshot_kb"] for x in runs),
                "accuracy": statistics.median(x["accuracy"] for x in runs),
                "stages": {k: statistics.median(x["stages_us"].get(k, 0.0) for x in runs) for k in runs[0]["stages_us"]},
                "total_us": statistics.median(x["total_us"] for x in runs),
                "alone_us": 1e6 / statistics.median(alones),
            })

    m = machine()
    table = Table(title=f"python -m bench.e2e {shlex.join(sys.argv[1:])}\n{m['cpu']}, {m['cores']} cores, python {m['python']}, torch {m['torch']}")
    for col in ("learner", "client", "worker ev/s", "learner alone ev/s", "worker / alone", "raw consume ev/s", "checkpoint ms", "snapshot KiB", "accuracy"):
        table.add_column(col, justify="left" if col in ("learner", "client") else "right")
    for r in rows:
        table.add_row(
            r["learner"], r["client"], f"{r['worker']:,.0f}", f"{r['alone']:,.0f}", f"{r['ratio']:.2f}",
            f"{r['raw']:,.0f}", f"{r['checkpoint_ms']:.1f}", f"{r['snapshot_kb']:,.0f}", f"{r['accuracy']:.4f}",
        )
    console.print(table)
    console.print(f"medians of {args.repeats} runs, {args.n:,} events each, micro-batch {args.batch}")
    if args.stages:
        for r in rows:
            stages = Table(title=f"{r['learner']} / {r['client']}: µs an event, each stage of the worker (timers on)")
            stages.add_column("stage")
            stages.add_column("µs / event", justify="right")
            for label, us in sorted(r["stages"].items(), key=lambda kv: -kv[1]):
                stages.add_row(label, f"{us:.2f}")
            stages.add_row("the rest of the loop", f"{r['total_us'] - sum(r['stages'].values()):.2f}")
            stages.add_row("worker, all (timers on)", f"{r['total_us']:.2f}")
            stages.add_row("learner alone", f"{r['alone_us']:.2f}")
            console.print(stages)
    return 0


# --------------------------------------------------------------- many pipelines, one worker


def fleet_run(kafka: str, redis: str, topic: str, learner: str, n: int, batch: int, k: int) -> float:
    """Total events/s of ``k`` pipelines on one topic in one worker process (the Fleet
    ``driftline worker --config`` runs: a thread and a lease per pipeline), from the start
    to every pipeline's final checkpoint."""
    import threading

    from stream.runtime.fleet import Fleet, close_pipeline
    from stream.service import build_fleet_parts, prepare_kafka
    from stream.settings import load_process, validate_pipelines

    tag = uuid.uuid4().hex[:8]
    process = load_process(kafka_bootstrap_servers=kafka, redis_url=redis, snapshot_key=KEY, lease_ttl_s=5.0)
    specs = [
        {"name": f"bench-{tag}-{i}", "events_topic": topic, "learner": {"name": learner}, "batch_size": batch,
         "outputs": {"publish_predictions": True}}
        for i in range(k)
    ]  # fmt: skip
    pipelines = [s for _, s in validate_pipelines({"pipelines": specs}, process, source="bench")]
    for s in pipelines:
        prepare_kafka(s)
    parts = build_fleet_parts(pipelines, process)
    fleet = Fleet(pipelines, open_lease=parts.open_lease, build=parts.build, finished=lambda s: parts.finished(s, n),
                  roster=parts.roster, stop=threading.Event(), max_events=n, tick_s=0.05)  # fmt: skip
    before = collector.settle()
    try:
        t0 = time.perf_counter()
        assert fleet.run() == 0, [s.error for s in fleet.slots]
        secs = time.perf_counter() - t0
    finally:
        collector.restore(before)
    for slot in fleet.slots:
        if slot.pipeline is not None:
            close_pipeline(slot.pipeline)
    parts.alerts.close()
    return k * n / secs


def many_main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.e2e --many 4 [--n 50000] [--learner ...] [--repeats 3]``: K pipelines
    in one worker against one pipeline alone in the same code, total events/s."""
    p = argparse.ArgumentParser(description=many_main.__doc__)
    p.add_argument("--many", type=int, default=4)
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--learner", default="river:tree.HoeffdingTreeClassifier")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args(argv)
    from learners.driftmoe_neural import use_one_thread

    use_one_thread()  # as `driftline worker --config` runs
    kafka, redis = _services()
    topic = f"bench-many-{uuid.uuid4().hex[:8]}"
    console.print(f"producing {args.n:,} SEA events to {topic} ...")
    _produce(kafka, topic, sea_events(args.n, 1))
    ones, manys, ratios = [], [], []
    for r in range(args.repeats):
        console.print(f"run {r + 1}/{args.repeats}: one pipeline, then {args.many} pipelines in one worker ...")
        ones.append(fleet_run(kafka, redis, topic, args.learner, args.n, args.batch, 1))
        manys.append(fleet_run(kafka, redis, topic, args.learner, args.n, args.batch, args.many))
        ratios.append(manys[-1] / ones[-1])
    m = machine()
    table = Table(title=f"python -m bench.e2e {shlex.join(sys.argv[1:])}\n{m['cpu']}, {m['cores']} cores, python {m['python']}")
    for col in ("learner", "pipelines", "total ev/s", "one pipeline alone ev/s", "total / alone"):
        table.add_column(col, justify="left" if col == "learner" else "right")
    table.add_row(args.learner, str(args.many), f"{statistics.median(manys):,.0f}", f"{statistics.median(ones):,.0f}", f"{statistics.median(ratios):.2f}")
    console.print(table)
    console.print(f"medians of {args.repeats} runs, {args.n:,} events per pipeline, micro-batch {args.batch}; wall time from start to the last final checkpoint")
    return 0


if __name__ == "__main__":
    raise SystemExit(many_main() if "--many" in sys.argv else main())
