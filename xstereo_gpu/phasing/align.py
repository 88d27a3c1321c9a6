"""Registration of reconstructions: subpixel shifts, twin images, global phase, averaging.

Phase retrieval determines an image only up to a translation (cyclic, on the DFT grid), a global
phase and the *twin* (the complex conjugate of the point-inverted image, which has the same
diffraction pattern). This module removes those ambiguities between the runs of one view
(:func:`align_runs`, before the coherent average) and between the two views of a stereo pair
(:func:`align_views`, so that both come out in the same orientation: there by what a stereo pair
needs, rows that correspond and a consistent trial disparity map, not by the resemblance of two views
that differ by the disparity of a 3D object).

Everything is batched over leading axes and runs on NumPy or CuPy (module taken from the input).

References
----------
.. [1] M. Guizar-Sicairos, S. T. Thurman and J. R. Fienup, "Efficient subpixel image registration
   algorithms", Opt. Lett. 33, 156-158 (2008).
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import get_array_module, scipy_module, to_host
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
    "AMBIGUOUS_TWIN_MARGIN",
    "AMBIGUOUS_PROFILE_MARGIN",
    "EQUIVALENT_READINGS",
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


#: A twin choice whose score margin ``(best - other) / best`` is below this is ambiguous (when the two
#: readings differ: see :func:`align_views`).
AMBIGUOUS_TWIN_MARGIN = 0.02
#: ... and so is one whose row profiles fit equally well: relative difference of the two readings'
#: row-profile correlations below this (the trial match alone then decides, and it prefers the
#: flatter reading).
AMBIGUOUS_PROFILE_MARGIN = 0.01
#: Readings of the right view whose amplitudes correlate at least this well give the same cloud (the
#: amplitude cross, symmetric under the point inversion of 3D space, has readings that differ only by
#: noise and phasing errors: 0.972 on the demo's seed 0; the phase cross's, which are not, 0.82).
EQUIVALENT_READINGS = 0.95
#: The trial disparity map of the twin choice is computed on views binned to at most this side.
TRIAL_SIDE = 256


def _register_1d(product, norm, upsample: int):
    """Subpixel shift of 1D signals from their cross-power spectra (the 1D case of
    :func:`register_translation`).

    Parameters
    ----------
    product : (B, n) complex
        ``fft(reference) * conj(fft(signal))``, possibly summed over other axes.
    norm : (B,) float
        ``||reference|| ||signal||`` (the peak's normalisation).
    upsample : int
        Shifts to ``1/upsample`` sample.

    Returns
    -------
    shift : (B,) float64
        Samples by which to move the signal onto the reference, in ``[-n/2, n/2)``.
    peak : (B,) float64
        Normalised correlation at the shift.
    """
    xp = get_array_module(product)
    n = product.shape[-1]
    mag = xp.abs(xp.fft.ifft(product, axis=-1))
    idx = xp.argmax(mag, axis=-1)
    val = xp.take_along_axis(mag, idx[:, None], axis=-1)[:, 0]
    shift = idx.astype(xp.float64)
    shift = xp.where(shift > n // 2, shift - n, shift)
    if upsample > 1:
        size = int(math.ceil(upsample * 1.5))
        dftshift = float(size // 2)
        offset = dftshift - shift * upsample
        k = xp.arange(size, dtype=xp.float64)
        f = xp.fft.fftfreq(n, upsample).astype(xp.float64)
        kern = xp.exp((-2j * np.pi) * (k[None, :, None] - offset[:, None, None]) * f[None, None, :])
        up = xp.abs(xp.matmul(kern, xp.conj(product).astype(xp.complex128)[:, :, None])[..., 0])
        j = xp.argmax(up, axis=-1)
        val = xp.take_along_axis(up, j[:, None], axis=-1)[:, 0] / n
        shift = shift + (j.astype(xp.float64) - dftshift) / upsample
    return shift, val / xp.maximum(norm, 1e-30)


def _ramp(shift, n: int, xp):
    """(B, n) complex64 Fourier phase ramps that move a signal by ``shift`` (B,) samples (cyclic)."""
    f = xp.fft.fftfreq(n).astype(xp.float64)
    return xp.exp((-2j * np.pi) * shift[:, None] * f[None, :]).astype(xp.complex64)


def _row_profiles(images):
    """Zero-mean row profiles ``sum_x |image|`` (..., H) float64.

    Disparity moves features along their rows and leaves these sums alone (for features that add up
    linearly in amplitude, overlapping or not; row energies ``sum_x |image|**2`` are not invariant
    where features overlap differently in the two views, measured to move the registration by many
    rows on particles along a curve). On sharp-edged views the Fourier ringing of a subpixel shift
    biases them (measured: up to 0.07 pixel on sharp-edged test shapes). Refining the shift on the
    complex views (the row sums of ``view``, or the power of the 2D cross-correlation summed over the
    horizontal lags) removes that bias on a pure shift but was measured to add 0.25-0.4 pixel on
    particles along a 3D curve, whose features overlap differently in the two views.
    """
    xp = get_array_module(images)
    p = xp.abs(images).sum(axis=-1).astype(xp.float64)
    return p - p.mean(axis=-1, keepdims=True)


def _binned(a, factor: int):
    """Mean over ``factor`` x ``factor`` blocks of the last two axes (their sides divisible by it)."""
    if factor == 1:
        return a
    *lead, h, w = a.shape
    return a.reshape(*lead, h // factor, factor, w // factor, factor).mean(axis=(-3, -1))


def _stereo_agreement(left, candidates, max_disparity: int, window: int):
    """How well each candidate right view matches the left one as a stereo pair.

    A trial disparity map: for every pixel, the best zero-normalised cross-correlation (ZNCC) of
    ``window`` x ``window`` patches of ``|left|`` and ``|candidate|`` over disparities
    ``-max_disparity ... max_disparity`` (along x only); the score is its mean over the left view
    weighted by the local contrast of ``|left|``. A right view in the left's orientation scores
    close to 1 wherever the views see the same surface; the wrong twin matches rows of the object
    with rows of its mirror image and scores lower. Cost: ``2 max_disparity + 1`` box filters of
    the candidates.

    Parameters
    ----------
    left : (H, W) float32
        ``|left view|``.
    candidates : (C, H, W) float32
        ``|candidate right view|``, already registered vertically and horizontally.
    max_disparity : int
        Disparity search range [pixels].
    window : int
        Patch side [pixels], odd.

    Returns
    -------
    (C,) float64 in ``[-1, 1]``.
    """
    xp = get_array_module(candidates)
    ndimage = scipy_module(xp, "ndimage")
    a, b = left, candidates

    def box(x):
        return ndimage.uniform_filter(x, size=(1,) * (x.ndim - 2) + (window, window), mode="wrap")

    mean_a, mean_b = box(a), box(b)
    var_a = xp.maximum(box(a * a) - mean_a * mean_a, 0)
    var_b = xp.maximum(box(b * b) - mean_b * mean_b, 0)
    weight = xp.sqrt(var_a)
    # flat patches (variance lost in float32 cancellation) get a floor: no ZNCC from noise
    var_a = xp.maximum(var_a, np.float32(1e-4) * xp.max(var_a))
    var_b = xp.maximum(var_b, np.float32(1e-4) * xp.max(var_b, axis=(-2, -1), keepdims=True))
    best = xp.full(b.shape, -1.0, dtype=xp.float32)
    for d in range(-max_disparity, max_disparity + 1):
        cov = box(a * xp.roll(b, d, axis=-1)) - mean_a * xp.roll(mean_b, d, axis=-1)
        best = xp.maximum(best, cov / xp.sqrt(var_a * xp.roll(var_b, d, axis=-1)))
    best = xp.clip(best, -1, 1)
    return (best * weight).sum(axis=(-2, -1)).astype(xp.float64) / xp.maximum(weight.sum(), 1e-30)


def _amplitude_correlation(a, b) -> float:
    """Zero-mean normalised correlation of ``|a|`` and ``|b|`` (host float)."""
    xp = get_array_module(a, b)
    x = xp.abs(a).astype(xp.float64)
    y = xp.abs(b).astype(xp.float64)
    x, y = x - x.mean(), y - y.mean()
    return float(to_host((x * y).sum() / xp.sqrt((x * x).sum() * (y * y).sum() + 1e-300)))


def align_views(views, *, upsample: int = 20, max_disparity: int | None = None, window: int = 7):
    """Bring the two views of a stereo pair into the same frame and orientation, using the stereo
    constraint.

    The beams lie in the horizontal plane, so disparity moves features along x only and leaves the
    rows alone; the alignment relies on that and not on the resemblance of the two views (which
    differ by the disparity of a 3D object).

    1. The left view is centred (cyclic centroid of ``|left|**2`` at pixel ``(N//2, N//2)``,
       subpixel Fourier shift) and given the global phase that makes ``sum(left)`` real positive.
    2. Both readings of the right view, itself and its twin (:func:`twin`), are registered
       *vertically* on the left by their row profiles ``sum_x |view|`` (which disparity does not
       change; a full 2D registration instead lets the disparity pull the rows off, by a whole
       period on objects that repeat along y). Then *horizontally* by the correlation of the rows at
       that vertical offset: zero disparity at the plane that best superposes the views (depth is
       relative).
    3. The reading kept has the higher score = (row-profile correlation) x (contrast-weighted mean
       of the best ZNCC of a trial disparity map, :func:`_stereo_agreement`, on views binned to at
       most :data:`TRIAL_SIDE` pixels): what a stereo pair needs. The row profiles are the sound
       evidence (disparity does not change them; the twin turns them upside down). The trial match
       also tells a reading whose rows hold other features (mirrored along x), but between two
       readings that are both consistent stereo pairs it prefers the one with the smoother, flatter
       disparity. The choice is therefore *ambiguous* when the two readings differ (amplitude
       correlation below :data:`EQUIVALENT_READINGS`; readings that agree give the same cloud,
       whichever is kept) and either the score margin ``(best - other) / best`` is below
       :data:`AMBIGUOUS_TWIN_MARGIN` or the row profiles fit equally well (relative difference below
       :data:`AMBIGUOUS_PROFILE_MARGIN`).
    4. The right view is multiplied by ``exp(-i angle(<left, right>))``.

    What the two diffraction patterns cannot tell: each view is known up to its twin, but only
    the *relative* choice matters. Taking the twin of both views is the point inversion of the
    whole object ``(x, y, z) -> (-x, -y, -z)`` (a view of the inverted object along the same beam
    is the inverted view), which no measurement of the pair distinguishes; the left view is
    therefore kept as it is and only the right view's reading is chosen, and
    :func:`xstereo_gpu.accuracy.score` scores a cloud in both orientations. Nor can they tell the
    two readings of an object whose features are laid out centrosymmetrically in (x, y) (feature
    at ``(x, y)`` and one at ``(-x, -y)``, at any depths ``z1``, ``z2``): the right view's twin
    pairs each feature of the left view with its partner, a consistent stereo pair of another
    object (depths ``(z1 - z2) / 2``, flat when ``z1 = z2``; both readings have the same row
    profiles); reported ambiguous. A 3D-centrosymmetric object (``z2 = -z1``: the amplitude cross)
    gives the same object either way: reported equivalent.

    Parameters
    ----------
    views : (2, N, N) complex64
        Left and right views.
    upsample : int
        Registration accuracy ``1/upsample`` pixel.
    max_disparity : int, optional
        Search range of the trial disparity map [view pixels]; default ``N // 8``.
    window : int
        Patch side of the trial disparity map [binned pixels], odd.

    Returns
    -------
    aligned : (2, N, N) complex64
    info : dict
        Host values: ``left_shift`` (2,) and ``right_shift`` (2,) float64  [pixels] applied to
        each view (``right_shift`` to the reading kept); ``right_twin`` bool (the right view was
        replaced by its twin); ``peak`` float (normalised correlation of the rows of the aligned
        views); ``twin_choice`` dict: ``scores``, ``row_profile``, ``trial_match`` (each
        ``[right, twin]``), ``margin``, ``profile_margin``, ``readings_correlation`` (of the two
        readings' amplitudes), ``equivalent`` and ``ambiguous`` (see above).
    """
    xp = get_array_module(views)
    views = xp.asarray(views)
    if views.ndim != 3 or views.shape[0] != 2 or views.shape[1] != views.shape[2]:
        raise InputError("align_views.views", f"an array of shape {tuple(views.shape)}", "shape (2, N, N)")
    n = views.shape[-1]
    upsample = int(check_positive("align_views.upsample", upsample, integer=True))
    window = int(check_positive("align_views.window", window, integer=True))
    if window % 2 == 0:
        raise InputError("align_views.window", repr(window), "an odd number of pixels")
    max_disparity = n // 8 if max_disparity is None else int(max_disparity)
    if not 0 <= max_disparity < n // 2:
        raise InputError(
            "align_views.max_disparity", repr(max_disparity), f"0 <= d < {n // 2} (half the view)"
        )
    views = views.astype(xp.complex64)
    left_shift = centre_shift(views[0])
    left = _zero_mean_phase(fourier_shift(views[0], left_shift))
    cand = xp.stack([views[1], twin(views[1])])  # (2, N, N): the right view, its twin

    # vertical: row profiles (1D FFTs along y)
    p_left, p_cand = _row_profiles(left), _row_profiles(cand)
    product = xp.fft.fft(p_left)[None] * xp.conj(xp.fft.fft(p_cand, axis=-1))
    norm = xp.linalg.norm(p_left) * xp.linalg.norm(p_cand, axis=-1)
    dy, profile = _register_1d(product, norm, upsample)
    f_left = fft2(left)
    spec = fft2(cand)  # (2, N, N)
    spec = spec * _ramp(dy, n, xp)[:, :, None]

    # horizontal: the rows' cross-power spectra summed over the rows (Parseval along y)
    product = (f_left[None] * xp.conj(spec)).sum(axis=-2) / np.float32(n)
    norm = xp.sqrt(xp.sum(xp.abs(left) ** 2) * xp.sum(xp.abs(cand) ** 2, axis=(-2, -1)))
    dx, peak = _register_1d(product, norm.astype(xp.float64), upsample)
    cand = ifft2(spec * _ramp(dx, n, xp)[:, None, :], overwrite=True).astype(xp.complex64)

    # twin choice: row profiles x trial stereo match (on views binned to at most TRIAL_SIDE)
    factor = max(1, n // TRIAL_SIDE)
    while n % factor:
        factor -= 1
    a_left = _binned(xp.abs(left).astype(xp.float32), factor)
    a_cand = _binned(xp.abs(cand).astype(xp.float32), factor)
    match = _stereo_agreement(a_left, a_cand, max(1, -(-max_disparity // factor)), window)
    scores = to_host(profile * match)
    k = int(np.argmax(scores))
    best, other = float(scores[k]), float(scores[1 - k])
    margin = (best - other) / best if best > 0 else 0.0
    prof = to_host(profile)
    profile_margin = abs(float(prof[0] - prof[1])) / max(float(prof.max()), 1e-30)
    readings = _amplitude_correlation(a_cand[0], a_cand[1])
    equivalent = readings >= EQUIVALENT_READINGS
    right = _remove_phase(left, cand[k])
    info = {
        "left_shift": np.asarray(to_host(left_shift)),
        "right_shift": np.asarray([float(to_host(dy[k])), float(to_host(dx[k]))]),
        "right_twin": k == 1,
        "peak": float(to_host(peak[k])),
        "twin_choice": {
            "scores": [round(float(x), 5) for x in scores],
            "row_profile": [round(float(x), 5) for x in to_host(profile)],
            "trial_match": [round(float(x), 5) for x in to_host(match)],
            "margin": round(margin, 5),
            "profile_margin": round(profile_margin, 5),
            "readings_correlation": round(readings, 5),
            "equivalent": bool(equivalent),
            "ambiguous": bool(
                not equivalent
                and (margin < AMBIGUOUS_TWIN_MARGIN or profile_margin < AMBIGUOUS_PROFILE_MARGIN)
            ),
        },
    }
    return xp.stack([left, right]), info
