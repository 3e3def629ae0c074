"""Request and response bodies of the HTTP API (their JSON schemas are the OpenAPI's)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

# Checked by stream.events.check_features, whose messages name the row and the field; the
# schema says the same for the OpenAPI document and the clients generated from it.
Row = Annotated[
    dict[str, Any],
    WithJsonSchema({
        "type": "object", "minProperties": 1, "maxProperties": 10_000,
        "additionalProperties": {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}]},
        "description": "feature -> finite number, string or bool",
    }),
]  # fmt: skip
Label = str | int | bool


class PredictRequest(BaseModel):
    """One row as ``{"x": {...}}`` or a batch as ``{"rows": [{...}, ...]}``."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"oneOf": [{"required": ["x"]}, {"required": ["rows"]}]}
    )
    x: Row | None = None
    rows: Annotated[list[Row] | None, Field(json_schema_extra={"minItems": 1})] = None
    id: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> PredictRequest:
        if (self.x is None) == (self.rows is None):
            raise ValueError("send exactly one of 'x' (one row) or 'rows' (a list of rows)")
        if self.rows is not None and not self.rows:
            raise ValueError("'rows' is empty")
        return self


class Prediction(BaseModel):
    y: Any = Field(description="The predicted class; null before the model learned anything.")
    proba: dict[str, float] = Field(description="Class -> probability (class names as strings).")


class Answered(BaseModel):
    """Which copy of the model answered: its version, how much it learned, up to where."""

    version: int
    events_seen: int
    offsets: dict[str, int] = Field(description="Input position the model learned up to: 'topic:partition' -> next offset.")


class PredictOneResponse(Prediction, Answered):
    pass


class PredictManyResponse(Answered):
    predictions: list[Prediction]


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=1000, description="The id of the event this label belongs to.")
    y: Label = Field(description="The true class.")


class LabelsRequest(BaseModel):
    """One label as ``{"id": ..., "y": ...}`` or several as ``{"labels": [...]}``."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"oneOf": [{"required": ["id", "y"]}, {"required": ["labels"]}]}
    )
    id: str | None = Field(None, min_length=1, max_length=1000)
    y: Label | None = None
    labels: Annotated[list[LabelIn] | None, Field(json_schema_extra={"minItems": 1})] = None

    @model_validator(mode="after")
    def _one_of(self) -> LabelsRequest:
        single = self.id is not None or self.y is not None
        if single == (self.labels is not None):
            raise ValueError("send either 'id' and 'y' (one label) or 'labels' (a list of {id, y})")
        if single and (self.id is None or self.y is None):
            raise ValueError("one label needs both 'id' and 'y'")
        if self.labels is not None and not self.labels:
            raise ValueError("'labels' is empty")
        return self

    def items(self) -> list[LabelIn]:
        if self.labels is not None:
            return self.labels
        return [LabelIn(id=self.id or "", y=self.y if self.y is not None else "")]


class LabelsAccepted(BaseModel):
    accepted: int
    topic: str


class ModelSummary(BaseModel):
    name: str
    learner: str
    version: int
    events_seen: int
    metrics: dict[str, float]


class ModelList(BaseModel):
    models: list[ModelSummary]


class DriftState(BaseModel):
    alerts: int = Field(description="Drift alerts of this pipeline in the alert history.")
    last_alert: dict[str, Any] | None = Field(description="The latest of them, if any.")


class ModelDetail(ModelSummary):
    offsets: dict[str, int]
    published_at: float = Field(description="Wall time (Unix seconds) the served copy was taken.")
    age_s: float = Field(description="Seconds since then.")
    snapshot_version: int | None
    drift: DriftState


class VersionEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    version: int
    learner: str
    events_seen: int
    metrics: dict[str, float]
    offsets: dict[str, int]
    published_at: float
    snapshot_version: int | None


class VersionList(BaseModel):
    name: str
    versions: list[VersionEntry] = Field(description="Versions this server served, oldest first (the last 100).")


class Problem(BaseModel):
    detail: str
