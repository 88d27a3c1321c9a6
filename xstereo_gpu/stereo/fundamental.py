"""The fundamental matrix of a stereo pair from point correspondences.

Paper (Methods, phase cross): "the fundamental matrix between both views is computed employing the
Normalized Eight-Point Algorithm [Hartley 1997]".

Conventions
-----------
* Points are ``(M, 2) float64`` NumPy arrays of ``(x, y) = (column, row)`` in view pixels.
* ``F (3, 3) float64`` maps left points to right epipolar lines: ``[x_r, y_r, 1] F [x_l, y_l, 1]^T = 0``.

Our views are parallel projections (CDI reconstructions are projections of the object along each
beam), so the true epipolar geometry is *affine*: the epipoles are at infinity and ``F`` has a zero
upper-left 2 x 2 block, ``a x_r + b y_r + c x_l + d y_l + e = 0``. :func:`fundamental_matrix` fits
either the general ``F`` (normalised eight-point) or the affine one (total least squares, Hartley &
Zisserman, Multiple View Geometry, 2nd ed., algorithm 14.1), or the affine one with horizontal left
epipolar lines, the right view rotated, shifted and scaled (least squares) or only rotated and
shifted (:func:`fit_rigid`: both views have the same pixel ``lambda D / (N p)``). All fits work in
Hartley's normalised coordinates (:func:`hartley_normaliser`); :func:`rms_epipolar_distance`
measures how well an ``F`` explains the points.
"""

from __future__ import annotations

import numpy as np

from ..backend import to_host
from ..checks import check_points
from ..errors import InputError
from .homography import apply_homography

__all__ = ["fit_rigid", "fundamental_matrix", "hartley_normaliser", "rms_epipolar_distance"]


