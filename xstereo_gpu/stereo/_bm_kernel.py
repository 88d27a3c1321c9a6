"""CuPy binding of ``kernels/block_matching.cu``: both disparity maps in one launch.

The NumPy twin (CPU path and oracle) is :func:`xstereo_gpu.stereo.disparity.block_match`; this
binding returns the same :class:`~xstereo_gpu.stereo.match_result.MatchResult` for CuPy inputs
(same NaN pattern, disparities and confidences equal to float32 rounding).
:func:`~xstereo_gpu.stereo.disparity.block_match` calls it for CuPy inputs with blocks up to
:data:`MAX_BLOCK` unless ``kernels=False`` or ``XSTEREO_KERNELS=0``.
"""

from __future__ import annotations

import numpy as np

from .._kernels import load_module
from ..backend import fits_int32
from ..config import MatchOptions
from ..errors import InputError
from .match_result import MatchResult

__all__ = ["block_match_kernel", "MAX_BLOCK", "KERNEL_FILE"]

#: CUDA source in ``kernels/``.
KERNEL_FILE = "block_matching.cu"
#: Largest block side the kernel's static shared memory (48 KiB) allows.
MAX_BLOCK = 33
#: Tile of output pixels per thread block (BM_TX x BM_TY in the .cu file) and threads per block.
_TX, _TY, _THREADS = 32, 32, (32, 8, 1)


def block_match_kernel(left, right, options: MatchOptions | None = None) -> MatchResult:
    """Dense block matching of a rectified pair on the GPU, both maps at once.

    Same definition as :func:`xstereo_gpu.stereo.disparity.block_match` (SAD over ``b x b``
    blocks plus the proximity term, signed range ``[dmin, dmax]``, parabolic subpixel, range- and
    border-invalidation, texture rule, confidence), computed by ``kernels/block_matching.cu`` with
    shared-memory tiles and a running minimum over ``d``; no cost volume is stored.

    Parameters
    ----------
    left, right : (H, W) cupy.ndarray, real (cast to float32)
        Rectified views on the matching grid, intensities on a 0..1 scale, finite. Finiteness is
        the caller's to ensure (the pipeline's views are finite by construction): checking it
        costs a host synchronisation, and this call makes none. A non-finite pixel gives NaN
        costs to every disparity of the blocks that contain it: a reference block holding one is
        invalid (NaN disparity and cost, confidence 0), a target block holding one never wins.
    options : MatchOptions, optional
        Block size (odd, at most :data:`MAX_BLOCK`), search range, proximity weight, texture
        threshold (defaults: the paper's).

    Returns
    -------
    MatchResult
        ``(H, W) float32`` CuPy arrays: disparities [matching-grid pixels] (NaN invalid), costs
        (NaN invalid), confidences (0 invalid).

    See Also
    --------
    xstereo_gpu.stereo.disparity.block_match : the NumPy twin (CPU path, test oracle).
    """
    options = MatchOptions() if options is None else options
    if not isinstance(options, MatchOptions):
        raise InputError("block_match_kernel.options", type(options).__name__, "a MatchOptions")
    b = int(options.block)
    if b > MAX_BLOCK:
        raise InputError(
            "match.block",
            repr(b),
            f"at most {MAX_BLOCK} for the CUDA kernel (use xstereo_gpu.stereo.block_match for larger blocks)",
        )
    for where, img in (("block_match_kernel.left", left), ("block_match_kernel.right", right)):
        shape = getattr(img, "shape", None)
        if getattr(img, "ndim", None) != 2:
            raise InputError(
                where, f"shape {shape if shape is not None else type(img).__name__}", "a 2-D (H, W) image"
            )
        if min(shape) < 1:
            raise InputError(where, f"shape {shape}", "a non-empty image")
        if np.dtype(img.dtype).kind not in "biuf":
            raise InputError(where, f"dtype {img.dtype}", "a real image (amplitude or phase, 0..1 scale)")
    if left.shape != right.shape:
        raise InputError(
            "block_match_kernel.right", f"shape {right.shape}", f"the left image's shape {left.shape}"
        )
    H, W = (int(n) for n in left.shape)
    if b == 1 and options.texture_threshold > 0 and W < 2:
        raise InputError(
            "block_match_kernel.left",
            f"width {W}",
            "at least 2 columns for the texture rule with 1 x 1 blocks",
        )
    if not fits_int32(2 * H * W):
        raise InputError(
            "block_match_kernel.left", f"shape {left.shape}", "2 * H * W < 2**31 (32-bit indexing)"
        )
    for where, img in (("block_match_kernel.left", left), ("block_match_kernel.right", right)):
        if not type(img).__module__.startswith("cupy"):
            raise InputError(
                where,
                f"type {type(img).__module__}.{type(img).__name__}",
                "a cupy.ndarray (use xstereo_gpu.stereo.block_match for NumPy arrays)",
            )

    import cupy

    if left.device != right.device:
        raise InputError(
            "block_match_kernel.right", f"device {right.device}", f"the left image's device {left.device}"
        )
    with left.device:
        lf = cupy.ascontiguousarray(left, dtype=np.float32)
        rf = cupy.ascontiguousarray(right, dtype=np.float32)
        dmin, dmax = int(options.dmin), int(options.dmax)
        scale = float(b * b)
        # the twin's per-d proximity constant float32(scale * w * |d| / dnorm), computed by the
        # kernel in the twin's float64 order: nothing is copied to the device per call
        pw = scale * float(options.proximity_weight)
        dnorm = float(max(abs(dmin), abs(dmax))) or 1.0
        thr = float(options.texture_threshold)
        inv_tex = np.float32(1.0 / (b * (b - 1))) if b > 1 else np.float32(0.0)

        disp = cupy.empty((2, H, W), dtype=np.float32)
        cost = cupy.empty((2, H, W), dtype=np.float32)
        conf = cupy.empty((2, H, W), dtype=np.float32)
        name = f"block_match<{b}>"
        kernel = load_module(KERNEL_FILE, name_expressions=(name,)).get_function(name)
        grid = ((W + _TX - 1) // _TX, (H + _TY - 1) // _TY, 2)
        kernel(
            grid,
            _THREADS,
            (
                lf,
                rf,
                np.int32(H),
                np.int32(W),
                np.int32(dmin),
                np.int32(dmax),
                np.float64(pw),
                np.float64(dnorm),
                np.float32(1.0 / scale),
                inv_tex,
                np.float32(thr),
                np.int32(thr > 0),
                disp,
                cost,
                conf,
            ),
        )
    return MatchResult(disp[0], disp[1], cost[0], cost[1], conf[0], conf[1])
