"""The served models: what each is, how far it learned, the versions served."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from stream.api.deps import ModelDep, ReadAccess, StateDep
from stream.api.schemas import ModelDetail, ModelList, Problem, VersionList

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=ReadAccess)
_404: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "no model of that name"}}


@router.get("", response_model=ModelList)
async def list_models(state: StateDep) -> dict[str, Any]:
    return {
        "models": [
            {"name": m.name, "learner": m.learner, "version": m.version, "events_seen": m.events_seen, "metrics": m.metrics}
            for m in state.board.all()
        ]
    }


@router.get("/{name}", response_model=ModelDetail, responses=_404)
async def get_model(served: ModelDep, state: StateDep) -> dict[str, Any]:
    mine = [a for a in state.alerts.since(-1, 1_000_000) if a.pipeline == served.name]
    return {
        **served.describe(),
        "age_s": round(max(0.0, time.time() - served.published_at), 3) if served.published_at else 0.0,
        "drift": {"alerts": len(mine), "last_alert": mine[-1].to_dict() if mine else None},
    }


@router.get("/{name}/versions", response_model=VersionList, responses=_404)
async def list_versions(served: ModelDep, state: StateDep) -> dict[str, Any]:
    return {"name": served.name, "versions": state.board.versions(served.name)}
