"""FFT helpers shared by the phasing modules: one call site per transform for NumPy and CuPy.

CPU: :mod:`scipy.fft` with ``workers=fft_workers()``; with ``overwrite=True`` a C-contiguous
complex64 input is transformed in place (pocketfft writes into the input buffer), so the iteration
loop allocates nothing. GPU: :mod:`cupyx.scipy.fft`, which caches cuFFT plans per shape and dtype
(both from :func:`~xstereo_gpu.backend.scipy_module`). Transforms act on the last two axes; every
leading axis is a batch axis.
The normalisation is NumPy's default ("backward"): ``fft2`` unscaled, ``ifft2`` scaled by 1/(H W).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from ..backend import fft_workers, get_array_module, scipy_module

__all__ = ["fft2", "ifft2", "gaussian_blur", "frequency_grid"]

_AXES = (-2, -1)


def _kw(xp: ModuleType) -> dict:
    return {"workers": fft_workers()} if xp is np else {}


def fft2(x, *, overwrite: bool = False):
    """Forward 2-D FFT over the last two axes; in place when ``overwrite`` and the layout allows.

    Parameters
    ----------
    x : (..., H, W) complex64
    overwrite : bool
        Allow the transform to reuse (destroy) ``x``; the result then usually *is* ``x``.

    Returns
    -------
    (..., H, W) complex64
    """
    xp = get_array_module(x)
    return scipy_module(xp, "fft").fft2(x, axes=_AXES, overwrite_x=overwrite, **_kw(xp))


def ifft2(x, *, overwrite: bool = False):
    """Inverse 2-D FFT over the last two axes (scaled by 1/(H W)); see :func:`fft2`."""
    xp = get_array_module(x)
    return scipy_module(xp, "fft").ifft2(x, axes=_AXES, overwrite_x=overwrite, **_kw(xp))


def frequency_grid(xp: ModuleType, shape: tuple[int, int], dtype=np.float32):
    """Squared spatial frequency ``fy**2 + fx**2`` [cycles/pixel]**2 of an rfft2 grid.

    Returns
    -------
    (H, W//2 + 1) float
    """
    h, w = shape
    fy = xp.fft.fftfreq(h).astype(dtype)[:, None]
    fx = xp.fft.rfftfreq(w).astype(dtype)[None, :]
    return fy * fy + fx * fx


def gaussian_blur(a, sigma: float):
    """Periodic Gaussian blur of real images over the last two axes (FFT, batched).

    The periodic boundary matches the cyclic geometry of the DFT used by phase retrieval, so a
    support that wraps around the frame is blurred consistently.

    Parameters
    ----------
    a : (..., H, W) float32
        Real images.
    sigma : float
        Standard deviation of the Gaussian  [pixels]; ``0`` returns ``a`` unchanged.

    Returns
    -------
    (..., H, W) float32
    """
    xp = get_array_module(a)
    if sigma <= 0:
        return a
    f = scipy_module(xp, "fft")
    h, w = a.shape[-2:]
    transfer = xp.exp(frequency_grid(xp, (h, w)) * np.float32(-2.0 * np.pi**2 * sigma**2))
    spec = f.rfft2(a, axes=_AXES, **_kw(xp))
    spec *= transfer
    out = f.irfft2(spec, s=(h, w), axes=_AXES, overwrite_x=True, **_kw(xp))
    return out.astype(np.float32, copy=False)
