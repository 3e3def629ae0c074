"""The alert history: filtered, paged by id; and every revision live, as Server-Sent Events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from stream.alerts import KINDS, SEVERITIES, STATES, AlertLog
from stream.api import sse
from stream.api.deps import ReadAccess, StateDep
from stream.api.schemas import Problem
from stream.exceptions import ConfigError

router = APIRouter(prefix="/v1/alerts", tags=["alerts"], dependencies=ReadAccess)

_Text = Annotated[str | None, Query(max_length=200)]


@router.get("", responses={422: {"model": Problem, "description": "a malformed filter"}})
async def list_alerts(
    state: StateDep,
    after: Annotated[int, Query(ge=-1, description="only alerts with a larger id")] = -1,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    pipeline: _Text = None,
    detector: _Text = None,
    severity: Annotated[str | None, Query(max_length=200, description="minimum severity: " + ", ".join(SEVERITIES))] = None,
    state_: Annotated[str | None, Query(alias="state", max_length=200, description=", ".join(STATES))] = None,
    kind: Annotated[str | None, Query(max_length=200, description=", ".join(KINDS))] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11, description="only alerts revised at or after this Unix time")] = None,
) -> dict[str, Any]:
    """The latest revision of each alert, oldest first, filtered, and how many were opened."""
    try:
        items = state.alerts.since(
            after, limit, pipeline=pipeline, detector=detector, severity=severity, state=state_, kind=kind, since=since
        )
    except ConfigError as exc:
        raise HTTPException(422, str(exc)) from exc
    return {"alerts": [a.to_dict() for a in items], "total": state.alerts.total}


# ---------------------------------------------------------------- live: SSE


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "one `alert` event per alert revision"}},
)
async def stream_alerts(
    request: Request,
    state: StateDep,
    pipeline: Annotated[str | None, Query(max_length=200)] = None,
    min_severity: Annotated[str | None, Query(pattern="^(low|medium|high|critical)$")] = None,
    after: Annotated[str | None, Query(max_length=40, pattern=r"^\d+(-\d+)?$", description="resume after this event id")] = None,
    limit: Annotated[int | None, Query(ge=1, le=1_000_000, description="end the stream after this many events")] = None,
    last_event_id: Annotated[str | None, Header(max_length=40, pattern=r"^\d+(-\d+)?$")] = None,
) -> StreamingResponse:
    """Every alert revision as it happens (the kept history first, unless resuming), as SSE."""
    feed = state.alerts
    cursor: Any = _cursor(feed, after or last_event_id)
    rank = SEVERITIES.index(min_severity) if min_severity else 0

    async def poll() -> list[bytes]:
        nonlocal cursor
        entries = await run_in_threadpool(feed.revisions, cursor, 500)
        out = []
        for seq, alert in entries:
            cursor = seq
            if (pipeline is None or alert.pipeline == pipeline) and SEVERITIES.index(alert.severity) >= rank:
                out.append(sse.frame("alert", alert.to_dict(), str(seq)))
        return out

    return sse.response(sse.until_gone(request, poll, every_s=0.2, limit=limit))


def _cursor(feed: Any, text: str | None) -> Any:
    # the in-process log counts revisions; the Redis stream has its own entry ids
    if isinstance(feed, AlertLog):
        return int(text.split("-")[0]) if text else 0
    return text or "0-0"
