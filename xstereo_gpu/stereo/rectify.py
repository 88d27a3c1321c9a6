"""Rectification of a stereo pair: features, the normalised eight-point algorithm, homographies.

Paper (Methods, phase cross): "sixteen edge points are manually selected [...] the fundamental matrix
between both views is computed employing the Normalized Eight-Point Algorithm [Hartley 1997]. The
images are then re-projected, in order to make all the matching points lay in the same horizontal
lines [Papadimitriou & Dennis 1996]."

Conventions
-----------
* Points are ``(M, 2) float64`` NumPy arrays of ``(x, y) = (column, row)`` in view pixels (pixel
  ``(i, j)`` is the point ``(j, i)``). They are few and live on the host; the views and the warps
  stay on the device of the views.
* ``F`` maps left points to right epipolar lines: ``[x_r, y_r, 1] F [x_l, y_l, 1]^T = 0``.
* A homography ``H (3, 3) float64`` maps original view coordinates to rectified ones.

Our views are parallel projections (CDI reconstructions are projections of the object along each
beam), so the true epipolar geometry is *affine*: the epipoles are at infinity and ``F`` has a zero
upper-left 2 x 2 block, ``a x_r + b y_r + c x_l + d y_l + e = 0``. :func:`fundamental_matrix` fits
either the general ``F`` (normalised eight-point) or the affine one (total least squares, Hartley &
Zisserman, Multiple View Geometry, 2nd ed., algorithm 14.1), and :func:`rectifying_homographies`
builds affine rectifications from an affine ``F``: the left view is only *rotated* about its centre
(until its epipolar lines are horizontal; the identity when they already are), and the right view
gets the *similarity* (rotation, uniform scale, translation) that puts each epipolar line on the row
of its left partner. Nothing shears or stretches the x axis: with a left view that already has
horizontal epipolar lines (the lab frame of DESIGN.md section 5) and a right view that differs from
its ideal by a rotation, a shift and a scale, the rectified disparity ``x_l* - x_r*`` is the
disparity of eq. (1) up to a constant offset, which is fixed by keeping the right view's centre
column in place (a horizontal shift of one view cannot be told from a depth offset).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import get_array_module, to_host
from ..errors import InputError

__all__ = [
    "RectifyResult", "detect_corners", "match_features", "fundamental_matrix", "rectifying_homographies",
    "rectify", "rectify_pair", "apply_homography", "original_coordinates", "vertical_residual",
]


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


# --------------------------------------------------------------------------------------------- #
# features


def detect_corners(image, *, max_corners: int = 300, sigma: float = 1.0, window: float = 1.5,
                   min_distance: int = 4, quality: float = 0.01, border: int = 8) -> np.ndarray:
    """Shi-Tomasi corners: local maxima of the smaller eigenvalue of the structure tensor.

    Parameters
    ----------
    image : (H, W) float32
        A real view, NumPy or CuPy.
    max_corners : int
        At most this many corners, strongest first.
    sigma : float
        Gaussian pre-smoothing before the Sobel derivatives [pixels].
    window : float
        Gaussian integration window of the structure tensor [pixels].
    min_distance : int
        Non-maximum suppression radius [pixels].
    quality : float
        Corners weaker than ``quality`` times the strongest are dropped.
    border : int
        Corners closer than this to the image edge are dropped [pixels].

    Returns
    -------
    (K, 2) float64
        Corner positions ``(x, y)`` [pixels], NumPy, sorted by decreasing response (ties by
        position, so the result is deterministic).
    """
    xp = get_array_module(image)
    img = _check_image(xp, image, "detect_corners.image")
    ndi = _ndimage(xp)
    s = ndi.gaussian_filter(img, sigma, mode="nearest") if sigma > 0 else img
    ix = ndi.sobel(s, axis=1, mode="nearest")
    iy = ndi.sobel(s, axis=0, mode="nearest")
    sxx = ndi.gaussian_filter(ix * ix, window, mode="nearest")
    syy = ndi.gaussian_filter(iy * iy, window, mode="nearest")
    sxy = ndi.gaussian_filter(ix * iy, window, mode="nearest")
    lam = 0.5 * (sxx + syy) - xp.sqrt(0.25 * (sxx - syy) ** 2 + sxy ** 2)
    peak = ndi.maximum_filter(lam, size=2 * int(min_distance) + 1, mode="constant", cval=-np.inf)
    keep = (lam == peak) & (lam > quality * lam.max()) & (lam > 0)
    H, W = img.shape
    b = int(border)
    keep[:b] = False
    keep[H - b:] = False
    keep[:, :b] = False
    keep[:, W - b:] = False
    idx = to_host(xp.flatnonzero(keep))
    val = to_host(lam.ravel()[xp.asarray(idx)]) if idx.size else np.zeros(0)
    order = np.lexsort((idx, -val))[:int(max_corners)]
    idx = idx[order]
    return np.stack([idx % W, idx // W], axis=1).astype(np.float64)


def match_features(left, right, *, search: tuple[int, int] = (-40, 40), vertical: int = 8, patch: int = 7,
                   max_corners: int = 300, min_ncc: float = 0.8, ratio: float = 0.8,
                   refine: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Point correspondences between two views: corners matched by normalised cross-correlation.

    Shi-Tomasi corners (:func:`detect_corners`) of both views are compared by the NCC of
    ``(2 patch + 1)^2`` patches. A right corner is a candidate for a left corner at ``(x, y)`` when
    it lies at ``(x - d, y')`` with ``d`` in ``search`` and ``|y' - y| <= vertical``. A pair is kept
    when it is the mutual best, its NCC is at least ``min_ncc``, and it passes the ratio test
    ``(1 - ncc_best) < ratio (1 - ncc_second)`` (second best among the left corner's other
    candidates). The right point is then refined: the left patch is correlated with right patches
    at integer offsets within ``+-refine`` of the right corner and a parabola through the best
    score and its neighbours gives the subpixel position in x and y (pairs whose best offset lies
    on the window's edge are dropped). Deterministic: no random sampling.

    Parameters
    ----------
    left, right : (H, W) float32
        The two views (real; amplitude or phase), NumPy or CuPy.
    search : (int, int)
        ``(dmin, dmax)`` horizontal disparity range ``x_left - x_right`` [view pixels].
    vertical : int
        Largest vertical offset between partners [view pixels].
    patch : int
        Half size of the correlation patches [pixels].
    max_corners : int
        Corners per view.
    min_ncc, ratio : float
        Acceptance thresholds (see above).
    refine : int
        Half size of the subpixel refinement window [pixels].

    Returns
    -------
    points_left, points_right : (M, 2) float64
        Matched ``(x, y)`` [view pixels], NumPy; the left points are corner pixels, the right ones
        subpixel.
    """
    xp = get_array_module(left, right)
    L = _check_image(xp, left, "match_features.left")
    R = _check_image(xp, right, "match_features.right")
    if L.shape != R.shape:
        raise InputError("match_features.right", f"shape {R.shape}", f"the left view's shape {L.shape}")
    dmin, dmax = (int(v) for v in search)
    if dmin > dmax:
        raise InputError("match_features.search", repr(search), "(dmin, dmax) with dmin <= dmax")
    h, r = int(patch), int(refine)
    border = h + r + 1
    cl = detect_corners(L, max_corners=max_corners, border=border)
    cr = detect_corners(R, max_corners=max_corners, border=border)
    empty = np.zeros((0, 2))
    if len(cl) == 0 or len(cr) == 0:
        return empty, empty
    pl = _patches(xp, L, cl, h)                                # (K, P) zero mean, unit norm
    pr = _patches(xp, R, cr, h)
    ncc = to_host(pl @ pr.T).astype(np.float64)               # (KL, KR)
    disp = cl[:, None, 0] - cr[None, :, 0]
    dy = np.abs(cl[:, None, 1] - cr[None, :, 1])
    allowed = (disp >= dmin) & (disp <= dmax) & (dy <= vertical)
    score = np.where(allowed, ncc, -np.inf)
    best = np.argmax(score, axis=1)
    rows = np.arange(len(cl))
    s1 = score[rows, best]
    second = score.copy()
    second[rows, best] = -np.inf
    s2 = np.max(second, axis=1)
    back = np.argmax(score, axis=0)
    ok = (np.isfinite(s1) & (s1 >= min_ncc) & (back[best] == rows)
          & ((1 - s1) < ratio * np.where(np.isfinite(s2), 1 - s2, np.inf)))
    il, ir = np.flatnonzero(ok), best[ok]
    if il.size == 0:
        return empty, empty
    # subpixel refinement of the right point: NCC over integer offsets, parabola in x and y
    offs = np.arange(-r, r + 1)
    oy, ox = np.meshgrid(offs, offs, indexing="ij")
    cand = (cr[ir][:, None, :] + np.stack([ox.ravel(), oy.ravel()], axis=1)[None]).reshape(-1, 2)
    pc = _patches(xp, R, cand, h).reshape(il.size, offs.size ** 2, -1)
    sc = to_host(xp.einsum("mkp,mp->mk", pc, pl[xp.asarray(il)])).reshape(il.size, offs.size, offs.size)
    flat = np.argmax(sc.reshape(il.size, -1), axis=1)
    by, bx = flat // offs.size, flat % offs.size
    inside = (by > 0) & (by < 2 * r) & (bx > 0) & (bx < 2 * r)
    m = np.flatnonzero(inside)
    by, bx = by[m], bx[m]
    c = sc[m, by, bx]
    sub_x = _parabola(sc[m, by, bx - 1], c, sc[m, by, bx + 1])
    sub_y = _parabola(sc[m, by - 1, bx], c, sc[m, by + 1, bx])
    pts_r = cr[ir[m]] + np.stack([offs[bx] + sub_x, offs[by] + sub_y], axis=1)
    return cl[il[m]].copy(), pts_r


