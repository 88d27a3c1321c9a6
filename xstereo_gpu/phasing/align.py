"""Registration of reconstructions: subpixel shifts, twin images, global phase, averaging.

Phase retrieval determines an image only up to a translation (cyclic, on the DFT grid), a global
phase and the *twin* (the complex conjugate of the point-inverted image, which has the same
diffraction pattern). This module removes those ambiguities between the runs of one view
(:func:`align_runs`, before the coherent average) and between the two views of a stereo pair
(:func:`align_views`, so that both come out in the same orientation).

Everything is batched over leading axes and runs on NumPy or CuPy (module taken from the input).

References
----------
.. [1] M. Guizar-Sicairos, S. T. Thurman and J. R. Fienup, "Efficient subpixel image registration
   algorithms", Opt. Lett. 33, 156-158 (2008).
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import get_array_module, to_host
from ..checks import check_positive
from ..errors import InputError
from ._fft import fft2, ifft2

__all__ = [
    "register_translation",
    "fourier_shift",
    "twin",
    "centre_shift",
    "align_runs",
    "align_views",
]


def _check_images(name: str, a, ndim_min: int = 2):
    if a.ndim < ndim_min:
        raise InputError(
            name, f"an array of shape {tuple(a.shape)}", f"at least {ndim_min} dimensions (..., N, N)"
        )


def _peaks(a, xp):
    """Flat argmax of ``|a|`` per batch image: (B, H, W) -> (B,) indices and (B,) values."""
    b = a.shape[0]
    mag = xp.abs(a).reshape(b, -1)
    idx = xp.argmax(mag, axis=-1)
    val = xp.take_along_axis(mag, idx[:, None], axis=-1)[:, 0]
    return idx, val


def register_translation(reference, image, *, upsample: int = 20):
    """Subpixel translation between images by DFT upsampling (Guizar-Sicairos et al. 2008).

    The cross-correlation is computed with FFTs; its integer peak is refined by a matrix-multiply
    DFT of the cross-power spectrum, upsampled ``upsample`` times, in a 1.5-pixel neighbourhood
    of the coarse peak. Batched over leading axes (batched ``matmul``, no Python loop).

    Parameters
    ----------
    reference : (..., H, W) complex64 or float32
        Reference images.
    image : (..., H, W) complex64 or float32
        Images to register; leading axes broadcast against ``reference``'s.
    upsample : int
        Upsampling factor: shifts are found to ``1/upsample`` pixel. 1 = integer registration.

    Returns
    -------
    shifts : (..., 2) float64
        ``(dy, dx)``  [pixels] such that ``fourier_shift(image, shifts)`` best matches
        ``reference``; each component in ``[-H/2, H/2)`` (cyclic).
    peak : (...) float32
        Normalised correlation peak ``|sum reference * conj(shifted image)|`` /
        ``(||reference|| ||image||)``, in ``[0, 1]``; 1 for identical images up to a shift and a
        global phase.
    """
    xp = get_array_module(reference, image)
    ref = xp.asarray(reference)
    img = xp.asarray(image)
    _check_images("register_translation.reference", ref)
    _check_images("register_translation.image", img)
    if ref.shape[-2:] != img.shape[-2:]:
        raise InputError(
            "register_translation.image",
            f"images of shape {img.shape[-2:]}",
            f"the reference's image shape {ref.shape[-2:]}",
        )
    upsample = int(check_positive("register_translation.upsample", upsample, integer=True))
    h, w = ref.shape[-2:]
    lead = np.broadcast_shapes(ref.shape[:-2], img.shape[:-2])
    nb = math.prod(lead)
    fr = fft2(ref.astype(xp.complex64))
    fi = fft2(img.astype(xp.complex64))
    product = fr * xp.conj(fi)
    product = xp.broadcast_to(product, lead + (h, w)).reshape(nb, h, w)
    norm = xp.sqrt(
        xp.sum(xp.abs(ref.astype(xp.complex64)) ** 2, axis=(-2, -1))
        * xp.sum(xp.abs(img.astype(xp.complex64)) ** 2, axis=(-2, -1))
    )
    norm = xp.broadcast_to(norm, lead).reshape(nb)

    cc = ifft2(product)
    idx, val = _peaks(cc, xp)
    shifts = xp.stack([idx // w, idx % w], axis=-1).astype(xp.float64)
    dims = xp.asarray([h, w], dtype=xp.float64)
    shifts = xp.where(shifts > xp.floor(dims / 2), shifts - dims, shifts)
    if upsample > 1:
        size = int(math.ceil(upsample * 1.5))
        dftshift = float(size // 2)
        offset = dftshift - shifts * upsample  # (B, 2)
        k = xp.arange(size, dtype=xp.float64)
        fy = xp.fft.fftfreq(h, upsample).astype(xp.float64)
        fx = xp.fft.fftfreq(w, upsample).astype(xp.float64)
        # kernels[b, k, n] = exp(-2 pi i (k - offset_b) f_n), applied to conj(product), conj'd back
        kr = xp.exp((-2j * np.pi) * (k[None, :, None] - offset[:, 0, None, None]) * fy[None, None, :])
        kc = xp.exp((-2j * np.pi) * (k[None, :, None] - offset[:, 1, None, None]) * fx[None, None, :])
        kr = kr.astype(xp.complex64)
        kc = kc.astype(xp.complex64)
        data = xp.conj(product)
        up = xp.matmul(kr, xp.matmul(data, kc.transpose(0, 2, 1)))  # (B, size, size)
        idx, val = _peaks(up, xp)
        frac = xp.stack([idx // size, idx % size], axis=-1).astype(xp.float64) - dftshift
        shifts = shifts + frac / upsample
        val = val / np.float32(h * w)
    peak = (val / xp.maximum(norm, np.float32(1e-30))).astype(xp.float32)
    return shifts.reshape(lead + (2,)), peak.reshape(lead)


def fourier_shift(image, shifts):
    """Translate images by subpixel amounts with a Fourier phase ramp (cyclic).

    Parameters
    ----------
    image : (..., H, W) complex64 or float32
    shifts : (..., 2) float
        ``(dy, dx)``  [pixels]; positive moves the content towards larger row/column indices.
        Leading axes broadcast against ``image``'s.

    Returns
    -------
    (..., H, W) complex64, or float32 for a real input (real part of the shifted image).
    """
    xp = get_array_module(image, shifts)
    img = xp.asarray(image)
    _check_images("fourier_shift.image", img)
    sh = xp.asarray(shifts, dtype=xp.float64)
    if sh.shape[-1:] != (2,):
        raise InputError("fourier_shift.shifts", f"an array of shape {tuple(sh.shape)}", "shape (..., 2)")
    h, w = img.shape[-2:]
    fy = xp.fft.fftfreq(h).astype(xp.float64)
    fx = xp.fft.fftfreq(w).astype(xp.float64)
    ey = xp.exp((-2j * np.pi) * sh[..., 0:1] * fy).astype(xp.complex64)  # (..., H)
    ex = xp.exp((-2j * np.pi) * sh[..., 1:2] * fx).astype(xp.complex64)  # (..., W)
    spec = fft2(img.astype(xp.complex64))
    spec = spec * (ey[..., :, None] * ex[..., None, :])
    out = ifft2(spec, overwrite=True)
    if not xp.iscomplexobj(img):
        return xp.ascontiguousarray(out.real).astype(xp.float32)
    return out


def twin(image):
    """The twin image: complex conjugate of the image point-inverted on the DFT grid.

    ``twin(x)[i, j] = conj(x[-i mod N, -j mod N])`` =
    ``conj(roll(flip(flip(x, -1), -2), 1, (-2, -1)))``; for even N this is the inversion about
    pixel ``(N//2, N//2)``. ``|fft2(twin(x))| == |fft2(x)|``, and ``twin(twin(x)) == x``.

    Parameters
    ----------
    image : (..., H, W) complex64

    Returns
    -------
    (..., H, W) complex64
    """
    xp = get_array_module(image)
    flipped = xp.flip(xp.flip(image, axis=-1), axis=-2)
    return xp.conj(xp.roll(flipped, (1, 1), axis=(-2, -1)))


def centre_shift(image):
    """Shift that brings the (cyclic) centroid of ``|image|**2`` to pixel ``(H//2, W//2)``.

    The centroid is the circular mean (angle of the first Fourier coefficient of the row and
    column profiles), so an object wrapped around the frame edge is handled correctly.

    Parameters
    ----------
    image : (..., H, W) complex64 or float32

    Returns
    -------
    (..., 2) float64
        ``(dy, dx)`` for :func:`fourier_shift`, each in ``[-H/2, H/2)``  [pixels].
    """
    xp = get_array_module(image)
    p = xp.abs(xp.asarray(image)).astype(xp.float64) ** 2
    out = []
    for axis, other in ((-2, -1), (-1, -2)):
        n = p.shape[axis]
        profile = xp.sum(p, axis=other)  # (..., n)
        phase = xp.exp((2j * np.pi / n) * xp.arange(n, dtype=xp.float64))
        centroid = xp.angle(xp.sum(profile * phase, axis=-1)) * (n / (2 * np.pi))
        d = (n // 2) - centroid
        out.append(d - n * xp.floor(d / n + 0.5))  # wrap into [-n/2, n/2)
    return xp.stack(out, axis=-1)


def _remove_phase(reference, images):
    """Multiply ``images`` by ``exp(-i angle(<reference, image>))`` (inner product over pixels)."""
    xp = get_array_module(images)
    ip = xp.sum(xp.conj(reference) * images, axis=(-2, -1))
    rot = xp.exp(-1j * xp.angle(ip)).astype(xp.complex64)
    return (images * rot[..., None, None]).astype(xp.complex64)


def _zero_mean_phase(images):
    """Global phase convention: ``sum(image)`` real and positive (the mean wave has phase 0)."""
    xp = get_array_module(images)
    rot = xp.exp(-1j * xp.angle(xp.sum(images, axis=(-2, -1)))).astype(xp.complex64)
    return (images * rot[..., None, None]).astype(xp.complex64)


def _register_with_twin(reference, images, upsample):
    """Register images and their twins onto ``reference``; keep whichever correlates better."""
    xp = get_array_module(images)
    cand = xp.stack([images, twin(images)])
    shifts, peak = register_translation(reference, cand, upsample=upsample)
    use_twin = peak[1] > peak[0]
    chosen = xp.where(use_twin[..., None, None], cand[1], cand[0])
    sh = xp.where(use_twin[..., None], shifts[1], shifts[0])
    pk = xp.where(use_twin, peak[1], peak[0])
    aligned = fourier_shift(chosen, sh)
    return _remove_phase(reference, aligned), sh, use_twin, pk


def _average(aligned, keep):
    """Mean over the runs axis of ``aligned`` (V, R, N, N), restricted to ``keep`` (V, R) when given."""
    xp = get_array_module(aligned)
    if keep is None:
        return aligned.mean(axis=1).astype(xp.complex64)
    w = xp.asarray(keep, dtype=xp.float32)
    w = w / xp.maximum(w.sum(axis=1, keepdims=True), 1)
    return xp.einsum("vr,vrij->vij", w.astype(xp.complex64), aligned).astype(xp.complex64)


def align_runs(
    runs,
    *,
    upsample: int = 20,
    eps=None,
    keep=None,
    centre: bool = True,
    runs_per_batch: int | None = None,
    out=None,
):
    """Superpose the runs of each view: twin choice, subpixel shift and global phase.

    The reference of view ``v`` is its run with the lowest ``eps`` (run 0 without ``eps``),
    optionally centred (cyclic centroid of ``|ref|**2`` moved to pixel ``(N//2, N//2)``) and given
    the global phase that makes ``sum(ref)`` real positive. Every run (the reference included) is
    then replaced by itself or its twin, whichever correlates better with the reference, shifted
    onto it with subpixel DFT registration and multiplied by ``exp(-i angle(<ref, run>))``.

    Parameters
    ----------
    runs : (V, R, N, N) complex64
        Best iterates of ``R`` runs for each of ``V`` views.
    upsample : int
        Registration accuracy ``1/upsample`` pixel.
    eps : (V, R) float, optional
        Per-run quality (lower is better), e.g. ``best_eps``; selects each view's reference.
    keep : (V, R) bool, optional
        Runs that enter the coherent average (default: all).
    centre : bool
        Centre the reference before aligning the runs on it.
    runs_per_batch : int, optional
        Register this many runs at a time (the temporaries scale with it; each run's result is
        the same as in one batch).
    out : (V, R, N, N) complex64, optional
        Where the aligned runs go; may be ``runs`` itself (in place, batch by batch: the reference
        is copied first).

    Returns
    -------
    aligned : (V, R, N, N) complex64
    info : dict
        ``reference`` (V,) int: index of the reference run; ``shifts`` (V, R, 2) float64
        [pixels] applied to each (possibly twinned) run; ``twin`` (V, R) bool: run replaced by
        its twin; ``peak`` (V, R) float32: normalised correlation with the reference;
        ``average`` (V, N, N) complex64: coherent average over the kept runs.
        Arrays live on the input's device.
    """
    xp = get_array_module(runs)
    runs = xp.asarray(runs)
    if runs.ndim != 4:
        raise InputError("align_runs.runs", f"an array of shape {tuple(runs.shape)}", "shape (V, R, N, N)")
    v = runs.shape[0]
    if eps is None:
        ref_idx = xp.zeros(v, dtype=xp.int64)
    else:
        eps = xp.asarray(eps)
        if eps.shape != runs.shape[:2]:
            raise InputError("align_runs.eps", f"shape {tuple(eps.shape)}", f"shape {runs.shape[:2]}")
        ref_idx = xp.argmin(eps, axis=1)
    ref = runs[xp.arange(v), ref_idx].astype(xp.complex64)  # (V, N, N)
    if centre:
        ref = fourier_shift(ref, centre_shift(ref))
    ref = _zero_mean_phase(ref)
    if runs_per_batch is None and out is None:
        aligned, sh, use_twin, pk = _register_with_twin(ref[:, None], runs, upsample)
    else:
        r = runs.shape[1]
        b = r if runs_per_batch is None else max(1, int(runs_per_batch))
        aligned = xp.empty(runs.shape, dtype=xp.complex64) if out is None else out
        parts = []
        for lo in range(0, r, b):
            hi = min(r, lo + b)
            a, *rest = _register_with_twin(ref[:, None], runs[:, lo:hi], upsample)
            aligned[:, lo:hi] = a
            parts.append(rest)
            del a
        sh, use_twin, pk = (xp.concatenate([p[k] for p in parts], axis=1) for k in range(3))
    info = {
        "reference": ref_idx,
        "shifts": sh,
        "twin": use_twin,
        "peak": pk,
        "average": _average(aligned, keep),
    }
    return aligned, info


def align_views(views, *, upsample: int = 20):
    """Bring the two views of a stereo pair into the same frame and orientation.

    The left view is centred (cyclic centroid of ``|left|**2`` at pixel ``(N//2, N//2)``,
    subpixel Fourier shift) and given the global phase that makes ``sum(left)`` real positive.
    The right view is replaced by itself or its twin, whichever correlates better with the left
    (both views then share one orientation), registered onto the left with subpixel DFT
    registration and multiplied by ``exp(-i angle(<left, right>))``. The registration puts zero
    disparity at the plane that best superposes the views: depth is relative.

    Parameters
    ----------
    views : (2, N, N) complex64
        Left and right views.
    upsample : int
        Registration accuracy ``1/upsample`` pixel.

    Returns
    -------
    aligned : (2, N, N) complex64
    info : dict
        ``left_shift`` (2,) and ``right_shift`` (2,) float64  [pixels] applied to each view;
        ``right_twin`` bool (the right view was replaced by its twin); ``peak`` float
        (normalised correlation of the aligned views). Host values.
    """
    xp = get_array_module(views)
    views = xp.asarray(views)
    if views.ndim != 3 or views.shape[0] != 2:
        raise InputError("align_views.views", f"an array of shape {tuple(views.shape)}", "shape (2, N, N)")
    views = views.astype(xp.complex64)
    left_shift = centre_shift(views[0])
    left = _zero_mean_phase(fourier_shift(views[0], left_shift))
    right, sh, use_twin, pk = _register_with_twin(left, views[1], upsample)
    info = {
        "left_shift": np.asarray(to_host(left_shift)),
        "right_shift": np.asarray(to_host(sh)),
        "right_twin": bool(to_host(use_twin)),
        "peak": float(to_host(pk)),
    }
    return xp.stack([left, right]), info
