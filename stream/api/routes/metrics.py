"""``GET /metrics``: Prometheus text exposition; ``GET /v1/metrics/stream``: live samples as
Server-Sent Events, one ``sample`` per interval, what the dashboard draws."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from stream.api import sse
from stream.api.deps import ReadAccess, State, StateDep

router = APIRouter(tags=["metrics"], dependencies=ReadAccess)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
async def metrics(state: StateDep) -> Response:
    # in the thread pool: the lag probe may ask the broker
    body = await run_in_threadpool(generate_latest, state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


# ---------------------------------------------------------------- live: SSE

stream_router = APIRouter(prefix="/v1/metrics", tags=["metrics"], dependencies=ReadAccess)


def live_sample(state: State) -> dict[str, Any]:
    """Each served model's progress and metrics, and the process's own (events, lag, ...)."""
    status = dict(state.progress())
    lag = getattr(state, "lag", None)
    if callable(lag):
        try:
            status["lag"] = lag()
        except Exception:  # a slow or absent broker leaves the sample without lag
            status["lag"] = None
    models = []
    for m in state.board.all():
        metrics = dict(m.metrics)
        router = {k.removeprefix("router_e"): metrics.pop(k) for k in list(metrics) if k.startswith("router_e")}
        models.append({
            "name": m.name, "learner": m.learner, "version": m.version, "events_seen": m.events_seen,
            "metrics": metrics, "router": router,
        })  # fmt: skip
    return {"ts": time.time(), "models": models, "status": _plain(status), "alerts_total": state.alerts.total}


def _plain(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if isinstance(v, (int, float, str, bool, dict, list)) or v is None}


@stream_router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "one `sample` event per interval"}},
)
async def stream_metrics(
    request: Request,
    state: StateDep,
    every: Annotated[float, Query(ge=0.1, le=60.0, description="seconds between samples")] = 1.0,
    limit: Annotated[int | None, Query(ge=1, le=1_000_000, description="end the stream after this many samples")] = None,
) -> StreamingResponse:
    """A sample of every model's metrics and the process's progress, every ``every`` seconds."""
    count = 0

    async def poll() -> list[bytes]:
        nonlocal count
        count += 1
        sample = await run_in_threadpool(live_sample, state)  # progress may ask the broker for lag
        return [sse.frame("sample", sample, str(count))]

    return sse.response(sse.until_gone(request, poll, every_s=every, limit=limit))
