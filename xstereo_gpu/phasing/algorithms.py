"""Batched iterative phase retrieval: projections and one-step DM, HIO and ER updates.

All iterates of all runs of all views live on one array ``x`` of shape ``(V, R, N, N)`` complex64
(V views, R independent runs), so every FFT and every elementwise operation serves all runs at
once. Measured amplitudes and their valid-data mask have shape ``(V, 1, N, N)`` and broadcast over
the runs; supports have shape ``(V, R, N, N)`` (per run after shrink-wrap) or ``(V, 1, N, N)``.

Fourier-space layout
--------------------
The engine's diffraction convention is ``I = |fftshift(fft2(w))|**2``: zero frequency at pixel
``(N//2, N//2)``. :func:`fourier_constraint` shifts the measured amplitudes and the mask *once*
(``ifftshift``) into FFT order (zero frequency at ``[0, 0]``); inside the loop nothing is shifted.
Transforms use NumPy's default normalisation (``fft2`` unscaled, ``ifft2`` scaled by ``1/N**2``),
so the amplitudes are ``sqrt(I)`` and the real-space iterate has the scale of the exit wave ``w``.

Allocation-free steps
---------------------
The step functions update ``x`` in place and use the buffers of a :class:`Workspace` (three
complex and one float array of the iterate's shape), so the iteration loop allocates almost
nothing on the CPU and launches no more kernels than needed on the GPU. On the CPU the forward and
inverse FFTs run in place (``scipy.fft`` with ``overwrite_x``) on all available cores.

References
----------
.. [1] V. Elser, "Phase retrieval by iterated projections", J. Opt. Soc. Am. A 20, 40-55 (2003).
.. [2] J. R. Fienup, "Phase retrieval algorithms: a comparison", Appl. Opt. 21, 2758-2769 (1982).
.. [3] D. R. Luke, "Relaxed averaged alternating reflections for diffraction imaging",
   Inverse Problems 21, 37-50 (2005).
"""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ._fft import fft2, ifft2

__all__ = [
    "fourier_constraint",
    "Workspace",
    "modulus_projection",
    "support_projection",
    "dm_step",
    "hio_step",
    "er_step",
    "raar_step",
    "r_factor",
    "squared_norm",
]

#: Floor of ``|X|`` in the modulus projection (avoids 0/0 where the iterate's spectrum vanishes).
_TINY = np.float32(1e-20)


def fourier_constraint(intensities, valid):
    """Measured amplitudes and valid mask in FFT order, shaped to broadcast over runs.

    Parameters
    ----------
    intensities : (V, N, N) float32
        Diffraction intensities, zero frequency at pixel ``(N//2, N//2)``  [photons]. Negative
        values (background subtraction) are clipped to 0.
    valid : (V, N, N) bool
        True where the pixel holds data; False pixels are left free by the modulus projection.

    Returns
    -------
    amplitudes : (V, 1, N, N) float32
        ``sqrt(max(I, 0))`` in FFT order (zero frequency at ``[0, 0]``), 0 at invalid pixels.
    valid : (V, 1, N, N) bool
        The mask in FFT order.
    """
    xp = get_array_module(intensities)
    i = xp.asarray(intensities, dtype=xp.float32)
    v = xp.asarray(valid, dtype=bool)
    amp = xp.sqrt(xp.maximum(i, np.float32(0))) * v
    amp = xp.fft.ifftshift(amp, axes=(-2, -1))[:, None]
    v = xp.fft.ifftshift(v, axes=(-2, -1))[:, None]
    return xp.ascontiguousarray(amp, dtype=xp.float32), xp.ascontiguousarray(v)


class Workspace:
    """Work buffers and derived constraint arrays for in-place batched iterations.

    Parameters
    ----------
    x : (V, R, N, N) complex64
        An iterate of the shape and device the buffers are for (only its shape is used).
    amplitudes : (V, 1, N, N) float32
        Measured amplitudes in FFT order (from :func:`fourier_constraint`).
    valid : (V, 1, N, N) bool
        Valid-data mask in FFT order.
    complex_buffers : bool
        Allocate ``t1``, ``t2``, ``t3`` (not needed for a lone modulus projection).

    Attributes
    ----------
    t1, t2, t3 : (V, R, N, N) complex64
        Complex scratch arrays; the step functions may rebind them (a GPU FFT may return a new
        array), so always read them back from the workspace.
    r : (V, R, N, N) float32
        Real scratch array (modulus, ratios).
    amplitudes : (V, 1, N, N) float32
        ``amplitudes`` with 0 at invalid pixels.
    free : (V, 1, N, N) float32
        1 at invalid (free) pixels, 0 elsewhere: the modulus ratio there becomes ``0/|X| + 1 = 1``.
    """

    def __init__(self, x, amplitudes, valid, *, complex_buffers: bool = True):
        xp = get_array_module(x)
        shape = x.shape
        if complex_buffers:
            self.t1 = xp.empty(shape, dtype=xp.complex64)
            self.t2 = xp.empty(shape, dtype=xp.complex64)
            self.t3 = xp.empty(shape, dtype=xp.complex64)
        self.r = xp.empty(shape, dtype=xp.float32)
        v = xp.asarray(valid, dtype=bool)
        self.amplitudes = xp.asarray(amplitudes, dtype=xp.float32) * v
        self.free = (~v).astype(xp.float32)


