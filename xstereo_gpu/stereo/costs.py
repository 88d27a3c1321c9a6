"""Matching costs robust to exposure differences: census transform (Hamming distance) and ZNCC.

Beyond the paper (issue 10). The paper's cost (:mod:`~.disparity`, ``cost="sad"``) compares grey
levels, which suits binarised X-ray views but fails on natural images whose two views differ in
exposure or gain. Both costs here are invariant to ``R = a L + b`` (``a > 0``):

* ``"census"`` (Zabih & Woodfill 1994): each pixel becomes a bit string, one bit per neighbour of a
  ``wy x wx`` window (``neighbour < centre``); the cost of a disparity is the Hamming distance
  between the left and right strings, divided by the number of bits (0..1), averaged over a
  ``b x b`` block.
* ``"zncc"``: ``(1 - rho) / 2`` with ``rho`` the zero-mean normalised cross-correlation of the
  ``b x b`` blocks (0..1; 0 for blocks equal up to gain and offset). Uniform blocks (variance below
  ``1e-6`` on the 0..1 scale) carry no information and cost 0.5.

Both give a volume ``(rows, W, D) float32`` in the layout of :func:`~.sgm.sgm_cost_volume`
(``INVALID_COST`` where ``x - d`` lies outside the image, plus the same proximity term
``w |d| / max(|dmin|, |dmax|)``), which :func:`~.sgm.semi_global_match` aggregates (or takes the winner
of). The loop runs over the disparities, each one a few whole-image array operations (NumPy or
CuPy, the module of the input); the per-image parts (census strings, block means and variances) are
computed once per image by :func:`prepare_costs` and shared by all strips of a strip-wise match.

References
----------
.. [1] R. Zabih, J. Woodfill, "Non-parametric local transforms for computing visual
   correspondence", ECCV 1994.
.. [2] H. Hirschmueller, D. Scharstein, "Evaluation of stereo matching costs on images with
   radiometric differences", IEEE TPAMI 31(9), 1582-1599 (2009).
"""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from .disparity import _box_valid
from .match_result import INVALID_COST

__all__ = ["census_transform", "hamming_distance", "prepare_costs", "cost_volume"]

_VAR_FLOOR = 1e-6


def census_transform(image, window: tuple[int, int] = (7, 9)):
    """Census bit strings: for each pixel, one bit per neighbour of the window, set where it is darker.

    Parameters
    ----------
    image : (H, W) float32
        NumPy or CuPy.
    window : (int, int)
        Window ``(wy, wx)`` [pixels], both odd, at most 64 pixels (63 bits: the centre is left out).
        Pixels beyond the image are edge-replicated.

    Returns
    -------
    (H, W) uint64
        Bit ``k`` (from the least significant) is ``neighbour_k < centre``, the neighbours in
        row-major order of the window, the last one first.
    """
    xp = get_array_module(image)
    wy, wx = (int(v) for v in window)
    H, W = image.shape
    hy, hx = wy // 2, wx // 2
    p = xp.pad(image, ((hy, hy), (hx, hx)), mode="edge")
    code = xp.zeros((H, W), dtype=np.uint64)
    one = np.uint64(1)
    for dy in range(wy):
        for dx in range(wx):
            if dy == hy and dx == hx:
                continue
            code <<= one
            code |= (p[dy : dy + H, dx : dx + W] < image).astype(np.uint64)
    return code


def hamming_distance(a, b):
    """Number of differing bits of two uint64 arrays (same shape), as uint8."""
    xp = get_array_module(a, b)
    x = xp.bitwise_xor(a, b)
    count = getattr(xp, "bitwise_count", None)
    if count is not None:
        return count(x).astype(np.uint8, copy=False)
    return _popcount_swar(x)