def _parabola(a, b, c):
    den = a - 2 * b + c
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(den < 0, 0.5 * (a - c) / den, 0.0)
    return np.clip(off, -0.5, 0.5)


def _patches(xp, img, centres, h: int):
    """Zero-mean, unit-norm patches ``(K, (2h+1)^2)`` around integer centres ``(x, y)`` (K, 2)."""
    H, W = img.shape
    c = np.rint(centres).astype(np.int64)
    d = np.arange(-h, h + 1)
    rows = np.clip(c[:, 1, None, None] + d[None, :, None], 0, H - 1)
    cols = np.clip(c[:, 0, None, None] + d[None, None, :], 0, W - 1)
    p = img[xp.asarray(rows), xp.asarray(cols)].reshape(len(c), -1).astype(np.float32)
    p = p - p.mean(axis=1, keepdims=True)
    n = xp.sqrt((p * p).sum(axis=1, keepdims=True))
    return p / xp.where(n > 0, n, 1)


# --------------------------------------------------------------------------------------------- #
# fundamental matrix


def fundamental_matrix(points_left, points_right, *, affine: bool = False,
                       left_horizontal: bool = False) -> np.ndarray:
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
        Corresponding ``(x, y)`` [view pixels]; ``M >= 8`` (``>= 4`` when ``affine``).
    affine : bool
        Fit the affine form (zero upper-left 2 x 2 block).
    left_horizontal : bool
        Fit the affine form with ``F[2, 0] = 0`` (left epipolar lines horizontal).

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
    affine = affine or left_horizontal
    need = 4 if affine else 8
    pl = _check_points(points_left, "fundamental_matrix.points_left", need)
    pr = _check_points(points_right, "fundamental_matrix.points_right", need)
    if pl.shape != pr.shape:
        raise InputError("fundamental_matrix.points_right", f"{len(pr)} points", f"{len(pl)}, one per left point")
    Tl = _normaliser(pl, "fundamental_matrix.points_left")
    Tr = _normaliser(pr, "fundamental_matrix.points_right")
    nl = _apply(Tl, pl)
    nr = _apply(Tr, pr)
    if left_horizontal:
        # y_l = a x_r + b y_r + e in normalised coordinates (the scale of the left rows is s_l)
        A = np.concatenate([nr, np.ones((len(nr), 1))], axis=1)
        _, s, _ = np.linalg.svd(A, full_matrices=False)
        if s[2] <= 1e-9 * s[0]:
            raise InputError("fundamental_matrix.points_right", f"{len(pr)} collinear points",
                             "points spread over the image plane (not on one line)")
        coef, *_ = np.linalg.lstsq(A, nl[:, 1], rcond=None)
        Fn = np.array([[0, 0, coef[0]], [0, 0, coef[1]], [0, -1.0, coef[2]]])
    elif affine:
        X = np.concatenate([nr, nl], axis=1)            # centroids are 0 after normalisation
        _, s, vt = np.linalg.svd(X, full_matrices=False)
        if s[2] <= 1e-9 * s[0]:
            raise InputError("fundamental_matrix.points", f"{len(pl)} points spanning fewer than 3 dimensions",
                             "points not all on one plane of (x_r, y_r, x_l, y_l) (a non-planar scene)")
        a, b, c, d = vt[-1]
        Fn = np.array([[0, 0, a], [0, 0, b], [c, d, 0.0]])
    else:
        xr, yr = nr.T
        xl, yl = nl.T
        one = np.ones_like(xl)
        A = np.stack([xr * xl, xr * yl, xr, yr * xl, yr * yl, yr, xl, yl, one], axis=1)
        _, s, vt = np.linalg.svd(A, full_matrices=True)
        if len(s) < 8 or s[7] <= 1e-9 * s[0]:
            raise InputError("fundamental_matrix.points", f"{len(pl)} points with rank {int((s > 1e-9 * s[0]).sum())} "
                             "constraints", ">= 8 independent correspondences (not all on a line or a plane)")
        Fn = vt[-1].reshape(3, 3)
        u, sv, wt = np.linalg.svd(Fn)
        sv[2] = 0.0
        Fn = u @ np.diag(sv) @ wt
    F = Tr.T @ Fn @ Tl
    F /= np.linalg.norm(F)
    flat = F.ravel()
    ref = flat[8] if abs(flat[8]) > 1e-12 else flat[np.flatnonzero(np.abs(flat) > 1e-12)[0]]
    return F * np.sign(ref)


