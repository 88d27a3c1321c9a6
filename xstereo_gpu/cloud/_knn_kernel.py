"""CuPy binding of ``kernels/knn_outliers.cu``: mean distance to the k nearest neighbours on a grid.

The NumPy twin and oracle is :func:`xstereo_gpu.cloud.outliers.knn_mean_distance` (cKDTree); the
kernel reproduces its float64 distances and NumPy's summation order, so :func:`remove_outliers`
applied to either result keeps the same points. ``knn_mean_distance`` (``method="auto"``) and
``remove_outliers`` call it for CuPy points with ``k <= 128`` unless ``kernels=False`` or
``XSTEREO_KERNELS=0``.

Grid. The cell width ``h`` is chosen so that a point finds about ``max(k, 8) / 4`` points in its
own cell (the k-th neighbour of a point in a uniform cloud then lies within one ring of cells). The
first guess comes from the 1 %..99 % box of the cloud; the point-weighted mean cell occupancy is
then measured on the device for a ladder of widths around it (one sort of the cell keys each) and
the nearest to the wanted occupancy wins, so that lines, sheets and clusters get sensible cells.

Cells per axis are capped at 2**20; when the cloud is wider than that (far outliers), the grid
window is centred on the median and the points outside fall into the unbounded border cells. Only
non-empty cells are stored: memory is O(M).

Host synchronisation: two reads per call (issue 12's budget), the box statistics with the finite
check, and the ladder's occupancies; the list of non-empty cells is built on the device (no
``nonzero``, whose output size CuPy learns on the host).

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
#: Cell widths tried at once by the planner: the first guess times 2**j for these j.
_PLAN_LADDER = tuple(range(-3, 4))
_NO_CELL = np.int64(0x7FFFFFFFFFFFFFFF)  # KNN_NO_CELL of the .cu file
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
    if m == 0:
        return cupy.zeros(0, dtype=np.float64)
    module = load_module(_SOURCE, name_expressions=_NAME_EXPRESSIONS)
    grid = _plan_grid(cupy, module, pts, k)  # the call's two host reads (finite check included)
    if m == 1:
        return cupy.zeros(1, dtype=np.float64)
    lo, h, n, keys, order = grid["lo"], grid["h"], grid["n"], grid["keys"], grid["order"]

    # the non-empty cells, listed on the device without learning their number C on the host:
    # cell c's key and first sorted point at index c (c < C), sentinels after
    sorted_keys = keys[order]
    first = cupy.empty(m, dtype=bool)
    first[0] = True
    cupy.not_equal(sorted_keys[1:], sorted_keys[:-1], out=first[1:])
    cell = cupy.cumsum(first, dtype=np.int64) - 1  # cell index of each sorted point
    cell_keys = cupy.full(m + 1, _NO_CELL, dtype=np.int64)
    cell_keys[cupy.where(first, cell, m)] = sorted_keys  # non-first points write slot m
    cell_keys[m] = _NO_CELL
    cell_start = cupy.full(m + 2, m, dtype=np.int64)
    cell_start[cupy.where(first, cell, m + 1)] = cupy.arange(m, dtype=np.int64)
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
            np.int64(m),
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
    """Cells per axis and grid origin for cell width ``h`` (window centred on ``median`` if capped)."""
    n = np.ones(3, dtype=np.int64)
    lo = box_lo.copy()
    for d in range(3):
        span = extent[d] / h + 1.0 if extent[d] > 0 else 1.0
        if span > _MAX_AXIS_CELLS:
            n[d] = _MAX_AXIS_CELLS
            lo[d] = median[d] - (_MAX_AXIS_CELLS // 2) * h
        else:
            n[d] = math.floor(span)
    return lo, n


def _plan_grid(cupy, module, pts, k):
    """Cell width, origin and cells per axis, with the keys and the sort order of the chosen width.

    Two host reads in all. The first fetches, in one array, whether every coordinate is finite
    (else :class:`InputError`), the box, the 1 %, 50 % and 99 % order statistics per axis (from one
    sort of each column). The first guess of ``h`` fills the 1 %..99 % box with ``max(k, 8) / 4``
    points per cell (far outliers do not inflate it); then the point-weighted mean cell occupancy
    ``sum(occupancy**2) / M`` (the number of points a point finds in its own cell) is measured for
    the whole ladder ``h * 2**j`` (:data:`_PLAN_LADDER`) on the device and fetched in the second
    read; the width whose occupancy is nearest ``max(k, 8) / 4`` (in ratio) wins. Any width gives
    the same distances; the choice only sets the speed.
    """
    m = pts.shape[0]
    pts64 = pts.astype(np.float64, copy=False)
    cols = cupy.sort(pts64, axis=0)
    rows = (0, m - 1, int(0.01 * (m - 1)), (m - 1) // 2, int(math.ceil(0.99 * (m - 1))))
    stats = cupy.concatenate(
        [cupy.isfinite(pts).all().astype(np.float64).reshape(1)] + [cols[r] for r in rows]
    ).get()  # host read 1
    if not stats[0]:
        raise InputError("knn_mean_distance_kernel.points", "non-finite coordinates", "finite coordinates")
    box_lo, box_hi, q01, q50, q99 = (stats[1 + 3 * i : 4 + 3 * i] for i in range(5))
    extent = box_hi - box_lo
    want = max(k, 8) / 4.0  # points per cell: the k-th neighbour then lies within about one ring
    if m <= 1 or not (extent > 0).any():  # one point, or all identical: one cell
        return dict(
            lo=box_lo.copy(),
            h=1.0,
            n=np.ones(3, dtype=np.int64),
            keys=cupy.zeros(m, dtype=np.int64),
            order=cupy.arange(m, dtype=np.int64),
            box_lo=box_lo,
            box_hi=box_hi,
        )
    robust = q99 - q01
    live = robust[robust > 0] if (robust > 0).any() else extent[extent > 0]
    floor_h = float(extent.max()) * 1e-280 + np.finfo(np.float64).tiny
    h0 = max(float(np.prod(live) * want / (0.98 * m)) ** (1.0 / live.size), floor_h)
    widths = [max(h0 * 2.0**j, floor_h) for j in _PLAN_LADDER]
    seen = []
    for h in widths:
        lo, n = _axes(box_lo, extent, h, q50)
        sk = cupy.sort(_cell_keys(cupy, module, pts, lo, h, n))
        run = cupy.searchsorted(sk, sk, side="right") - cupy.searchsorted(sk, sk, side="left")
        seen.append(run.sum(dtype=np.float64) / m)
    seen = cupy.stack(seen).get()  # host read 2
    best = int(np.argmin(np.abs(np.log(seen / want))))
    h = widths[best]
    lo, n = _axes(box_lo, extent, h, q50)
    keys = _cell_keys(cupy, module, pts, lo, h, n)
    order = cupy.argsort(keys).astype(np.int64, copy=False)
    return dict(lo=lo, h=h, n=n, keys=keys, order=order, box_lo=box_lo, box_hi=box_hi)
