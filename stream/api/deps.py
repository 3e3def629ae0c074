"""What routes share: the app's state, the model a path names."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from stream.alerts import AlertLog
from stream.runtime import ModelBoard, ServedModel


class State:
    """Everything a request may read: the board of served models, the alerts, the limits."""

    def __init__(self, board: ModelBoard, alerts: AlertLog, max_rows: int, status: Any = None):
        self.board = board
        self.alerts = alerts
        self.max_rows = max_rows
        self.status = status


def get_state(request: Request) -> State:
    return request.app.state.driftline


StateDep = Annotated[State, Depends(get_state)]


def get_model(name: str, state: StateDep) -> ServedModel:
    served = state.board.get(name)
    if served is None:
        known = ", ".join(m.name for m in state.board.all()) or "none"
        raise HTTPException(404, f"no model named {name!r}; models: {known}")
    return served


ModelDep = Annotated[ServedModel, Depends(get_model)]
