"""Stage timing: the synchronised wall time of a block of device work."""

from __future__ import annotations

import time

from .backend import synchronize

__all__ = ["StageTimer"]


class StageTimer:
    """Adds the synchronised wall time of a ``with`` block to ``timings[name]``  [s].

    The device is synchronised on entry and exit, so queued GPU work is counted in the stage that
    queued it.
    """

    def __init__(self, xp, timings: dict, name: str):
        self.xp, self.timings, self.name = xp, timings, name

    def __enter__(self):
        synchronize(self.xp)
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        synchronize(self.xp)
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.t0
