"""Clean-up of disparity maps after the left-right check: speckles, holes (natural images, issue 10).

:func:`remove_speckles` is OpenCV's ``filterSpeckles`` rule (small connected regions of similar
disparity are mismatches); :func:`fill_holes` is the usual background fill of occlusions along
rows (Hirschmueller 2008, section 4.3). Both are graph or scan operations on a 2D map: they run on
the host (NumPy, SciPy) and return an array on the device of the input.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..backend import get_array_module, to_host

__all__ = ["remove_speckles", "fill_holes"]


def remove_speckles(disparity, max_size: int, max_diff: float = 2.0):
    """Invalidate the small connected regions of a disparity map.

    Two 4-neighbours belong to one region when both are finite and their disparities differ by at
    most ``max_diff``; regions of fewer than ``max_size`` pixels become NaN.

    Parameters
    ----------
    disparity : (H, W) float32
        NaN where invalid (NumPy or CuPy).
    max_size : int
        Regions smaller than this [pixels] are removed; 0 keeps all.
    max_diff : float
        Largest disparity step inside a region [pixels].

    Returns
    -------
    (H, W) float32
        A copy with the speckles set to NaN, on the device of ``disparity``.
    """
    xp = get_array_module(disparity)
    d = np.asarray(to_host(disparity), dtype=np.float32)
    if max_size <= 0 or d.size == 0:
        return xp.asarray(d.copy())
    H, W = d.shape
    ok = np.isfinite(d)
    idx = np.arange(H * W).reshape(H, W)
    with np.errstate(invalid="ignore"):
        right = ok[:, :-1] & ok[:, 1:] & (np.abs(d[:, :-1] - d[:, 1:]) <= max_diff)
        down = ok[:-1] & ok[1:] & (np.abs(d[:-1] - d[1:]) <= max_diff)
    rows = np.concatenate([idx[:, :-1][right], idx[:-1][down]])
    cols = np.concatenate([idx[:, 1:][right], idx[1:][down]])
    graph = coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(H * W, H * W))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    out = d.copy()
    out[(sizes[labels] < max_size).reshape(H, W)] = np.nan
    return xp.asarray(out)


def fill_holes(disparity):
    """Fill invalid pixels along rows with the farther of their nearest valid neighbours.

    Each NaN pixel takes the smaller disparity (the background, for ``d = x_left - x_right`` on a
    camera pair) of the nearest finite pixels to its left and right in its row (the one that exists
    at a row end); the filled pixels whose 3 x 3 neighbourhood is then all finite take its median.
    Rows without any finite pixel stay NaN.

    Parameters
    ----------
    disparity : (H, W) float32
        NaN where invalid (NumPy or CuPy).

    Returns
    -------
    (H, W) float32
        The filled map, on the device of ``disparity``.
    """
    xp = get_array_module(disparity)
    d = np.asarray(to_host(disparity), dtype=np.float32)
    H, W = d.shape
    ok = np.isfinite(d)
    if ok.all() or not ok.any():
        return xp.asarray(d.copy())
    cols = np.arange(W)
    # index of the nearest valid pixel at or before / at or after each column
    left = np.maximum.accumulate(np.where(ok, cols, -1), axis=1)
    right = np.minimum.accumulate(np.where(ok, cols, W)[:, ::-1], axis=1)[:, ::-1]
    rr = np.arange(H)[:, None]
    dl = np.where(left >= 0, d[rr, np.clip(left, 0, W - 1)], np.inf)
    dr = np.where(right < W, d[rr, np.clip(right, 0, W - 1)], np.inf)
    fill = np.minimum(dl, dr)
    out = np.where(ok, d, fill)
    out[~np.isfinite(out)] = np.nan
    filled = np.isfinite(out)
    holes = ~ok & ndimage.minimum_filter(filled, size=3, mode="nearest")  # all 9 neighbours finite
    med = ndimage.median_filter(np.where(filled, out, 0), size=3, mode="nearest")
    out[holes] = med[holes]
    return xp.asarray(out.astype(np.float32))
