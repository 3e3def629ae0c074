"""Learner variants on the benches' command lines: ``driftmoe[neighbours=None; n_experts=4]``.

A variant is a known learner with some of its parameters set, so that a speed or accuracy
trade-off (the neighbour vote off, fewer experts) can be measured beside the defaults with
the same command, the same events and the same run.
"""

from __future__ import annotations

import ast
import re
from typing import Any

#: ``base[params]``: a learner key or registry name, then its parameters in brackets
VARIANT = re.compile(r"^(?P<base>[^\[\]]+)\[(?P<params>[^\[\]]*)\]$")


def parse_params(text: str) -> dict[str, Any]:
    """``name=value`` pairs separated by ``;`` or ``,`` as a dict; each value a Python
    literal (``None``, ``False``, ``4``, ``1e-2``, ``'mixture'``)."""
    params: dict[str, Any] = {}
    for item in re.split(r"[;,]", text):
        item = item.strip()
        if not item:
            continue
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name.isidentifier():
            raise ValueError(f"learner parameter {item!r} must be name=value, e.g. neighbours=None")
        try:
            params[name] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise ValueError(
                f"learner parameter {name}={value.strip()!r} is not a Python literal "
                "(None, True, 4, 0.01, 'mixture')"
            ) from None
    return params


def format_params(params: dict[str, Any]) -> str:
    """``params`` as a variant writes them: ``neighbours=None; n_experts=4``."""
    return "; ".join(f"{k}={v!r}" for k, v in params.items())


def split_keys(text: str) -> list[str]:
    """A comma list of learner keys, where a variant's brackets may hold commas too."""
    keys, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            keys.append(text[start:i])
            start = i + 1
    keys.append(text[start:])
    return [k.strip() for k in keys if k.strip()]
