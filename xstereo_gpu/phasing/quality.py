"""Quality of phased views: PRTF, 10-90 % edge resolution, error against a known exit wave.

* :func:`prtf` / :func:`prtf_resolution`: the phase retrieval transfer function (Chapman et al.
  2006), ``|F(averaged view)| / sqrt(I)`` averaged over shells of ``|q|``, and the half-period
  resolution where it first drops below ``1/e``.
* :func:`edge_resolution`: the 10 %-90 % rise distance of the strongest edges of a view, measured
  on subpixel profiles along the gradient direction.
* :func:`view_error`: normalised RMS error of a phased view against the true exit wave after
  subpixel registration, twin choice and the optimal complex scale (global phase and gain).

Arrays come in on NumPy or CuPy and the work runs where they live. :func:`prtf` returns device
arrays; :func:`prtf_resolution`, :func:`edge_resolution` and :func:`view_error` return host values
for reports (``edge_resolution`` makes two small transfers: candidate edges, then the profiles).

References
----------
.. [1] H. N. Chapman et al., "High-resolution ab initio three-dimensional x-ray diffraction
   microscopy", J. Opt. Soc. Am. A 23, 1179-1200 (2006) (PRTF, 1/e criterion).
.. [2] M. Guizar-Sicairos, S. T. Thurman and J. R. Fienup, "Efficient subpixel image registration
   algorithms", Opt. Lett. 33, 156-158 (2008) (normalised RMS error with the optimal scalar).
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import get_array_module, scipy_module, to_device, to_host
from ..checks import check_positive
from ..errors import InputError
from ._fft import fft2
from .align import fourier_shift, register_translation, twin

__all__ = ["prtf", "prtf_resolution", "edge_resolution", "view_error"]


_REAL = (int, float, np.integer, np.floating)


# ---------------------------------------------------------------------------------------------
# PRTF
# ---------------------------------------------------------------------------------------------
def prtf(view, intensity, valid=None, *, n_shells: int | None = None, pixel_m: float | None = None):
    """Phase retrieval transfer function of phased views, averaged in shells of ``|q|``.

    ``PRTF(q) = < |fftshift(fft2(view))| / sqrt(I) >_shell``, the mean over the valid pixels with
    ``I > 0`` of each shell. ``view`` is the coherent average of aligned runs on the exit-wave
    scale (its diffraction amplitudes are ``sqrt(I)`` where every run agrees), so the PRTF is 1
    where the phases are reproducible and drops where the runs disagree. Translations and the
    twin do not change ``|F|``; neither changes the PRTF.

    Parameters
    ----------
    view : (..., N, N) complex64
        Averaged phased views (e.g. ``PhasingResult.views``, (2, N, N)).
    intensity : (..., N, N) float32
        Measured intensities ``|fftshift(fft2(w))|**2``, zero frequency at pixel ``(N//2, N//2)``
        [photons]; leading axes as ``view``'s.
    valid : (..., N, N) bool, optional
        True where the intensity was measured (default: everywhere). Pixels with ``I <= 0`` are
        left out as well.
    n_shells : int, optional
        Number ``S`` of shells of equal width between ``|q| = 0`` and ``N/2`` pixels (the corners
        beyond are left out). Default ``N // 2`` (1-pixel shells).
    pixel_m : float, optional
        Real-space pixel size of the view  [m]; ``q`` is then in [1/m] instead of [1/pixel].

    Returns
    -------
    q : (S,) float64
        Mean ``|q|`` of the pixels of each shell  [cycles/pixel, or cycles/m with ``pixel_m``];
        the half-period resolution at ``q`` is ``1 / (2 q)``.
    prtf : (..., S) float32
        The PRTF of each view; NaN for a shell without a valid pixel. Same device as ``view``.
    """
    xp = get_array_module(view, intensity)
    v = xp.asarray(view)
    inten = to_device(intensity, xp)
    if v.ndim < 2 or v.shape[-1] != v.shape[-2] or v.shape[-1] < 2:
        raise InputError("prtf.view", f"an array of shape {tuple(v.shape)}", "shape (..., N, N) with N >= 2")
    if inten.shape != v.shape:
        raise InputError(
            "prtf.intensity", f"shape {tuple(inten.shape)}", f"the view's shape {tuple(v.shape)}"
        )
    if not (np.issubdtype(inten.dtype, np.floating) or np.issubdtype(inten.dtype, np.integer)):
        raise InputError("prtf.intensity", f"dtype {inten.dtype}", "real intensities (float32)")
    if valid is None:
        ok = xp.ones(v.shape, dtype=bool)
    else:
        ok = to_device(valid, xp)
        if ok.shape != v.shape or ok.dtype != bool:
            raise InputError(
                "prtf.valid",
                f"{ok.dtype} array of shape {tuple(ok.shape)}",
                f"bool of the view's shape {tuple(v.shape)}",
            )
    n = v.shape[-1]
    if n_shells is None:
        n_shells = n // 2
    check_positive("prtf.n_shells", n_shells, integer=True)
    n_shells = int(n_shells)
    if pixel_m is not None:
        check_positive("prtf.pixel_m", pixel_m)

    inten = inten.astype(xp.float32)
    amp = xp.abs(xp.fft.fftshift(fft2(v.astype(xp.complex64)), axes=(-2, -1)))
    ok = ok & (inten > 0) & xp.isfinite(inten)
    ratio = xp.where(ok, amp / xp.sqrt(xp.where(ok, inten, np.float32(1))), np.float32(0))

    c = xp.arange(n, dtype=xp.float64) - n // 2
    r = xp.sqrt(c[:, None] ** 2 + c[None, :] ** 2)  # (N, N) [pixels]
    width = (n / 2) / n_shells
    shell = xp.floor(r / width).astype(xp.int64)
    inside = shell < n_shells
    shell = xp.where(inside, shell, n_shells)  # bin S collects the corners, dropped below
    q = xp.bincount(shell.ravel(), weights=r.ravel(), minlength=n_shells + 1)[:n_shells]
    count = xp.bincount(shell.ravel(), minlength=n_shells + 1)[:n_shells]
    q = q / xp.maximum(count, 1) / n
    if pixel_m is not None:
        q = q / float(pixel_m)

    lead = v.shape[:-2]
    nb = math.prod(lead)
    idx = (xp.arange(nb, dtype=xp.int64)[:, None] * (n_shells + 1) + shell.ravel()[None, :]).ravel()
    sums = xp.bincount(idx, weights=ratio.reshape(-1).astype(xp.float64), minlength=nb * (n_shells + 1))
    counts = xp.bincount(idx, weights=ok.reshape(-1).astype(xp.float64), minlength=nb * (n_shells + 1))
    sums = sums.reshape(nb, n_shells + 1)[:, :n_shells]
    counts = counts.reshape(nb, n_shells + 1)[:, :n_shells]
    out = xp.where(counts > 0, sums / xp.maximum(counts, 1), np.nan).astype(xp.float32)
    return q.astype(xp.float64), out.reshape(lead + (n_shells,))


def _first_crossing(q: np.ndarray, p: np.ndarray, threshold: float) -> float:
    """Half-period resolution 1/(2 q) where ``p`` first falls below ``threshold`` (1-D host arrays)."""
    keep = np.isfinite(p) & np.isfinite(q)
    q, p = q[keep], p[keep]
    if q.size == 0:
        return math.nan
    below = np.nonzero(p < threshold)[0]
    if below.size == 0:  # never crosses: limited by the extent of the pattern
        qc = q[-1]
    elif below[0] == 0:
        qc = q[0]
    else:
        k = below[0]
        q0, q1, p0, p1 = q[k - 1], q[k], p[k - 1], p[k]
        qc = q0 + (threshold - p0) * (q1 - q0) / (p1 - p0)
    return math.inf if qc <= 0 else float(1.0 / (2.0 * qc))


def prtf_resolution(q, prtf, *, threshold: float = 1.0 / math.e):
    """Half-period resolution where the PRTF first drops below ``threshold``.

    The crossing is interpolated linearly in ``q`` between the last shell at or above the
    threshold and the first shell below it (NaN shells are skipped). When the PRTF never drops
    below the threshold the result is ``1 / (2 q_max)``, the limit set by the extent of the
    pattern; when the first shell is already below, ``1 / (2 q_0)`` (``inf`` for ``q_0 = 0``).

    Parameters
    ----------
    q : (S,) float64
        Shell frequencies from :func:`prtf`  [cycles/pixel or cycles/m].
    prtf : (S,) or (..., S) float32
        PRTF of one or several views.
    threshold : float
        Criterion; ``1/e`` by default (Chapman et al. 2006).

    Returns
    -------
    float, or (...) float64 NumPy array for batched input
        Half-period resolution  [pixels, or m when ``q`` is in 1/m]; NaN when no shell is valid.
    """
    qh = np.asarray(to_host(q), dtype=np.float64)
    ph = np.asarray(to_host(prtf), dtype=np.float64)
    if qh.ndim != 1:
        raise InputError("prtf_resolution.q", f"an array of shape {qh.shape}", "shape (S,)")
    if ph.ndim < 1 or ph.shape[-1] != qh.shape[0]:
        raise InputError(
            "prtf_resolution.prtf", f"an array of shape {ph.shape}", f"shape (..., {qh.shape[0]})"
        )
    check_positive(
        "prtf_resolution.threshold", threshold, expected="a positive finite number (1/e by default)"
    )
    if ph.ndim == 1:
        return _first_crossing(qh, ph, float(threshold))
    flat = ph.reshape(-1, ph.shape[-1])
    res = np.array([_first_crossing(qh, row, float(threshold)) for row in flat], dtype=np.float64)
    return res.reshape(ph.shape[:-1])


# ---------------------------------------------------------------------------------------------
# 10-90 % edge resolution
# ---------------------------------------------------------------------------------------------
def _select_edges(mag: np.ndarray, cand: np.ndarray, n_edges: int, min_distance: float) -> np.ndarray:
    """Greedy choice of the strongest candidates at least ``min_distance`` apart: (K,) indices."""
    order = np.argsort(-mag, kind="stable")
    cand, mag = cand[order], mag[order]
    alive = np.ones(len(cand), dtype=bool)
    chosen = []
    d2 = float(min_distance) ** 2
    while len(chosen) < n_edges:
        left = np.nonzero(alive)[0]
        if left.size == 0:
            break
        k = left[0]
        chosen.append(order[k])
        alive &= ((cand[:, 0] - cand[k, 0]) ** 2 + (cand[:, 1] - cand[k, 1]) ** 2) >= d2
    return np.asarray(chosen, dtype=np.int64)


def _rise_10_90(profiles: np.ndarray, t: np.ndarray):
    """10 %-90 % rise of rising profiles (K, L) sampled at ``t`` (L,) [pixels], edge at t = 0.

    The low level is the minimum of the profile at ``t <= 0``, the high level its maximum at
    ``t >= 0``; the crossings are those nearest the centre, interpolated linearly.

    Returns (K,) widths [pixels], NaN where the profile does not rise through 10 % and 90 %.
    """
    c = int(np.argmin(np.abs(t)))
    low = profiles[:, : c + 1].min(axis=1)
    high = profiles[:, c:].max(axis=1)
    contrast = high - low
    widths = np.full(len(profiles), np.nan)
    for k in range(len(profiles)):
        if not contrast[k] > 0:
            continue
        pk = (profiles[k] - low[k]) / contrast[k]
        lo = np.nonzero(pk[: c + 1] <= 0.1)[0]  # last sample at or below 10 % before the centre
        hi = np.nonzero(pk[c:] >= 0.9)[0]  # first sample at or above 90 % after it
        if lo.size == 0 or hi.size == 0:
            continue
        i, j = lo[-1], c + hi[0]
        if i + 1 > j:
            continue
        t10 = t[i] + (0.1 - pk[i]) * (t[i + 1] - t[i]) / (pk[i + 1] - pk[i]) if pk[i + 1] > pk[i] else t[i]
        t90 = (
            t[j - 1] + (0.9 - pk[j - 1]) * (t[j] - t[j - 1]) / (pk[j] - pk[j - 1])
            if pk[j] > pk[j - 1]
            else t[j]
        )
        if t90 > t10:
            widths[k] = t90 - t10
    return widths


def edge_resolution(
    view,
    *,
    pixel_m: float,
    n_edges: int = 24,
    half_length: float = 8.0,
    step: float = 0.1,
    average_width: int = 5,
    smooth: float = 1.0,
    min_distance: float | None = None,
    min_strength: float = 0.3,
    quantity: str = "amplitude",
) -> dict:
    """10 %-90 % edge resolution of a view, from its strongest edges.

    Edges are the local maxima of the gradient magnitude (Sobel, on the image blurred by a
    Gaussian of ``smooth`` pixels) that reach ``min_strength`` times the strongest, taken
    greedily from the strongest on, at least ``min_distance`` pixels apart and at least
    ``half_length + average_width`` pixels from the border. Through each, a profile of the
    *unsmoothed* image is sampled along the gradient direction every ``step`` pixels over
    ``[-half_length, half_length]`` (cubic-spline interpolation, ``map_coordinates``) and
    averaged over ``average_width`` parallel lines one pixel apart along the edge. Its low level
    is its minimum before the edge (``t <= 0``), its high level its maximum after it
    (``t >= 0``), so that the edges of features narrower than the profile (the slits of a cut
    membrane) are measured too; a profile is rejected when it does not pass 10 % before the
    centre and 90 % after it. The rise distance between the 10 % and 90 % crossings nearest the
    centre (linear interpolation) is the edge's width; for a step blurred by a Gaussian of
    standard deviation ``sigma`` it is ``2.563 sigma``. Overshoot (ringing) at an edge raises
    the high level and widens the figure; a feature narrower than about the edge width itself
    does not reach its full level, and its rise is that of the feature's profile.

    Parameters
    ----------
    view : (N, M) complex64 or float32
        One phased view (its amplitude, or intensity, is used), or a real image used as it is
        (e.g. a phase image ``angle(view)``; squared for ``quantity="intensity"``).
    pixel_m : float
        Pixel size of the view  [m].
    n_edges : int
        Most edges measured.
    half_length : float
        Half length of each profile  [pixels]; longer than the edge width (10-90 %), short enough
        not to reach a brighter neighbouring feature.
    step : float
        Sampling step along the profile  [pixels].
    average_width : int
        Parallel profiles averaged per edge (1 = a single line).
    smooth : float
        Gaussian sigma of the blur used to find edges and their direction  [pixels]; 0 = none.
    min_distance : float, optional
        Least distance between two measured edges  [pixels]; default ``2 * half_length``.
    min_strength : float
        Least gradient magnitude of a measured edge, relative to the strongest, in (0, 1].
    quantity : {"amplitude", "intensity"}
        Profile of ``|view|`` or ``|view|**2``.

    Returns
    -------
    dict
        Host values: ``median_m``, ``iqr_m`` (interquartile range), ``mean_m``, ``std_m``  [m]
        (NaN when no edge was accepted); ``n_edges`` (edges accepted), ``n_candidates`` (edges
        profiled); ``widths_m`` (K,) float64 [m] and ``points_px`` (K, 2) float64 ``(row, col)``
        and ``directions`` (K, 2) float64 (unit gradient ``(dy, dx)``) of the accepted edges.
    """
    xp = get_array_module(view)
    img = xp.asarray(view)
    if img.ndim != 2 or min(img.shape) < 8:
        raise InputError(
            "edge_resolution.view", f"an array of shape {tuple(img.shape)}", "one (N, M) image, N, M >= 8"
        )
    check_positive("edge_resolution.pixel_m", pixel_m)
    check_positive("edge_resolution.n_edges", n_edges, integer=True)
    check_positive("edge_resolution.half_length", half_length)
    check_positive("edge_resolution.step", step)
    check_positive("edge_resolution.average_width", average_width, integer=True)
    check_positive(
        "edge_resolution.smooth", smooth, allow_zero=True, expected="a non-negative number of pixels"
    )
    if not (isinstance(min_strength, _REAL) and 0 < min_strength <= 1):
        raise InputError("edge_resolution.min_strength", repr(min_strength), "a number in (0, 1]")
    if quantity not in ("amplitude", "intensity"):
        raise InputError("edge_resolution.quantity", repr(quantity), "'amplitude' or 'intensity'")
    if min_distance is None:
        min_distance = 2.0 * half_length
    ndi = scipy_module(xp, "ndimage")

    a = xp.abs(img).astype(xp.float32) if xp.iscomplexobj(img) else img.astype(xp.float32)
    if quantity == "intensity":
        a = a * a
    s = ndi.gaussian_filter(a, float(smooth), mode="nearest") if smooth > 0 else a
    gy = ndi.sobel(s, axis=0, mode="nearest")
    gx = ndi.sobel(s, axis=1, mode="nearest")
    mag = xp.sqrt(gy * gy + gx * gx)
    size = 2 * int(math.ceil(max(1.0, smooth))) + 1
    peaks = (mag == ndi.maximum_filter(mag, size=size, mode="nearest")) & (mag >= min_strength * mag.max())
    margin = int(math.ceil(half_length + average_width / 2 + 2))
    border = xp.zeros(a.shape, dtype=bool)
    border[margin:-margin, margin:-margin] = True
    peaks &= border & (mag > 0)
    iy, ix = xp.nonzero(peaks)
    # one host transfer: (C, 5) candidate row, column, strength and gradient (gy, gx)
    packed = xp.stack(
        [
            iy.astype(xp.float64),
            ix.astype(xp.float64),
            mag[iy, ix].astype(xp.float64),
            gy[iy, ix].astype(xp.float64),
            gx[iy, ix].astype(xp.float64),
        ],
        axis=-1,
    )
    packed = np.asarray(to_host(packed), dtype=np.float64).reshape(-1, 5)
    cand_h, mag_h, g_h = packed[:, 0:2], packed[:, 2], packed[:, 3:5]
    chosen = _select_edges(mag_h, cand_h, int(n_edges), float(min_distance))
    empty = {
        "median_m": math.nan,
        "iqr_m": math.nan,
        "mean_m": math.nan,
        "std_m": math.nan,
        "n_edges": 0,
        "n_candidates": int(len(chosen)),
        "widths_m": np.zeros(0),
        "points_px": np.zeros((0, 2)),
        "directions": np.zeros((0, 2)),
    }
    if chosen.size == 0:
        return empty
    pts = cand_h[chosen]
    d = g_h[chosen] / np.linalg.norm(g_h[chosen], axis=1, keepdims=True)  # (K, 2) unit (dy, dx)
    tang = np.stack([-d[:, 1], d[:, 0]], axis=1)
    t = np.arange(-half_length, half_length + step / 2, step)
    offs = np.arange(int(average_width)) - (int(average_width) - 1) / 2
    # coordinates (2, K, W, L): point + t * normal + o * tangent
    coords = (
        pts.T[:, :, None, None]
        + d.T[:, :, None, None] * t[None, None, None, :]
        + tang.T[:, :, None, None] * offs[None, None, :, None]
    )
    k, w, ln = coords.shape[1:]
    samples = ndi.map_coordinates(a, to_device(coords.reshape(2, -1), xp), order=3, mode="nearest")
    profiles = np.asarray(to_host(samples), dtype=np.float64).reshape(k, w, ln).mean(axis=1)
    widths = _rise_10_90(profiles, t)
    good = np.isfinite(widths)
    if not good.any():
        return empty
    wm = widths[good] * float(pixel_m)
    q25, q50, q75 = np.percentile(wm, [25, 50, 75])
    return {
        "median_m": float(q50),
        "iqr_m": float(q75 - q25),
        "mean_m": float(wm.mean()),
        "std_m": float(wm.std()),
        "n_edges": int(good.sum()),
        "n_candidates": int(len(chosen)),
        "widths_m": wm,
        "points_px": pts[good],
        "directions": d[good],
    }


# ---------------------------------------------------------------------------------------------
# error against the true exit wave
# ---------------------------------------------------------------------------------------------
def view_error(recovered, true, *, upsample: int = 20) -> dict:
    """Error of phased views against the true exit waves, up to the ambiguities of phasing.

    The recovered view and its twin (:func:`~xstereo_gpu.phasing.align.twin`) are registered onto
    the true view with subpixel DFT registration; the better-correlating one is shifted onto it
    (cyclic Fourier shift) and the optimal complex scalar ``g = <a, t> / <a, a>`` (global phase
    and gain) is applied. The normalised RMS error is then
    ``E = sum |g a - t|**2 / sum |t|**2`` (0 = perfect, 1 = no better than zero); the
    amplitude-only figure ``sum (|g a| - |t|)**2 / sum |t|**2`` is reported too.

    Parameters
    ----------
    recovered : (..., N, N) complex64
        Phased views (e.g. ``PhasingResult.views``).
    true : (..., N, N) complex64
        True exit waves on the same grid (e.g. ``GroundTruth.views``); leading axes broadcast.
    upsample : int
        Registration accuracy ``1/upsample`` pixel.

    Returns
    -------
    dict
        ``error`` (normalised squared error ``E``), ``rms_error`` (``sqrt(E)``),
        ``amplitude_error``, ``shift_px`` ``(dy, dx)`` [pixels] applied to the (twinned) recovered
        view, ``twin`` (bool: the twin was used), ``gain`` (``|g|``), ``phase_rad`` (``angle(g)``).
        Host values: Python scalars (``shift_px`` a list) for (N, N) inputs, NumPy arrays of the
        leading shape (``shift_px`` (..., 2)) for batched inputs.
    """
    xp = get_array_module(recovered, true)
    rec = xp.asarray(recovered)
    tru = to_device(true, xp)
    if rec.ndim < 2 or tru.ndim < 2 or rec.shape[-2:] != tru.shape[-2:]:
        raise InputError(
            "view_error.recovered",
            f"shapes {tuple(rec.shape)} and {tuple(tru.shape)} (true)",
            "(..., N, N) arrays on the same grid",
        )
    check_positive("view_error.upsample", upsample, integer=True)
    lead = np.broadcast_shapes(rec.shape[:-2], tru.shape[:-2])
    rec = xp.broadcast_to(rec.astype(xp.complex64), lead + rec.shape[-2:])
    tru = xp.broadcast_to(tru.astype(xp.complex64), lead + tru.shape[-2:])
    cand = xp.stack([rec, twin(rec)])  # (2, ..., N, N)
    shifts, peak = register_translation(tru, cand, upsample=int(upsample))
    use_twin = peak[1] > peak[0]
    chosen = xp.where(use_twin[..., None, None], cand[1], cand[0])
    sh = xp.where(use_twin[..., None], shifts[1], shifts[0])
    a = fourier_shift(chosen, sh).astype(xp.complex128)
    t = tru.astype(xp.complex128)
    axes = (-2, -1)
    g = xp.sum(xp.conj(a) * t, axis=axes) / xp.maximum(xp.sum(xp.abs(a) ** 2, axis=axes), 1e-300)
    ga = g[..., None, None] * a
    tn = xp.maximum(xp.sum(xp.abs(t) ** 2, axis=axes), 1e-300)
    err = xp.sum(xp.abs(ga - t) ** 2, axis=axes) / tn
    amp_err = xp.sum((xp.abs(ga) - xp.abs(t)) ** 2, axis=axes) / tn
    host = to_host(
        xp.stack(
            [err, amp_err, xp.abs(g), xp.angle(g), use_twin.astype(xp.float64), sh[..., 0], sh[..., 1]],
            axis=-1,
        )
    )
    host = np.asarray(host, dtype=np.float64)
    out = {
        "error": host[..., 0],
        "rms_error": np.sqrt(host[..., 0]),
        "amplitude_error": host[..., 1],
        "shift_px": host[..., 5:7],
        "twin": host[..., 4] > 0.5,
        "gain": host[..., 2],
        "phase_rad": host[..., 3],
    }
    if not lead:
        out = {
            k: (v.tolist() if k == "shift_px" else bool(v) if k == "twin" else float(v))
            for k, v in out.items()
        }
    return out
