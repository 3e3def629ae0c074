"""The HTTP API: one router per resource under ``routes/``, shared dependencies in ``deps``,
request and response bodies in ``schemas``; ``create_app`` builds the application.

The API reads served models through a :class:`~stream.runtime.ModelBoard` and never
imports the learning loop, so the same app serves a worker's board or a replica's."""

from stream.api.app import create_app

__all__ = ["create_app"]
