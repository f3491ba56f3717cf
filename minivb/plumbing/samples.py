"""What every clip sample shares, whoever makes it: the seed rule of its random draws, and the marker of a file that
could not be decoded (logged once per file)."""

from __future__ import annotations

import logging
from typing import NamedTuple, Sequence

import numpy as np

log = logging.getLogger("minivb.data.clips")  # the name the warnings have always carried


def sample_seed(*keys: int) -> int:
    """A 63-bit seed that is a pure function of integer ``keys`` (e.g. ``seed, epoch, index``)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & ((1 << 63) - 1)


class Skipped(NamedTuple):
    """What a data set returns for a file that cannot be decoded (name and reason)."""

    path: str
    reason: str


_reported: set[str] = set()


def report_skipped(skipped: Sequence[Skipped]) -> None:
    """Log one warning per broken file (once per process, however often it is drawn)."""
    for s in skipped:
        if s.path not in _reported:
            _reported.add(s.path)
            log.warning("skipping %s: %s", s.path, s.reason)
