"""Argument checks shared by every module: one message for one mistake.

Plain Python (no torch), so the lowest room (:mod:`minivb.video`) can use it too.
"""

from __future__ import annotations

import numbers

__all__ = ["check_int"]


def check_int(name: str, value, minimum: int = 1) -> int:
    """``value`` if it is an integer ≥ ``minimum`` (``bool`` is not), else ``ValueError`` naming ``name``.

    ``minimum=1``: "must be a positive integer"; ``minimum=0``: "must be a non-negative integer".
    NumPy integers pass (they index arrays like ``int``).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        what = {1: "a positive integer", 0: "a non-negative integer"}.get(minimum, f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)
