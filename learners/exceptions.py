"""Errors raised by learners."""

from __future__ import annotations


class LearnerError(Exception):
    """Root of every error a learner raises."""


class InvalidInputError(LearnerError, ValueError):
    """A feature dict or label a learner cannot use; the message names the field."""


class UnknownLearnerError(LearnerError, ValueError):
    """A learner name that is not on the allow-list."""