def _modulus_inplace(y, work: Workspace):
    """Replace ``y`` (real space) by ``P_M(y)``, in place where the backend allows; returns it."""
    xp = get_array_module(y)
    y = fft2(y, overwrite=True)
    r = work.r
    xp.abs(y, out=r)
    xp.maximum(r, _TINY, out=r)
    xp.divide(work.amplitudes, r, out=r)  # A / |Y| where valid, 0 where free
    r += work.free  # ... and exactly 1 where free: those pixels are left untouched
    y *= r
    return ifft2(y, overwrite=True)


def modulus_projection(x, amplitudes, valid, *, out=None):
    """Fourier-modulus projection ``P_M``: impose the measured modulus, keep the phase.

    ``X = fft2(x)``; where ``valid``, ``X <- A X / |X|`` (``A`` where ``X = 0`` is not reached: the
    pixel stays 0); where not valid, ``X`` is left free (unchanged); ``P_M(x) = ifft2(X)``.

    Parameters
    ----------
    x : (V, R, N, N) complex64
        Real-space iterates (any leading shape that broadcasts with ``amplitudes``).
    amplitudes : (V, 1, N, N) float32
        Measured amplitudes in FFT order (:func:`fourier_constraint`).
    valid : (V, 1, N, N) bool
        Valid-data mask in FFT order; False pixels are free.
    out : (V, R, N, N) complex64, optional
        Where to write the result; may be ``x`` itself.

    Returns
    -------
    (V, R, N, N) complex64
        ``P_M(x)``.
    """
    xp = get_array_module(x)
    work = Workspace(x, amplitudes, valid, complex_buffers=False)
    if out is None:
        out = xp.array(x, dtype=xp.complex64, copy=True, order="C")
    elif out is not x:
        out[...] = x
    res = _modulus_inplace(out, work)
    if res is not out:
        out[...] = res
    return out


def support_projection(x, support, *, out=None):
    """Support projection ``P_S``: keep ``x`` inside the support, zero outside.

    Parameters
    ----------
    x : (V, R, N, N) complex64
    support : (V, R, N, N) or (V, 1, N, N) bool
    out : (V, R, N, N) complex64, optional
        Where to write the result; may be ``x`` itself.

    Returns
    -------
    (V, R, N, N) complex64
    """
    xp = get_array_module(x)
    return xp.multiply(x, support, out=out)


def squared_norm(z):
    """Per-image squared L2 norm over the last two axes.

    Parameters
    ----------
    z : (..., N, N) complex64, C-contiguous

    Returns
    -------
    (...) float32
        ``sum |z|**2`` over the last two axes.
    """
    xp = get_array_module(z)
    if xp is not np:
        # CuPy reinterprets complex64 as float32 only for a C-contiguous array (NumPy: last axis)
        z = xp.ascontiguousarray(z)
    f = z.view(xp.float32).reshape(z.shape[:-2] + (-1,))
    if xp is np:
        return np.einsum("...i,...i->...", f, f)
    return xp.sum(f * f, axis=-1)


def _workspace(x, amplitudes, valid, work):
    return Workspace(x, amplitudes, valid) if work is None else work


