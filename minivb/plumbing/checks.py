"""Argument checks shared by every module: one message for one mistake.

Plain Python (no torch), so the lowest room (:mod:`minivb.video`) can use it too.
"""

from __future__ import annotations

import numbers


class UsageError(Exception):
    """A problem with the options or the inputs that the user can fix: commands report it as one line,
    ``error: …``, exit status 2."""


def check_int(name: str, value, minimum: int = 1) -> int:
    """``value`` if it is an integer ≥ ``minimum`` (``bool`` is not), else ``ValueError`` naming ``name``.

    ``minimum=1``: "must be a positive integer"; ``minimum=0``: "must be a non-negative integer".
    NumPy integers pass (they index arrays like ``int``).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        what = {1: "a positive integer", 0: "a non-negative integer"}.get(minimum, f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def check_transformer(dim: int, num_heads: int, mlp_ratio, dropout) -> None:
    """A Transformer's sizes (``dim``, ``num_heads`` already integers): heads divide the width, a positive MLP
    ratio, a dropout rate in [0, 1); else ``ValueError`` naming the option."""
    if dim % num_heads:
        raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
    if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, numbers.Real) or not mlp_ratio > 0:
        raise ValueError(f"mlp_ratio must be a number > 0, got {mlp_ratio!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