def fundamental_matrix(
    points_left, points_right, *, affine: bool = False, left_horizontal: bool = False, rigid: bool = False
) -> np.ndarray:
    """Fundamental matrix from point correspondences (normalised eight-point algorithm).

    General ``F`` (Hartley 1997): each point set is translated to its centroid and scaled to a
    mean distance of ``sqrt(2)`` from it; the linear system ``x_r^T F x_l = 0`` is solved by SVD
    (the right singular vector of the smallest singular value); rank 2 is enforced by zeroing the
    smallest singular value of ``F``; ``F`` is de-normalised, ``T_r^T F T_l``.

    Affine ``F`` (``affine=True``; parallel projections, epipoles at infinity): the plane
    ``a x_r + b y_r + c x_l + d y_l + e = 0`` closest (orthogonally) to the 4-D points
    ``(x_r, y_r, x_l, y_l)`` after the same normalisation (total least squares, Hartley &
    Zisserman algorithm 14.1); needs 4 points, and rank 2 holds by construction.

    Affine ``F`` with horizontal left epipolar lines (``left_horizontal=True``, implies affine):
    the left view is the reference frame (its x axis is the disparity direction, as in the lab
    frame of DESIGN.md section 5) and only the right view is taken to be rotated, shifted or scaled:
    ``y_l = a x_r + b y_r + e`` by least squares (``c = 0``). This is well conditioned even when the
    disparity barely varies over the scene, where the full affine fit cannot tell a rotation of one
    view from a common rotation of both.

    Parameters
    ----------
    points_left, points_right : (M, 2) float64
        Corresponding ``(x, y)`` [view pixels], NumPy or CuPy; ``M >= 8`` (``>= 4`` when ``affine``).
    affine : bool
        Fit the affine form (zero upper-left 2 x 2 block).
    left_horizontal : bool
        Fit the affine form with ``F[2, 0] = 0`` (left epipolar lines horizontal).
    rigid : bool
        With horizontal left epipolar lines (implies ``left_horizontal``): the right view only
        rotated and shifted, ``y_l = sin(t) x_r + cos(t) y_r + e`` (:func:`fit_rigid`).

    Returns
    -------
    (3, 3) float64
        ``F`` with unit Frobenius norm and ``F[2, 2] >= 0`` (sign fixed for reproducibility; if
        that entry is 0 the first non-zero entry is made positive).

    Raises
    ------
    InputError
        Fewer points than needed, non-finite points, or a degenerate configuration (all points on
        one line, or too few independent constraints).
    """
    left_horizontal = left_horizontal or rigid
    affine = affine or left_horizontal
    need = 4 if affine else 8
    pl = check_points(
        np.asarray(to_host(points_left)),
        "fundamental_matrix.points_left",
        columns=2,
        minimum=need,
        names="x, y",
    )
    pr = check_points(
        np.asarray(to_host(points_right)),
        "fundamental_matrix.points_right",
        columns=2,
        minimum=need,
        names="x, y",
    )
    if pl.shape != pr.shape:
        raise InputError(
            "fundamental_matrix.points_right", f"{len(pr)} points", f"{len(pl)}, one per left point"
        )
    Tl = hartley_normaliser(pl, "fundamental_matrix.points_left")
    Tr = hartley_normaliser(pr, "fundamental_matrix.points_right")
    nl = apply_homography(Tl, pl)
    nr = apply_homography(Tr, pr)
    if rigid:
        # y_l = sin(t) x_r + cos(t) y_r + e in pixels: the right view only rotated and shifted
        t, e = fit_rigid(pl[:, 1], pr[:, 0], pr[:, 1])
        Fp = np.array([[0, 0, np.sin(t)], [0, 0, np.cos(t)], [0, -1.0, e]])  # in pixels
        Fn = np.linalg.inv(Tr).T @ Fp @ np.linalg.inv(Tl)
    elif left_horizontal:
        # y_l = a x_r + b y_r + e in normalised coordinates (the scale of the left rows is s_l)
        A = np.concatenate([nr, np.ones((len(nr), 1))], axis=1)
        _, s, _ = np.linalg.svd(A, full_matrices=False)
        if s[2] <= 1e-9 * s[0]:
            raise InputError(
                "fundamental_matrix.points_right",
                f"{len(pr)} collinear points",
                "points spread over the image plane (not on one line)",
            )
        coef, *_ = np.linalg.lstsq(A, nl[:, 1], rcond=None)
        Fn = np.array([[0, 0, coef[0]], [0, 0, coef[1]], [0, -1.0, coef[2]]])
    elif affine:
        X = np.concatenate([nr, nl], axis=1)  # centroids are 0 after normalisation
        _, s, vt = np.linalg.svd(X, full_matrices=False)
        if s[2] <= 1e-9 * s[0]:
            raise InputError(
                "fundamental_matrix.points",
                f"{len(pl)} points spanning fewer than 3 dimensions",
                "points not all on one plane of (x_r, y_r, x_l, y_l) (a non-planar scene)",
            )
        a, b, c, d = vt[-1]
        Fn = np.array([[0, 0, a], [0, 0, b], [c, d, 0.0]])
    else:
        xr, yr = nr.T
        xl, yl = nl.T
        one = np.ones_like(xl)
        A = np.stack([xr * xl, xr * yl, xr, yr * xl, yr * yl, yr, xl, yl, one], axis=1)
        _, s, vt = np.linalg.svd(A, full_matrices=True)
        if len(s) < 8 or s[7] <= 1e-9 * s[0]:
            rank = int((s > 1e-9 * s[0]).sum())
            raise InputError(
                "fundamental_matrix.points",
                f"{len(pl)} points with rank {rank} constraints",
                ">= 8 independent correspondences (not all on a line or a plane)",
            )
        Fn = vt[-1].reshape(3, 3)
        u, sv, wt = np.linalg.svd(Fn)
        sv[2] = 0.0
        Fn = u @ np.diag(sv) @ wt
    F = Tr.T @ Fn @ Tl
    F /= np.linalg.norm(F)
    flat = F.ravel()
    ref = flat[8] if abs(flat[8]) > 1e-12 else flat[np.flatnonzero(np.abs(flat) > 1e-12)[0]]
    return F * np.sign(ref)


