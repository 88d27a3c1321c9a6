"""Statistical outlier removal on the k nearest neighbours (paper, Methods).

"A point is considered an outlier if the average distance to its k-nearest neighbours is above a
specified threshold t. For all datasets, k = 80 points and t = 0.1. This threshold t specifies the
number of standard deviations away from the estimated average distance."

A point is never its own neighbour: the k neighbours are the k nearest *other* points (a duplicate
of a point, at distance 0, does count as a neighbour).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..backend import get_array_module, use_kernels
from ..checks import check_points, check_positive
from ..config import CloudOptions
from ..errors import InputError
from ._knn_kernel import KNN_KERNEL_MAX_K, knn_mean_distance_kernel

__all__ = ["knn_mean_distance", "remove_outliers", "statistical_outlier_filter"]

#: Bytes of float64 squared distances held at once by the brute-force path (plus one scratch
#: array of the same size and the partial sort's copy).
_CHUNK_BYTES = 256 * 1024 * 1024


def knn_mean_distance(points, k: int, *, method: str = "auto", kernels: bool | None = None):
    """Mean distance of each point to its ``k`` nearest other points.

    Parameters
    ----------
    points : (M, 3) float64
        Point coordinates (any length unit; the result has the same unit). NumPy or CuPy.
    k : int
        Neighbours per point, not counting the point itself; clamped to ``M - 1``.
    method : {"auto", "kdtree", "brute", "kernel"}
        ``"kdtree"``: ``scipy.spatial.cKDTree`` on the host (NumPy input only); ``"brute"``: chunked
        exact squared distances and a partial sort with the input's array module, memory bounded
        by chunks of rows; ``"kernel"``: the CUDA cell-grid kernel
        :func:`~._knn_kernel.knn_mean_distance_kernel` (CuPy input, ``k <= 128``), which matches
        the k-d tree's distances bit for bit. ``"auto"`` picks the k-d tree for NumPy, and for
        CuPy the kernel when ``kernels`` allows and ``k <= 128``, brute force otherwise.
    kernels : bool, optional
        Whether ``"auto"`` may use the CUDA kernel on CuPy. Default: yes unless the environment
        variable ``XSTEREO_KERNELS=0``; ``False`` runs the twins' array code (for comparison).

    Returns
    -------
    (M,) float64
        Mean distance to the ``min(k, M - 1)`` nearest other points; zeros when ``M <= 1``. Same
        device as ``points``.
    """
    xp = get_array_module(points)
    pts = check_points(points, "knn_mean_distance.points")
    check_positive("knn_mean_distance.k", k, integer=True)
    if method not in ("auto", "kdtree", "brute", "kernel"):
        raise InputError(
            "knn_mean_distance.method", repr(method), "one of 'auto', 'kdtree', 'brute', 'kernel'"
        )
    m = pts.shape[0]
    if m <= 1:
        return xp.zeros(m, dtype=np.float64)
    k = min(int(k), m - 1)
    if method == "auto":
        if xp is np:
            method = "kdtree"
        else:
            method = "kernel" if use_kernels(xp, kernels) and k <= KNN_KERNEL_MAX_K else "brute"
    if method == "kernel":
        if xp is np:
            raise InputError(
                "knn_mean_distance.method",
                "'kernel' with NumPy points",
                "'kdtree', 'brute' or 'auto' on the CPU",
            )
        return knn_mean_distance_kernel(pts, k)
    if method == "kdtree":
        if xp is not np:
            raise InputError(
                "knn_mean_distance.method", "'kdtree' with CuPy points", "'brute' or 'auto' on the GPU"
            )
        return _knn_kdtree(pts, k)
    return _knn_brute(pts, k)


def remove_outliers(points, *, k: int = 80, t: float = 0.1, kernels: bool | None = None):
    """Statistical outlier test: keep points whose mean kNN distance is at most ``mean + t * std``.

    Parameters
    ----------
    points : (M, 3) float64
        Point cloud (any length unit), NumPy or CuPy.
    k : int
        Neighbours per point (paper: 80), clamped to ``M - 1``.
    t : float
        Threshold in standard deviations of the mean kNN distances (paper: 0.1).
    kernels : bool, optional
        Use the CUDA kernel on CuPy (see :func:`knn_mean_distance`; default: yes unless
        ``XSTEREO_KERNELS=0``). Ignored on NumPy.

    Returns
    -------
    keep : (M,) bool
        True for inliers; all True when ``M <= 1``. Same device as ``points``. The limit carries a
        relative slack of 1e-12 so that rounding never splits equal distances (identical points,
        regular grids).
    """
    xp = get_array_module(points)
    if not np.isfinite(t):
        raise InputError("remove_outliers.t", repr(t), "a finite number of standard deviations")
    md = knn_mean_distance(points, k, kernels=kernels)
    if md.shape[0] <= 1:
        return xp.ones(md.shape[0], dtype=bool)
    mu = md.mean()
    sd = md.std()
    # a tiny relative slack so that equal distances (e.g. a regular grid) are never split by rounding
    limit = mu + t * sd + 1e-12 * xp.abs(mu)
    return md <= limit


def statistical_outlier_filter(points, options: CloudOptions | None = None):
    """:func:`remove_outliers` with ``k`` and ``t`` from ``options`` (defaults: k = 80, t = 0.1)."""
    options = options or CloudOptions()
    return remove_outliers(points, k=options.k, t=options.t)


# --------------------------------------------------------------------------------------------- #
# internals


def _knn_kdtree(pts: np.ndarray, k: int) -> np.ndarray:
    dist, _ = cKDTree(pts).query(pts, k=k + 1, workers=-1)
    # column 0 is the point itself at distance 0 (or a duplicate, also at 0: the same multiset)
    return dist[:, 1:].mean(axis=1)


def _knn_brute(pts, k: int):
    xp = get_array_module(pts)
    m = pts.shape[0]
    rows = max(1, min(m, _CHUNK_BYTES // (8 * m)))
    out = xp.empty(m, dtype=np.float64)
    coords = [xp.ascontiguousarray(pts[:, j]) for j in range(pts.shape[1])]
    for s in range(0, m, rows):
        e = min(m, s + rows)
        # squared distances summed from coordinate differences in the order cKDTree adds them (no
        # |a|^2 + |b|^2 - 2 a.b cancellation): the GPU path then reproduces the CPU k-d tree's
        # distances to rounding, far inside the 1e-12 slack of remove_outliers
        d2 = xp.subtract(coords[0][s:e, None], coords[0][None, :])
        d2 *= d2
        t = xp.empty_like(d2)
        for c in coords[1:]:
            xp.subtract(c[s:e, None], c[None, :], out=t)
            t *= t
            d2 += t
        del t
        i = xp.arange(e - s)
        d2[i, s + i] = np.inf  # not its own neighbour
        near = xp.partition(d2, k - 1, axis=1)[:, :k]
        out[s:e] = xp.sqrt(near).mean(axis=1)
    return out
