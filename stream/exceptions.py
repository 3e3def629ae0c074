"""Errors raised by the engine."""

from __future__ import annotations


class DriftlineError(Exception):
    """Root of every error the engine raises."""


class ConfigError(DriftlineError, ValueError):
    """A setting that cannot work; the message names the field and the fix."""


class SnapshotError(DriftlineError):
    """A snapshot that cannot be read."""


class SignatureError(SnapshotError):
    """A snapshot whose HMAC does not verify: it is refused, never loaded."""


class EventError(DriftlineError, ValueError):
    """An event that does not follow the contract; ``reason`` goes to the dead-letter topic."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class PipelineError(DriftlineError):
    """The loop met an error outside any one event; it stopped without checkpointing."""


class LeaseLostError(DriftlineError):
    """Another worker owns the pipeline now; this one stopped learning and writing."""
