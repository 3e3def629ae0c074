"""Server-Sent Events: the wire format, and a loop that ends when the client goes.

Each event is ``id:``, ``event:`` and one ``data:`` line of JSON; a comment line every
``keepalive_s`` keeps proxies from closing a quiet stream. A client that reconnects sends
the last id it saw as ``Last-Event-ID`` and resumes after it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

#: the answer's headers: no caching, and no buffering by nginx-like proxies
HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def frame(event: str, data: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def response(events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers=HEADERS)


async def until_gone(
    request: Request,
    poll: Callable[[], Awaitable[list[bytes]]],
    *,
    every_s: float,
    limit: int | None,
    keepalive_s: float = 15.0,
) -> AsyncIterator[bytes]:
    """Yield what ``poll`` returns, asking every ``every_s``, until ``limit`` events or a disconnect."""
    sent = 0
    quiet_since = time.monotonic()
    yield b": connected\n\n"
    while not await request.is_disconnected():
        frames = await poll()
        for f in frames:
            yield f
            sent += 1
            if limit is not None and sent >= limit:
                return
        now = time.monotonic()
        if frames:
            quiet_since = now
        elif now - quiet_since >= keepalive_s:
            yield b": keep-alive\n\n"
            quiet_since = now
        await asyncio.sleep(every_s)
