"""Dead letters: the original bytes as the record's value, what happened as its headers.

Any Kafka tool can route, filter or replay them: the value is exactly what the producer
sent (replaying it is sending it back), and the headers say why it was refused and where
it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.base import Record


@dataclass(frozen=True)
class DeadLetter:
    pipeline: str
    reason: str
    #: invalid_event, bad_label, learner_refused, prediction_failed
    kind: str
    topic: str
    partition: int
    offset: int
    #: the original record's value and key, byte for byte
    value: bytes
    key: bytes | None


def dead_letter_headers(pipeline: str, rec: Record, reason: str, kind: str) -> list[tuple[str, bytes]]:
    return [
        ("reason", reason.encode()), ("kind", kind.encode()), ("pipeline", pipeline.encode()),
        ("source.topic", rec.topic.encode()), ("source.partition", str(rec.partition).encode()),
        ("source.offset", str(rec.offset).encode()),
    ]  # fmt: skip


def read_dead_letter(rec: Record) -> DeadLetter:
    """A dead-letter record as written by the pipeline (missing headers read as unknown)."""
    h = {name: value.decode(errors="replace") for name, value in rec.headers}

    def number(name: str) -> int:
        try:
            return int(h.get(name, "-1"))
        except ValueError:
            return -1

    return DeadLetter(
        pipeline=h.get("pipeline", "?"), reason=h.get("reason", "?"), kind=h.get("kind", "?"),
        topic=h.get("source.topic", "?"), partition=number("source.partition"), offset=number("source.offset"),
        value=rec.value, key=rec.key,
    )  # fmt: skip
