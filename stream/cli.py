"""The ``driftline`` command: run the embedded default, run a worker, manage local services."""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
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
from stream.runtime import collector

console = Console(highlight=False)
logger = logging.getLogger("driftline")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("DRIFTLINE_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if hasattr(signal, "SIGUSR1"):
        # `kill -USR1 <pid>` prints every thread's stack: what a stuck worker waits on
        with contextlib.suppress(ValueError, OSError):  # stderr without a file (captured)
            faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        return int(args.func(args) or 0)
    except DriftlineError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2


#: the pipeline settings that have flags (the rest: environment, or a --config file)
PIPELINE_FLAGS = ("pipeline", "task", "learner", "learner_params", "seed", "batch_size", "detector")
_FLAG_ALIASES = {"http_host": "--host", "http_port": "--port"}


def _add_pipeline_args(p: argparse.ArgumentParser, *, process: bool = False) -> None:
    """Flags generated from the settings' own definitions (stream.settings.add_flags)."""
    from stream.settings import PROCESS_FIELDS, add_flags

    names = list(PIPELINE_FLAGS) + (list(PROCESS_FIELDS) if process else ["http_host", "http_port"])
    add_flags(p, names, aliases=_FLAG_ALIASES)
    p.add_argument("--no-http", action="store_true", help="do not start the HTTP API")
    p.add_argument("--summary-json", type=Path, help="write the run's outcome as JSON to this path")


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    given = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    return load_settings(**given, **extra)


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
    worker.add_argument("--config", type=Path, help="a YAML file of pipelines (see README, 'Pipelines from a file'); its pipelines are shared by every worker given the same file")
    _add_pipeline_args(worker, process=True)
    worker.add_argument("--events", type=int, help="stop after this many events (each pipeline)")
    worker.set_defaults(func=cmd_worker)

    check = sub.add_parser("check-config", help="validate a pipelines file without starting anything")
    check.add_argument("file", type=Path, help="the YAML file")
    check.set_defaults(func=cmd_check_config)

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

    from stream.synth import DRIFT_TYPES, GENERATORS

    produce = sub.add_parser(
        "produce",
        help="send events to a Kafka topic: a seeded drifting stream (--stream), a CSV or JSON-lines file, or stdin",
    )
    produce.add_argument("file", nargs="?", type=Path, help="events file: .csv, .jsonl/.json (JSON lines), or - for JSON lines on stdin [stdin]")
    produce.add_argument("--topic", default="events", help="topic, created if missing [events]")
    produce.add_argument("--bootstrap-servers", help="Kafka address [env KAFKA_BOOTSTRAP_SERVERS]")
    produce.add_argument("--stream", choices=GENERATORS, help="generate a seeded synthetic stream instead of reading a file")
    produce.add_argument("--drift", choices=DRIFT_TYPES, default="sudden", help="concept drift of --stream [sudden]")
    produce.add_argument("--drift-every", type=int, default=10_000, help="events between concept changes [10000]")
    produce.add_argument("--drift-width", type=int, default=1000, help="events a gradual change takes [1000]")
    produce.add_argument("--imbalance", type=float, help="share of class 0, e.g. 0.9 (default: the generator's own)")
    produce.add_argument("--noise", type=float, default=0.0, help="share of labels flipped [0]")
    produce.add_argument("--events", type=int, default=100_000, help="events to generate with --stream [100000]")
    produce.add_argument("--seed", type=int, default=0, help="seed of --stream [0]")
    produce.add_argument("--rate", type=float, default=0.0, help="send at most N events/s (0: as fast as possible)")
    produce.add_argument("--label-column", help="file: the column (CSV) or field (JSON lines with flat rows) holding the label")
    produce.add_argument("--id-column", help="file: the column holding the event id (default: the line number)")
    produce.set_defaults(func=cmd_produce)

    predict = sub.add_parser("predict", help="ask a running worker or replica for one prediction")
    predict.add_argument("features", nargs="+", help="a JSON object, or name=value pairs")
    predict.add_argument("--model", default="default", help="model (pipeline) name [default]")
    predict.add_argument("--url", default=os.environ.get("DRIFTLINE_URL", "http://127.0.0.1:8000"), help="API address [env DRIFTLINE_URL or http://127.0.0.1:8000]")
    predict.add_argument("--api-key", default=os.environ.get("DRIFTLINE_API_KEY"), help="bearer token [env DRIFTLINE_API_KEY]")
    predict.set_defaults(func=cmd_predict)

    alerts = sub.add_parser("alerts", help="print the alert history from Redis; --follow prints new revisions as they come")
    alerts.add_argument("--follow", "-f", action="store_true", help="keep printing new alert revisions")
    alerts.add_argument("--pipeline", help="only this pipeline's alerts")
    alerts.add_argument("--min-severity", choices=("low", "medium", "high", "critical"), help="only alerts at least this severe")
    alerts.add_argument("--json", action="store_true", help="one JSON object per line")
    alerts.add_argument("--redis-url", help="Redis [env REDIS_URL]")
    alerts.add_argument("--max", type=int, help="stop after printing this many revisions")
    alerts.set_defaults(func=cmd_alerts)

    dead = sub.add_parser("dead-letters", help="print a dead-letter topic (--follow keeps reading); --replay re-sends the original events")
    dead.add_argument("topic", help="the dead-letter topic, e.g. fraud-dead-letters")
    dead.add_argument("--follow", "-f", action="store_true", help="keep reading new dead letters")
    dead.add_argument("--replay", action="store_true", help="re-send each one's original bytes to its source topic (or --to)")
    dead.add_argument("--to", help="with --replay: send to this topic instead of each one's source topic")
    dead.add_argument("--reason", help="only dead letters whose reason contains this text")
    dead.add_argument("--max", type=int, help="stop after this many dead letters")
    dead.add_argument("--bootstrap-servers", help="Kafka address [env KAFKA_BOOTSTRAP_SERVERS]")
    dead.set_defaults(func=cmd_dead_letters)

    learners = sub.add_parser("learners", help="list the learners that may be named in configuration")
    learners.set_defaults(func=cmd_learners)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from stream.service import build_embedded
    from stream.synth import sea_stream

    _one_thread_math()
    if args.events is not None and args.events < 1:
        console.print("[bold red]error:[/] --events must be at least 1")
        return 2
    settings = _settings(args, snapshot_dir=args.state_dir / "snapshots")
    embedded = build_embedded(settings, sea_stream(args.events, settings.seed, args.drift_every), rate=args.rate)
    return _run_loop(embedded.pipeline, settings, args, embedded.feeder, log=embedded.log)


def cmd_check_config(args: argparse.Namespace) -> int:
    from stream.settings import load_pipelines

    pipelines = load_pipelines(args.file)
    console.print(f"{args.file}: {len(pipelines)} pipeline(s), valid")
    for _spec, s in pipelines:
        labels = f"labels {s.labels_topic} (ttl {s.label_ttl_events} events / {s.label_ttl_s:g} s, on expiry {s.label_on_expiry})" if s.labels_topic else "inline labels"
        console.print(
            f"  {s.pipeline}: {s.task} · {s.learner} {json.dumps(s.learner_params) if s.learner_params else ''}· "
            f"{s.events_topic} -> {s.predictions_topic}, {s.alerts_topic}, {s.dead_letter_topic} · {labels} · "
            f"{s.detector} · checkpoint every {s.checkpoint_every_events} events / {s.checkpoint_every_s:g} s"
        )
    return 0


def cmd_worker_config(args: argparse.Namespace) -> int:
    """Every pipeline of the file, in this process, sharing them with other workers by lease."""
    from stream.runtime.fleet import Fleet, close_pipeline
    from stream.service import build_fleet_parts, prepare_kafka
    from stream.settings import PROCESS_FIELDS, load_pipelines, load_process

    process = load_process(**{k: getattr(args, k) for k in PROCESS_FIELDS})
    pipelines = [s for _spec, s in load_pipelines(args.config, process)]
    for s in pipelines:
        prepare_kafka(s)
    stop = _stop_on_signals()
    parts = build_fleet_parts(pipelines, process)
    fleet = Fleet(
        pipelines, open_lease=parts.open_lease, build=parts.build, finished=lambda s: parts.finished(s, args.events),
        roster=parts.roster, stop=stop, max_events=args.events,
        on_change=lambda name, what: console.print(f"pipeline {name}: {what}"),
    )
    server = None
    if not args.no_http:
        server = parts.serve(fleet)
        console.print(f"HTTP API on http://{server.host}:{server.port}  (GET /healthz, /v1/models; POST /v1/models/<name>/predict)")
    console.print(f"{len(pipelines)} pipeline(s) from {args.config}: {', '.join(s.pipeline for s in pipelines)} · worker {parts.roster.member}")
    collector.settle()
    started = time.monotonic()
    try:
        status = fleet.run()
    finally:
        if server is not None:
            server.stop()
        parts.alerts.close()
    elapsed = time.monotonic() - started
    summary = {}
    for slot in fleet.slots:
        p = slot.pipeline
        if p is None:
            continue
        summary[slot.name] = {
            "state": slot.state, "runs": slot.runs, "error": slot.error, "events": p.counters.events,
            "metrics": p.metrics.summary(), "join": dict(p.join.counts.__dict__) if p.join is not None else None,
            "snapshot_version": p.snapshot_version,
        }
        console.print(f"  {slot.name}: {slot.state} · {p.counters.events:,} events · snapshot v{p.snapshot_version}" + (f" · {slot.error}" if slot.error else ""))
        close_pipeline(p)
    console.print(f"final: {elapsed:.1f}s")
    if args.summary_json:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps({"pipelines": summary, "seconds": round(elapsed, 3)}, indent=2, default=str))
    return status


