"""Predictions from the served copy of a model: never from the learner itself.

The documented route. Well-formed requests rarely reach it: ``fastpath.FastPredict``
answers them in front of FastAPI with the same ``answer``; this route answers the rest,
with the errors. It is ``async`` (no thread-pool hop) and makes one model call: the class
is the most probable one, as every learner's ``predict_many`` defines it.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response

from learners.exceptions import LearnerError
from stream.api.deps import ModelDep, ReadAccess, StateDep
from stream.api.fastpath import answer, predict_rows
from stream.api.schemas import PredictManyResponse, PredictOneResponse, PredictRequest, Problem
from stream.events import check_features
from stream.exceptions import EventError

router = APIRouter(prefix="/v1/models", tags=["predict"], dependencies=ReadAccess)

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": why}
    for code, why in {
        401: "an API key is needed (reads closed by configuration)",
        404: "no model of that name",
        409: "the served model is older than min_version",
        413: "too many rows or too large a body",
        422: "a row the model cannot take, or a malformed body",
    }.items()
}


@router.post("/{name}/predict", response_model=PredictOneResponse | PredictManyResponse, responses=_ERRORS)
async def predict(
    body: PredictRequest,
    served: ModelDep,
    state: StateDep,
    min_version: Annotated[int | None, Query(ge=0, description="answer 409 unless the served model is at least this version")] = None,
) -> Response:
    started = time.perf_counter()
    if min_version is not None and served.version < min_version:
        raise HTTPException(409, f"model {served.name!r} is at version {served.version}, behind min_version {min_version}; retry shortly")
    one = body.x is not None
    rows = [body.x] if one else body.rows or []
    if len(rows) > state.max_rows:
        raise HTTPException(413, f"'rows' has {len(rows)} rows; at most {state.max_rows} per request")
    try:
        for i, row in enumerate(rows):
            check_features(row, "x" if one else f"rows[{i}]")
        predictions = predict_rows(served, rows)
    except (EventError, LearnerError) as exc:
        raise HTTPException(422, str(exc)) from exc
    except Exception as exc:
        # the input is the only thing that varies between calls on an immutable copy
        raise HTTPException(422, f"the model could not predict this input: {type(exc).__name__}: {exc}") from exc
    if state.metrics is not None:
        state.metrics.observe_predict(served.name, len(rows), time.perf_counter() - started)
    return Response(answer(served, predictions, one), media_type="application/json")