def _popcount_swar(x):
    """Set bits of each uint64 (SWAR, Hacker's Delight 5-1), for array modules without bitwise_count."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return ((x * np.uint64(0x0101010101010101)) >> np.uint64(56)).astype(np.uint8)


def prepare_costs(left, right, cost: str, block: int, census_window: tuple[int, int] = (7, 9)):
    """The per-image parts of a cost, computed once (see :func:`cost_volume`).

    Returns an opaque tuple: census strings of both images and their number of bits, or for ZNCC
    the edge-padded images and their block means and inverse standard deviations.
    """
    xp = get_array_module(left, right)
    if cost == "census":
        wy, wx = (int(v) for v in census_window)
        return (census_transform(left, census_window), census_transform(right, census_window), wy * wx - 1)
    h = block // 2
    Lp = xp.pad(left, h, mode="edge").astype(np.float32)
    Rp = xp.pad(right, h, mode="edge").astype(np.float32)
    n = np.float32(1.0 / (block * block))
    stats = []
    for img in (Lp, Rp):
        # block statistics in float64: the variance is a difference of two close sums
        f = img.astype(np.float64)
        mu = _box2(f, block) * float(n)
        var = _box2(f * f, block) * float(n) - mu * mu
        inv = xp.where(var > _VAR_FLOOR, 1.0 / xp.sqrt(xp.maximum(var, _VAR_FLOOR)), 0.0)
        stats.append((mu.astype(np.float32), inv.astype(np.float32)))
    return (Lp, Rp, stats)


def cost_volume(
    prepared,
    shape: tuple[int, int],
    cost: str,
    block: int,
    dmin: int,
    dmax: int,
    wprox: float,
    rows: tuple[int, int] | None = None,
):
    """``(R1 - R0, W, D) float32`` census or ZNCC cost of the rows ``rows`` (default all).

    Parameters
    ----------
    prepared : tuple
        :func:`prepare_costs` of the pair.
    shape : (int, int)
        ``(H, W)`` of the images.
    cost : {"census", "zncc"}
    block : int
        Block side ``b`` (odd) [pixels]: census distances are averaged over it, ZNCC is computed on it.
    dmin, dmax : int
        Search range [pixels], ``d = x_left - x_right``.
    wprox : float
        Weight of the proximity term (as block matching's).

    Returns
    -------
    (R1 - R0, W, D) float32
        Cost in 0..1 (plus the proximity term); :data:`INVALID_COST` where ``x - d`` is outside.
    """
    H, W = shape
    R0, R1 = (0, H) if rows is None else (int(rows[0]), int(rows[1]))
    xp = get_array_module(prepared[0])
    D = dmax - dmin + 1
    b, h = int(block), int(block) // 2
    dnorm = float(max(abs(dmin), abs(dmax))) or 1.0
    vol = xp.full((R1 - R0, W, D), INVALID_COST, dtype=np.float32)
    if cost == "census":
        cl, cr, nbits = prepared
        # census strings of the rows the blocks need, edge-replicated beyond the image
        ys = xp.clip(xp.arange(R0 - h, R1 + h), 0, H - 1)
        cl, cr = cl[ys], cr[ys]
    else:
        Lp, Rp, ((mul, invl), (mur, invr)) = prepared
        Lr, Rr = Lp[R0 : R1 + 2 * h], Rp[R0 : R1 + 2 * h]
        mul, invl, mur, invr = mul[R0:R1], invl[R0:R1], mur[R0:R1], invr[R0:R1]
        inv_n = np.float32(1.0 / (b * b))
    for i, d in enumerate(range(dmin, dmax + 1)):
        x0, x1 = max(0, d), min(W, W + d)
        if x1 <= x0:
            continue
        if cost == "census":
            ham = hamming_distance(cl[:, x0:x1], cr[:, x0 - d : x1 - d]).astype(np.float32)
            # columns beyond the overlap: edge-replicate the distances for the block sum
            ham = xp.pad(ham, ((0, 0), (h, h)), mode="edge")
            c = _box2(ham, b) * np.float32(1.0 / (b * b * nbits))
        else:
            prod = Lr[:, x0 : x1 + 2 * h] * Rr[:, x0 - d : x1 - d + 2 * h]
            cross = _box2(prod, b) * inv_n - mul[:, x0:x1] * mur[:, x0 - d : x1 - d]
            rho = xp.clip(cross * invl[:, x0:x1] * invr[:, x0 - d : x1 - d], -1, 1)
            flat = (invl[:, x0:x1] == 0) | (invr[:, x0 - d : x1 - d] == 0)
            c = xp.where(flat, np.float32(0.5), np.float32(0.5) * (1 - rho))
        vol[:, x0:x1, i] = c + np.float32(wprox * abs(d) / dnorm)
    return vol


def _box2(a, b: int):
    """``b x b`` box sum in 'valid' mode over both axes of a 2D array."""
    return _box_valid(_box_valid(a, b, axis=1), b, axis=0)
