"""The ``driftline`` command: run the embedded default, run a worker, manage local services."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from stream.config import Settings, load_settings
from stream.exceptions import DriftlineError

console = Console(highlight=False)
logger = logging.getLogger("driftline")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("DRIFTLINE_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except DriftlineError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2


def _json_arg(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _add_pipeline_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", help="pipeline (model) name [default]")
    p.add_argument("--learner", help="learner name, see `driftline learners` [driftmoe]")
    p.add_argument("--learner-params", type=_json_arg, help="learner parameters as a JSON object")
    p.add_argument("--seed", type=int, help="seed for the learner and the synthetic stream [0]")
    p.add_argument("--batch-size", type=int, help="micro-batch size [256]")
    p.add_argument("--detector", help="drift detector: adwin, ddm, eddm, page_hinkley, kswin, hddm_a, hddm_w [adwin]")
    p.add_argument("--host", dest="http_host", help="HTTP address [127.0.0.1]")
    p.add_argument("--port", dest="http_port", type=int, help="HTTP port, 0 for any free one [8000]")
    p.add_argument("--no-http", action="store_true", help="do not start the HTTP API")
    p.add_argument("--summary-json", type=Path, help="write the run's outcome as JSON to this path")


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    return load_settings(
        pipeline=args.pipeline,
        learner=args.learner,
        learner_params=args.learner_params,
        seed=args.seed,
        batch_size=args.batch_size,
        detector=args.detector,
        http_host=args.http_host,
        http_port=args.http_port,
        **extra,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="driftline", description="Streaming online learning with drift alerts.")
    sub = parser.add_subparsers(required=True, metavar="command")

    run = sub.add_parser("run", help="run the embedded default: a synthetic drifting stream, one pipeline, the HTTP API")
    _add_pipeline_args(run)
    run.add_argument("--events", type=int, help="stop after this many events (default: run until Ctrl-C)")
    run.add_argument("--drift-every", type=int, default=20_000, help="abrupt concept change every N events [20000]")
    run.add_argument("--rate", type=float, default=0.0, help="throttle the generator to N events/s (0: as fast as the model learns)")
    run.add_argument("--state-dir", type=Path, default=Path(".driftline"), help="where snapshots and the key go [.driftline]")
    run.set_defaults(func=cmd_run)

    worker = sub.add_parser("worker", help="learn from Kafka, snapshot to Redis, serve HTTP (KAFKA_BOOTSTRAP_SERVERS, REDIS_URL)")
    _add_pipeline_args(worker)
    worker.add_argument("--events", type=int, help="stop after this many events")
    worker.set_defaults(func=cmd_worker)

    serve = sub.add_parser("serve", help="a read replica: serve pipelines' latest snapshots from Redis over HTTP, learning nothing (REDIS_URL, DRIFTLINE_SNAPSHOT_KEY)")
    serve.add_argument("--pipelines", required=True, help="comma-separated pipeline names to serve, e.g. a,b")
    serve.add_argument("--host", dest="http_host", help="HTTP address [127.0.0.1]")
    serve.add_argument("--port", dest="http_port", type=int, help="HTTP port, 0 for any free one [8000]")
    serve.add_argument("--poll", dest="replica_poll_s", type=float, help="check Redis for a newer snapshot this often, in seconds, besides PUBLISH [2]")
    serve.set_defaults(func=cmd_serve)

    services = sub.add_parser("services", help="local Apache Kafka and Redis without Docker")
    services.add_argument("action", choices=["up", "down", "status"])
    services.add_argument("--state-dir", type=Path, help="where the services keep their data and PIDs")
    services.set_defaults(func=cmd_services)

    produce = sub.add_parser("produce", help="send JSON-lines events (from a file or stdin) to a Kafka topic")
    produce.add_argument("file", nargs="?", type=argparse.FileType("rb"), default=sys.stdin.buffer, help="JSON lines [stdin]")
    produce.add_argument("--topic", default="events", help="topic [events]")
    produce.add_argument("--bootstrap-servers", help="Kafka address [env KAFKA_BOOTSTRAP_SERVERS]")
    produce.set_defaults(func=cmd_produce)

    learners = sub.add_parser("learners", help="list the learners that may be named in configuration")
    learners.set_defaults(func=cmd_learners)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from stream.service import build_embedded
    from stream.synth import sea_stream

    if args.events is not None and args.events < 1:
        console.print("[bold red]error:[/] --events must be at least 1")
        return 2
    settings = _settings(args, snapshot_dir=args.state_dir / "snapshots")
    embedded = build_embedded(settings, sea_stream(args.events, settings.seed, args.drift_every), rate=args.rate)
    return _run_loop(embedded.pipeline, settings, args, embedded.feeder, log=embedded.log)


def cmd_worker(args: argparse.Namespace) -> int:
    from stream.runtime.worker import run_leased, wait_for_lease
    from stream.service import build_worker, open_lease, prepare_kafka

    settings = _settings(args)
    prepare_kafka(settings)
    stop = _stop_on_signals()
    lease = open_lease(settings)

    def standby(holder: str | None) -> None:
        console.print(f"standby: pipeline {settings.pipeline} is held by {holder}; taking over when its lease lapses")

    token = wait_for_lease(lease, stop, on_wait=standby)
    if token is None:
        return 0
    pipeline = build_worker(settings, fencing_token=token)
    pipeline.restore()
    return _run_loop(
        pipeline, settings, args, None, stop=stop,
        runner=lambda: run_leased(pipeline, lease, stop, max_events=args.events),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from stream.service import serve_replica

    names = [p.strip() for p in args.pipelines.split(",") if p.strip()]
    if not names:
        console.print("[bold red]error:[/] --pipelines: name at least one pipeline, e.g. --pipelines default")
        return 2
    for name in names:
        load_settings(pipeline=name)  # the same rule as a pipeline's own name
    settings = load_settings(http_host=args.http_host, http_port=args.http_port, replica_poll_s=args.replica_poll_s)
    stop = _stop_on_signals()
    server, replica = serve_replica(settings, names)
    console.print(f"HTTP API on http://{server.host}:{server.port}  (replica of {', '.join(names)}; GET /readyz, /v1/models; POST /v1/models/<name>/predict)")
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
    console.print(f"stopped: {replica.swaps} snapshot(s) served, {replica.refused} refused")
    return 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _run_loop(
    pipeline: Any,
    settings: Settings,
    args: argparse.Namespace,
    feeder: Any,
    *,
    stop: threading.Event | None = None,
    runner: Any = None,
    log: Any = None,
) -> int:
    from stream.service import serve
    from stream.ui import StatusLine

    def snapshot() -> dict[str, Any]:
        m = pipeline.metrics.summary()
        c = pipeline.counters
        return {
            "pipeline": pipeline.name,
            "events": c.events,
            "rolling_accuracy": m["rolling_accuracy"],
            "accuracy": m["accuracy"],
            "kappa": m["kappa"],
            "alerts": pipeline.alerts.total,
            "dead_letters": c.dead_letters,
            "snapshot": pipeline.snapshot_version if pipeline.snapshot_version is not None else "-",
        }

    ui = StatusLine(snapshot, console)
    pipeline.on_alert = ui.alert
    stop = stop or _stop_on_signals()

    server = None
    if not args.no_http:
        server = serve(pipeline, settings, log=log)
        console.print(f"HTTP API on http://{server.host}:{server.port}  (GET /healthz, /v1/models, /v1/alerts; POST /v1/models/{pipeline.name}/predict)")
    console.print(f"learner {settings.learner} · detector {settings.detector} · batch {settings.batch_size} · Ctrl-C stops after a final checkpoint")
    if feeder is not None:
        feeder.start()
    started = time.monotonic()
    ui.start()
    try:
        if runner is not None:
            runner()
        else:
            pipeline.run(max_events=args.events, stop=stop)
    finally:
        ui.stop()
        if feeder is not None:
            feeder.stop()
        if server is not None:
            server.stop()
    elapsed = time.monotonic() - started
    m = pipeline.metrics.summary()
    c = pipeline.counters
    console.print(
        f"final: {c.events:,} events in {elapsed:.1f}s ({c.events / max(elapsed, 1e-9):,.0f}/s) · "
        f"accuracy {m['accuracy']:.4f} · kappa {m['kappa']:.4f} · {pipeline.alerts.total} drift alert(s) · "
        f"{c.dead_letters} dead letter(s) · snapshot v{pipeline.snapshot_version}"
    )
    if args.summary_json:
        summary = {
            "events": c.events,
            "accuracy": m["accuracy"],
            "kappa": m["kappa"],
            "rolling_accuracy": m["rolling_accuracy"],
            "drift_points": list(pipeline.drift_points),
            "alerts": [a.to_dict() for a in pipeline.alerts.since(-1, 10_000)],
            "dead_letters": c.dead_letters,
            "learner": settings.learner,
            "seconds": round(elapsed, 3),
            "snapshot_version": pipeline.snapshot_version,
        }
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2))
    return 0


def cmd_services(args: argparse.Namespace) -> int:
    from connectors import services

    if args.action == "up":
        env = services.up(args.state_dir)
        for k, v in env.items():
            console.print(f"export {k}={v}")
    elif args.action == "down":
        services.down(args.state_dir)
        console.print("services stopped")
    else:
        console.print_json(json.dumps(services.status(args.state_dir)))
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from connectors.kafka import KafkaSink
    from stream.events import decode_event
    from stream.exceptions import EventError

    settings = load_settings(kafka_bootstrap_servers=args.bootstrap_servers)
    if not settings.kafka_bootstrap_servers:
        console.print("[bold red]error:[/] --bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS is required (`driftline services up` starts a local broker)")
        return 2
    sink = KafkaSink(settings.kafka_bootstrap_servers)
    sent = rejected = 0
    for n, line in enumerate(args.file, 1):
        line = line.strip()
        if not line:
            continue
        try:
            event = decode_event(line)
        except EventError as exc:
            # refuse here rather than fill the worker's dead-letter topic with typos
            console.print(f"line {n}: not sent: {exc.reason}")
            rejected += 1
            continue
        sink.send(args.topic, line, key=event.key.encode() if event.key else None)
        sent += 1
    sink.flush()
    sink.close()
    console.print(f"sent {sent} event(s) to {args.topic}" + (f", {rejected} rejected" if rejected else ""))
    return 1 if rejected else 0


def cmd_learners(args: argparse.Namespace) -> int:
    from learners.registry import available

    for name in available():
        console.print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
