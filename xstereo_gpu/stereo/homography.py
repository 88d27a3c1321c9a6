"""Homographies of view coordinates: mapping points, warping views, mapping results back.

Conventions
-----------
* Points are ``(M, 2) float64`` NumPy arrays of ``(x, y) = (column, row)`` in view pixels (pixel
  ``(i, j)`` is the point ``(j, i)``). They are few and live on the host; the views and the warps
  stay on the device of the views.
* A homography ``H (3, 3) float64`` maps original view coordinates ``(x, y, 1)`` to rectified ones
  (:func:`apply_homography`); ``np.linalg.inv(H)`` maps them back.
* Views are warped by inverse mapping (:func:`rectify`): each rectified pixel reads the original view
  at ``H^-1 (j, i, 1)`` (:func:`original_coordinates`), so the same grid also carries a disparity map
  of the rectified left view back onto the original one.

Which homographies rectify a pair is decided in :mod:`~.rectify`.
"""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module, scipy_module, to_host
from ..errors import InputError

__all__ = ["apply_homography", "original_coordinates", "rectify", "vertical_residual"]


def apply_homography(H, points) -> np.ndarray:
    """Map points through a homography.

    Parameters
    ----------
    H : (3, 3) float64
        The homography, e.g. original -> rectified view coordinates; ``np.linalg.inv(H)`` goes back.
    points : (M, 2) float64
        ``(x, y)`` [view pixels], NumPy or CuPy.

    Returns
    -------
    (M, 2) float64
        The mapped ``(x, y)`` [view pixels], NumPy.
    """
    H = np.asarray(H, dtype=np.float64)
    if H.shape != (3, 3):
        raise InputError("apply_homography.H", f"shape {H.shape}", "(3, 3)")
    p = np.asarray(to_host(points), dtype=np.float64).reshape(-1, 2)
    ph = np.concatenate([p, np.ones((len(p), 1))], axis=1) @ H.T
    return ph[:, :2] / ph[:, 2:3]


def vertical_residual(points_left, points_right, H_left, H_right) -> np.ndarray:
    """Vertical disparity of matched points after rectification.

    Parameters
    ----------
    points_left, points_right : (M, 2) float64
        Matched ``(x, y)`` in the original views [view pixels].
    H_left, H_right : (3, 3) float64
        Original -> rectified view coordinates.

    Returns
    -------
    (M,) float64
        ``y_l* - y_r*`` [view pixels]: 0 for pairs on one rectified row.
    """
    return apply_homography(H_left, points_left)[:, 1] - apply_homography(H_right, points_right)[:, 1]


def rectify(views, H_left, H_right, *, order: int = 3, cval: float = 0.0):
    """Warp both views with their homographies (inverse mapping, spline interpolation).

    Rectified pixel ``(i, j)`` of view ``k`` takes the value of the original view at
    ``H_k^-1 (j, i, 1)`` (:func:`original_coordinates`), interpolated with
    ``map_coordinates(order=order)``; points outside the original take ``cval``.

    Parameters
    ----------
    views : (2, H, W) float32
        Left and right views, NumPy or CuPy (real; warp amplitude and phase separately).
    H_left, H_right : (3, 3) float64
        Original -> rectified coordinates.
    order : int
        Spline order (3: cubic).
    cval : float
        Value outside the original field of view.

    Returns
    -------
    (2, H, W) float32
        Rectified views on the device of ``views``.
    """
    xp = get_array_module(views)
    shape = getattr(views, "shape", None)
    if shape is None or len(shape) != 3 or shape[0] != 2:
        raise InputError("rectify.views", f"shape {shape}", "(2, H, W): left and right views")
    if xp.iscomplexobj(views):
        raise InputError(
            "rectify.views", f"dtype {views.dtype}", "real views (warp amplitude and phase apart)"
        )
    ndi = scipy_module(views, "ndimage")
    out = []
    for k, Hk in enumerate((H_left, H_right)):
        coords = original_coordinates(Hk, shape[1:], like=views)
        img = views[k].astype(np.float32, copy=False)
        warped = ndi.map_coordinates(img, coords, order=order, mode="constant", cval=cval)
        out.append(warped.astype(np.float32))
    return xp.stack(out)


def original_coordinates(H, shape, *, like=None):
    """Original view coordinates ``(row, col)`` of every rectified pixel: ``H^-1 (j, i, 1)``.

    Parameters
    ----------
    H : (3, 3) float64
        Original -> rectified homography.
    shape : (int, int)
        ``(H, W)`` of the rectified grid [pixels].
    like : array, optional
        An array whose module (NumPy or CuPy) the result should use.

    Returns
    -------
    (2, H, W) float32
        ``[rows, cols]`` in the original view [pixels], ready for ``map_coordinates``. Applied to
        the left homography this maps a rectified left disparity map back onto the original left
        view.
    """
    xp = np if like is None else get_array_module(like)
    Hm = np.asarray(to_host(H), dtype=np.float64)
    if Hm.shape != (3, 3):
        raise InputError("original_coordinates.H", f"shape {Hm.shape}", "(3, 3)")
    Hi = np.linalg.inv(Hm)
    n_rows, n_cols = (int(v) for v in shape)
    yy, xx = xp.meshgrid(
        xp.arange(n_rows, dtype=np.float64), xp.arange(n_cols, dtype=np.float64), indexing="ij"
    )
    w = Hi[2, 0] * xx + Hi[2, 1] * yy + Hi[2, 2]
    x = (Hi[0, 0] * xx + Hi[0, 1] * yy + Hi[0, 2]) / w
    y = (Hi[1, 0] * xx + Hi[1, 1] * yy + Hi[1, 2]) / w
    return xp.stack([y, x]).astype(np.float32)