def _check_points(p, where: str, need: int) -> np.ndarray:
    try:
        a = np.asarray(to_host(p), dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(where, f"{type(p).__name__}", "an (M, 2) array of (x, y) points") from None
    if a.ndim != 2 or a.shape[1] != 2:
        raise InputError(where, f"shape {a.shape}", "(M, 2): (x, y) per point")
    if len(a) < need:
        raise InputError(where, f"{len(a)} points", f"at least {need} point pairs")
    if not np.isfinite(a).all():
        raise InputError(where, "non-finite coordinates", "finite (x, y)")
    return a


def _normaliser(p: np.ndarray, where: str) -> np.ndarray:
    """Hartley's normalisation: centroid to the origin, mean distance sqrt(2); raises on collinear points."""
    c = p.mean(axis=0)
    q = p - c
    sv = np.linalg.svd(q, compute_uv=False)
    mean_dist = np.mean(np.hypot(q[:, 0], q[:, 1]))
    if mean_dist <= 0 or sv[1] <= 1e-6 * sv[0]:
        raise InputError(where, f"{len(p)} collinear points", "points spread over the image plane (not on one line)")
    s = np.sqrt(2) / mean_dist
    return np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1.0]])


def _rms_epipolar_distance(F: np.ndarray, pl: np.ndarray, pr: np.ndarray) -> float:
    """Rms symmetric distance [pixels] of the points to their epipolar lines under ``F``."""
    hl = np.concatenate([pl, np.ones((len(pl), 1))], axis=1)
    hr = np.concatenate([pr, np.ones((len(pr), 1))], axis=1)
    line_r, line_l = hl @ F.T, hr @ F
    e = np.abs(np.sum(hr * line_r, axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        d = 0.5 * e * (1 / np.hypot(line_r[:, 0], line_r[:, 1]) + 1 / np.hypot(line_l[:, 0], line_l[:, 1]))
    return float(np.sqrt(np.mean(d ** 2)))


def _apply(H: np.ndarray, p: np.ndarray) -> np.ndarray:
    ph = np.concatenate([p, np.ones((len(p), 1))], axis=1) @ H.T
    return ph[:, :2] / ph[:, 2:3]


def apply_homography(H, points) -> np.ndarray:
    """Map ``(M, 2)`` points ``(x, y)`` through ``H (3, 3)``: returns ``(M, 2) float64``.

    Use ``np.linalg.inv(H)`` to go from rectified back to original view coordinates.
    """
    H = np.asarray(H, dtype=np.float64)
    if H.shape != (3, 3):
        raise InputError("apply_homography.H", f"shape {H.shape}", "(3, 3)")
    p = np.asarray(to_host(points), dtype=np.float64).reshape(-1, 2)
    return _apply(H, p)


# --------------------------------------------------------------------------------------------- #
# homographies and warping


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
    pl = _check_points(points_left, "rectifying_homographies.points_left", 1)
    pr = _check_points(points_right, "rectifying_homographies.points_right", 1)
    if len(shape) != 2:
        raise InputError("rectifying_homographies.shape", repr(shape), "(H, W)")
    H, W = (int(v) for v in shape)
    Tl = _normaliser(pl, "rectifying_homographies.points_left") if len(pl) > 2 else np.eye(3)
    Tr = _normaliser(pr, "rectifying_homographies.points_right") if len(pr) > 2 else np.eye(3)
    Fn = np.linalg.inv(Tr).T @ F @ np.linalg.inv(Tl)
    norm = np.linalg.norm(Fn)
    if norm == 0:
        raise InputError("rectifying_homographies.F", "a zero matrix", "a fundamental matrix")
    Fn[:2, :2] = 0
    Fa = Tr.T @ Fn @ Tl
    extra = _rms_epipolar_distance(Fa, pl, pr) - _rms_epipolar_distance(F, pl, pr)
    if not extra <= max_projective:
        raise InputError("rectifying_homographies.F",
                         f"a projective F (its affine part moves the points {extra:.2f} px off their lines)",
                         f"an affine F (<= {max_projective} px): views that are parallel projections; "
                         "fit it with fundamental_matrix(..., affine=True)")
    a, b, e = Fa[0, 2], Fa[1, 2], Fa[2, 2]
    c, d = Fa[2, 0], Fa[2, 1]
    nl, nr = np.hypot(c, d), np.hypot(a, b)
    if nl == 0 or nr == 0:
        raise InputError("rectifying_homographies.F", "no epipolar direction in one view", "an affine F of rank 2")
    sigma = 1.0 if d >= 0 else -1.0
    ul = sigma * np.array([c, d]) / nl                     # unit normal of the left epipolar lines
    cx, cy = float(W // 2), float(H // 2)
    Rl = np.array([[ul[1], -ul[0]], [ul[0], ul[1]]])       # rotation: ul -> (0, 1)
    H_left = np.eye(3)
    H_left[:2, :2] = Rl
    H_left[:2, 2] = np.array([cx, cy]) - Rl @ np.array([cx, cy])
    # y_l* = ul . (p - c0) + cy = sigma (c x + d y)/nl - ul . c0 + cy; on the epipolar constraint
    # c x + d y = -(a x_r + b y_r + e), so y_r* = v . p_r + t with:
    v = -sigma * np.array([a, b]) / nl
    t = -sigma * e / nl - ul @ np.array([cx, cy]) + cy
    Rr = np.array([[v[1], -v[0]], [v[0], v[1]]])           # similarity with scale |v|
    H_right = np.eye(3)
    H_right[:2, :2] = Rr
    H_right[1, 2] = t
    H_right[0, 2] = cx - Rr[0] @ np.array([cx, cy])        # the centre column stays in place
    return H_left, H_right


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
        raise InputError("rectify.views", f"dtype {views.dtype}", "real views (warp amplitude and phase apart)")
    ndi = _ndimage(xp)
    out = []
    for k, Hk in enumerate((H_left, H_right)):
        coords = original_coordinates(Hk, shape[1:], like=views)
        img = views[k].astype(np.float32, copy=False)
        out.append(ndi.map_coordinates(img, coords, order=order, mode="constant", cval=cval).astype(np.float32))
    return xp.stack(out)


def original_coordinates(H, shape, *, like=None):
    """Original view coordinates ``(row, col)`` of every rectified pixel: ``H^-1 (j, i, 1)``.

    Parameters
    ----------
    H : (3, 3) float64
        Original -> rectified homography.
    shape : (int, int)
        ``(H, W)`` of the rectified grid.
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
    yy, xx = xp.meshgrid(xp.arange(n_rows, dtype=np.float64), xp.arange(n_cols, dtype=np.float64), indexing="ij")
    w = Hi[2, 0] * xx + Hi[2, 1] * yy + Hi[2, 2]
    x = (Hi[0, 0] * xx + Hi[0, 1] * yy + Hi[0, 2]) / w
    y = (Hi[1, 0] * xx + Hi[1, 1] * yy + Hi[1, 2]) / w
    return xp.stack([y, x]).astype(np.float32)


def vertical_residual(points_left, points_right, H_left, H_right) -> np.ndarray:
    """Vertical disparity ``y_l* - y_r*`` [pixels] of matched points after rectification, ``(M,) float64``."""
    return apply_homography(H_left, points_left)[:, 1] - apply_homography(H_right, points_right)[:, 1]


def rectify_pair(views, points=None, *, affine: bool = True, left_horizontal: bool = True,
                 search: tuple[int, int] = (-40, 40), vertical: int = 8, order: int = 3) -> RectifyResult:
    """Rectify a stereo pair: correspondences, ``F``, homographies, warped views.

    Parameters
    ----------
    views : (2, H, W) float32
        Left and right views (real), NumPy or CuPy.
    points : tuple of two (M, 2) float64, optional
        ``(points_left, points_right)`` ``(x, y)`` [view pixels] given by the user (the paper
        picked 16 edge points by hand). Default: :func:`match_features` with ``search`` and
        ``vertical``.
    affine : bool
        Fit the affine ``F`` (default; exact for parallel projections) instead of the general
        normalised eight-point ``F`` (which is then required to be nearly affine).
    left_horizontal : bool
        Keep the left view as it is (``H_left`` = identity) and put the whole correction on the
        right view (default; see :func:`fundamental_matrix`). False: the full affine (or
        eight-point) fit, which may rotate both views.
    search : (int, int)
        Horizontal disparity range ``x_left - x_right`` for feature matching [view pixels].
    vertical : int
        Largest vertical offset for feature matching [view pixels].
    order : int
        Spline order of the warp.

    Returns
    -------
    RectifyResult
        Rectified views, homographies, ``F``, the points and their vertical residual [view pixels].
    """
    xp = get_array_module(views)
    shape = getattr(views, "shape", None)
    if shape is None or len(shape) != 3 or shape[0] != 2:
        raise InputError("rectify_pair.views", f"shape {shape}", "(2, H, W): left and right views")
    if points is None:
        pl, pr = match_features(views[0], views[1], search=search, vertical=vertical)
        need = 4 if (affine or left_horizontal) else 8
        if len(pl) < need:
            raise InputError("rectify_pair.views", f"{len(pl)} feature matches (search {search}, vertical {vertical})",
                             f"at least {need}: give the point pairs (points=...) or widen the search")
    else:
        if len(points) != 2:
            raise InputError("rectify_pair.points", f"{len(points)} arrays", "(points_left, points_right)")
        pl, pr = points
    F = fundamental_matrix(pl, pr, affine=affine, left_horizontal=left_horizontal)
    pl = np.asarray(to_host(pl), dtype=np.float64)
    pr = np.asarray(to_host(pr), dtype=np.float64)
    Hl, Hr = rectifying_homographies(F, pl, pr, shape[1:])
    out = rectify(xp.asarray(views), Hl, Hr, order=order)
    return RectifyResult(out, Hl, Hr, F, pl, pr, vertical_residual(pl, pr, Hl, Hr))


# --------------------------------------------------------------------------------------------- #
# internals


def _ndimage(xp):
    if xp is np:
        import scipy.ndimage

        return scipy.ndimage
    import cupyx.scipy.ndimage

    return cupyx.scipy.ndimage


def _check_image(xp, img, where: str):
    shape = getattr(img, "shape", None)
    if shape is None or len(shape) != 2:
        raise InputError(where, f"shape {shape}", "a 2-D (H, W) view")
    if xp.iscomplexobj(img):
        raise InputError(where, f"dtype {img.dtype}", "a real view (amplitude or phase)")
    img = img.astype(np.float32, copy=False)
    if not bool(xp.isfinite(img).all()):
        raise InputError(where, "non-finite values", "a finite view")
    return img
