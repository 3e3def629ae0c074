"""The runtime: one loop per pipeline (``pipeline``), the served copies (``board``), the
worker that holds a pipeline's lease while it learns (``worker``), and the read replica
that serves snapshots without learning (``replica``).

``Pipeline`` and ``Counters`` are imported on first use, so the API and a replica, which
read served copies only, never load the learning loop."""

from typing import Any

from stream.runtime.board import ModelBoard, ServedModel

__all__ = ["Counters", "ModelBoard", "Pipeline", "ServedModel"]


def __getattr__(name: str) -> Any:
    if name in ("Counters", "Pipeline"):
        from stream.runtime import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'stream.runtime' has no attribute {name!r}")
