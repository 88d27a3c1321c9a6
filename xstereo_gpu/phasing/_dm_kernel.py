"""CuPy binding of ``kernels/difference_map.cu``: one batched difference-map step in 3 kernels + cuFFT.

A step of :func:`dm_step_kernel` runs two out-of-place forward cuFFTs (``f_S(x)`` and ``x`` into
the two halves of one work buffer), ``dm_modulus`` (the Fourier-modulus replacement, the inverse
transform's ``1/N**2`` folded in), two unscaled inverse cuFFTs in place, ``dm_update`` (the update
of ``x`` fused with the per-run squared norm of the change and with ``f_S`` of the new ``x``: the
next step's FFT input) and ``dm_eps``; ``dm_prepare`` computes ``f_S(x)`` only when the previous
step with this workspace did not (first step, new ``x`` or support, other ``g_S``). No host
synchronisation. :func:`track_best_kernel` keeps each run's best estimate on the device
(``best_flags`` + ``best_copy``). The array passes before and after this fusion are counted in
the .cu file's header (an estimate of bytes moved, not a measurement).

The NumPy code is the twin and the oracle: :func:`~.algorithms.dm_step` and the best-iterate
selection of :meth:`~.runs.PhaseRetrieval.update`. Only complex64 iterates are supported.

cuFFT callbacks (fusing ``dm_modulus`` into the transforms, issue 12 item 3) are not implemented:
they cannot be verified without a GPU.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .._kernels import load_module
from ..backend import fits_int32, get_array_module, scipy_module
from ..errors import InputError

__all__ = ["DMKernelWorkspace", "dm_step_kernel", "track_best_kernel"]

_SOURCE = "difference_map.cu"
_NAMES = ("dm_prepare", "dm_modulus", "dm_update", "dm_eps", "best_flags", "best_copy")
_BLOCK = 256  # DM_BLOCK in the .cu file
_MAX_GRID_Y = 65535


# ----------------------------------------------------------------------------- validation


def _describe(a) -> str:
    shape, dtype = getattr(a, "shape", None), getattr(a, "dtype", None)
    if shape is None or dtype is None:
        return f"a {type(a).__name__}"
    return f"{dtype} array of shape {tuple(shape)}"


def _check_array(where: str, a, shape, dtype, expected: str) -> None:
    """``a`` has ``shape`` (a tuple, or a tuple of allowed tuples) and ``dtype``."""
    shapes = shape if shape and isinstance(shape[0], tuple) else (shape,)
    if getattr(a, "dtype", None) != np.dtype(dtype) or tuple(getattr(a, "shape", ())) not in shapes:
        raise InputError(where, _describe(a), expected)


def _check_cupy(where: str, *arrays) -> None:
    for a in arrays:
        if get_array_module(a) is np:
            raise InputError(
                where,
                f"a {type(a).__module__}.{type(a).__name__}",
                "CuPy arrays (the kernel runs on the GPU; dm_step is the NumPy path)",
            )


def _check_real(where: str, value, *, nonzero: bool = False) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InputError(where, repr(value), "a finite real number") from None
    if not math.isfinite(f) or (nonzero and f == 0.0):
        raise InputError(
            where, repr(value), "a finite, non-zero real number" if nonzero else "a finite real number"
        )
    return f


def _check_step(x, amplitudes, valid, support, beta, gammas):
    """Validate the arguments of :func:`dm_step_kernel`; returns ``(V, R, N, s_runs, g_s, g_m)``."""
    shape = tuple(getattr(x, "shape", ()))
    if (
        getattr(x, "dtype", None) != np.complex64
        or len(shape) != 4
        or shape[-1] != shape[-2]
        or shape[-1] < 1
    ):
        raise InputError("dm_step_kernel.x", _describe(x), "a (V, R, N, N) complex64 array")
    nv, nr, n, _ = shape
    _check_array(
        "dm_step_kernel.amplitudes",
        amplitudes,
        (nv, 1, n, n),
        np.float32,
        f"a (V, 1, N, N) = {(nv, 1, n, n)} float32 array (fourier_constraint)",
    )
    _check_array(
        "dm_step_kernel.valid",
        valid,
        (nv, 1, n, n),
        np.bool_,
        f"a (V, 1, N, N) = {(nv, 1, n, n)} bool array (fourier_constraint)",
    )
    _check_array(
        "dm_step_kernel.support",
        support,
        ((nv, nr, n, n), (nv, 1, n, n)),
        np.bool_,
        f"a bool array of shape (V, R, N, N) = {shape} or (V, 1, N, N)",
    )
    b = _check_real("dm_step_kernel.beta", beta, nonzero=True)
    if gammas is None:
        g_s, g_m = -1.0 / b, 1.0 / b
    else:
        if not isinstance(gammas, (tuple, list)) or len(gammas) != 2:
            raise InputError(
                "dm_step_kernel.gammas", repr(gammas), "None or a pair (g_S, g_M) of real numbers"
            )
        g_s = _check_real("dm_step_kernel.gammas[0]", gammas[0])
        g_m = _check_real("dm_step_kernel.gammas[1]", gammas[1])
    if not fits_int32(n * n, 2 * nv * nr):
        raise InputError("dm_step_kernel.x", f"shape {shape}", "N * N and 2 V R below 2**31")
    _check_cupy("dm_step_kernel", x, amplitudes, valid, support)
    if not x.flags.c_contiguous:
        raise InputError(
            "dm_step_kernel.x", "a non-C-contiguous array", "a C-contiguous array (updated in place)"
        )
    return nv, nr, n, support.shape[1], b, g_s, g_m


# ----------------------------------------------------------------------------- kernels


@functools.cache
def _kernels(device_id: int) -> dict:
    """The RawKernels of ``difference_map.cu`` on ``device_id`` (compiled once per device)."""
    import cupy

    with cupy.cuda.Device(device_id):
        module = load_module(_SOURCE)
        return {name: module.get_function(name) for name in _NAMES}


def _current_kernels() -> dict:
    import cupy

    return _kernels(cupy.cuda.Device().id)


def _image_grid(nn: int, n_img: int, per_thread: int) -> tuple[int, int, int]:
    """Grid of the per-image kernels: ~``per_thread`` pixels per thread, capped at 4096 blocks in x."""
    bx = max(1, min(-(-nn // (_BLOCK * per_thread)), 4096))
    return (bx, max(1, min(n_img, _MAX_GRID_Y)), 1)


def _small_grid(n: int) -> tuple[int, int, int]:
    return (max(1, -(-n // _BLOCK)), 1, 1)


class DMKernelWorkspace:
    """Work buffers and the cuFFT plan of :func:`dm_step_kernel` for one iterate shape.

    Parameters
    ----------
    x : (V, R, N, N) complex64, CuPy
        An iterate of the shape and device the buffers are for (only its shape is used).

    Attributes
    ----------
    buf : (2, V, R, N, N) complex64
        ``buf[0]`` receives the spectrum of ``f_S(x)`` and then holds ``P_M(f_S(x))`` (the
        estimate, valid until the next step's forward FFT), ``buf[1]`` the spectrum of ``x`` and
        then ``P_M(x)``.
    fs : (V, R, N, N) complex64
        ``f_S(x)``: the next forward FFT's input, written by the last step's ``dm_update`` for the
        ``x``, support and ``g_S`` it was given.
    sum2 : (V, R) float32
        Per-run ``sum |x_{n+1} - x_n|**2 / beta**2`` while a step runs (zero between steps).
    eps : (V, R) float32
        ``eps`` of the last step (returned by :func:`dm_step_kernel`, overwritten by the next).
    plan : cupy.cuda.cufft.PlanNd
        The C2C plan over the last two axes of a ``(V, R, N, N)`` batch, used forward and inverse,
        in and out of place.

    Notes
    -----
    ``fs`` is reused by the next call only when it passes the same ``x`` and ``support`` objects
    and the same ``g_S``; neither may then have been changed in place in between by anything but
    :func:`dm_step_kernel` (call :meth:`invalidate` after such a change).
    """

    def __init__(self, x):
        import cupy

        nv, nr = x.shape[0], x.shape[1]
        self.shape = tuple(x.shape)
        self.buf = cupy.empty((2,) + self.shape, dtype=cupy.complex64)
        self.fs = cupy.empty(self.shape, dtype=cupy.complex64)
        self.sum2 = cupy.empty((nv, nr), dtype=cupy.float32)
        self.eps = cupy.empty((nv, nr), dtype=cupy.float32)
        self.plan = scipy_module(cupy, "fft").get_fft_plan(self.fs, axes=(-2, -1), value_type="C2C")
        self._next = None  # (x, support, g_S) that fs was written for

    def invalidate(self) -> None:
        """Forget ``fs`` (the next step recomputes it from ``x``)."""
        self._next = None

    def _prepared_for(self, x, support, g_s: float) -> bool:
        n = self._next
        return n is not None and n[0] is x and n[1] is support and n[2] == g_s


def dm_step_kernel(
    x,
    amplitudes,
    valid,
    support,
    *,
    beta: float = 0.8,
    gammas: tuple[float, float] | None = None,
    work: DMKernelWorkspace | None = None,
):
    """One difference-map iteration on the GPU with fused kernels, in place on ``x``.

    Same mathematics, arguments and results as :func:`~.algorithms.dm_step` (its NumPy twin):
    ``x <- x + beta [P_S(f_M(x)) - P_M(f_S(x))]``, ``f_S = (1 + g_S) P_S - g_S I``,
    ``f_M = (1 + g_M) P_M - g_M I``; invalid Fourier pixels are left free and a vanishing
    ``|X|`` is floored at 1e-20 as in the twin. No host synchronisation.

    Parameters
    ----------
    x : (V, R, N, N) complex64, CuPy, C-contiguous
        Current iterates (updated in place).
    amplitudes : (V, 1, N, N) float32, CuPy
        Measured amplitudes in FFT order (:func:`~.algorithms.fourier_constraint`).
    valid : (V, 1, N, N) bool, CuPy
        Valid-data mask in FFT order; False pixels are free.
    support : (V, R, N, N) or (V, 1, N, N) bool, CuPy
    beta : float
        Step of the difference map (non-zero).
    gammas : (float, float), optional
        ``(g_S, g_M)``; default ``(-1/beta, 1/beta)``.
    work : DMKernelWorkspace, optional
        Buffers and cuFFT plan for ``x``'s shape (built on each call when omitted). Consecutive
        steps on the same ``x`` and ``support`` with one workspace skip ``dm_prepare`` (see its
        Notes: ``x`` and ``support`` must not change in place between them).

    Returns
    -------
    x : (V, R, N, N) complex64
        ``x_{n+1}`` (the same array as the input).
    estimate : (V, R, N, N) complex64
        ``P_M(f_S(x_n))``; a view of ``work.buf[0]``, overwritten by the next step.
    eps : (V, R) float32
        ``||x_{n+1} - x_n||`` per run; ``work.eps``, overwritten by the next step.

    Raises
    ------
    InputError
        Wrong shapes or dtypes, NumPy arrays, a non-contiguous ``x``, a zero or non-finite
        ``beta``, a malformed ``gammas``, or a ``work`` built for another shape.

    See Also
    --------
    xstereo_gpu.phasing.algorithms.dm_step : the NumPy twin (CPU path and test oracle).
    """
    nv, nr, n, s_runs, b, g_s, g_m = _check_step(x, amplitudes, valid, support, beta, gammas)
    if work is None:
        work = DMKernelWorkspace(x)
    elif not isinstance(work, DMKernelWorkspace) or work.shape != tuple(x.shape):
        raise InputError(
            "dm_step_kernel.work",
            f"a {type(work).__name__} for shape {getattr(work, 'shape', None)}",
            f"a DMKernelWorkspace built for {tuple(x.shape)}",
        )
    import cupy

    k = _current_kernels()
    amplitudes = cupy.ascontiguousarray(amplitudes)
    valid = cupy.ascontiguousarray(valid)
    key = support  # the caller's object: fs of the last step is reused for the same one
    support = cupy.ascontiguousarray(support)
    nn, n_img = n * n, nv * nr
    i32, f32 = np.int32, np.float32
    block = (_BLOCK, 1, 1)

    buf, fs = work.buf, work.fs
    if not work._prepared_for(x, key, g_s):
        k["dm_prepare"](
            _image_grid(nn, n_img, 4),
            block,
            (x, support, fs, work.sum2, i32(nn), i32(n_img), i32(nr), i32(s_runs), f32(1.0 + g_s), f32(g_s)),
        )
    work._next = None  # until dm_update has written fs again
    # unscaled transforms (raw cuFFT): dm_modulus applies the inverse's 1/N**2
    from cupy.cuda import cufft

    forward, inverse = cufft.CUFFT_FORWARD, cufft.CUFFT_INVERSE
    work.plan.fft(fs, buf[0], forward)
    work.plan.fft(x, buf[1], forward)
    k["dm_modulus"](
        _image_grid(nn, 2 * n_img, 4),
        block,
        (buf, amplitudes, valid, i32(nn), i32(2 * n_img), i32(nr), i32(nv), f32(1.0 / nn)),
    )
    work.plan.fft(buf[0], buf[0], inverse)
    work.plan.fft(buf[1], buf[1], inverse)
    k["dm_update"](
        _image_grid(nn, n_img, 8),
        block,
        (
            x,
            buf[0],
            buf[1],
            support,
            fs,
            work.sum2,
            i32(nn),
            i32(n_img),
            i32(nr),
            i32(s_runs),
            f32(1.0 + g_m),
            f32(g_m),
            f32(b),
            f32(1.0 + g_s),
            f32(g_s),
        ),
    )
    work._next = (x, key, g_s)
    k["dm_eps"](_small_grid(n_img), block, (work.sum2, work.eps, i32(n_img), f32(abs(b))))
    return x, buf[0], work.eps


def track_best_kernel(best, best_eps, estimate, eps, support, enabled: bool = True):
    """Keep, per run, the support-restricted estimate of the iteration with the lowest ``eps``.

    Where ``enabled and eps < best_eps`` (a per-run flag computed on the device):
    ``best[v, r] = estimate[v, r]`` inside the support and 0 outside, and
    ``best_eps[v, r] = eps[v, r]``. Both are updated in place; no host synchronisation.

    Parameters
    ----------
    best : (V, R, N, N) complex64, CuPy, C-contiguous
        Best estimate of each run so far (updated in place).
    best_eps : (V, R) float32, CuPy, C-contiguous
        Its ``eps`` (updated in place); start from ``inf``.
    estimate : (V, R, N, N) complex64, CuPy
        This iteration's solution estimate (e.g. from :func:`dm_step_kernel`).
    eps : (V, R) float32, CuPy
        This iteration's ``eps`` (already normalised as the caller wants it compared).
    support : (V, R, N, N) or (V, 1, N, N) bool, CuPy
    enabled : bool
        A host flag (no synchronisation): False before selection starts (``select_from``);
        then nothing is launched and nothing changes.

    Returns
    -------
    best : (V, R, N, N) complex64
        The same array as the input.
    best_eps : (V, R) float32
        The same array as the input.

    See Also
    --------
    xstereo_gpu.phasing.runs.PhaseRetrieval.update : the NumPy twin of the selection.
    """
    shape = tuple(getattr(best, "shape", ()))
    if getattr(best, "dtype", None) != np.complex64 or len(shape) != 4 or shape[-1] != shape[-2]:
        raise InputError("track_best_kernel.best", _describe(best), "a (V, R, N, N) complex64 array")
    nv, nr, n, _ = shape
    _check_array(
        "track_best_kernel.best_eps", best_eps, (nv, nr), np.float32, f"a (V, R) = {(nv, nr)} float32 array"
    )
    _check_array("track_best_kernel.estimate", estimate, shape, np.complex64, f"a {shape} complex64 array")
    _check_array("track_best_kernel.eps", eps, (nv, nr), np.float32, f"a (V, R) = {(nv, nr)} float32 array")
    _check_array(
        "track_best_kernel.support",
        support,
        ((nv, nr, n, n), (nv, 1, n, n)),
        np.bool_,
        f"a bool array of shape (V, R, N, N) = {shape} or (V, 1, N, N)",
    )
    if not isinstance(enabled, (bool, np.bool_)):
        raise InputError(
            "track_best_kernel.enabled", repr(enabled), "a host bool (True once selection starts)"
        )
    if not fits_int32(n * n, nv * nr):
        raise InputError("track_best_kernel.best", f"shape {shape}", "N * N and V R below 2**31")
    _check_cupy("track_best_kernel", best, best_eps, estimate, eps, support)
    if not (best.flags.c_contiguous and best_eps.flags.c_contiguous):
        raise InputError(
            "track_best_kernel.best",
            "a non-C-contiguous best or best_eps",
            "C-contiguous arrays (updated in place)",
        )
    if not enabled:
        return best, best_eps
    import cupy

    k = _current_kernels()
    estimate = cupy.ascontiguousarray(estimate)
    eps = cupy.ascontiguousarray(eps)
    support = cupy.ascontiguousarray(support)
    nn, n_img = n * n, nv * nr
    flag = cupy.empty((nv, nr), dtype=cupy.uint8)
    block = (_BLOCK, 1, 1)
    k["best_flags"](_small_grid(n_img), block, (eps, best_eps, flag, np.int32(n_img)))
    k["best_copy"](
        _image_grid(nn, n_img, 4),
        block,
        (
            best,
            estimate,
            support,
            flag,
            np.int32(nn),
            np.int32(n_img),
            np.int32(nr),
            np.int32(support.shape[1]),
        ),
    )
    return best, best_eps
