"""Canonical hashing of job parameters.

Two parameter sets that mean the same (same keys in another order, a tuple
for a list, a numpy scalar for a Python number, a Path for its string) give
the same hash; any change of value gives another.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from .errors import ConfigError


def _canonical(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)  # exact, and NaN/inf stay JSON-able
    if isinstance(value, dict):
        return {str(k): _canonical(v, f"{where}[{k!r}]") for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return sorted(_canonical(v, where) for v in value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _canonical(value.tolist(), where)
    raise ConfigError(
        f"parameter {where} has type {type(value).__name__}, which cannot be hashed to decide on reruns; "
        "store it under a name starting with '_' or override parameters() to list what affects the output"
    )


def canonical_json(params: dict) -> str:
    """The canonical JSON text of a parameter dict.

    Examples
    --------
    >>> canonical_json({"b": (1, 2), "a": 0.5})
    '{"a":"0.5","b":[1,2]}'
    """
    return json.dumps(_canonical(params, "parameters"), sort_keys=True, separators=(",", ":"))


def params_hash(params: dict) -> str:
    """A short hash of the canonical form of ``params``.

    Examples
    --------
    >>> params_hash({"a": 1, "b": [1, 2]}) == params_hash({"b": (1, 2), "a": 1})
    True
    """
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()[:16]
