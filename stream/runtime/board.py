"""The served copies of the models: swapped whole, never locked while learning."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from learners.base import Learner

#: versions remembered per model for ``GET /v1/models/{name}/versions``
HISTORY = 100


@dataclass(frozen=True)
class ServedModel:
    """An immutable copy of a pipeline's model for serving.

    ``offsets`` are the input positions (``"topic:partition"`` -> next offset) the copy
    has learned up to; ``published_at`` is the wall time the copy was taken (for a replica,
    the time its snapshot was sealed); ``snapshot_version`` the store's version it came
    from, when it came from one.
    """

    name: str
    learner: str
    version: int
    events_seen: int
    model: Learner
    metrics: dict[str, float] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)
    published_at: float = 0.0
    snapshot_version: int | None = None
    #: "classification" (answers a label and class probabilities) or "regression" (a number)
    task: str = "classification"

    def describe(self) -> dict[str, Any]:
        """The copy's identity and progress, without the model."""
        return {
            "name": self.name,
            "learner": self.learner,
            "version": self.version,
            "events_seen": self.events_seen,
            "metrics": dict(self.metrics),
            "offsets": dict(self.offsets),
            "published_at": self.published_at,
            "snapshot_version": self.snapshot_version,
            "task": self.task,
        }

    def predict(self, rows: list[dict]) -> list[dict]:
        """``{"y", "proba"}`` per row: a label and its probabilities, or a number and ``{}``."""
        if self.task == "regression":
            return [{"y": float(y), "proba": {}} for y in self.model.predict_many(rows)]
        probas = self.model.predict_proba_many(rows)
        preds = self.model.predict_many(rows)
        return [{"y": y, "proba": {str(k): float(v) for k, v in p.items()}} for y, p in zip(preds, probas, strict=True)]


class ModelBoard:
    """The served copies by pipeline name; readers take a reference and keep it.

    A publish replaces the whole mapping, so a reader never sees a half-made one and
    never waits: ``get`` is one dictionary lookup with no lock.
    """

    def __init__(self) -> None:
        self._models: dict[str, ServedModel] = {}
        self._history: dict[str, deque[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._listeners: list[Callable[[ServedModel], None]] = []

    def subscribe(self, listener: Callable[[ServedModel], None]) -> None:
        """Call ``listener`` with each copy published from now on (in the publisher's thread: keep it short)."""
        self._listeners.append(listener)

    def publish(self, served: ServedModel) -> None:
        with self._lock:
            past = self._history.setdefault(served.name, deque(maxlen=HISTORY))
            entry = served.describe()
            entry.pop("name")
            if past and past[-1]["version"] == served.version:
                past[-1] = entry  # a republish of the same version (e.g. after a final checkpoint)
            else:
                past.append(entry)
            self._models = {**self._models, served.name: served}
        for listener in self._listeners:
            listener(served)

    def get(self, name: str) -> ServedModel | None:
        return self._models.get(name)

    def all(self) -> list[ServedModel]:
        return list(self._models.values())

    def versions(self, name: str) -> list[dict[str, Any]]:
        """The versions published under ``name``, oldest first (the last ``HISTORY``)."""
        with self._lock:
            return list(self._history.get(name, ()))
