"""High-dynamic-range merge of several exposures of the same diffraction pattern.

The paper's Methods: "the central part of the short acquisition pattern is recombined with the
higher frequencies of the one with large integration time, using a Gaussian filter (sigma = 2) on
the edges to smooth the transition. A ratio, extracted from both corresponding non-saturated
regions, is applied to appropriately rescale the intensity values."

:func:`merge_exposures` does this for ``E >= 1`` exposures, from the longest down:

1. The *replaced region* of the current (longer) result is where it has no usable data (saturated,
   or masked for another reason) but the shorter exposure has.
2. The *seam* is the edge of that region dilated by ``dilate`` pixels (a disc), so that the
   long exposure's pixels just below saturation (whose Poisson draws are truncated by the
   clipping) are not used either. The shorter exposure's weight is that dilated region smoothed by
   a Gaussian of ``sigma`` pixels, forced to 1 inside the replaced region and to 0 where the
   shorter exposure has no data.
3. The intensity ratio (longer / shorter) is measured, not assumed from the integration times, as
   ``sum(long) / sum(short)`` over the pixels valid in both and outside the dilated region (the
   maximum-likelihood ratio of two Poisson images of the same pattern). When no such pixel holds
   counts the ratio of the integration times is used.
4. ``merged = (1 - w) * long + w * ratio * short``: photons of the longest exposure.

Works on NumPy and CuPy arrays (cupyx.scipy.ndimage on the GPU) with leading batch axes, e.g. the
two views ``(2, E, N, N)``; no host synchronisation.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..backend import get_array_module, scipy_module, to_host
from ..checks import check_positive
from ..errors import InputError

__all__ = ["HDRMerge", "merge_exposures"]


class HDRMerge(NamedTuple):
    """Result of :func:`merge_exposures` (arrays on the input's device).

    Attributes
    ----------
    intensity : (..., N, N) float32
        Merged pattern in counts of the longest exposure; 0 where invalid.
    valid : (..., N, N) bool
        Pixels with usable data in at least one exposure.
    ratios : (..., E) float64
        Factor bringing each exposure (input order) to the units of the longest one (1 for it):
        the measured intensity ratio; compare with ``time_ratios``.
    time_ratios : (E,) float64
        ``t_longest / t_e``: the ratios the integration times alone would give.
    weights : (..., E, N, N) float32
        Weight of each exposure (input order) in every merged pixel; they sum to 1 on valid
        pixels, and are 0 wherever that exposure is invalid (e.g. saturated).
    """

    intensity: object
    valid: object
    ratios: object
    time_ratios: np.ndarray
    weights: object


def merge_exposures(patterns, valid, times_s, *, sigma: float = 2.0, dilate: int = 3) -> HDRMerge:
    """Merge exposures of one diffraction pattern into a high-dynamic-range pattern.

    Parameters
    ----------
    patterns : (..., E, N, N) float32
        The same crop in each exposure  [counts]; any leading axes (e.g. views) are batched.
    valid : (..., E, N, N) bool or uint32
        Usable pixels: bool True = usable, or CXI mask bits (0 = usable; 0x2 = saturated, ...).
        Saturated pixels must be invalid here; they are never used.
    times_s : (E,) float
        Integration time of each exposure  [s] (any order; only their order and the fallback
        ratio use them).
    sigma : float
        Gaussian smoothing of the seam  [pixels] (paper: 2).
    dilate : int
        Radius of the disc by which the replaced region is dilated before smoothing  [pixels];
        3 (about 1.5 sigma) keeps the shorter exposure's weight continuous at the region's edge.

    Returns
    -------
    HDRMerge
        ``intensity``, ``valid``, ``ratios``, ``time_ratios``, ``weights``.
    """
    xp = get_array_module(patterns)
    p = xp.asarray(patterns)
    if p.ndim < 3 or p.shape[-1] < 1 or p.shape[-2] < 1:
        raise InputError("merge_exposures.patterns", f"shape {tuple(p.shape)}", "(..., E, N, N) exposures")
    if not (np.issubdtype(p.dtype, np.floating) or np.issubdtype(p.dtype, np.integer)):
        raise InputError("merge_exposures.patterns", f"dtype {p.dtype}", "real intensities")
    v = xp.asarray(valid)
    if v.shape != p.shape:
        raise InputError(
            "merge_exposures.valid", f"shape {tuple(v.shape)}", f"the patterns' shape {tuple(p.shape)}"
        )
    if v.dtype == bool:
        ok = v
    elif np.issubdtype(v.dtype, np.integer):
        ok = v == 0
    else:
        raise InputError("merge_exposures.valid", f"dtype {v.dtype}", "bool (True = usable) or CXI mask bits")
    e = p.shape[-3]
    try:
        t = np.asarray(to_host(times_s), dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise InputError("merge_exposures.times_s", repr(times_s), "integration times [s]") from None
    if t.shape != (e,):
        raise InputError(
            "merge_exposures.times_s",
            f"{t.size} times {t.tolist()!r}",
            f"{e} integration times [s], one per exposure",
        )
    if not np.all(np.isfinite(t) & (t > 0)):
        raise InputError(
            "merge_exposures.times_s", f"{t.tolist()!r}", "positive finite integration times [s]"
        )
    check_positive("merge_exposures.sigma", sigma, expected="a positive finite width [pixels]")
    dilate = int(
        check_positive(
            "merge_exposures.dilate",
            dilate,
            integer=True,
            allow_zero=True,
            expected="a non-negative integer [pixels]",
        )
    )

    ndi = scipy_module(xp, "ndimage")
    batch = p.shape[:-3]
    nb = len(batch)
    order = np.argsort(-t, kind="stable")  # longest first
    longest = int(order[0])
    time_ratios = t[longest] / t

    data = xp.where(ok, p.astype(xp.float32), np.float32(0))
    merged = data[..., longest, :, :]
    mvalid = ok[..., longest, :, :]
    ratios = [None] * e
    ratios[longest] = xp.ones(batch, dtype=xp.float64)
    weights = [None] * e
    weights[longest] = mvalid.astype(xp.float32)

    r = np.arange(-dilate, dilate + 1)
    disc = (r[:, None] ** 2 + r[None, :] ** 2) <= dilate * dilate
    structure = xp.asarray(disc.reshape((1,) * nb + disc.shape))
    for idx in order[1:]:
        idx = int(idx)
        short = data[..., idx, :, :]
        svalid = ok[..., idx, :, :]
        replaced = svalid & ~mvalid
        grown = ndi.binary_dilation(replaced, structure=structure) if dilate > 0 else replaced
        # ratio from pixels valid in both and away from the seam (no truncated Poisson draws)
        both = mvalid & svalid & ~grown
        s_long = xp.sum(xp.where(both, merged, 0).astype(xp.float64), axis=(-2, -1))
        s_short = xp.sum(xp.where(both, short, 0).astype(xp.float64), axis=(-2, -1))
        fallback = float(t[longest] / t[idx])
        ratio = xp.where((s_short > 0) & (s_long > 0), s_long / xp.where(s_short > 0, s_short, 1.0), fallback)
        w = ndi.gaussian_filter1d(grown.astype(xp.float32), float(sigma), axis=-1, mode="nearest")
        w = ndi.gaussian_filter1d(w, float(sigma), axis=-2, mode="nearest")
        w = xp.clip(w, 0, 1)
        w = xp.where(replaced, np.float32(1), w)
        w = xp.where(svalid, w, np.float32(0)).astype(xp.float32)
        scaled = (short * ratio[..., None, None]).astype(xp.float32)
        merged = ((1 - w) * merged + w * scaled).astype(xp.float32)
        # earlier (longer) exposures' weights shrink by (1 - w)
        for j in range(e):
            if weights[j] is not None:
                weights[j] = (weights[j] * (1 - w)).astype(xp.float32)
        weights[idx] = w
        ratios[idx] = ratio
        mvalid = mvalid | svalid
    merged = xp.where(mvalid, merged, np.float32(0)).astype(xp.float32)
    return HDRMerge(
        intensity=merged,
        valid=mvalid,
        ratios=xp.stack(ratios, axis=-1),
        time_ratios=time_ratios,
        weights=xp.stack(weights, axis=-3),
    )
