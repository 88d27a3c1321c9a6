"""Automatic point correspondences between two parallel projections (phased views).

The paper picked its 16 edge points by hand ("sixteen edge points are manually selected"). Phased
views are hard for a corner matcher: they have few corners (a cross), long straight edges (whose
matches are ambiguous along the edge: the aperture problem), and the partner view is blurrier.
:func:`epipolar_matches` finds the correspondences without deciding any match first: it correlates
patches with two-dimensional structure over a disparity x vertical window (:func:`ncc_surfaces`),
searches the rotation and vertical shift of the right view that the NCC surfaces support best along
their epipolar lines, then matches guided by that model and fits it (least squares, trimmed,
:func:`~.fundamental.fit_rigid`), a few rounds.

Points are ``(M, 2) float64`` NumPy arrays of ``(x, y) = (column, row)`` in view pixels (pixel
``(i, j)`` is the point ``(j, i)``); the correlations run on the device of the views.
"""

from __future__ import annotations

import numpy as np

from ..backend import fft_workers, get_array_module, scipy_module, to_host
from ..checks import check_image
from ..errors import InputError
from .fundamental import fit_rigid

__all__ = ["epipolar_matches", "ncc_surfaces"]


def epipolar_matches(
    left,
    right,
    *,
    search: tuple[int, int] = (-40, 40),
    vertical: int = 8,
    max_rotation_deg: float = 4.0,
    patch: int = 4,
    sigma: float = 0.7,
    max_points: int = 400,
    min_ncc: float = 0.7,
    min_curvature: float = 0.01,
    max_residual: float = 1.5,
    quality: float = 0.05,
    spacing: int = 3,
    band: float = 2.0,
    refine_iterations: int = 3,
) -> dict:
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
    L = check_image(left, "epipolar_matches.left", what="view")
    R = check_image(right, "epipolar_matches.right", what="view")
    if L.shape != R.shape:
        raise InputError("epipolar_matches.right", f"shape {R.shape}", f"the left view's shape {L.shape}")
    dmin, dmax = (int(v) for v in search)
    if dmin > dmax:
        raise InputError("epipolar_matches.search", repr(search), "(dmin, dmax) with dmin <= dmax")
    V, h = int(vertical), int(patch)
    ndi = scipy_module(L, "ndimage")
    if sigma > 0:
        L = ndi.gaussian_filter(L, sigma, mode="nearest")
        R = ndi.gaussian_filter(R, sigma, mode="nearest")
    Hh, Ww = L.shape
    centre = (float(Ww // 2), float(Hh // 2))
    pts = _structured_points(
        xp, L, window=max(1.0, h / 2.0), spacing=spacing, quality=quality, max_points=max_points, border=h + 1
    )
    if len(pts) < 2:
        return {
            "points_left": np.zeros((0, 2)),
            "points_right": np.zeros((0, 2)),
            "ncc": np.zeros(0),
            "curvature": np.zeros((0, 2)),
            "rotation_deg": 0.0,
            "shift_px": 0.0,
            "search_rotation_deg": 0.0,
            "search_shift_px": 0.0,
            "support": 0.0,
            "contrast": 0.0,
            "verify_ncc": 0.0,
            "points_tried": len(pts),
        }
    S = to_host(ncc_surfaces(L, R, pts, patch=h, search=(dmin, dmax), vertical=V)).astype(np.float64)
    dvals = np.arange(dmin, dmax + 1, dtype=np.float64)
    # coarse-to-fine search of (rotation, shift)
    max_rot = np.deg2rad(float(max_rotation_deg))
    rot_step = max(np.deg2rad(0.25), 1.0 / max(Hh, Ww))  # 1 px at the field's edge at most
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
        pr, c0, curv, ok = _guided_peaks(
            S, pts, dvals, model, centre, V, band=band, min_ncc=min_ncc, min_curvature=min_curvature
        )
        a, b, e = model
        res = pts[:, 1] - (a * (pr[:, 0] - centre[0]) + b * (pr[:, 1] - centre[1]) + centre[1] + e)
        ok &= np.abs(res) <= max_residual
        cand = np.flatnonzero(ok)
        if len(cand) < 3:
            keep = cand
            break
        keep = cand
        # y_l - cy = sin(t) (x_r - cx) + cos(t) (y_r - cy) + e, trimmed at 2.5 robust sigma
        for _ in range(3):
            t, e = fit_rigid(
                pts[keep, 1] - centre[1],
                pr[keep, 0] - centre[0],
                pr[keep, 1] - centre[1],
                t0=np.arctan2(model[0], model[1]),
            )
            r = (
                pts[cand, 1]
                - centre[1]
                - np.sin(t) * (pr[cand, 0] - centre[0])
                - np.cos(t) * (pr[cand, 1] - centre[1])
                - e
            )
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
        ncc = (_patches(xp, L, pts[keep], big) * _patches(xp, R, pr[keep], big)).sum(axis=1)
        verify = float(np.median(to_host(ncc)))
    return {
        "points_left": pts[keep].copy(),
        "points_right": pr[keep],
        "ncc": c0[keep],
        "curvature": curv[keep],
        "rotation_deg": float(np.rad2deg(np.arctan2(model[0], model[1]))),
        "shift_px": float(model[2]),
        "search_rotation_deg": float(np.rad2deg(best[0])),
        "search_shift_px": float(best[1]),
        "support": float(best_support / len(pts)),
        "contrast": contrast,
        "verify_ncc": verify,
        "points_tried": len(pts),
    }


def ncc_surfaces(
    left, right, points, *, patch: int = 10, search: tuple[int, int] = (-40, 40), vertical: int = 8
):
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
    L = check_image(left, "ncc_surfaces.left", what="view")
    R = check_image(right, "ncc_surfaces.right", what="view")
    dmin, dmax = (int(v) for v in search)
    h, V = int(patch), int(vertical)
    P = 2 * h + 1
    D = dmax - dmin + 1
    c = np.rint(np.asarray(points, dtype=np.float64).reshape(-1, 2)).astype(np.int64)
    K = len(c)
    if K == 0:
        return xp.zeros((0, 2 * V + 1, D), dtype=np.float32)
    tmpl = _patches(xp, L, c, h).reshape(K, P, P)  # zero mean, unit norm
    pad = max(V, abs(dmin), abs(dmax)) + h + 1
    Rp = xp.pad(R, pad)
    hr, wr = 2 * V + P, D - 1 + P
    rows = c[:, 1, None] - V - h + pad + np.arange(hr)[None]  # (K, hr)
    cols = c[:, 0, None] - dmax - h + pad + np.arange(wr)[None]  # (K, wr): col j -> d = dmax - j
    reg = Rp[xp.asarray(rows)[:, :, None], xp.asarray(cols)[:, None, :]]  # (K, hr, wr)
    fft = scipy_module(L, "fft")
    kw = {"workers": fft_workers()} if xp is np else {}
    shape = (hr, wr)
    num = fft.irfft2(fft.rfft2(reg, s=shape, **kw) * xp.conj(fft.rfft2(tmpl, s=shape, **kw)), s=shape, **kw)[
        :, : 2 * V + 1, :D
    ]
    # window sums of the right region (integral images)
    s1 = _window_sum(xp, reg, P)
    s2 = _window_sum(xp, reg * reg, P)
    var = xp.maximum(s2 - s1 * s1 / (P * P), 0)
    den = xp.sqrt(var)
    ncc = xp.where(den > 1e-6 * (xp.sqrt(xp.maximum(s2, 0)) + 1e-30), num / xp.where(den > 0, den, 1), 0)
    return xp.clip(ncc[:, :, ::-1], -1, 1).astype(np.float32)  # d ascending


# --------------------------------------------------------------------------------------------- #
# internals


def _structured_points(
    xp, img, *, window: float, spacing: int, quality: float, max_points: int, border: int
) -> np.ndarray:
    """Grid points ``(x, y)`` (K, 2) float64 whose window holds 2-D structure: the smaller eigenvalue
    of the structure tensor integrated over ``window`` is at least ``quality`` times its maximum;
    the ``max_points`` strongest, on a grid of step ``spacing`` (deterministic)."""
    ndi = scipy_module(img, "ndimage")
    ix = ndi.sobel(img, axis=1, mode="nearest")
    iy = ndi.sobel(img, axis=0, mode="nearest")
    sxx = ndi.gaussian_filter(ix * ix, window, mode="nearest")
    syy = ndi.gaussian_filter(iy * iy, window, mode="nearest")
    sxy = ndi.gaussian_filter(ix * iy, window, mode="nearest")
    lam = 0.5 * (sxx + syy) - xp.sqrt(0.25 * (sxx - syy) ** 2 + sxy**2)
    H, W = img.shape
    b, st = int(border), max(1, int(spacing))
    g = to_host(lam[b : H - b : st, b : W - b : st]).astype(np.float64)
    if g.size == 0 or not g.max() > 0:
        return np.zeros((0, 2))
    iy_, ix_ = np.nonzero(g >= quality * g.max())
    val = g[iy_, ix_]
    order = np.lexsort((ix_, iy_, -val))[: int(max_points)]
    return np.stack([b + st * ix_[order], b + st * iy_[order]], axis=1).astype(np.float64)


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
    dy_line = _line_dy(pts, dvals, model, centre)  # (K, D)
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
    tr, det = hxx + hyy, hxx * hyy - hxy**2
    disc = np.sqrt(np.maximum(0.25 * tr**2 - det, 0))
    curv = np.stack([-(0.5 * tr + disc), -(0.5 * tr - disc)], axis=1)  # curvatures of -S
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


def _window_sum(xp, a, P: int):
    """Sums of all P x P windows of a (K, h, w) batch: (K, h - P + 1, w - P + 1)."""
    c = xp.cumsum(xp.cumsum(a.astype(np.float64), axis=1), axis=2)
    c = xp.pad(c, ((0, 0), (1, 0), (1, 0)))
    return (c[:, P:, P:] - c[:, :-P, P:] - c[:, P:, :-P] + c[:, :-P, :-P]).astype(np.float32)
