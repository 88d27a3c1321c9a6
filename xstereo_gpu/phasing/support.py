"""Supports for phase retrieval: the autocorrelation guess and shrink-wrap updates.

References
----------
.. [1] S. Marchesini et al., "X-ray image reconstruction from a diffraction pattern alone",
   Phys. Rev. B 68, 140101 (2003) (shrink-wrap).
"""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ..errors import InputError
from ._fft import fft2, gaussian_blur, ifft2

__all__ = ["autocorrelation_support", "box_support", "shrink_wrap"]


def autocorrelation_support(
    intensities, valid, *, threshold: float = 0.04, sigma: float = 1.0, fill_iterations: int = 20
):
    """Initial support: the thresholded autocorrelation of each view.

    The autocorrelation of the exit wave is ``ifft2`` of the intensities; its support (twice the
    object's extent) contains every translate of the object that fits the data.

    Missing data near the zero frequency (beamstop) remove a broad, smooth component from the
    autocorrelation (the missing central speckle holds a large part of the scattered power), which
    inflates the thresholded support to most of the frame. The invalid pixels are therefore first
    filled by Gerchberg-Papoulis iterations: ``I_invalid <- max(Re fft2(P_S ifft2(I)), 0)`` with
    ``S`` the autocorrelation's own thresholded support, its threshold going geometrically from
    0.5 to ``threshold`` (a tight support first, so that the fill converges fast). Valid pixels
    are never changed. ``fill_iterations=0`` gives the plain autocorrelation of the valid data.

    Parameters
    ----------
    intensities : (V, N, N) float32
        Diffraction intensities, zero frequency at pixel ``(N//2, N//2)``  [photons].
    valid : (V, N, N) bool
        Valid-data mask (False pixels count as unknown).
    threshold : float
        Fraction of the autocorrelation's maximum above which a pixel is in the support
        (:attr:`PhasingOptions.autocorrelation_threshold`).
    sigma : float
        Gaussian blur applied to ``|autocorrelation|`` before thresholding  [pixels].
    fill_iterations : int
        Gerchberg-Papoulis iterations filling the invalid pixels (0 = none).

    Returns
    -------
    (V, N, N) bool
        Support centred on pixel ``(N//2, N//2)``, in the real-space layout of the iterates.
    """
    xp = get_array_module(intensities)
    if not 0 < threshold < 1:
        raise InputError("autocorrelation threshold", repr(threshold), "a fraction in (0, 1)")
    v = xp.fft.ifftshift(xp.asarray(valid, dtype=bool), axes=(-2, -1))
    i = xp.fft.ifftshift(xp.asarray(intensities, dtype=xp.float32), axes=(-2, -1))
    i = xp.maximum(i, np.float32(0)) * v  # FFT order from here on
    filled = i
    start = max(0.5, threshold)
    for k in range(int(fill_iterations) if not bool(xp.all(v)) else 0):
        t = start * (threshold / start) ** (k / max(int(fill_iterations) - 1, 1))
        ac = ifft2(filled.astype(xp.complex64), overwrite=True)
        ac *= _threshold(xp.abs(ac), sigma, t)
        estimate = xp.maximum(fft2(ac, overwrite=True).real, np.float32(0))
        filled = xp.where(v, i, estimate.astype(xp.float32))
    ac = ifft2(filled.astype(xp.complex64), overwrite=True)
    support = _threshold(xp.abs(ac).astype(xp.float32), sigma, threshold)
    return xp.fft.fftshift(support, axes=(-2, -1))


def box_support(intensities, *, fraction: float = 0.5):
    """Initial support that needs no autocorrelation: the centred square of side ``fraction * N``.

    Sampling the diffraction pattern with N pixels phases an object only if it spans at most N/2
    pixels along each axis (linear oversampling 2), so with ``fraction = 0.5`` the box contains a
    translate of every object the data can determine: a valid, loose support, meant to be
    tightened by shrink-wrap. Use it when the autocorrelation is unreliable: a beamstop that hides
    the central speckle of an extended, nearly uniform object (the pyramid's notch) removes most of
    the autocorrelation's broad component, and its thresholded support then misses parts of the
    object.

    Parameters
    ----------
    intensities : (V, N, N) float32
        Diffraction intensities (only their shape and device are used).
    fraction : float
        Side of the box as a fraction of N, in (0, 1].

    Returns
    -------
    (V, N, N) bool
        The box, centred on pixel ``(N//2, N//2)``.
    """
    xp = get_array_module(intensities)
    if not 0 < fraction <= 1:
        raise InputError("box support fraction", repr(fraction), "a fraction in (0, 1]")
    nv, n = intensities.shape[0], intensities.shape[-1]
    side = max(1, int(round(fraction * n)))
    lo = n // 2 - side // 2
    box = xp.zeros((nv, n, n), dtype=bool)
    box[:, lo : lo + side, lo : lo + side] = True
    return box


def _threshold(magnitude, sigma: float, fraction):
    """``blur(magnitude) > fraction * max`` per image (periodic blur, so any layout works);
    ``fraction`` a float or a float32 array broadcasting against ``(..., 1, 1)``."""
    blurred = gaussian_blur(magnitude.astype(np.float32, copy=False), sigma)
    f = np.float32(fraction) if np.isscalar(fraction) else fraction
    return blurred > f * blurred.max(axis=(-2, -1), keepdims=True)


def shrink_wrap(x, *, sigma: float, threshold: float):
    """Shrink-wrap support update (Marchesini 2003), per run.

    Parameters
    ----------
    x : (..., N, N) complex64
        Current estimates (``(V, R, N, N)`` during phasing).
    sigma : float
        Gaussian blur of ``|x|``  [pixels] (periodic, like the DFT).
    threshold : float or (..., 1, 1) float32 array
        Fraction of each image's blurred maximum above which a pixel is in the support (an array:
        one per image, on the device of ``x``, e.g. per run).

    Returns
    -------
    (..., N, N) bool
        New supports; never empty unless an image is zero (its maximum passes the threshold).
    """
    xp = get_array_module(x)
    if np.isscalar(threshold) and not 0 < threshold < 1:
        raise InputError("shrink-wrap threshold", repr(threshold), "a fraction in (0, 1)")
    return _threshold(xp.abs(x), sigma, threshold)
