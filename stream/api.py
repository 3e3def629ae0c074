"""HTTP API: health, models, predictions and alerts, served from immutable model copies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, model_validator

from learners.exceptions import LearnerError
from stream.alerts import AlertLog
from stream.events import check_features
from stream.exceptions import EventError
from stream.runtime import ModelBoard, ServedModel

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


class State:
    def __init__(self, board: ModelBoard, alerts: AlertLog, max_rows: int, status: Any = None):
        self.board = board
        self.alerts = alerts
        self.max_rows = max_rows
        self.status = status


def get_state(request: Request) -> State:
    return request.app.state.driftline


StateDep = Annotated[State, Depends(get_state)]


def get_model(name: str, state: StateDep) -> ServedModel:
    served = state.board.get(name)
    if served is None:
        known = ", ".join(m.name for m in state.board.all()) or "none"
        raise HTTPException(404, f"no model named {name!r}; models: {known}")
    return served


ModelDep = Annotated[ServedModel, Depends(get_model)]

health = APIRouter(tags=["health"])
models = APIRouter(prefix="/v1/models", tags=["models"])
alerts = APIRouter(prefix="/v1/alerts", tags=["alerts"])


@health.get("/healthz")
def healthz(state: StateDep) -> dict[str, Any]:
    status = state.status() if callable(state.status) else {}
    return {"status": "ok", "models": [m.name for m in state.board.all()], **status}


@models.get("")
def list_models(state: StateDep) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": m.name,
                "learner": m.learner,
                "version": m.version,
                "events_seen": m.events_seen,
                "metrics": m.metrics,
            }
            for m in state.board.all()
        ]
    }


@models.post("/{name}/predict", response_model=PredictOneResponse | PredictManyResponse)
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


@alerts.get("")
def list_alerts(
    state: StateDep,
    after: Annotated[int, Query(ge=-1, description="only alerts with a larger id")] = -1,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    items = state.alerts.since(after, limit)
    return {"alerts": [a.to_dict() for a in items], "total": state.alerts.total}


def create_app(
    board: ModelBoard,
    alert_log: AlertLog,
    *,
    max_rows: int = 10_000,
    max_body_bytes: int = 16 * 1024 * 1024,
    status: Any = None,
) -> FastAPI:
    app = FastAPI(title="Driftline", version="0.1.0")

    @app.middleware("http")
    async def _limit_body(request: Request, call_next: Any) -> Any:
        # refuse before reading: a huge body must not be buffered to be rejected
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            return JSONResponse(
                status_code=413, content={"detail": f"request body is {length} bytes; the limit is {max_body_bytes}"}
            )
        return await call_next(request)

    app.state.driftline = State(board, alert_log, max_rows, status)
    app.include_router(health)
    app.include_router(models)
    app.include_router(alerts)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{loc}: {err.get('msg')}")
        return JSONResponse(status_code=422, content={"detail": "; ".join(problems)})

    return app
