"""Errors raised by connectors."""

from __future__ import annotations

# the project's one error root lives in a module that imports nothing, so that learners
# and connectors share it without knowing each other or the engine
from stream.exceptions import DriftlineError


class ConnectorError(DriftlineError):
    """Root of every error a connector raises."""


class StoreUnavailableError(ConnectorError):
    """The snapshot store cannot be reached now; the caller should retry later."""


class StaleFencingTokenError(ConnectorError):
    """A snapshot write carried a fencing token older than the store's: another worker owns the pipeline."""


class SnapshotNotFoundError(ConnectorError, KeyError):
    """No snapshot under that pipeline and version."""


class ServiceStartError(ConnectorError):
    """A local Kafka or Redis process could not be started."""


class ProducerFencedError(ConnectorError):
    """Another producer took this transactional id: this one must stop writing for good."""


class OutputsLostError(ConnectorError):
    """The open transaction was aborted: its records will never be read.

    The sink is usable again; the caller must rewind its input to the offsets of the last
    committed transaction and produce those outputs again.
    """
