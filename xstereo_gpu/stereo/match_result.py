"""What the matchers and their CUDA bindings share: the result type and SGM's paths and invalid cost.

:func:`~.disparity.block_match` and :func:`~.sgm.semi_global_match` (the NumPy twins) call their
bindings :func:`~._bm_kernel.block_match_kernel` and :func:`~._sgm_kernel.aggregate_costs_kernel`
on CuPy, and the bindings return the twins' :class:`MatchResult` or follow their
:func:`path_directions` and :data:`INVALID_COST`. With these here, the twins import their bindings
at module top and the bindings import nothing from the twins: no import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["INVALID_COST", "MatchResult", "path_directions"]

#: Cost of a disparity whose matched column lies outside the image (finite on purpose, see
#: :mod:`~.sgm`).
INVALID_COST = np.float32(1e30)

_DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))


@dataclass
class MatchResult:
    """Left and right disparity maps with their costs and confidences.

    Attributes
    ----------
    disparity_left : (H, W) float32
        For each left pixel, ``d = x_left - x_right`` [matching-grid pixels]; NaN where invalid.
    disparity_right : (H, W) float32
        For each right pixel, ``d = x_left - x_right`` [matching-grid pixels]; NaN where invalid.
    cost_left, cost_right : (H, W) float32
        Cost at the winning integer disparity: block mean of the absolute differences (0..1
        intensity scale) plus the proximity term; NaN where the disparity is invalid.
    confidence_left, confidence_right : (H, W) float32
        ``clip(1 - best_cost / second_best_cost, 0, 1)``, the second best excluding ``d_best +- 1``;
        0 where the disparity is invalid.
    """

    disparity_left: Any
    disparity_right: Any
    cost_left: Any
    cost_right: Any
    confidence_left: Any
    confidence_right: Any


def path_directions(paths: int = 4) -> tuple[tuple[int, int], ...]:
    """Aggregation directions ``r = (dy, dx)`` of semi-global matching, in the order their costs are added.

    Along direction ``r`` the previous pixel of ``p`` is ``p - r``: ``(0, 1)`` runs left to right,
    ``(1, 0)`` top to bottom. The first four are horizontal and vertical, the next four diagonal.

    Parameters
    ----------
    paths : int
        4 or 8.

    Returns
    -------
    tuple of (int, int)
        ``paths`` directions ``(dy, dx)`` [pixels].
    """
    if paths not in (4, 8):
        raise InputError("match.sgm_paths", repr(paths), "4 or 8")
    return _DIRECTIONS[:paths]