def fit_rigid(yl, xr, yr, t0: float | None = None) -> tuple[float, float]:
    """Least-squares rotation and vertical shift of the right view: ``yl = sin(t) xr + cos(t) yr + e``.

    The rigid model of parallel projections with a horizontal left view and views of equal pixel
    size (unit scale). Gauss-Newton on ``t``, from ``t0`` or from the angle of the free linear fit.

    Parameters
    ----------
    yl : (M,) float64
        Rows of the left points [view pixels].
    xr, yr : (M,) float64
        Columns and rows of their right partners [view pixels].
    t0 : float, optional
        Starting rotation [rad].

    Returns
    -------
    t : float
        Rotation [rad].
    e : float
        Vertical shift [view pixels].
    """
    yl, xr, yr = (np.asarray(v, dtype=np.float64) for v in (yl, xr, yr))
    Y, X, Z = yl - yl.mean(), xr - xr.mean(), yr - yr.mean()
    if t0 is None:
        coef, *_ = np.linalg.lstsq(np.stack([X, Z], axis=1), Y, rcond=None)
        t0 = float(np.arctan2(coef[0], coef[1]))
    t = float(t0)
    for _ in range(20):
        r = Y - np.sin(t) * X - np.cos(t) * Z
        j = np.cos(t) * X - np.sin(t) * Z  # -dr/dt
        den = float(j @ j)
        if den <= 0:
            break
        step = float(j @ r) / den
        t += step
        if abs(step) < 1e-12:
            break
    e = float(np.mean(yl - np.sin(t) * xr - np.cos(t) * yr))
    return t, e


def hartley_normaliser(points: np.ndarray, where: str) -> np.ndarray:
    """Hartley's normalisation: the similarity that moves the centroid to the origin and scales the
    mean distance from it to ``sqrt(2)``.

    Parameters
    ----------
    points : (M, 2) float64
        ``(x, y)`` [view pixels], NumPy.
    where : str
        The argument's name for the error message.

    Returns
    -------
    (3, 3) float64
        ``T``: view pixels -> normalised coordinates (a homography).

    Raises
    ------
    InputError
        Collinear points (or all points equal).
    """
    c = points.mean(axis=0)
    q = points - c
    sv = np.linalg.svd(q, compute_uv=False)
    mean_dist = np.mean(np.hypot(q[:, 0], q[:, 1]))
    if mean_dist <= 0 or sv[1] <= 1e-6 * sv[0]:
        raise InputError(
            where, f"{len(points)} collinear points", "points spread over the image plane (not on one line)"
        )
    s = np.sqrt(2) / mean_dist
    return np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1.0]])


def rms_epipolar_distance(F: np.ndarray, points_left: np.ndarray, points_right: np.ndarray) -> float:
    """Rms symmetric distance of the points to their epipolar lines under ``F``.

    Parameters
    ----------
    F : (3, 3) float64
        Fundamental matrix, ``x_r^T F x_l = 0``.
    points_left, points_right : (M, 2) float64
        Corresponding ``(x, y)`` [view pixels], NumPy.

    Returns
    -------
    float
        ``sqrt(mean(d^2))`` with ``d`` the mean of the distances of the right point to its epipolar
        line and of the left point to its own [view pixels].
    """
    hl = np.concatenate([points_left, np.ones((len(points_left), 1))], axis=1)
    hr = np.concatenate([points_right, np.ones((len(points_right), 1))], axis=1)
    line_r, line_l = hl @ F.T, hr @ F
    e = np.abs(np.sum(hr * line_r, axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        d = 0.5 * e * (1 / np.hypot(line_r[:, 0], line_r[:, 1]) + 1 / np.hypot(line_l[:, 0], line_l[:, 1]))
    return float(np.sqrt(np.mean(d**2)))
