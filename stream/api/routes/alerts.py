"""The alert history: filtered, paged by id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from stream.api.deps import ReadAccess, StateDep

router = APIRouter(prefix="/v1/alerts", tags=["alerts"], dependencies=ReadAccess)

_Text = Annotated[str | None, Query(max_length=200)]


@router.get("")
async def list_alerts(
    state: StateDep,
    after: Annotated[int, Query(ge=-1, description="only alerts with a larger id")] = -1,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    pipeline: _Text = None,
    detector: _Text = None,
    severity: _Text = None,
    state_: Annotated[str | None, Query(alias="state", max_length=200, description="warning, drift or resolved")] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11, description="only alerts raised at or after this Unix time")] = None,
) -> dict[str, Any]:
    wanted = {"pipeline": pipeline, "detector": detector, "severity": severity, "state": state_}
    wanted = {k: v for k, v in wanted.items() if v is not None}
    if not wanted and since is None:
        items = state.alerts.since(after, limit)
    else:
        items = []
        for a in state.alerts.since(after, 1_000_000):
            d = a.to_dict()
            if since is not None and d.get("ts", 0.0) < since:
                continue
            # a field the alert does not have matches nothing
            if all(k in d and str(d[k]) == v for k, v in wanted.items()):
                items.append(a)
                if len(items) >= limit:
                    break
    return {"alerts": [a.to_dict() for a in items], "total": state.alerts.total}
