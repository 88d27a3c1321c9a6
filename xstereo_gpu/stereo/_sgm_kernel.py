"""CuPy binding of ``kernels/sgm.cu``: semi-global path aggregation of a cost volume.

The NumPy twin (CPU path and oracle) is :func:`xstereo_gpu.stereo.sgm.aggregate_costs`; this
binding returns the same ``(H, W, D) float32`` sum, bit for bit, for a CuPy float32 cost volume.
:func:`xstereo_gpu.stereo.sgm.semi_global_match` calls it on CuPy unless ``kernels=False`` or
``XSTEREO_KERNELS=0``.
"""

from __future__ import annotations

import math

import numpy as np

from .._kernels import load_module
from ..backend import fits_int32
from ..errors import InputError
from .match_result import INVALID_COST, path_directions

__all__ = ["aggregate_costs_kernel", "launch_config", "KERNEL_FILE", "MAX_DISPARITIES"]

#: CUDA source in ``kernels/``.
KERNEL_FILE = "sgm.cu"
#: Most threads per block (SGM_MAX_THREADS in the .cu file).
_MAX_THREADS = 1024
#: Disparities per thread compiled into the kernel (template instances).
_DPT = (1, 2, 4, 8)
#: Largest number of disparities one launch handles (``_MAX_THREADS * max(_DPT)``).
MAX_DISPARITIES = _MAX_THREADS * _DPT[-1]


def launch_config(D: int) -> tuple[int, int]:
    """Disparities per thread and threads per block for ``D`` disparities.

    Parameters
    ----------
    D : int
        Number of disparities, ``1 <= D <= MAX_DISPARITIES``.

    Returns
    -------
    (int, int)
        ``(DPT, T)``: the smallest template instance ``DPT`` with ``DPT * 1024 >= D`` and the
        smallest multiple of 32 threads ``T`` with ``T * DPT >= D``.
    """
    if not 1 <= D <= MAX_DISPARITIES:
        raise InputError("aggregate_costs_kernel.cost", f"{D} disparities", f"1..{MAX_DISPARITIES}")
    dpt = next(k for k in _DPT if k * _MAX_THREADS >= D)
    threads = 32 * math.ceil(math.ceil(D / dpt) / 32)
    return dpt, threads


def aggregate_costs_kernel(cost, *, p1: float = 0.02, p2: float = 0.2, paths: int = 4):
    """Sum over scan-line paths of the SGM path costs, on the GPU.

    Same definition and float32 roundings as :func:`xstereo_gpu.stereo.sgm.aggregate_costs`: one
    launch of ``sgm_aggregate`` per direction of
    :func:`~xstereo_gpu.stereo.match_result.path_directions`, in that order, one thread block per
    scan line and threads over disparities.

    Parameters
    ----------
    cost : (H, W, D) cupy.ndarray float32
        Matching cost per pixel and disparity index,
        :data:`~xstereo_gpu.stereo.match_result.INVALID_COST` where a disparity is impossible;
        ``D <= MAX_DISPARITIES``.
    p1, p2 : float
        Penalties for a disparity change of 1 and of more than 1 [cost units], ``0 <= p1 <= p2``.
    paths : int
        4 or 8 directions.

    Returns
    -------
    (H, W, D) cupy.ndarray float32
        The aggregated cost ``S`` [cost units], on the cost volume's device.

    See Also
    --------
    xstereo_gpu.stereo.sgm.aggregate_costs : the NumPy twin (CPU path, test oracle).
    """
    shape = getattr(cost, "shape", None)
    if getattr(cost, "ndim", None) != 3:
        raise InputError(
            "aggregate_costs_kernel.cost",
            f"shape {shape if shape is not None else type(cost).__name__}",
            "an (H, W, D) volume",
        )
    if min(shape) < 1:
        raise InputError("aggregate_costs_kernel.cost", f"shape {shape}", "a non-empty volume")
    if np.dtype(cost.dtype) != np.float32:
        raise InputError("aggregate_costs_kernel.cost", f"dtype {cost.dtype}", "float32")
    H, W, D = (int(n) for n in shape)
    dpt, threads = launch_config(D)
    if not (math.isfinite(p1) and math.isfinite(p2) and 0 <= p1 <= p2):
        raise InputError("aggregate_costs_kernel.p2", f"p1={p1!r}, p2={p2!r}", "finite 0 <= p1 <= p2")
    directions = path_directions(paths)
    if not fits_int32(H + W - 1):
        raise InputError("aggregate_costs_kernel.cost", f"shape {shape}", "H + W - 1 < 2**31 scan lines")
    if not type(cost).__module__.startswith("cupy"):
        raise InputError(
            "aggregate_costs_kernel.cost",
            f"type {type(cost).__module__}.{type(cost).__name__}",
            "a cupy.ndarray (use xstereo_gpu.stereo.sgm.aggregate_costs for NumPy arrays)",
        )

    import cupy

    with cost.device:
        c = cupy.ascontiguousarray(cost)
        out = cupy.empty((H, W, D), dtype=np.float32)
        name = f"sgm_aggregate<{dpt}>"
        kernel = load_module(KERNEL_FILE, name_expressions=(name,)).get_function(name)
        smem = 4 * (D + 2 + 32)
        for k, (dy, dx) in enumerate(directions):
            lines = H if dy == 0 else (W if dx == 0 else W + H - 1)
            kernel(
                (lines, 1, 1),
                (threads, 1, 1),
                (
                    c,
                    out,
                    np.int32(H),
                    np.int32(W),
                    np.int32(D),
                    np.int32(dy),
                    np.int32(dx),
                    np.float32(p1),
                    np.float32(p2),
                    np.float32(INVALID_COST),
                    np.int32(k == 0),
                ),
                shared_mem=smem,
            )
    return out
