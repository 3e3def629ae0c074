"""The alert history: filtered, paged by id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from stream.alerts import KINDS, SEVERITIES, STATES
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
