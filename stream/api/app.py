"""The application factory: routers, the body-size guard, errors as 4xx with a message.

``lifespan`` takes context managers entered when the server starts and left when it
stops (a replica's snapshot watcher); uvicorn must run the app with ``lifespan="on"``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from stream.alerts import AlertLog
from stream.api.deps import State
from stream.api.fastpath import FastPredict
from stream.api.prometheus import ServingMetrics
from stream.api.routes import alerts, dashboard, health, labels, metrics, models, predict
from stream.runtime.board import ModelBoard

ROUTERS = (health, models, predict, labels, alerts, metrics)


class BodyLimit:
    """Refuses a body whose declared length is over the limit before reading it (plain ASGI)."""

    def __init__(self, app: Any, max_body_bytes: int):
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for k, v in scope["headers"]:
                if k == b"content-length" and v.isdigit() and int(v) > self.limit:
                    body = orjson.dumps({"detail": f"request body is {v.decode()} bytes; the limit is {self.limit}"})
                    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)


def create_app(
    board: ModelBoard,
    alert_log: AlertLog,
    *,
    max_rows: int = 10_000,
    max_body_bytes: int = 16 * 1024 * 1024,
    status: Callable[[], dict[str, Any]] | None = None,
    api_keys: Sequence[bytes] = (),
    open_reads: bool = True,
    labels_sink: Any = None,
    labels_topic: str = "labels",
    lag: Callable[[], dict[str, int]] | None = None,
    lifespan: Sequence[Callable[[], contextlib.AbstractContextManager[Any]]] = (),
) -> FastAPI:
    @contextlib.asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        with contextlib.ExitStack() as stack:
            for enter in lifespan:
                stack.enter_context(enter())
            yield

    app = FastAPI(
        title="Driftline",
        version="0.1.0",
        description="Predictions from models that learn from a stream, their versions, drift alerts and metrics.",
        lifespan=_lifespan,
    )

    state = State(
        board, alert_log, max_rows, status,
        api_keys=api_keys, open_reads=open_reads, labels=labels_sink, labels_topic=labels_topic,
    )  # fmt: skip
    state.metrics = ServingMetrics(state, lag)
    state.lag = lag
    app.state.driftline = state
    # added last, so outermost: the fast path first, then the size guard, then FastAPI
    app.add_middleware(BodyLimit, max_body_bytes=max_body_bytes)
    app.add_middleware(FastPredict, state=state, max_body_bytes=max_body_bytes)
    for module in ROUTERS:
        app.include_router(module.router)
    _add_live(app)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{loc}: {err.get('msg')}")
        return JSONResponse(status_code=422, content={"detail": "; ".join(problems)})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse(status_code=exc.status_code, content={"detail": detail}, headers=exc.headers)

    _errors_in_openapi(app)
    return app


def _errors_in_openapi(app: FastAPI) -> None:
    """The document says what a 422 really carries: one ``detail`` string, as every error."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemas = schema.get("components", {}).get("schemas", {})
            if "HTTPValidationError" in schemas:
                schemas["HTTPValidationError"] = {
                    "title": "HTTPValidationError", "type": "object", "required": ["detail"],
                    "properties": {"detail": {"type": "string", "title": "Detail", "description": "each problem as `field: message`, joined by '; '"}},
                }  # fmt: skip
                schemas.pop("ValidationError", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_live(app: FastAPI) -> None:
    """The watching side: the metrics stream, the dashboard page and its static files."""
    app.include_router(metrics.stream_router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC), name="static")
