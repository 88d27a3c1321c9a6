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
column in place (a horizontal shift of one view cannot be told from a depth offset). With
``rigid=True`` (the default of :func:`rectify_pair`) the right view is only rotated and shifted: both
views have the same pixel ``lambda D / (N p)``, and a free scale only absorbs matching noise.

The paper picked its 16 points by hand. :func:`rectify_pair` finds correspondences automatically with
:func:`epipolar_matches`, made for phased views: few corners (a cross), long straight edges
(whose matches are ambiguous along the edge), and a partner view that is blurrier. It correlates
patches with two-dimensional structure over a disparity x vertical window (:func:`ncc_surfaces`),
searches the rotation and vertical shift of the right view that the NCC surfaces support best along
their epipolar lines, then matches guided by that model and fits it (least squares, trimmed), a few
rounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import fft_workers, get_array_module, to_host
from ..errors import InputError

__all__ = [
    "RectifyResult", "ncc_surfaces", "epipolar_matches", "fundamental_matrix", "rectifying_homographies",
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
# robust correspondences for parallel projections: NCC surfaces, model search, guided matching


def ncc_surfaces(left, right, points, *, patch: int = 10, search: tuple[int, int] = (-40, 40),
                 vertical: int = 8):
    """Normalised cross-correlation of left patches with every right patch of a search window.

    For each left point ``p = (x, y)`` the ``(2 patch + 1)^2`` left patch centred on ``p`` is
    correlated with the right patches centred on ``(x - d, y + dy)`` for every integer disparity
    ``d`` in ``search`` and vertical offset ``dy`` in ``[-vertical, vertical]`` (FFT correlation of a
    batch of windows; window sums for the normalisation). Outside the right view counts as 0.

    Parameters
    ----------
    left, right : (H, W) float32
        The two views, NumPy or CuPy.
    points : (K, 2) float64
        Left points ``(x, y)`` [view pixels] (rounded to pixels).
    patch : int
        Half size of the patches [pixels].
    search : (int, int)
        ``(dmin, dmax)`` disparity ``x_left - x_right`` [view pixels].
    vertical : int
        Largest vertical offset ``y_right - y_left`` [view pixels].

    Returns
    -------
    (K, 2 vertical + 1, dmax - dmin + 1) float32
        NCC in [-1, 1] on the device of the views; ``[k, dy + vertical, d - dmin]``. Patches with
        no contrast score 0.
    """
    xp = get_array_module(left, right)
    L = _check_image(xp, left, "ncc_surfaces.left")
    R = _check_image(xp, right, "ncc_surfaces.right")
    dmin, dmax = (int(v) for v in search)
    h, V = int(patch), int(vertical)
    P = 2 * h + 1
    D = dmax - dmin + 1
    c = np.rint(np.asarray(points, dtype=np.float64).reshape(-1, 2)).astype(np.int64)
    K = len(c)
    if K == 0:
        return xp.zeros((0, 2 * V + 1, D), dtype=np.float32)
    tmpl = _patches(xp, L, c, h).reshape(K, P, P)                     # zero mean, unit norm
    pad = max(V, abs(dmin), abs(dmax)) + h + 1
    Rp = xp.pad(R, pad)
    hr, wr = 2 * V + P, D - 1 + P
    rows = c[:, 1, None] - V - h + pad + np.arange(hr)[None]          # (K, hr)
    cols = c[:, 0, None] - dmax - h + pad + np.arange(wr)[None]       # (K, wr): col j -> d = dmax - j
    reg = Rp[xp.asarray(rows)[:, :, None], xp.asarray(cols)[:, None, :]]   # (K, hr, wr)
    fft = _fft(xp)
    kw = {"workers": fft_workers()} if xp is np else {}
    shape = (hr, wr)
    num = fft.irfft2(fft.rfft2(reg, s=shape, **kw) * xp.conj(fft.rfft2(tmpl, s=shape, **kw)), s=shape,
                     **kw)[:, :2 * V + 1, :D]
    # window sums of the right region (integral images)
    s1 = _window_sum(xp, reg, P)
    s2 = _window_sum(xp, reg * reg, P)
    var = xp.maximum(s2 - s1 * s1 / (P * P), 0)
    den = xp.sqrt(var)
    ncc = xp.where(den > 1e-6 * (xp.sqrt(xp.maximum(s2, 0)) + 1e-30), num / xp.where(den > 0, den, 1), 0)
    return xp.clip(ncc[:, :, ::-1], -1, 1).astype(np.float32)          # d ascending


def _window_sum(xp, a, P: int):
    """Sums of all P x P windows of a (K, h, w) batch: (K, h - P + 1, w - P + 1)."""
    c = xp.cumsum(xp.cumsum(a.astype(np.float64), axis=1), axis=2)
    c = xp.pad(c, ((0, 0), (1, 0), (1, 0)))
    return (c[:, P:, P:] - c[:, :-P, P:] - c[:, P:, :-P] + c[:, :-P, :-P]).astype(np.float32)


def _fft(xp):
    if xp is np:
        import scipy.fft

        return scipy.fft
    import cupyx.scipy.fft

    return cupyx.scipy.fft


def _support(S, points, dvals, rot, shift, centre, vertical: int):
    """Epipolar support of hypotheses ``(rotation [rad], shift [px])`` (Q,) each: the sum over
    points of the best (non-negative) NCC along the point's epipolar line, read between the rows of
    its NCC surface by a quadratic through the three nearest rows. (Q,) float64."""
    K, nv, D = S.shape
    out = np.empty(len(rot))
    flat = S.reshape(K, -1)
    kk = np.arange(K)[:, None] * (nv * D)
    jj = np.arange(D)[None, :]
    for q in range(len(rot)):
        dy = _line_dy(points, dvals, (np.sin(rot[q]), np.cos(rot[q]), shift[q]), centre) + vertical
        inside = (dy >= 0) & (dy <= nv - 1)
        i = np.clip(np.rint(dy), 1, nv - 2).astype(np.int64)
        u = np.clip(dy - i, -1, 1)
        fm, f0, fp = (flat.ravel()[kk + (i + o) * D + jj] for o in (-1, 0, 1))
        # quadratic through the three nearest rows: no bias towards hypotheses on integer rows
        v = f0 + 0.5 * (fp - fm) * u + 0.5 * (fp - 2 * f0 + fm) * u * u
        v = np.where(inside, v, -1.0)
        out[q] = np.maximum(v.max(axis=1), 0).sum()
    return out


def _structured_points(xp, img, *, window: float, spacing: int, quality: float, max_points: int,
                       border: int) -> np.ndarray:
    """Grid points ``(x, y)`` (K, 2) float64 whose window holds 2-D structure: the smaller eigenvalue
    of the structure tensor integrated over ``window`` is at least ``quality`` times its maximum;
    the ``max_points`` strongest, on a grid of step ``spacing`` (deterministic)."""
    ndi = _ndimage(xp)
    ix = ndi.sobel(img, axis=1, mode="nearest")
    iy = ndi.sobel(img, axis=0, mode="nearest")
    sxx = ndi.gaussian_filter(ix * ix, window, mode="nearest")
    syy = ndi.gaussian_filter(iy * iy, window, mode="nearest")
    sxy = ndi.gaussian_filter(ix * iy, window, mode="nearest")
    lam = 0.5 * (sxx + syy) - xp.sqrt(0.25 * (sxx - syy) ** 2 + sxy ** 2)
    H, W = img.shape
    b, st = int(border), max(1, int(spacing))
    g = to_host(lam[b:H - b:st, b:W - b:st]).astype(np.float64)
    if g.size == 0 or not g.max() > 0:
        return np.zeros((0, 2))
    iy_, ix_ = np.nonzero(g >= quality * g.max())
    val = g[iy_, ix_]
    order = np.lexsort((ix_, iy_, -val))[:int(max_points)]
    return np.stack([b + st * ix_[order], b + st * iy_[order]], axis=1).astype(np.float64)


def epipolar_matches(left, right, *, search: tuple[int, int] = (-40, 40), vertical: int = 8,
                     max_rotation_deg: float = 4.0, patch: int = 4, sigma: float = 0.7,
                     max_points: int = 400, min_ncc: float = 0.7, min_curvature: float = 0.01,
                     max_residual: float = 1.5, quality: float = 0.05, spacing: int = 3, band: float = 2.0,
                     refine_iterations: int = 3) -> dict:
    """Point correspondences of two parallel projections, robust to blur and few corners.

    The paper picked 16 edge points by hand; this finds them automatically, also on views with
    few corners and a blurrier partner (phased views):

    1. *Points*: both views are smoothed (Gaussian ``sigma``); left points lie on a grid of step
       ``spacing`` where the smaller eigenvalue of the structure tensor integrated over a window of
       the patch's size is at least ``quality`` times its maximum (the ``max_points`` strongest):
       patches with two-dimensional structure (corners, nearby edges of different orientations),
       not only pixel corners.
    2. *NCC surfaces*: each left patch is correlated with every right patch within ``search`` x
       ``+-vertical`` (:func:`ncc_surfaces`).
    3. *Model search*: parallel projections differ, beside the horizontal disparity, by an in-plane
       rotation and a vertical shift of one view (the few-parameter model of the affine ``F`` with
       a horizontal left view and views of equal pixel size). Every hypothesis
       ``(rotation, shift)`` predicts, for each left point, a line in its NCC surface (the epipolar
       line); its support is the sum over points of the best NCC along that line. Points on
       straight edges support every hypothesis alike (their surfaces are ridges: the aperture
       problem), points with 2-D structure only the true one, so the best-supported hypothesis is
       found without deciding any match first. Coarse-to-fine: a grid over
       ``+-max_rotation_deg`` (steps of 0.25 deg) x ``+-vertical`` (1 px), then two grids 4 times
       finer around the best.
    4. *Guided matching and fit*: within ``band`` rows of each point's epipolar line the NCC
       surface's maximum is kept when it is at least ``min_ncc``, a local maximum of the surface,
       not on the window's edge, and localised in the row direction once the disparity is free:
       ``det(-Hess) / -Hess_xx >= min_curvature`` (NCC per pixel^2; a ridge along x, an edge
       parallel to the epipolar lines, fixes the row; a ridge at an angle does not). Its subpixel
       position comes from a quadratic fit of the 3 x 3 neighbourhood. The rotation and shift are
       then fitted to the matches within ``max_residual`` of the lines (least squares, unit scale,
       trimmed at 2.5 robust standard deviations), and guided matching is repeated with the fitted
       model (``refine_iterations`` times).

    Parameters
    ----------
    left, right : (H, W) float32
        The two views (real), NumPy or CuPy.
    search : (int, int)
        ``(dmin, dmax)`` horizontal disparity ``x_left - x_right`` [view pixels].
    vertical : int
        Largest vertical misalignment (shift plus rotation over the field) [view pixels].
    max_rotation_deg : float
        Largest in-plane rotation of the right view searched [deg].
    patch : int
        Half size of the correlation patches [pixels].
    sigma : float
        Gaussian smoothing of both views before matching [pixels].
    max_points : int
        Left points tried.
    min_ncc, min_curvature, max_residual : float
        Acceptance of a match (see above) [NCC, NCC per pixel^2, view pixels].
    quality, spacing : float, int
        Selection of the left points (see above).
    band : float
        Half width of the guided search around the epipolar lines [view pixels].
    refine_iterations : int
        Rounds of guided matching and fitting.


    Returns
    -------
    dict
        ``points_left``, ``points_right`` ((M, 2) float64 ``(x, y)`` [view pixels], NumPy; left
        points are pixels, right ones subpixel), ``ncc`` ((M,) float64), ``curvature`` ((M, 2)
        float64: row localisation and the smaller principal curvature of the NCC peak),
        ``rotation_deg`` and ``shift_px`` (the fitted model: rotating the right view by
        ``rotation_deg`` about the view centre and shifting it by ``shift_px`` rows puts every
        match on its partner's row), ``search_rotation_deg`` and ``search_shift_px`` (the best
        hypothesis of the search), ``support`` (its support divided by the number of points),
        ``contrast`` (how far the best coarse hypothesis's support stands above the median one,
        relative to it), ``verify_ncc`` (median NCC of the matches over ``(4 patch + 1)^2``
        patches, without search: views of one scene give 0.7 to 1, unrelated views below 0.4) and
        ``points_tried``.
    """
    xp = get_array_module(left, right)
    L = _check_image(xp, left, "epipolar_matches.left")
    R = _check_image(xp, right, "epipolar_matches.right")
    if L.shape != R.shape:
        raise InputError("epipolar_matches.right", f"shape {R.shape}", f"the left view's shape {L.shape}")
    dmin, dmax = (int(v) for v in search)
    if dmin > dmax:
        raise InputError("epipolar_matches.search", repr(search), "(dmin, dmax) with dmin <= dmax")
    V, h = int(vertical), int(patch)
    ndi = _ndimage(xp)
    if sigma > 0:
        L = ndi.gaussian_filter(L, sigma, mode="nearest")
        R = ndi.gaussian_filter(R, sigma, mode="nearest")
    Hh, Ww = L.shape
    centre = (float(Ww // 2), float(Hh // 2))
    pts = _structured_points(xp, L, window=max(1.0, h / 2.0), spacing=spacing, quality=quality,
                             max_points=max_points, border=h + 1)
    if len(pts) < 2:
        return {"points_left": np.zeros((0, 2)), "points_right": np.zeros((0, 2)), "ncc": np.zeros(0),
                "curvature": np.zeros((0, 2)), "rotation_deg": 0.0, "shift_px": 0.0, "search_rotation_deg": 0.0,
                "search_shift_px": 0.0, "support": 0.0, "contrast": 0.0, "verify_ncc": 0.0,
                "points_tried": int(len(pts))}
    S = to_host(ncc_surfaces(L, R, pts, patch=h, search=(dmin, dmax), vertical=V)).astype(np.float64)
    dvals = np.arange(dmin, dmax + 1, dtype=np.float64)
    # coarse-to-fine search of (rotation, shift)
    max_rot = np.deg2rad(float(max_rotation_deg))
    rot_step = max(np.deg2rad(0.25), 1.0 / max(Hh, Ww))      # 1 px at the field's edge at most
    rots = np.arange(-max_rot, max_rot + 1e-12, rot_step)
    shifts = np.arange(-V, V + 1e-9, 1.0)
    best = (0.0, 0.0)
    contrast = 0.0
    for level in range(3):
        rr, ss = (a.ravel() for a in np.meshgrid(rots, shifts, indexing="ij"))
        sup = _support(S, pts, dvals, rr, ss, centre, V)
        q = int(np.argmax(sup))
        if level == 0:  # how much the best hypothesis stands out of the coarse grid
            contrast = float((sup[q] - np.median(sup)) / max(sup[q], 1e-12))
        best, best_support = (rr[q], ss[q]), sup[q]
        rot_step, s_step = rot_step / 4, (shifts[1] - shifts[0]) / 4 if len(shifts) > 1 else 0.25
        rots = best[0] + rot_step * np.arange(-4, 5)
        shifts = best[1] + s_step * np.arange(-4, 5)
    # guided matching, then the least-squares model on the matches, repeated (the model's lines move)
    model = (np.sin(best[0]), np.cos(best[0]), best[1])
    keep = np.zeros(0, dtype=np.int64)
    for _ in range(refine_iterations):
        pr, c0, curv, ok = _guided_peaks(S, pts, dvals, model, centre, V, band=band, min_ncc=min_ncc,
                                         min_curvature=min_curvature)
        a, b, e = model
        res = pts[:, 1] - (a * (pr[:, 0] - centre[0]) + b * (pr[:, 1] - centre[1]) + centre[1] + e)
        ok &= np.abs(res) <= max_residual
        cand = np.flatnonzero(ok)
        if len(cand) < 3:
            keep = cand
            break
        keep = cand
        for _ in range(3):  # y_l - cy = sin(t) (x_r - cx) + cos(t) (y_r - cy) + e, trimmed at 2.5 robust sigma
            t, e = _fit_rigid(pts[keep, 1] - centre[1], pr[keep, 0] - centre[0], pr[keep, 1] - centre[1],
                              t0=np.arctan2(model[0], model[1]))
            r = (pts[cand, 1] - centre[1] - np.sin(t) * (pr[cand, 0] - centre[0])
                 - np.cos(t) * (pr[cand, 1] - centre[1]) - e)
            mad = 1.4826 * np.median(np.abs(r - np.median(r)))
            nxt = cand[np.abs(r) <= max(2.5 * mad, 0.25)]
            if len(nxt) < 3 or np.array_equal(nxt, keep):
                break
            keep = nxt
        model = (float(np.sin(t)), float(np.cos(t)), float(e))
    # verification: the matched points' NCC over patches twice as large (unrelated views: < 0.4)
    verify = 0.0
    if len(keep):
        big = 2 * h
        verify = float(np.median(to_host((_patches(xp, L, pts[keep], big) * _patches(xp, R, pr[keep], big)).sum(axis=1))))
    return {"points_left": pts[keep].copy(), "points_right": pr[keep], "ncc": c0[keep],
            "curvature": curv[keep], "rotation_deg": float(np.rad2deg(np.arctan2(model[0], model[1]))),
            "shift_px": float(model[2]), "search_rotation_deg": float(np.rad2deg(best[0])),
            "search_shift_px": float(best[1]), "support": float(best_support / len(pts)),
            "contrast": contrast, "verify_ncc": verify, "points_tried": int(len(pts))}


def _line_dy(points, d, model, centre):
    """``y_r - y_l`` on the epipolar line of each left point at disparity ``d``: (K, D), for the
    model ``y_l - cy = a (x_r - cx) + b (y_r - cy) + e``, ``model = (a, b, e)``."""
    a, b, e = model
    cx, cy = centre
    xl, yl = points[:, 0, None], points[:, 1, None]
    xr = xl - np.asarray(d, dtype=np.float64)[None, :]
    return cy + (yl - cy - e - a * (xr - cx)) / b - yl


def _guided_peaks(S, pts, dvals, model, centre, V: int, *, band: float, min_ncc: float, min_curvature: float):
    """2-D maxima of the NCC surfaces within ``band`` rows of the model's epipolar lines.

    Returns right points (K, 2), their NCC (K,), curvatures (K, 2) (smaller, larger; NCC per
    pixel^2) and whether each is an accepted peak (K,) bool."""
    K, nv, nd = S.shape
    dy_line = _line_dy(pts, dvals, model, centre)                           # (K, D)
    iy = np.arange(nv)[None, :, None] - V
    near = np.abs(iy - dy_line[:, None, :]) <= band
    Sm = np.where(near, S, -np.inf)
    flat = np.argmax(Sm.reshape(K, -1), axis=1)
    by, bd = flat // nd, flat % nd
    k = np.arange(K)
    ok = (by > 0) & (by < nv - 1) & (bd > 0) & (bd < nd - 1)
    by_, bd_ = np.clip(by, 1, nv - 2), np.clip(bd, 1, nd - 2)
    nb = np.stack([S[k, by_ + i, bd_ + j] for i in (-1, 0, 1) for j in (-1, 0, 1)], axis=1).reshape(K, 3, 3)
    c0 = nb[:, 1, 1]
    ok &= (c0 >= min_ncc) & (c0 >= nb.reshape(K, 9).max(axis=1))
    gx = 0.5 * (nb[:, 1, 2] - nb[:, 1, 0])
    gy = 0.5 * (nb[:, 2, 1] - nb[:, 0, 1])
    hxx = nb[:, 1, 2] - 2 * c0 + nb[:, 1, 0]
    hyy = nb[:, 2, 1] - 2 * c0 + nb[:, 0, 1]
    hxy = 0.25 * (nb[:, 2, 2] - nb[:, 2, 0] - nb[:, 0, 2] + nb[:, 0, 0])
    tr, det = hxx + hyy, hxx * hyy - hxy ** 2
    disc = np.sqrt(np.maximum(0.25 * tr ** 2 - det, 0))
    curv = np.stack([-(0.5 * tr + disc), -(0.5 * tr - disc)], axis=1)       # curvatures of -S
    # curvature seen by the row coordinate once the disparity is free: det(-H) / (-h_xx), i.e. the
    # inverse of the (y, y) element of the peak's covariance; a ridge along x (an edge parallel to
    # the epipolar lines) fixes the row, a ridge at an angle does not
    with np.errstate(divide="ignore", invalid="ignore"):
        cy_eff = np.where(hxx < 0, det / -hxx, 0.0)
    curv = np.stack([cy_eff, curv[:, 0]], axis=1)
    ok &= (curv[:, 0] >= min_curvature) & (curv[:, 1] > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ox = -(hyy * gx - hxy * gy) / det
        oy = -(hxx * gy - hxy * gx) / det
    ok &= np.isfinite(ox) & np.isfinite(oy) & (np.abs(ox) <= 1) & (np.abs(oy) <= 1)
    d_sub = dvals[bd] + np.where(ok, ox, 0)
    dy_sub = (by - V) + np.where(ok, oy, 0)
    pr = np.stack([pts[:, 0] - d_sub, pts[:, 1] + dy_sub], axis=1)
    return pr, c0, curv, ok


# --------------------------------------------------------------------------------------------- #
# fundamental matrix


def fundamental_matrix(points_left, points_right, *, affine: bool = False,
                       left_horizontal: bool = False, rigid: bool = False) -> np.ndarray:
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
    left_horizontal = left_horizontal or rigid
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
    if rigid:
        # y_l = sin(t) x_r + cos(t) y_r + e in pixels: the right view only rotated and shifted
        t, e = _fit_rigid(pl[:, 1], pr[:, 0], pr[:, 1])
        Fn = np.linalg.inv(Tr).T @ np.array([[0, 0, np.sin(t)], [0, 0, np.cos(t)], [0, -1.0, e]]) @ np.linalg.inv(Tl)
    elif left_horizontal:
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


def _fit_rigid(yl, xr, yr, t0: float | None = None) -> tuple[float, float]:
    """Least squares ``yl = sin(t) xr + cos(t) yr + e`` (a rotation and a vertical shift of the right
    view, unit scale): ``(t [rad], e [pixels])``. Gauss-Newton on ``t`` from the free linear fit."""
    yl, xr, yr = (np.asarray(v, dtype=np.float64) for v in (yl, xr, yr))
    Y, X, Z = yl - yl.mean(), xr - xr.mean(), yr - yr.mean()
    if t0 is None:
        coef, *_ = np.linalg.lstsq(np.stack([X, Z], axis=1), Y, rcond=None)
        t0 = float(np.arctan2(coef[0], coef[1]))
    t = float(t0)
    for _ in range(20):
        r = Y - np.sin(t) * X - np.cos(t) * Z
        j = np.cos(t) * X - np.sin(t) * Z                   # -dr/dt
        den = float(j @ j)
        if den <= 0:
            break
        step = float(j @ r) / den
        t += step
        if abs(step) < 1e-12:
            break
    e = float(np.mean(yl - np.sin(t) * xr - np.cos(t) * yr))
    return t, e


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


def rectify_pair(views, points=None, *, affine: bool = True, left_horizontal: bool = True, rigid: bool = True,
                 search: tuple[int, int] = (-40, 40), vertical: int = 8,
                 max_rotation_deg: float = 4.0, min_matches: int = 8, min_match_fraction: float = 0.25,
                 min_verify_ncc: float = 0.55, order: int = 3) -> RectifyResult:
    """Rectify a stereo pair: correspondences, ``F``, homographies, warped views.

    Parameters
    ----------
    views : (2, H, W) float32
        Left and right views (real), NumPy or CuPy.
    points : tuple of two (M, 2) float64, optional
        ``(points_left, points_right)`` ``(x, y)`` [view pixels] given by the user (the paper
        picked 16 edge points by hand). Default: automatic correspondences (:func:`epipolar_matches`).
    affine : bool
        Fit the affine ``F`` (default; exact for parallel projections) instead of the general
        normalised eight-point ``F`` (which is then required to be nearly affine).
    left_horizontal : bool
        Keep the left view as it is (``H_left`` = identity) and put the whole correction on the
        right view (default; see :func:`fundamental_matrix`). False: the full affine (or
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
        Fewest correspondences as a fraction of the structured points tried
        (views of one scene: 0.5 to 1).
    min_verify_ncc : float
        Smallest median NCC of the matches over patches twice as large
        (``verify_ncc`` of :func:`epipolar_matches`; views of one scene: 0.7 to 1, unrelated views
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
        m = epipolar_matches(views[0], views[1], search=search, vertical=vertical,
                             max_rotation_deg=max_rotation_deg)
        pl, pr = m["points_left"], m["points_right"]
        need = max(int(min_matches), int(np.ceil(min_match_fraction * m["points_tried"])))
        if len(pl) >= need and not m["verify_ncc"] >= min_verify_ncc:
            raise InputError("rectify_pair.views",
                             f"{len(pl)} feature matches whose larger patches correlate at "
                             f"{m['verify_ncc']:.2f} (median NCC)",
                             f"at least {min_verify_ncc}: two views of one scene (give the point pairs, "
                             "points=..., or check the search range)")
        need = max(need, 4 if (affine or left_horizontal) else 8)
        if len(pl) < need:
            raise InputError("rectify_pair.views", f"{len(pl)} feature matches (search {search}, vertical {vertical})",
                             f"at least {need}: give the point pairs (points=...) or widen the search")
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
