"""The application factory: routers, the body-size guard, errors as 4xx with a message."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from stream.alerts import AlertLog
from stream.api.deps import State
from stream.api.routes import alerts, dashboard, health, metrics, models, predict
from stream.runtime import ModelBoard


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
    for module in (health, models, predict, alerts):
        app.include_router(module.router)
    _add_live(app)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{loc}: {err.get('msg')}")
        return JSONResponse(status_code=422, content={"detail": "; ".join(problems)})

    return app


def _add_live(app: FastAPI) -> None:
    """The watching side: the metrics stream, the dashboard page and its static files."""
    app.include_router(metrics.stream_router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC), name="static")
