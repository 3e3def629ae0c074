"""Predictions from the served copy of a model: never from the learner itself."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from learners.exceptions import LearnerError
from stream.api.deps import ModelDep, StateDep
from stream.api.schemas import PredictManyResponse, PredictOneResponse, PredictRequest
from stream.events import check_features
from stream.exceptions import EventError

router = APIRouter(prefix="/v1/models", tags=["predict"])


@router.post("/{name}/predict", response_model=PredictOneResponse | PredictManyResponse)
def predict(body: PredictRequest, served: ModelDep, state: StateDep) -> dict[str, Any]:
    rows = [body.x] if body.x is not None else body.rows or []
    if len(rows) > state.max_rows:
        raise HTTPException(413, f"'rows' has {len(rows)} rows; at most {state.max_rows} per request")
    try:
        for i, row in enumerate(rows):
            check_features(row, "x" if body.x is not None else f"rows[{i}]")
        probas = served.model.predict_proba_many(rows)
        preds = served.model.predict_many(rows)
    except (EventError, LearnerError) as exc:
        raise HTTPException(422, str(exc)) from exc
    out = [{"y": y, "proba": {str(k): float(v) for k, v in p.items()}} for y, p in zip(preds, probas, strict=True)]
    if body.x is not None:
        return {**out[0], "version": served.version}
    return {"predictions": out, "version": served.version}
