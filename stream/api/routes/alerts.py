"""The alert history, paged by id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from stream.api.deps import StateDep

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


@router.get("")
def list_alerts(
    state: StateDep,
    after: Annotated[int, Query(ge=-1, description="only alerts with a larger id")] = -1,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    items = state.alerts.since(after, limit)
    return {"alerts": [a.to_dict() for a in items], "total": state.alerts.total}
