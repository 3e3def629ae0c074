"""Liveness (the process answers) and readiness (a model is loaded and can predict)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from stream.api.deps import StateDep
from stream.api.schemas import Problem

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(state: StateDep) -> dict[str, Any]:
    return {"status": "ok", "models": [m.name for m in state.board.all()], **state.progress()}


@router.get("/readyz", responses={503: {"model": Problem, "description": "no model loaded yet"}})
async def readyz(state: StateDep) -> Any:
    models = state.board.all()
    if not models:
        return JSONResponse(status_code=503, content={"detail": "not ready: no model loaded yet"})
    return {"status": "ready", "models": {m.name: m.version for m in models}}
