"""Request and response bodies of the HTTP API (their JSON schemas are the OpenAPI's)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

Row = dict[str, Any]


class PredictRequest(BaseModel):
    """One row as ``{"x": {...}}`` or a batch as ``{"rows": [{...}, ...]}``."""

    model_config = ConfigDict(extra="forbid")
    x: Row | None = None
    rows: list[Row] | None = None
    id: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> PredictRequest:
        if (self.x is None) == (self.rows is None):
            raise ValueError("send exactly one of 'x' (one row) or 'rows' (a list of rows)")
        if self.rows is not None and not self.rows:
            raise ValueError("'rows' is empty")
        return self


class Prediction(BaseModel):
    y: Any
    proba: dict[str, float]


class PredictOneResponse(Prediction):
    version: int


class PredictManyResponse(BaseModel):
    predictions: list[Prediction]
    version: int