def dm_step(
    x,
    amplitudes,
    valid,
    support,
    *,
    beta: float = 0.8,
    gammas: tuple[float, float] | None = None,
    work: Workspace | None = None,
):
    """One difference-map iteration (Elser 2003), in place on ``x``.

    ``x <- x + beta [P_S(f_M(x)) - P_M(f_S(x))]`` with the relaxed maps
    ``f_S = (1 + g_S) P_S - g_S I`` and ``f_M = (1 + g_M) P_M - g_M I``. The solution estimate is
    ``P_M(f_S(x))``: it satisfies the data exactly and, at a fixed point, the support too.

    Parameters
    ----------
    x : (V, R, N, N) complex64
        Current iterates (updated in place).
    amplitudes : (V, 1, N, N) float32
        Measured amplitudes in FFT order (:func:`fourier_constraint`).
    valid : (V, 1, N, N) bool
        Valid-data mask in FFT order.
    support : (V, R, N, N) or (V, 1, N, N) bool
    beta : float
        Step of the difference map. ``beta = 1`` with ``g_S = -1``, ``g_M = 1`` is HIO-like;
        Elser recommends ``0.7 <= |beta| <= 1`` (the paper does not state its value; default 0.8).
    gammas : (float, float), optional
        ``(g_S, g_M)``; default Elser's optimal choice ``g_S = -1/beta``, ``g_M = 1/beta``
        (:attr:`PhasingOptions.gammas`).
    work : Workspace, optional
        Buffers built from the same ``amplitudes`` and ``valid`` (its cached arrays are used).

    Returns
    -------
    x : (V, R, N, N) complex64
        ``x_{n+1}`` (the same array as the input).
    estimate : (V, R, N, N) complex64
        ``P_M(f_S(x_n))``; a workspace buffer, overwritten by the next step.
    eps : (V, R) float32
        ``||x_{n+1} - x_n||`` per run (same units as ``x``).
    """
    xp = get_array_module(x)
    w = _workspace(x, amplitudes, valid, work)
    g_s, g_m = (-1.0 / beta, 1.0 / beta) if gammas is None else gammas
    # f_S(x) = x inside the support, -g_S x outside.
    fac = w.r
    fac[...] = support
    fac *= np.float32(1.0 + g_s)
    fac -= np.float32(g_s)
    xp.multiply(x, fac, out=w.t1)
    w.t1 = _modulus_inplace(w.t1, w)  # P_M(f_S(x))
    w.t2[...] = x
    w.t2 = _modulus_inplace(w.t2, w)  # P_M(x)
    t2 = w.t2
    t2 *= np.float32(1.0 + g_m)
    xp.multiply(x, np.float32(g_m), out=w.t3)
    t2 -= w.t3  # f_M(x)
    t2 *= support  # P_S(f_M(x))
    t2 -= w.t1  # (x_{n+1} - x_n) / beta
    eps = xp.sqrt(squared_norm(t2)) * np.float32(abs(beta))
    t2 *= np.float32(beta)
    x += t2
    return x, w.t1, eps


def hio_step(x, amplitudes, valid, support, *, beta: float = 0.9, work: Workspace | None = None):
    """One hybrid input-output iteration (Fienup 1982), in place on ``x``.

    ``x <- P_M(x)`` inside the support and ``x - beta P_M(x)`` outside.

    Parameters
    ----------
    x : (V, R, N, N) complex64
        Current iterates (updated in place).
    amplitudes, valid, support, work
        As in :func:`dm_step`.
    beta : float
        HIO feedback parameter (:attr:`PhasingOptions.hio_beta`).

    Returns
    -------
    x : (V, R, N, N) complex64
        ``x_{n+1}`` (the same array as the input).
    estimate : (V, R, N, N) complex64
        ``P_S(P_M(x_n))``; a workspace buffer, overwritten by the next step.
    eps : (V, R) float32
        ``||x_{n+1} - x_n||`` per run.
    """
    return _feedback_step(x, amplitudes, valid, support, work, keep=1.0, feedback=-beta)


def er_step(x, amplitudes, valid, support, *, work: Workspace | None = None):
    """One error-reduction iteration ``x <- P_S(P_M(x))``, in place on ``x``.

    Parameters
    ----------
    x : (V, R, N, N) complex64
        Current iterates (updated in place).
    amplitudes, valid, support, work
        As in :func:`dm_step`.

    Returns
    -------
    x : (V, R, N, N) complex64
        ``x_{n+1}`` (the same array as the input).
    estimate : (V, R, N, N) complex64
        ``x_{n+1}`` itself (a workspace buffer holding a copy), overwritten by the next step.
    eps : (V, R) float32
        ``||x_{n+1} - x_n||`` per run.
    """
    xp = get_array_module(x)
    w = _workspace(x, amplitudes, valid, work)
    w.t1[...] = x
    w.t1 = _modulus_inplace(w.t1, w)
    w.t1 *= support  # x_{n+1}
    xp.subtract(w.t1, x, out=w.t2)
    eps = xp.sqrt(squared_norm(w.t2))
    x[...] = w.t1
    return x, w.t1, eps


