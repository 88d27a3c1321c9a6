"""Rectification of a stereo pair of parallel projections: correspondences, ``F``, homographies, warp.

Paper (Methods, phase cross): "sixteen edge points are manually selected [...] the fundamental matrix
between both views is computed employing the Normalized Eight-Point Algorithm [Hartley 1997]. The
images are then re-projected, in order to make all the matching points lay in the same horizontal
lines [Papadimitriou & Dennis 1996]."

:func:`rectify_pair` chains the steps, each in its own module: automatic correspondences
(:func:`~.correspondence.epipolar_matches`) unless the user gives the point pairs, the fundamental
matrix (:func:`~.fundamental.fundamental_matrix`), the rectifying homographies (this module's
:func:`rectifying_homographies`) and the warp (:func:`~.homography.rectify`).

Conventions
-----------
* Points are ``(M, 2) float64`` NumPy arrays of ``(x, y) = (column, row)`` in view pixels (pixel
  ``(i, j)`` is the point ``(j, i)``). They are few and live on the host; the views and the warps
  stay on the device of the views.
* ``F`` maps left points to right epipolar lines: ``[x_r, y_r, 1] F [x_l, y_l, 1]^T = 0``.
* A homography ``H (3, 3) float64`` maps original view coordinates to rectified ones.

Our views are parallel projections, so the true epipolar geometry is *affine* (epipoles at infinity,
``a x_r + b y_r + c x_l + d y_l + e = 0``) and :func:`rectifying_homographies` builds affine
rectifications from an affine ``F``: the left view is only *rotated* about its centre (until its
epipolar lines are horizontal; the identity when they already are), and the right view gets the
*similarity* (rotation, uniform scale, translation) that puts each epipolar line on the row of its
left partner. Nothing shears or stretches the x axis: with a left view that already has horizontal
epipolar lines (the lab frame of DESIGN.md section 5) and a right view that differs from its ideal by
a rotation, a shift and a scale, the rectified disparity ``x_l* - x_r*`` is the disparity of eq. (1)
up to a constant offset, which is fixed by keeping the right view's centre column in place (a
horizontal shift of one view cannot be told from a depth offset). With ``rigid=True`` (the default of
:func:`rectify_pair`) the right view is only rotated and shifted: both views have the same pixel
``lambda D / (N p)``, and a free scale only absorbs matching noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import get_array_module, to_host
from ..checks import check_points
from ..errors import InputError
from .correspondence import epipolar_matches
from .fundamental import fundamental_matrix, hartley_normaliser, rms_epipolar_distance
from .homography import rectify, vertical_residual

__all__ = ["RectifyResult", "rectify_pair", "rectifying_homographies"]


@dataclass
class RectifyResult:
    """Rectified views and how they were made.

    Attributes
    ----------
    views : (2, H, W) float32
        Rectified left and right views, on the device of the input (zero outside the warped field).
    H_left, H_right : (3, 3) float64
        Homographies from original to rectified view coordinates ``(x, y, 1)`` [view pixels].
    F : (3, 3) float64
        Fundamental matrix used (unit Frobenius norm), ``x_r^T F x_l = 0``.
    points_left, points_right : (M, 2) float64
        Matched points ``(x, y)`` in the original views [view pixels].
    residual : (M,) float64
        Vertical disparity ``y_l* - y_r*`` of the matched points after rectification [view pixels].
    """

    views: Any
    H_left: np.ndarray
    H_right: np.ndarray
    F: np.ndarray
    points_left: np.ndarray
    points_right: np.ndarray
    residual: np.ndarray


def rectify_pair(
    views,
    points=None,
    *,
    affine: bool = True,
    left_horizontal: bool = True,
    rigid: bool = True,
    search: tuple[int, int] = (-40, 40),
    vertical: int = 8,
    max_rotation_deg: float = 4.0,
    min_matches: int = 8,
    min_match_fraction: float = 0.25,
    min_verify_ncc: float = 0.55,
    order: int = 3,
) -> RectifyResult:
    """Rectify a stereo pair: correspondences, ``F``, homographies, warped views.

    Parameters
    ----------
    views : (2, H, W) float32
        Left and right views (real), NumPy or CuPy.
    points : tuple of two (M, 2) float64, optional
        ``(points_left, points_right)`` ``(x, y)`` [view pixels] given by the user (the paper
        picked 16 edge points by hand). Default: automatic correspondences,
        :func:`~.correspondence.epipolar_matches` (NCC surfaces of structured
        patches, a search of the rotation and vertical shift by epipolar support, guided matching
        and a trimmed fit; robust on views with few corners and unequal blur).
    affine : bool
        Fit the affine ``F`` (default; exact for parallel projections) instead of the general
        normalised eight-point ``F`` (which is then required to be nearly affine).
    left_horizontal : bool
        Keep the left view as it is (``H_left`` = identity) and put the whole correction on the
        right view (default; see :func:`~.fundamental.fundamental_matrix`). False: the full affine (or
        eight-point) fit, which may rotate both views.
    rigid : bool
        With ``left_horizontal``: the right view is only rotated and shifted (unit scale: both views
        have the pixel ``lambda D / (N p)``), the few-parameter model of parallel projections
        (default). False: a free scale as well.
    search : (int, int)
        Horizontal disparity range ``x_left - x_right`` for feature matching [view pixels].
    vertical : int
        Largest vertical offset for feature matching [view pixels].
    max_rotation_deg : float
        Largest rotation of the right view searched for correspondences [deg].
    min_matches : int
        Fewest automatic correspondences accepted (at least the fit's minimum: 4 affine, 8 general).
    min_match_fraction : float
        Fewest automatic correspondences as a fraction of the structured points tried
        (views of one scene: 0.5 to 1).
    min_verify_ncc : float
        Smallest median NCC of the automatic matches over patches twice as large (``verify_ncc``
        of :func:`~.correspondence.epipolar_matches`; views of one scene: 0.7 to 1, unrelated views
        below 0.4).
    order : int
        Spline order of the warp.

    Returns
    -------
    RectifyResult
        Rectified views, homographies, ``F``, the points and their vertical residual [view pixels].

    Raises
    ------
    InputError
        Too few automatic correspondences (views of different scenes, a search range that misses
        the disparities, views without two-dimensional structure), or a degenerate fit.
    """
    xp = get_array_module(views)
    shape = getattr(views, "shape", None)
    if shape is None or len(shape) != 3 or shape[0] != 2:
        raise InputError("rectify_pair.views", f"shape {shape}", "(2, H, W): left and right views")
    rigid = rigid and left_horizontal
    if points is None:
        m = epipolar_matches(
            views[0], views[1], search=search, vertical=vertical, max_rotation_deg=max_rotation_deg
        )
        pl, pr = m["points_left"], m["points_right"]
        need = max(int(min_matches), int(np.ceil(min_match_fraction * m["points_tried"])))
        if len(pl) >= need and not m["verify_ncc"] >= min_verify_ncc:
            raise InputError(
                "rectify_pair.views",
                f"{len(pl)} feature matches whose larger patches correlate at "
                f"{m['verify_ncc']:.2f} (median NCC)",
                f"at least {min_verify_ncc}: two views of one scene (give the point pairs, "
                "points=..., or check the search range)",
            )
        need = max(need, 4 if (affine or left_horizontal) else 8)
        if len(pl) < need:
            raise InputError(
                "rectify_pair.views",
                f"{len(pl)} feature matches (search {search}, vertical {vertical})",
                f"at least {need}: give the point pairs (points=...) or widen the search",
            )
    else:
        if len(points) != 2:
            raise InputError("rectify_pair.points", f"{len(points)} arrays", "(points_left, points_right)")
        pl, pr = points
    F = fundamental_matrix(pl, pr, affine=affine, left_horizontal=left_horizontal, rigid=rigid)
    pl = np.asarray(to_host(pl), dtype=np.float64)
    pr = np.asarray(to_host(pr), dtype=np.float64)
    Hl, Hr = rectifying_homographies(F, pl, pr, shape[1:])
    out = rectify(xp.asarray(views), Hl, Hr, order=order)
    return RectifyResult(out, Hl, Hr, F, pl, pr, vertical_residual(pl, pr, Hl, Hr))


def rectifying_homographies(F, points_left, points_right, shape, *, max_projective: float = 0.5):
    """Affine rectifying homographies for a pair of parallel projections.

    ``F`` must be affine (epipoles at infinity) or nearly so: its affine part (the upper-left 2 x 2
    block set to zero in Hartley-normalised coordinates of the points, which removes the noise that
    a general eight-point ``F`` picks up there) is used, and it must keep the points within
    ``max_projective`` pixels (rms, symmetric epipolar distance) of what ``F`` itself achieves.
    The affine constraint
    ``a x_r + b y_r + c x_l + d y_l + e = 0`` gives:

    * ``H_left``: the rotation about the view centre ``(W // 2, H // 2)`` that makes the left
      epipolar lines (normal ``(c, d)``) horizontal; the identity when they already are.
    * ``H_right``: the similarity whose row coordinate is ``y_l*`` of the partner, i.e.
      ``y_r* = -(a x_r + b y_r + e) / |(c, d)| + const`` (the epipolar constraint), and whose column
      coordinate is the matching rotation with the same scale, keeping the centre column in place.

    Neither homography shears or stretches x, so disparities keep the scale of the views and eq. (1)
    still holds (with ``x`` measured in the rectified left view, which is a rotation of the
    original about its centre).

    Parameters
    ----------
    F : (3, 3) float64
        Fundamental matrix, ``x_r^T F x_l = 0``.
    points_left, points_right : (M, 2) float64
        The correspondences behind ``F`` ``(x, y)`` [view pixels] (for the normalisation test).
    shape : (int, int)
        ``(H, W)`` of the views [pixels].
    max_projective : float
        Largest rms increase of the epipolar distance of the points caused by dropping the
        projective part of ``F`` [view pixels].

    Returns
    -------
    H_left, H_right : (3, 3) float64
        Original -> rectified view coordinates.

    Raises
    ------
    InputError
        ``F`` clearly projective (finite epipoles: the views are not parallel projections) or with
        no epipolar direction.
    """
    F = np.asarray(to_host(F), dtype=np.float64)
    if F.shape != (3, 3) or not np.isfinite(F).all():
        raise InputError("rectifying_homographies.F", f"shape {F.shape}", "a finite (3, 3) matrix")
    pl = check_points(
        np.asarray(to_host(points_left)),
        "rectifying_homographies.points_left",
        columns=2,
        minimum=1,
        names="x, y",
    )
    pr = check_points(
        np.asarray(to_host(points_right)),
        "rectifying_homographies.points_right",
        columns=2,
        minimum=1,
        names="x, y",
    )
    if len(shape) != 2:
        raise InputError("rectifying_homographies.shape", repr(shape), "(H, W)")
    H, W = (int(v) for v in shape)
    Tl = hartley_normaliser(pl, "rectifying_homographies.points_left") if len(pl) > 2 else np.eye(3)
    Tr = hartley_normaliser(pr, "rectifying_homographies.points_right") if len(pr) > 2 else np.eye(3)
    Fn = np.linalg.inv(Tr).T @ F @ np.linalg.inv(Tl)
    norm = np.linalg.norm(Fn)
    if norm == 0:
        raise InputError("rectifying_homographies.F", "a zero matrix", "a fundamental matrix")
    Fn[:2, :2] = 0
    Fa = Tr.T @ Fn @ Tl
    extra = rms_epipolar_distance(Fa, pl, pr) - rms_epipolar_distance(F, pl, pr)
    if not extra <= max_projective:
        raise InputError(
            "rectifying_homographies.F",
            f"a projective F (its affine part moves the points {extra:.2f} px off their lines)",
            f"an affine F (<= {max_projective} px): views that are parallel projections; "
            "fit it with fundamental_matrix(..., affine=True)",
        )
    a, b, e = Fa[0, 2], Fa[1, 2], Fa[2, 2]
    c, d = Fa[2, 0], Fa[2, 1]
    nl, nr = np.hypot(c, d), np.hypot(a, b)
    if nl == 0 or nr == 0:
        raise InputError(
            "rectifying_homographies.F", "no epipolar direction in one view", "an affine F of rank 2"
        )
    sigma = 1.0 if d >= 0 else -1.0
    ul = sigma * np.array([c, d]) / nl  # unit normal of the left epipolar lines
    cx, cy = float(W // 2), float(H // 2)
    Rl = np.array([[ul[1], -ul[0]], [ul[0], ul[1]]])  # rotation: ul -> (0, 1)
    H_left = np.eye(3)
    H_left[:2, :2] = Rl
    H_left[:2, 2] = np.array([cx, cy]) - Rl @ np.array([cx, cy])
    # y_l* = ul . (p - c0) + cy = sigma (c x + d y)/nl - ul . c0 + cy; on the epipolar constraint
    # c x + d y = -(a x_r + b y_r + e), so y_r* = v . p_r + t with:
    v = -sigma * np.array([a, b]) / nl
    t = -sigma * e / nl - ul @ np.array([cx, cy]) + cy
    Rr = np.array([[v[1], -v[0]], [v[0], v[1]]])  # similarity with scale |v|
    H_right = np.eye(3)
    H_right[:2, :2] = Rr
    H_right[1, 2] = t
    H_right[0, 2] = cx - Rr[0] @ np.array([cx, cy])  # the centre column stays in place
    return H_left, H_right
