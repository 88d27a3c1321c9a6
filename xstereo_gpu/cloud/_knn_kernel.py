"""CuPy binding of ``kernels/knn_outliers.cu``: mean distance to the k nearest neighbours on a grid.

The NumPy twin and oracle is :func:`xstereo_gpu.cloud.outliers.knn_mean_distance` (cKDTree); the
kernel reproduces its float64 distances and NumPy's summation order, so :func:`remove_outliers`
applied to either result keeps the same points. ``knn_mean_distance`` (``method="auto"``) and
``remove_outliers`` call it for CuPy points with ``k <= 128`` unless ``kernels=False`` or
``XSTEREO_KERNELS=0``.

Grid. The cell width ``h`` is chosen so that a point finds about ``max(k, 8) / 4`` points in its
own cell (the k-th neighbour of a point in a uniform cloud then lies within one ring of cells). The
first guess comes from the 1 %..99 % box of the cloud, and a few corrections (one sort of the cell
keys and one host synchronisation each) measure the point-weighted mean cell occupancy and rescale
``h`` with the cloud's apparent dimension, so that lines, sheets and clusters get sensible cells.
Cells per axis are capped at 2**20; when the cloud is wider than that (far outliers), the grid
window is centred on the median and the points outside fall into the unbounded border cells. Only
non-empty cells are stored: memory is O(M).

Known weak spot: a cloud whose density varies by orders of magnitude between regions (a dense
cluster inside a sparse cloud) gets one cell width for both, so it is correct but slower (the
dense points scan crowded cells, the sparse ones fall back to a pass over all non-empty cells).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._kernels import ctype, load_module
from ..errors import InputError

__all__ = ["knn_mean_distance_kernel", "KNN_KERNEL_MAX_K"]

#: Largest k (after clamping to M - 1) that the kernel holds per thread.
KNN_KERNEL_MAX_K = 128

_SOURCE = "knn_outliers.cu"
_KCAPS = (8, 16, 32, 64, 128)
_BLOCK = 128
_KEY_BLOCK = 256
_MAX_AXIS_CELLS = 1 << 20
_PLAN_ITERATIONS = 6
_NAME_EXPRESSIONS = ("knn_cell_keys<float>", "knn_cell_keys<double>") + tuple(
    f"knn_mean_distance_grid<{c}>" for c in _KCAPS
)


def knn_mean_distance_kernel(points, k):
    """Mean distance of each point to its ``k`` nearest other points, on the GPU.

    Parameters
    ----------
    points : (M, 3) float64 or float32
        CuPy array of point coordinates (any length unit; float32 is widened to float64 exactly).
    k : int
        Neighbours per point, not counting the point itself; clamped to ``M - 1``, and then at
        most :data:`KNN_KERNEL_MAX_K` (128).

    Returns
    -------
    (M,) float64
        CuPy array: mean distance to the ``min(k, M - 1)`` nearest other points (same unit as
        ``points``); zeros when ``M <= 1``.

    Raises
    ------
    InputError
        Wrong shape, dtype or array type of ``points``, non-finite coordinates, or a bad ``k``.

    See Also
    --------
    xstereo_gpu.cloud.outliers.knn_mean_distance : the NumPy/SciPy twin this matches bit for bit.
    """
    where = "knn_mean_distance_kernel.points"
    shape = getattr(points, "shape", None)
    if shape is None or len(shape) != 2 or shape[1] != 3:
        raise InputError(where, f"shape {shape}", "(M, 3) point coordinates")
    dtype = getattr(points, "dtype", None)
    if dtype is None or np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise InputError(where, f"dtype {dtype}", "float32 or float64")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise InputError("knn_mean_distance_kernel.k", repr(k), "a positive integer")
    m = int(shape[0])
    k = min(int(k), max(m - 1, 1))
    if k > KNN_KERNEL_MAX_K:
        raise InputError(
            "knn_mean_distance_kernel.k",
            repr(k),
            f"at most {KNN_KERNEL_MAX_K} (use knn_mean_distance for larger k)",
        )
    if not type(points).__module__.startswith("cupy"):
        raise InputError(
            where,
            f"a {type(points).__module__}.{type(points).__name__}",
            "a CuPy array (use knn_mean_distance for NumPy arrays)",
        )

    import cupy

    pts = cupy.ascontiguousarray(points)
    if m and not bool(cupy.isfinite(pts).all()):
        raise InputError(where, "non-finite coordinates", "finite coordinates")
    if m <= 1:
        return cupy.zeros(m, dtype=np.float64)

    module = load_module(_SOURCE, name_expressions=_NAME_EXPRESSIONS)
    grid = _plan_grid(cupy, module, pts, k)
    lo, h, n, keys, order = grid["lo"], grid["h"], grid["n"], grid["keys"], grid["order"]

    sorted_keys = keys[order]
    first = cupy.empty(m, dtype=bool)
    first[0] = True
    cupy.not_equal(sorted_keys[1:], sorted_keys[:-1], out=first[1:])
    starts = cupy.flatnonzero(first).astype(np.int64)
    cell_keys = cupy.ascontiguousarray(sorted_keys[starts])
    cell_start = cupy.concatenate([starts, cupy.asarray([m], dtype=np.int64)])
    xyz = cupy.ascontiguousarray(pts[order].astype(np.float64))

    # rounding slack of the cell faces (cell assignment and face positions), in length units
    reach = max(
        np.abs(grid["box_lo"]).max(), np.abs(grid["box_hi"]).max(), np.abs(lo).max(), np.abs(lo + n * h).max()
    )
    slack = 1e-8 * h + 1e-14 * reach

    kcap = next(c for c in _KCAPS if c >= k)
    out = cupy.full(m, np.nan, dtype=np.float64)
    kern = module.get_function(f"knn_mean_distance_grid<{kcap}>")
    kern(
        ((m + _BLOCK - 1) // _BLOCK,),
        (_BLOCK,),
        (
            xyz,
            order,
            sorted_keys,
            cell_keys,
            cell_start,
            np.int64(cell_keys.size),
            np.int64(m),
            np.int32(k),
            np.float64(lo[0]),
            np.float64(lo[1]),
            np.float64(lo[2]),
            np.float64(h),
            np.int32(n[0]),
            np.int32(n[1]),
            np.int32(n[2]),
            np.float64(slack),
            out,
        ),
    )
    return out


# --------------------------------------------------------------------------------------------- #
# internals


def _cell_keys(cupy, module, pts, lo, h, n):
    m = pts.shape[0]
    keys = cupy.empty(m, dtype=np.int64)
    kern = module.get_function(f"knn_cell_keys<{ctype(pts.dtype)}>")
    kern(
        ((m + _KEY_BLOCK - 1) // _KEY_BLOCK,),
        (_KEY_BLOCK,),
        (
            pts,
            np.int64(m),
            np.float64(lo[0]),
            np.float64(lo[1]),
            np.float64(lo[2]),
            np.float64(1.0 / h),
            np.int32(n[0]),
            np.int32(n[1]),
            np.int32(n[2]),
            keys,
        ),
    )
    return keys


def _axes(box_lo, extent, h, median):
    """Cells per axis and grid origin for cell width ``h`` (window centred on the median if capped)."""
    n = np.ones(3, dtype=np.int64)
    lo = box_lo.copy()
    for d in range(3):
        span = extent[d] / h + 1.0 if extent[d] > 0 else 1.0
        if span > _MAX_AXIS_CELLS:
            n[d] = _MAX_AXIS_CELLS
            lo[d] = median()[d] - (_MAX_AXIS_CELLS // 2) * h
        else:
            n[d] = math.floor(span)
    return lo, n


def _plan_grid(cupy, module, pts, k):
    """Cell width, origin and cells per axis, with the keys and the sort order of the last try.

    The measure is the point-weighted mean cell occupancy ``sum(occupancy**2) / M`` (the number of
    points a point finds in its own cell); ``h`` is rescaled until it is within a factor 2.5 of the
    wanted ``max(k, 8) / 4``, using the apparent dimension of the cloud (1 to 3) measured from the
    last two tries. The first guess uses the 1 %..99 % box so that far outliers do not inflate it.
    """
    m = pts.shape[0]
    pts64 = pts.astype(np.float64, copy=False)
    box = cupy.stack([pts64.min(axis=0), pts64.max(axis=0)]).get()
    box_lo, box_hi = box[0], box[1]
    extent = box_hi - box_lo
    want = max(k, 8) / 4.0  # points per cell: the k-th neighbour then lies within about one ring
    cache = {}

    def median():
        if "median" not in cache:
            cache["median"] = cupy.median(pts64, axis=0).get()
        return cache["median"]

    if not (extent > 0).any():  # all points identical: one cell
        keys = cupy.zeros(m, dtype=np.int64)
        return dict(
            lo=box_lo.copy(),
            h=1.0,
            n=np.ones(3, dtype=np.int64),
            keys=keys,
            order=cupy.arange(m, dtype=np.int64),
            box_lo=box_lo,
            box_hi=box_hi,
        )

    q = cupy.percentile(pts64, cupy.asarray([1.0, 99.0]), axis=0).get()
    robust = q[1] - q[0]
    live = robust[robust > 0] if (robust > 0).any() else extent[extent > 0]
    floor_h = float(extent.max()) * 1e-280 + np.finfo(np.float64).tiny
    h = max(float(np.prod(live) * want / (0.98 * m)) ** (1.0 / live.size), floor_h)
    prev = None
    for it in range(_PLAN_ITERATIONS):
        lo, n = _axes(box_lo, extent, h, median)
        keys = _cell_keys(cupy, module, pts, lo, h, n)
        order = cupy.argsort(keys).astype(np.int64, copy=False)
        sk = keys[order]
        first = cupy.flatnonzero(sk[1:] != sk[:-1]) + 1
        edges = cupy.concatenate(
            [cupy.zeros(1, dtype=first.dtype), first, cupy.full(1, m, dtype=first.dtype)]
        )
        occ = cupy.diff(edges).astype(np.float64)
        seen = float((occ * occ).sum()) / m
        if want / 2.5 <= seen <= 2.5 * want or it == _PLAN_ITERATIONS - 1:
            break
        if seen < want and h >= float(extent.max()):
            break  # one cell holds the whole cloud and still too few points (small M)
        dim = 3.0
        if prev is not None:
            if abs(math.log(seen / prev[1])) < 0.05:
                break  # the occupancy no longer responds to h (clusters of duplicates)
            dim = min(max(math.log(seen / prev[1]) / math.log(h / prev[0]), 1.0), 3.0)
        prev = (h, seen)
        factor = min(max((want / seen) ** (1.0 / dim), 1e-3), 1e3)
        h = max(h * factor, floor_h)
    return dict(lo=lo, h=h, n=n, keys=keys, order=order, box_lo=box_lo, box_hi=box_hi)
