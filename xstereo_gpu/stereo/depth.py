"""From disparity maps to depth and points: left-right consistency, eq. (1), coordinate correction.

Paper (Methods): "The 3D information is extracted from the disparity maps by employing equation (1)
[...]. For matching the information of the two disparities, a coordinate correction is required.
Hence, the x_1 and x_2 coordinates of the left and right disparity maps, respectively, are converted
to the object coordinate x [...] x = x_k - z tan(theta_k)". Then "the 3D points extracted from each
disparity map whose coordinates do not have a match for the second map are discarded".

Grids: a disparity map lives on the matching grid (upsampling ``u``). Matching-grid pixel ``(r, c)``
is at view coordinates ``((r + 0.5)/u - 0.5, (c + 0.5)/u - 0.5)``; view pixel ``(i, j)`` is at
``y = (i - N//2) Dr``, ``x = (j - N//2) Dr``; a disparity of ``d`` matching-grid pixels is ``d / u``
view pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import get_array_module
from ..checks import check_positive
from ..errors import InputError
from ..geometry import StereoGeometry

__all__ = ["CloudPoints", "lr_consistency", "points_from_disparity", "depth_map"]


@dataclass
class CloudPoints:
    """Points computed from the two disparity maps (left-map points first, then right-map points).

    Attributes
    ----------
    points_nm : (M, 3) float64
        Object coordinates ``x, y, z`` [nm]: ``x`` after the coordinate correction, ``y`` from the
        view row, ``z`` by eq. (1), all measured from the view-grid centre / membrane mid-plane.
    confidence : (M,) float32
        Matching confidence of each point (1 where none was given).
    view : (M,) int8
        The map a point came from: 0 = left, 1 = right.
    pixel : (M, 2) int64
        Row and column of the point on the matching grid.
    """

    points_nm: Any
    confidence: Any
    view: Any
    pixel: Any

    def __len__(self) -> int:
        return int(self.points_nm.shape[0])


def lr_consistency(disparity_left, disparity_right, *, tolerance: float = 1.0):
    """Left-right consistency check of two disparity maps.

    A left pixel ``(y, x)`` with disparity ``d_L`` is kept when the right map at
    ``(y, round(x - d_L))`` holds a finite ``d_R`` with ``|d_L - d_R| <= tolerance``; a right pixel
    ``(y, x)`` with ``d_R`` is kept when the left map at ``(y, round(x + d_R))`` agrees likewise.
    Pixels whose partner falls outside the image are dropped (occlusions, borders).

    Parameters
    ----------
    disparity_left, disparity_right : (H, W) float32
        Disparity maps [matching-grid pixels], NaN where invalid, same sign convention
        (``d = x_left - x_right``).
    tolerance : float
        Largest accepted disagreement [matching-grid pixels].

    Returns
    -------
    left, right : (H, W) float32
        Copies of the maps with inconsistent pixels set to NaN.
    """
    xp = get_array_module(disparity_left, disparity_right)
    dl = _check_map(xp, disparity_left, "lr_consistency.disparity_left")
    dr = _check_map(xp, disparity_right, "lr_consistency.disparity_right")
    if dl.shape != dr.shape:
        raise InputError(
            "lr_consistency.disparity_right", f"shape {dr.shape}", f"the left map's shape {dl.shape}"
        )
    if not tolerance >= 0:
        raise InputError("lr_consistency.tolerance", repr(tolerance), "a non-negative number of pixels")
    return _check_against(xp, dl, dr, -1, tolerance), _check_against(xp, dr, dl, +1, tolerance)


def points_from_disparity(
    disparity_left,
    disparity_right,
    geometry: StereoGeometry,
    *,
    upsample: int,
    view_shape: tuple[int, int],
    confidence_left=None,
    confidence_right=None,
) -> CloudPoints:
    """3D points [nm] from the left and right disparity maps (eq. 1 and the coordinate correction).

    Each finite pixel ``(r, c)`` of map ``k`` (0 = left, 1 = right) gives one point: view coordinates
    ``rv = (r + 0.5)/u - 0.5``, ``cv = (c + 0.5)/u - 0.5``; ``x_k = (cv - W//2) Dr``,
    ``y = (rv - H//2) Dr``; ``z = d / u * Dr / (tan t1 + tan t2)`` (eq. 1);
    ``x = x_k - z tan a_k`` with ``a_left = +t1``, ``a_right = -t2``.

    Parameters
    ----------
    disparity_left, disparity_right : (uH, uW) float32
        Disparity maps [matching-grid pixels], NaN where invalid (usually after
        :func:`lr_consistency`). Either may be ``None`` to use one map only.
    geometry : StereoGeometry
        View pixel ``Dr`` and beam angles.
    upsample : int
        Factor ``u`` between view pixels and matching-grid pixels.
    view_shape : (int, int)
        ``(H, W)`` of the views [view pixels]; the maps must be ``(u H, u W)``.
    confidence_left, confidence_right : (uH, uW) float32, optional
        Per-pixel confidences carried into the points.

    Returns
    -------
    CloudPoints
        On the device of the maps; left-map points first.
    """
    maps = [m for m in (disparity_left, disparity_right) if m is not None]
    if not maps:
        raise InputError("points_from_disparity", "no disparity map", "a left and/or a right map")
    xp = get_array_module(*maps)
    u = int(check_positive("points_from_disparity.upsample", upsample, integer=True))
    if len(view_shape) != 2 or min(int(s) for s in view_shape) < 1:
        raise InputError(
            "points_from_disparity.view_shape", repr(view_shape), "(H, W) of the views in pixels"
        )
    nh, nw = (int(s) for s in view_shape)
    dr_nm = geometry.pixel_size_m * 1e9
    pts, conf, view, pix = [], [], [], []
    for k, (dmap, cmap) in enumerate(
        ((disparity_left, confidence_left), (disparity_right, confidence_right))
    ):
        if dmap is None:
            continue
        name = ("disparity_left", "disparity_right")[k]
        dmap = _check_map(xp, dmap, f"points_from_disparity.{name}")
        if dmap.shape != (u * nh, u * nw):
            raise InputError(
                f"points_from_disparity.{name}",
                f"shape {tuple(dmap.shape)}",
                f"(upsample * H, upsample * W) = {(u * nh, u * nw)}",
            )
        r, c = xp.nonzero(xp.isfinite(dmap))
        d = dmap[r, c].astype(np.float64)
        rv = (r + 0.5) / u - 0.5
        cv = (c + 0.5) / u - 0.5
        xk = (cv - nw // 2) * dr_nm
        y = (rv - nh // 2) * dr_nm
        z = geometry.depth(d / u) * 1e9
        x = geometry.object_x(xk, z, k)
        pts.append(xp.stack([x, y, z], axis=1).astype(np.float64))
        if cmap is None:
            conf.append(xp.ones(r.shape[0], dtype=np.float32))
        else:
            if tuple(cmap.shape) != tuple(dmap.shape):
                raise InputError(
                    f"points_from_disparity.confidence_{('left', 'right')[k]}",
                    f"shape {tuple(cmap.shape)}",
                    f"the disparity map's shape {tuple(dmap.shape)}",
                )
            conf.append(xp.asarray(cmap)[r, c].astype(np.float32))
        view.append(xp.full(r.shape[0], k, dtype=np.int8))
        pix.append(xp.stack([r, c], axis=1).astype(np.int64))
    return CloudPoints(
        xp.concatenate(pts, axis=0), xp.concatenate(conf), xp.concatenate(view), xp.concatenate(pix, axis=0)
    )


def depth_map(disparity_left, geometry: StereoGeometry, *, upsample: int):
    """Depth by eq. (1) on the matching grid.

    Parameters
    ----------
    disparity_left : (H, W) float32
        Disparity [matching-grid pixels], NaN where invalid.
    geometry : StereoGeometry
        View pixel ``Dr`` and beam angles.
    upsample : int
        Factor ``u`` between view pixels and matching-grid pixels.

    Returns
    -------
    (H, W) float32
        ``z = (d / u) Dr / (tan t1 + tan t2)`` [nm]; NaN where the disparity is NaN.
    """
    xp = get_array_module(disparity_left)
    d = _check_map(xp, disparity_left, "depth_map.disparity_left")
    u = int(check_positive("depth_map.upsample", upsample, integer=True))
    return (d * np.float32(geometry.depth(1.0 / u) * 1e9)).astype(np.float32)


# --------------------------------------------------------------------------------------------- #
# internals


def _check_map(xp, m, where: str):
    if getattr(m, "ndim", None) != 2:
        raise InputError(
            where, f"shape {getattr(m, 'shape', type(m).__name__)}", "a 2-D (H, W) disparity map"
        )
    if xp.iscomplexobj(m):
        raise InputError(where, f"dtype {m.dtype}", "a real disparity map")
    return xp.asarray(m).astype(np.float32, copy=False)


def _check_against(xp, d, other, sign: int, tol: float):
    """``d`` with NaN where ``other`` at column ``x + sign*d`` disagrees (or is missing)."""
    H, W = d.shape
    finite = xp.isfinite(d)
    cols = xp.arange(W, dtype=np.float32)[None, :] + sign * xp.where(finite, d, 0)
    j = xp.rint(cols)
    inside = finite & (j >= 0) & (j <= W - 1)
    j = xp.clip(j, 0, W - 1).astype(np.int64)
    partner = xp.take_along_axis(other, j, axis=1)
    with np.errstate(invalid="ignore"):
        ok = inside & xp.isfinite(partner) & (xp.abs(d - partner) <= tol)
    return xp.where(ok, d, np.float32(np.nan)).astype(np.float32)
