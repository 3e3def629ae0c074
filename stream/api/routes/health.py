"""Liveness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stream.api.deps import StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(state: StateDep) -> dict[str, Any]:
    status = state.status() if callable(state.status) else {}
    return {"status": "ok", "models": [m.name for m in state.board.all()], **status}
