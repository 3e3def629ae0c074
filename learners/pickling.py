"""Deterministic pickling of River models, for snapshots that compare byte for byte.

Pickle writes an object seen before as a back-reference, and "seen" means the same object,
not an equal one: a feature name that reached a tree through a decoder's string cache and
the same name from an unpickled snapshot would pickle differently. So every string is
written out in full as a persistent id (its value, not its identity, decides the bytes)
and comes back interned."""

from __future__ import annotations

import io
import pickle
import random
import sys
from typing import Any

from river.proba.base import Distribution


class _DeterministicPickler(pickle.Pickler):
    """River's distributions built without a seed (the Gaussian estimators inside trees)
    each own a ``random.Random`` seeded from the OS, used only to draw samples, which a
    classifier never does; theirs is written as ``Random(0)``. Every other RNG (an
    ensemble's Poisson draws, say) is kept as it is: it decides what the model learns."""

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is str:
            # fresh bytes each time: nothing about the string's identity is memoised (and
            # bytes, unlike a str, do not come back through this hook)
            return obj.encode("utf-8", "surrogatepass")
        return None

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Distribution) and obj.seed is None:
            func, args, state, *rest = obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
            if isinstance(state, dict) and "_rng" in state:
                return (func, args, {**state, "_rng": random.Random(0)}, *rest)
        return NotImplemented


class _InterningUnpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        if type(pid) is not bytes:
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return sys.intern(pid.decode("utf-8", "surrogatepass"))


def loads_river(data: bytes) -> Any:
    """Only ever called on bytes from a verified snapshot (or this process)."""
    return _InterningUnpickler(io.BytesIO(data)).load()


def dumps_river(model: Any) -> bytes:
    buf = io.BytesIO()
    _DeterministicPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(model)
    return buf.getvalue()
