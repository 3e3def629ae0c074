"""The prediction hot path as plain ASGI, in front of FastAPI.

A well-formed single-row or batch prediction is answered here: orjson parses the body,
``check_features`` checks each row, one ``predict_proba_many`` call on the served copy
answers, orjson writes the reply. Routing, dependency injection, pydantic validation and
response-model passes cost several times the model call of a small model, and on two
cores every one of them is taken from learning or from other requests.

Anything else goes to FastAPI untouched: another route, a body that does not parse or
check, a query string other than ``min_version=N``, a model that is not there, a version
behind ``min_version``, reads closed by configuration. The documented route
(``routes/predict.py``) then answers it, with the same computation and the error it
describes, so both paths give the same answer to the same request.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from stream.api.deps import State
from stream.events import check_features

_PREFIX = "/v1/models/"
_SUFFIX = "/predict"
_HEADERS = [(b"content-type", b"application/json")]
_KEYS = frozenset(("x", "rows", "id"))


def classes(proba: dict[Any, float]) -> tuple[Any, dict[str, float]]:
    """The first most probable class, as ``predict_many`` picks it, and the probabilities by name."""
    y = max(proba, key=proba.__getitem__) if proba else None
    return y, {str(k): float(v) for k, v in proba.items()}


def predict_rows(served: Any, rows: list[dict[str, Any]]) -> list[tuple[Any, dict[str, float]]]:
    """``(y, proba)`` per row in one model call: a class and its probabilities, or a number and ``{}``."""
    if getattr(served, "task", "classification") == "regression":
        return [(float(y), {}) for y in served.model.predict_many(rows)]
    return [classes(p) for p in served.model.predict_proba_many(rows)]


def answer(served: Any, predictions: list[tuple[Any, dict[str, float]]], one: bool) -> bytes:
    out: dict[str, Any]
    if one:
        y, proba = predictions[0]
        out = {"y": y, "proba": proba}
    else:
        out = {"predictions": [{"y": y, "proba": proba} for y, proba in predictions]}
    out["version"] = served.version
    out["events_seen"] = served.events_seen
    out["offsets"] = served.offsets
    return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


class FastPredict:
    """ASGI middleware: answers what it can of ``POST /v1/models/{name}/predict``, passes the rest on."""

    def __init__(self, app: Any, state: State, max_body_bytes: int):
        self.app = app
        self.state = state
        self.max_body = max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        path: str = scope["path"]
        if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
            return await self.app(scope, receive, send)
        state = self.state
        served = state.board.get(path[len(_PREFIX) : -len(_SUFFIX)])
        if served is None or not state.open_reads or not self._plain(scope, served):
            return await self.app(scope, receive, send)

        started = time.perf_counter()
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return await self.app(scope, _replay(b"".join(chunks) + chunk, receive), send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        reply = self._predict(served, body)
        if reply is None:
            return await self.app(scope, _replay(body, receive), send)
        payload, rows = reply
        headers = [*_HEADERS, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        if state.metrics is not None:
            state.metrics.observe_predict(served.name, rows, time.perf_counter() - started)
        return None

    def _plain(self, scope: dict[str, Any], served: Any) -> bool:
        """JSON content, within the size limit, and no query but a ``min_version`` the model meets."""
        length = None
        json_body = False
        for k, v in scope["headers"]:
            if k == b"content-length":
                length = v
            elif k == b"content-type":
                json_body = v.startswith(b"application/json")
        if not json_body or (length is not None and (not length.isdigit() or int(length) > self.max_body)):
            return False
        qs: bytes = scope.get("query_string", b"")
        if qs:
            key, _, value = qs.partition(b"=")
            if key != b"min_version" or not value.isdigit() or served.version < int(value):
                return False
        return True

    def _predict(self, served: Any, body: bytes) -> tuple[bytes, int] | None:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if type(doc) is not dict or not doc.keys() <= _KEYS:
            return None
        x, rows, ident = doc.get("x"), doc.get("rows"), doc.get("id")
        if ident is not None and type(ident) is not str:
            return None
        if x is not None:
            if rows is not None or type(x) is not dict:
                return None
            rows = [x]
        elif type(rows) is not list or not rows or len(rows) > self.state.max_rows or any(type(r) is not dict for r in rows):
            return None
        try:
            for row in rows:
                check_features(row)
            predictions = predict_rows(served, rows)
        except Exception:
            return None  # the route answers it, with the message (EventError, LearnerError, ...)
        return answer(served, predictions, x is not None), len(rows)


def _replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that gives the body already read, then defers to the connection's."""
    sent = False

    async def again() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
