"""The runtime: one loop per pipeline (``pipeline``), the served copies (``board``), and the
worker that holds a pipeline's lease while it learns (``worker``)."""

from stream.runtime.board import ModelBoard, ServedModel
from stream.runtime.pipeline import Counters, Pipeline

__all__ = ["Counters", "ModelBoard", "Pipeline", "ServedModel"]
