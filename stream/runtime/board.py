"""The served copies of the models: swapped whole, never locked while learning."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from learners.base import Learner


@dataclass(frozen=True)
class ServedModel:
    """An immutable copy of a pipeline's model for serving."""

    name: str
    learner: str
    version: int
    events_seen: int
    model: Learner
    metrics: dict[str, float] = field(default_factory=dict)
    #: "classification" (answers a label and class probabilities) or "regression" (a number)
    task: str = "classification"

    def predict(self, rows: list[dict]) -> list[dict]:
        """``{"y", "proba"}`` per row: a label and its probabilities, or a number and ``{}``."""
        if self.task == "regression":
            return [{"y": float(y), "proba": {}} for y in self.model.predict_many(rows)]
        probas = self.model.predict_proba_many(rows)
        preds = self.model.predict_many(rows)
        return [{"y": y, "proba": {str(k): float(v) for k, v in p.items()}} for y, p in zip(preds, probas, strict=True)]


class ModelBoard:
    """The served copies by pipeline name; readers take a reference and keep it."""

    def __init__(self) -> None:
        self._models: dict[str, ServedModel] = {}
        self._lock = threading.Lock()

    def publish(self, served: ServedModel) -> None:
        with self._lock:
            self._models = {**self._models, served.name: served}

    def get(self, name: str) -> ServedModel | None:
        return self._models.get(name)

    def all(self) -> list[ServedModel]:
        return list(self._models.values())
