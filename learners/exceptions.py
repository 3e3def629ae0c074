"""Errors raised by learners."""

from __future__ import annotations

# the project's one error root lives in a module that imports nothing, so that learners
# and connectors share it without knowing each other or the engine
from stream.exceptions import DriftlineError


class LearnerError(DriftlineError):
    """Root of every error a learner raises."""


class InvalidInputError(LearnerError, ValueError):
    """A feature dict or label a learner cannot use; the message names the field."""


class UnknownLearnerError(LearnerError, ValueError):
    """A learner name that is not on the allow-list."""
