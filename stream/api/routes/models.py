"""The served models: what each is, how far it learned."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stream.api.deps import StateDep

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("")
def list_models(state: StateDep) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": m.name,
                "learner": m.learner,
                "version": m.version,
                "events_seen": m.events_seen,
                "metrics": m.metrics,
            }
            for m in state.board.all()
        ]
    }