def cmd_worker(args: argparse.Namespace) -> int:
    from stream.runtime.worker import LeaseKeeper, run_leased, wait_for_lease
    from stream.service import build_worker, open_lease, prepare_kafka

    _one_thread_math()
    if args.config is not None:
        return cmd_worker_config(args)
    settings = _settings(args)
    prepare_kafka(settings)
    stop = _stop_on_signals()
    lease = open_lease(settings)

    def standby(holder: str | None) -> None:
        console.print(f"standby: pipeline {settings.pipeline} is held by {holder}; taking over when its lease lapses")

    token = wait_for_lease(lease, stop, on_wait=standby)
    if token is None:
        return 0
    keeper = LeaseKeeper(lease, settings.pipeline, stop)
    keeper.start()
    pipeline = build_worker(settings, fencing_token=token)
    keeper.attach(pipeline)
    pipeline.restore()
    return _run_loop(
        pipeline, settings, args, None, stop=stop,
        runner=lambda: run_leased(pipeline, lease, stop, max_events=args.events, keeper=keeper),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from stream.service import serve_replica

    _one_thread_math()
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


def _one_thread_math() -> None:
    # the learners' products are small: one thread each, set once for the process
    from learners.driftmoe_neural import use_one_thread

    use_one_thread()


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
        m = _headline(pipeline.metrics.summary())
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
    collector.settle()
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
        pipeline.alerts.close()
    elapsed = time.monotonic() - started
    m = _headline(pipeline.metrics.summary())
    c = pipeline.counters
    console.print(
        f"final: {c.events:,} events in {elapsed:.1f}s ({c.events / max(elapsed, 1e-9):,.0f}/s) · "
        f"accuracy {m['accuracy']:.4f} · kappa {m['kappa']:.4f} · {pipeline.alerts.total} alert(s) · "
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


def _headline(m: dict[str, float]) -> dict[str, float]:
    """The status line's three numbers; a regression pipeline shows R² and MAE in their places."""
    if "accuracy" in m:
        return m
    return {**m, "accuracy": m["r2"], "kappa": m["mae"], "rolling_accuracy": m["rolling_r2"]}


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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from connectors.kafka import KafkaAdmin, KafkaSink
    from stream.producer import file_events, stream_events

    settings = load_settings(kafka_bootstrap_servers=args.bootstrap_servers)
    if not settings.kafka_bootstrap_servers:
        console.print("[bold red]error:[/] --bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS is required (`driftline services up` starts a local broker)")
        return 2
    if args.stream and args.file is not None:
        console.print("[bold red]error:[/] give either --stream (a generated stream) or a file, not both")
        return 2
    if args.stream:
        events, total = stream_events(args), args.events
    else:
        events, total = file_events(args.file, label_column=args.label_column, id_column=args.id_column), None
    # a topic that does not exist yet: create it, rather than leave the client to complain
    admin = KafkaAdmin(settings.kafka_bootstrap_servers, options=settings.kafka_options)
    try:
        admin.wait_ready(timeout_s=30)
        admin.create_topics([args.topic], 1)
    finally:
        admin.close()
    sink = KafkaSink(settings.kafka_bootstrap_servers, options=settings.kafka_options)
    sent = rejected = 0
    started = time.monotonic()
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]} ev/s"), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal and total is None) as bar:
        task = bar.add_task(f"→ {args.topic}", total=total, rate="0")
        for item in events:
            if isinstance(item, str):
                console.print(item)  # a line the contract refuses: said, not sent
                rejected += 1
                continue
            value, key = item
            if args.rate > 0:
                delay = started + sent / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            sink.send(args.topic, value, key=key)
            sent += 1
            if sent % 500 == 0:
                bar.update(task, completed=sent, rate=f"{sent / max(time.monotonic() - started, 1e-9):,.0f}")
        bar.update(task, completed=sent, rate=f"{sent / max(time.monotonic() - started, 1e-9):,.0f}")
    sink.flush()
    sink.close()
    console.print(f"sent {sent:,} event(s) to {args.topic}" + (f", {rejected} rejected" if rejected else ""), soft_wrap=True)
    return 1 if rejected else 0


