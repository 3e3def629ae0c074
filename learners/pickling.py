"""Deterministic pickling of River models, for snapshots that compare byte for byte."""

from __future__ import annotations

import io
import pickle
import random
from typing import Any

from river.proba.base import Distribution


class _DeterministicPickler(pickle.Pickler):
    """River's distributions built without a seed (the Gaussian estimators inside trees)
    each own a ``random.Random`` seeded from the OS, used only to draw samples, which a
    classifier never does; theirs is written as ``Random(0)``. Every other RNG (an
    ensemble's Poisson draws, say) is kept as it is: it decides what the model learns."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Distribution) and obj.seed is None:
            func, args, state, *rest = obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
            if isinstance(state, dict) and "_rng" in state:
                return (func, args, {**state, "_rng": random.Random(0)}, *rest)
        return NotImplemented


def dumps_river(model: Any) -> bytes:
    buf = io.BytesIO()
    _DeterministicPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(model)
    return buf.getvalue()
