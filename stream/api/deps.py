"""What routes share: the app's state, the model a path names, the API-key checks.

Dependencies are ``async``: FastAPI runs a plain ``def`` dependency in its thread pool,
and that hop costs more than the whole lookup.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from stream.alerts import AlertLog
from stream.runtime.board import ModelBoard, ServedModel

#: a sink labels are forwarded to: ``send(value, key)`` queues, ``flush()`` waits for the broker
LabelSink = Any


class State:
    """Everything a request may read: the board of served models, the alerts, the limits.

    ``status`` returns the process's progress (events, dead letters, checkpoint age, lag)
    for ``/healthz`` and ``/metrics``; ``labels`` forwards labels (None: this server takes
    none); ``api_keys`` guard the write routes and, unless ``open_reads``, the reads too.
    """

    def __init__(
        self,
        board: ModelBoard,
        alerts: AlertLog,
        max_rows: int,
        status: Callable[[], dict[str, Any]] | None = None,
        *,
        api_keys: Sequence[bytes] = (),
        open_reads: bool = True,
        labels: LabelSink | None = None,
        labels_topic: str = "labels",
    ):
        self.board = board
        self.alerts = alerts
        self.max_rows = max_rows
        self.status = status
        self.api_keys = tuple(api_keys)
        self.open_reads = open_reads
        self.labels = labels
        self.labels_topic = labels_topic
        self.metrics: Any = None  # stream.api.prometheus.ServingMetrics, set by create_app
        self.lag: Any = None  # {pipeline: records behind} callable, set by create_app

    def progress(self) -> dict[str, Any]:
        return self.status() if callable(self.status) else {}


async def get_state(request: Request) -> State:
    return request.app.state.driftline


StateDep = Annotated[State, Depends(get_state)]


async def get_model(name: str, state: StateDep) -> ServedModel:
    served = state.board.get(name)
    if served is None:
        known = ", ".join(m.name for m in state.board.all()) or "none"
        raise HTTPException(404, f"no model named {name!r}; models: {known}")
    return served


ModelDep = Annotated[ServedModel, Depends(get_model)]

_bearer = HTTPBearer(auto_error=False, description="An API key from DRIFTLINE_API_KEYS.")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _check_key(state: State, creds: HTTPAuthorizationCredentials | None) -> None:
    if not state.api_keys:
        raise HTTPException(401, "this route needs an API key and the server has none: set DRIFTLINE_API_KEYS (comma-separated keys) and send `Authorization: Bearer <key>`", headers=_CHALLENGE)
    if creds is None:
        raise HTTPException(401, "this route needs an API key: send `Authorization: Bearer <key>`", headers=_CHALLENGE)
    given = creds.credentials.encode()
    # every key is compared, in constant time, so the answer's timing says nothing about which matched
    ok = False
    for key in state.api_keys:
        ok |= hmac.compare_digest(given, key)
    if not ok:
        raise HTTPException(401, "the API key is not one of this server's keys", headers=_CHALLENGE)


async def require_key(state: StateDep, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """Write and admin routes: always a valid key."""
    _check_key(state, creds)


async def read_access(state: StateDep, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """Read routes: open unless configured closed (``api_open_reads = false``)."""
    if not state.open_reads:
        _check_key(state, creds)


WriteAccess = [Depends(require_key)]
ReadAccess = [Depends(read_access)]
