"""Labels that arrive after the prediction, forwarded to the labels topic.

The route only forwards: each label becomes one JSON record ``{"pipeline", "id", "y"}``
on the labels topic, keyed by the event id, and the answer (202) comes once the broker
has them. Joining them to their events is the runtime's business, not the API's.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool

from connectors.exceptions import ConnectorError
from stream.api.deps import ModelDep, StateDep, WriteAccess
from stream.api.schemas import LabelsAccepted, LabelsRequest, Problem
from stream.events import check_label
from stream.exceptions import EventError

router = APIRouter(prefix="/v1/models", tags=["labels"], dependencies=WriteAccess)

MAX_LABELS = 10_000

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no valid API key"},
    404: {"model": Problem, "description": "no model of that name"},
    409: {"model": Problem, "description": "this server forwards no labels (no topic to send them to)"},
    413: {"model": Problem, "description": "too many labels in one request"},
    422: {"model": Problem, "description": "a malformed label"},
    429: {"model": Problem, "description": "the broker did not take the labels in time; retry"},
}


@router.post("/{name}/labels", status_code=202, response_model=LabelsAccepted, responses=_ERRORS)
async def post_labels(body: LabelsRequest, served: ModelDep, state: StateDep) -> dict[str, Any]:
    if state.labels is None:
        raise HTTPException(409, "this server forwards no labels: it has no Kafka broker to send them to (set KAFKA_BOOTSTRAP_SERVERS); send labels with the events instead, as the event's 'y'")
    items = body.items()
    if len(items) > MAX_LABELS:
        raise HTTPException(413, f"'labels' has {len(items)} labels; at most {MAX_LABELS} per request")
    records = []
    for i, item in enumerate(items):
        try:
            y = check_label(item.y, "y" if body.labels is None else f"labels[{i}].y")
        except EventError as exc:
            raise HTTPException(422, exc.reason) from exc
        records.append((orjson.dumps({"pipeline": served.name, "id": item.id, "y": y}), item.id.encode()))
    try:
        await run_in_threadpool(_forward, state, records)
    except ConnectorError as exc:
        raise HTTPException(429, f"the labels were not forwarded ({exc}); retry", headers={"Retry-After": "1"}) from exc
    return {"accepted": len(records), "topic": state.labels_topic}


def _forward(state: Any, records: list[tuple[bytes, bytes]]) -> None:
    for value, key in records:
        state.labels.send(state.labels_topic, value, key=key)
    state.labels.flush(10.0)
