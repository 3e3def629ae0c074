"""What ``driftline produce`` sends: events from a seeded generator or a file, checked first.

Each item is ``(value, key)`` ready for the topic, or a ``str`` that says why a line was
not sent (the worker's dead-letter topic is for what gets past a producer, not for typos).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stream.events import Event, decode_event
from stream.exceptions import ConfigError, EventError

Item = tuple[bytes, bytes | None] | str


def stream_events(args: Any) -> Iterator[Item]:
    from stream.synth import generate

    try:
        events = generate(
            args.stream, args.events, args.seed, drift=args.drift, drift_every=args.drift_every,
            drift_width=args.drift_width, noise=args.noise, imbalance=args.imbalance,
        )  # fmt: skip
        first = next(events, None)  # argument errors surface now, not mid-send
    except ValueError as exc:
        raise ConfigError(f"produce --stream: {exc}") from exc
    if first is None:
        return
    for i, (x, y) in enumerate(_chain(first, events)):
        yield Event(id=f"{args.stream}-{args.seed}-{i}", x=x, y=y).to_json(), None


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def file_events(path: Path | None, *, label_column: str | None, id_column: str | None) -> Iterator[Item]:
    """Events of a CSV file (a header row; numbers read as numbers) or of JSON lines.

    A JSON line already in the event contract (``{"id", "x", "y"?}``) is sent as it is;
    with ``--label-column`` a JSON line may be a flat row like a CSV one.
    """
    if path is None or str(path) == "-":
        yield from _json_lines(sys.stdin.buffer, label_column, id_column)
        return
    if not path.exists():
        raise ConfigError(f"produce: no file {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            yield from _csv_rows(fh, label_column, id_column)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        with path.open("rb") as fh:
            yield from _json_lines(fh, label_column, id_column)
    else:
        raise ConfigError(f"produce: {path} is neither .csv nor .jsonl; name the file by its format")


def _row_event(row: dict[str, Any], n: int, label_column: str | None, id_column: str | None) -> Item:
    row = dict(row)
    if label_column is not None and label_column not in row:
        return f"line {n}: not sent: no label column {label_column!r} (columns: {', '.join(row)})"
    if id_column is not None and id_column not in row:
        return f"line {n}: not sent: no id column {id_column!r} (columns: {', '.join(row)})"
    y = row.pop(label_column) if label_column is not None else None
    eid = str(row.pop(id_column)) if id_column is not None else str(n)
    body: dict[str, Any] = {"id": eid, "x": row}
    if y is not None and y != "":
        body["y"] = y
    return _checked(json.dumps(body).encode(), n)


def _checked(raw: bytes, n: int) -> Item:
    try:
        event = decode_event(raw)
    except EventError as exc:
        return f"line {n}: not sent: {exc.reason}"
    return raw, event.key.encode() if event.key else None


def _csv_rows(fh: io.TextIOBase, label_column: str | None, id_column: str | None) -> Iterator[Item]:
    reader = csv.DictReader(fh)
    for n, row in enumerate(reader, 2):
        yield _row_event({k: _number(v) for k, v in row.items()}, n, label_column, id_column)


def _json_lines(fh: Any, label_column: str | None, id_column: str | None) -> Iterator[Item]:
    for n, line in enumerate(fh, 1):
        line = line.strip()
        if not line:
            continue
        if label_column is None and id_column is None:
            yield _checked(line, n)
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield f"line {n}: not sent: not valid JSON: {exc}"
            continue
        if not isinstance(row, dict):
            yield f"line {n}: not sent: a row must be a JSON object"
            continue
        yield _row_event(row, n, label_column, id_column)


def _number(text: str | None) -> Any:
    if text is None:
        return ""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_features(parts: list[str]) -> dict[str, Any]:
    """``['{"a": 1}']`` or ``['a=1', 'b=red']`` → the feature dict."""
    if len(parts) == 1 and parts[0].lstrip().startswith("{"):
        try:
            x = json.loads(parts[0])
        except json.JSONDecodeError as exc:
            raise ValueError(f"features: not JSON: {exc}") from exc
        if not isinstance(x, dict):
            raise ValueError("features: a JSON object, like '{\"x0\": 1.5}'")
        return x
    x = {}
    for part in parts:
        name, sep, value = part.partition("=")
        if not sep or not name:
            raise ValueError(f"features: {part!r} is not name=value (or pass one JSON object)")
        x[name] = _number(value)
    return x