def cmd_predict(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    from stream.producer import parse_features

    try:
        x = parse_features(args.features)
    except ValueError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    url = f"{args.url.rstrip('/')}/v1/models/{args.model}/predict"
    headers = {"content-type": "application/json"}
    if args.api_key:
        headers["authorization"] = f"Bearer {args.api_key}"
    req = urllib.request.Request(url, data=json.dumps({"x": x}).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        console.print(f"[bold red]error:[/] {exc.code} from {url}: {detail}")
        return 1
    except (urllib.error.URLError, OSError) as exc:
        console.print(f"[bold red]error:[/] nothing answers at {args.url} ({exc}); is a worker or replica running?")
        return 1
    console.print_json(json.dumps(body))
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    from connectors.redis_alerts import RedisAlertStream
    from stream.alerts import severity_rank
    from stream.ui import describe_alert

    settings = load_settings(redis_url=args.redis_url)
    if not settings.redis_url:
        console.print("[bold red]error:[/] --redis-url or REDIS_URL is required: alerts are kept in Redis by the worker")
        return 2
    stream = RedisAlertStream(settings.redis_url, key=settings.alerts_stream_key, maxlen=settings.alerts_stream_maxlen)
    rank = severity_rank(args.min_severity) if args.min_severity else 0
    stop = _stop_on_signals()
    printed = 0

    def show(alert: Any) -> bool:
        nonlocal printed
        if args.pipeline and alert.pipeline != args.pipeline:
            return True
        if severity_rank(alert.severity) < rank:
            return True
        if args.json:
            sys.stdout.write(alert.to_json().decode() + "\n")
            sys.stdout.flush()
        else:
            console.print(describe_alert(alert))
        printed += 1
        return args.max is None or printed < args.max

    if not args.follow:
        for _, alert in stream.history():
            if not show(alert):
                break
        return 0
    # --follow: what is kept first, then each new revision as it is added
    cursor = "0-0"
    while not stop.is_set():
        batch = stream.read(cursor, count=100, block_ms=500)
        for entry_id, alert in batch:
            cursor = entry_id
            if not show(alert):
                return 0
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    import uuid

    from connectors.kafka import open_sink, open_source
    from stream.dead_letters import read_dead_letter

    settings = load_settings(kafka_bootstrap_servers=args.bootstrap_servers)
    if not settings.kafka_bootstrap_servers:
        console.print("[bold red]error:[/] --bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS is required")
        return 2
    source = open_source(settings.kafka_client, settings.kafka_bootstrap_servers, [args.topic], f"driftline-dead-letters-{uuid.uuid4().hex[:8]}", options=settings.kafka_options)
    sink = open_sink(settings.kafka_client, settings.kafka_bootstrap_servers, options=settings.kafka_options) if args.replay else None
    seen = replayed = 0
    idle_since = time.monotonic()
    try:
        while args.max is None or seen < args.max:
            batch = source.poll(500, 500)
            if not batch:
                # without --follow: stop once the topic has been read to its end
                if not args.follow and (source.caught_up() or time.monotonic() - idle_since > 15):
                    break
                continue
            idle_since = time.monotonic()
            for rec in batch:
                dead = read_dead_letter(rec)
                if args.reason and args.reason not in dead.reason:
                    continue
                seen += 1
                console.print(f"{dead.pipeline} {dead.topic}[{dead.partition}]@{dead.offset}: {dead.reason}", soft_wrap=True, markup=False)
                if sink is not None:
                    to = args.to or (dead.topic if dead.topic != "?" else None)
                    if to is None:
                        console.print(f"  not re-sent: no source.topic header; name one with --to ({rec.topic}[{rec.partition}]@{rec.offset})", markup=False)
                        continue
                    sink.send(to, dead.value, key=dead.key)
                    replayed += 1
                if args.max is not None and seen >= args.max:
                    break
    finally:
        source.close()
        if sink is not None:
            sink.flush(30)
            sink.close()
    console.print(f"{seen} dead letter(s)" + (f", {replayed} re-sent" if args.replay else ""))
    return 0


def cmd_learners(args: argparse.Namespace) -> int:
    from learners.registry import available

    for name in available():
        console.print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