def raar_step(x, amplitudes, valid, support, *, beta: float = 0.9, work: Workspace | None = None):
    """One relaxed averaged alternating reflections iteration (Luke 2005), in place on ``x``.

    ``x <- [beta/2 (R_S R_M + I) + (1 - beta) P_M] x`` with the reflections ``R = 2P - I``; per
    pixel: ``P_M(x)`` inside the support and ``beta x + (1 - 2 beta) P_M(x)`` outside. ``beta = 1``
    is the difference map with ``beta = 1`` (HIO-like); smaller ``beta`` damps the iteration
    towards error reduction, which helps on noisy, incomplete data.

    Parameters
    ----------
    x : (V, R, N, N) complex64
        Current iterates (updated in place).
    amplitudes, valid, support, work
        As in :func:`dm_step`.
    beta : float
        RAAR relaxation in (0, 1] (:attr:`PhasingOptions.raar_beta`).

    Returns
    -------
    x : (V, R, N, N) complex64
        ``x_{n+1}`` (the same array as the input).
    estimate : (V, R, N, N) complex64
        ``P_S(P_M(x_n))``; a workspace buffer, overwritten by the next step.
    eps : (V, R) float32
        ``||x_{n+1} - x_n||`` per run.
    """
    return _feedback_step(x, amplitudes, valid, support, work, keep=beta, feedback=1.0 - 2.0 * beta)


def _feedback_step(x, amplitudes, valid, support, work, *, keep: float, feedback: float):
    """``x <- P_M(x)`` inside the support and ``keep x + feedback P_M(x)`` outside, in place on ``x``
    (HIO: ``keep = 1``, ``feedback = -beta``; RAAR: ``beta``, ``1 - 2 beta``). Returns as :func:`hio_step`.
    """
    xp = get_array_module(x)
    w = _workspace(x, amplitudes, valid, work)
    w.t1[...] = x
    w.t1 = _modulus_inplace(w.t1, w)  # P_M(x)
    pm = w.t1
    xp.multiply(pm, np.float32(feedback), out=w.t2)
    if keep == 1.0:
        w.t2 += x
    else:
        xp.multiply(x, np.float32(keep), out=w.t3)
        w.t2 += w.t3  # keep x + feedback P_M(x)
    xp.copyto(w.t2, pm, where=xp.broadcast_to(support, x.shape))  # x_{n+1}
    xp.subtract(w.t2, x, out=w.t3)
    eps = xp.sqrt(squared_norm(w.t3))
    x[...] = w.t2
    xp.multiply(pm, support, out=w.t3)  # estimate P_S(P_M(x_n))
    return x, w.t3, eps


def r_factor(objects, amplitudes, valid, *, buffers=None):
    """Crystallographic R-factor of real-space objects on the measured pixels.

    ``R = sum_valid | |F(x)| - A | / sum_valid A`` per image: 0 for an object that fits every
    measured amplitude, about 0.5-0.6 for random phases; the standard figure of merit of CDI
    reconstructions (independent of the iteration's ``eps``, which is small for a run that has
    stopped moving, e.g. one whose support collapsed).

    Parameters
    ----------
    objects : (V, R, N, N) complex64
        Real-space objects (support-projected estimates); not modified.
    amplitudes : (V, 1, N, N) float32
        Measured amplitudes ``sqrt(I)`` in FFT order (:func:`fourier_constraint`).
    valid : (V, 1, N, N) bool
        Valid-data mask in FFT order: only these pixels count.
    buffers : (complex64 array, float32 array) of the objects' shape, optional
        Scratch arrays to use instead of allocating (e.g. free buffers of a :class:`Workspace`);
        both are overwritten.

    Returns
    -------
    (V, R) float32
        On the input's device (no host synchronisation).
    """
    xp = get_array_module(objects)
    if buffers is None:
        c, f = xp.array(objects, dtype=xp.complex64, copy=True), None
    else:
        c, f = buffers
        c[...] = objects
    c = fft2(c, overwrite=True)
    f = xp.abs(c) if f is None else xp.abs(c, out=f)
    f -= amplitudes
    xp.abs(f, out=f)
    f *= valid
    num = xp.sum(f, axis=(-2, -1))
    den = xp.sum(xp.where(valid, amplitudes, np.float32(0)), axis=(-2, -1))
    return (num / xp.maximum(den, np.float32(1e-30))).astype(xp.float32)
