"""Segmentation of a point cloud: plane fits (least squares, RANSAC), sequential planes, components.

Paper (Methods): "By fitting a 3D plane in the cross-shape cut of the membrane, a 3D plane surface is
computed [...]" and, for the simulated phase cross, "two planes are fitted to the achieved point
cloud. Two new point clouds are then generated, each being constituted by the inlier points of a
fitted plane." It also asks to "identify isolated sample components and address each component
individually": :func:`components` labels the connected components of a radius graph.

A plane is ``n . p = offset`` with a unit normal ``n`` whose z component is made non-negative (so
that the same plane always comes out with the same sign). Coordinates are ``x, y, z`` in nm (the
object frame of docs/geometry.md), but any length unit works as long as it is used throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ..backend import get_array_module, scipy_module, to_host
from ..checks import check_points, check_positive
from ..errors import InputError

__all__ = ["Plane", "fit_plane", "ransac_plane", "segment_planes", "components", "label_regions"]

#: Elements of the (points x candidate planes) distance matrix evaluated at once by RANSAC.
_RANSAC_CHUNK = 1 << 22


@dataclass(frozen=True)
class Plane:
    """A plane ``normal . p = offset``.

    Attributes
    ----------
    normal : (3,) float64
        Unit normal ``(nx, ny, nz)`` with ``nz >= 0`` (for a vertical plane, the first non-zero
        component is positive).
    offset : float
        ``normal . p`` for every point ``p`` of the plane  [nm].
    rms : float
        Root mean square distance of the fitted points to the plane  [nm].
    centroid : (3,) float64
        Mean of the fitted points  [nm].
    """

    normal: tuple[float, float, float]
    offset: float
    rms: float
    centroid: tuple[float, float, float]

    def distance(self, points):
        """Signed distances ``normal . p - offset`` of ``points`` ((M, 3), NumPy or CuPy)  [nm]."""
        xp = get_array_module(points)
        n = xp.asarray(np.asarray(self.normal, dtype=np.float64))
        return xp.asarray(points, dtype=np.float64) @ n - self.offset

    def z_at(self, x, y):
        """Height of the plane above ``(x, y)``: ``(offset - nx x - ny y) / nz``  [nm].

        Raises
        ------
        InputError
            For a plane parallel to z (``nz == 0``), which has no height field.
        """
        nx, ny, nz = self.normal
        if abs(nz) < 1e-12:
            raise InputError("Plane.z_at", f"normal {self.normal}", "a plane that is not parallel to z")
        return (self.offset - nx * x - ny * y) / nz

    @property
    def tilt_deg(self) -> float:
        """Angle between the normal and the z axis  [deg]."""
        return float(np.degrees(np.arccos(np.clip(abs(self.normal[2]), 0.0, 1.0))))


def fit_plane(points) -> Plane:
    """Least-squares plane (total least squares: smallest principal axis) through ``points``.

    Parameters
    ----------
    points : (M, 3) float
        Points, M >= 3, NumPy or CuPy  [nm].

    Returns
    -------
    Plane
        The plane minimising the sum of squared orthogonal distances; ``rms`` is their root mean
        square. The 3 x 3 scatter matrix is computed on the input's device and diagonalised on the
        host.
    """
    xp = get_array_module(points)
    p = check_points(points, "fit_plane.points", minimum=3)
    return _fit(xp, p)


def ransac_plane(points, *, threshold_nm: float, iterations: int = 500, seed: int = 0, refine: bool = True):
    """Robust plane fit by RANSAC (seeded, reproducible, all candidates scored in batches).

    ``iterations`` triplets of points are drawn with ``numpy.random.default_rng(seed)`` on the host
    (so NumPy and CuPy draw the same candidates); every candidate plane is scored by its number of
    points closer than ``threshold_nm``; the best one (the first on ties) wins. With ``refine`` its
    inliers are re-fitted by least squares (:func:`fit_plane`) and the inliers recomputed from the
    refined plane.

    Parameters
    ----------
    points : (M, 3) float
        Points, M >= 3, NumPy or CuPy  [nm].
    threshold_nm : float
        Largest orthogonal distance of an inlier  [nm] (> 0).
    iterations : int
        Candidate planes drawn (>= 1). With an inlier fraction ``w`` the chance of never drawing an
        all-inlier triplet is ``(1 - w**3) ** iterations`` (``w = 0.7``, 500 draws: 1e-96).
    seed : int
        Seed of the candidate draws.
    refine : bool
        Least-squares refit on the inliers of the best candidate.

    Returns
    -------
    plane : Plane
        The fitted plane; ``rms`` is over its inliers.
    inliers : (M,) bool
        Points within ``threshold_nm`` of ``plane``, on the device of ``points``.
    """
    xp = get_array_module(points)
    p = check_points(points, "ransac_plane.points", minimum=3)
    _check_ransac_args(threshold_nm, iterations, "ransac_plane")
    return _ransac(xp, p, float(threshold_nm), int(iterations), int(seed), bool(refine))


def segment_planes(
    points,
    n_planes: int = 2,
    *,
    threshold_nm: float,
    iterations: int = 500,
    seed: int = 0,
    min_inliers: int = 3,
):
    """Sequential RANSAC: fit a plane, take its inliers out, fit the next plane to the rest.

    Parameters
    ----------
    points : (M, 3) float
        Points, NumPy or CuPy  [nm].
    n_planes : int
        Planes wanted (the paper fits two to the phase-cross cloud).
    threshold_nm : float
        Inlier distance of every plane  [nm].
    iterations : int
        RANSAC draws per plane.
    seed : int
        Plane ``k`` is fitted with seed ``seed + k``.
    min_inliers : int
        Stop when fewer points remain or the best plane has fewer inliers (>= 3).

    Returns
    -------
    planes : list of Plane
        Up to ``n_planes`` planes, in the order found (the most populated first, usually).
    labels : (M,) int32
        Index of the plane each point belongs to; -1 for points in no plane. Same device as
        ``points``. Each plane's inlier cloud is ``points[labels == k]``.
    """
    xp = get_array_module(points)
    p = check_points(points, "segment_planes.points", minimum=0)
    _check_ransac_args(threshold_nm, iterations, "segment_planes")
    check_positive("segment_planes.n_planes", n_planes, integer=True)
    if int(min_inliers) != min_inliers or min_inliers < 3:
        raise InputError("segment_planes.min_inliers", repr(min_inliers), "an integer >= 3")
    labels = xp.full(p.shape[0], -1, dtype=np.int32)
    remaining = xp.arange(p.shape[0])
    planes: list[Plane] = []
    for k in range(int(n_planes)):
        if remaining.shape[0] < min_inliers:
            break
        plane, inl = _ransac(xp, p[remaining], float(threshold_nm), int(iterations), int(seed) + k, True)
        count = int(inl.sum())
        if count < min_inliers:
            break
        planes.append(plane)
        labels[remaining[inl]] = k
        remaining = remaining[~inl]
    return planes, labels


def components(points, *, radius_nm: float, min_size: int = 1):
    """Connected components of the radius graph (points closer than ``radius_nm`` are linked).

    Parameters
    ----------
    points : (M, 3) float
        Points, NumPy or CuPy  [nm]. The graph is built on the host with ``scipy.spatial.cKDTree``
        and labelled with ``scipy.sparse.csgraph.connected_components`` (CuPy input is copied to
        the host and the labels copied back).
    radius_nm : float
        Link distance  [nm] (> 0); pairs at exactly ``radius_nm`` are linked.
    min_size : int
        Components with fewer points are labelled -1.

    Returns
    -------
    labels : (M,) int64
        Component of each point: 0 for the largest component, 1 for the next, ... (ties broken by
        the smallest point index); -1 for points in components smaller than ``min_size``.
    """
    xp = get_array_module(points)
    p = np.asarray(to_host(check_points(points, "components.points", minimum=0)))
    check_positive("components.radius_nm", radius_nm, expected="a positive finite distance in nm")
    check_positive("components.min_size", min_size, integer=True)
    m = p.shape[0]
    if m == 0:
        return xp.zeros(0, dtype=np.int64)
    pairs = cKDTree(p).query_pairs(float(radius_nm), output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(m, m))
    n, raw = connected_components(graph, directed=False)
    sizes = np.bincount(raw, minlength=n)
    first = np.full(n, m, dtype=np.int64)
    np.minimum.at(first, raw, np.arange(m))
    order = np.lexsort((first, -sizes))  # largest first, then by first point index
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    labels = rank[raw]
    labels[sizes[raw] < min_size] = -1
    return xp.asarray(labels)


def label_regions(mask, *, min_size: int = 1, connectivity: int = 1):
    """Connected regions of a 2-D or 3-D boolean image (the view-side segmentation of components).

    Parameters
    ----------
    mask : (H, W) or (Z, H, W) bool
        Foreground, NumPy or CuPy (``scipy.ndimage.label`` / ``cupyx.scipy.ndimage.label``; stays on
        the device apart from one copy of the region sizes).
    min_size : int
        Regions with fewer pixels are dropped (label 0).
    connectivity : int
        1: faces only (4- or 6-connected); ``ndim``: also diagonals (8- or 26-connected).

    Returns
    -------
    labels : same shape int32
        0 for background, 1 for the largest region, 2 for the next, ... (ties: the region met first
        in raster order).
    n : int
        Number of regions kept.
    """
    xp = get_array_module(mask)
    m = xp.asarray(mask)
    if m.ndim not in (2, 3):
        raise InputError("label_regions.mask", f"shape {tuple(m.shape)}", "a 2-D or 3-D boolean image")
    if int(connectivity) != connectivity or not 1 <= connectivity <= m.ndim:
        raise InputError("label_regions.connectivity", repr(connectivity), f"an integer in [1, {m.ndim}]")
    check_positive("label_regions.min_size", min_size, integer=True)
    ndi = scipy_module(xp, "ndimage")
    raw, n = ndi.label(m.astype(bool), structure=ndi.generate_binary_structure(m.ndim, int(connectivity)))
    n = int(n)
    if n == 0:
        return xp.zeros(m.shape, dtype=np.int32), 0
    sizes = np.asarray(to_host(xp.bincount(raw.ravel(), minlength=n + 1)))[1:]
    order = np.argsort(-sizes, kind="stable")  # raw labels follow raster order; stable sort keeps it on ties
    keep = sizes[order] >= min_size
    lut = np.zeros(n + 1, dtype=np.int32)
    lut[order[keep] + 1] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return xp.asarray(lut)[raw], int(keep.sum())


# --------------------------------------------------------------------------------------------- #
# internals


def _check_ransac_args(threshold_nm, iterations, where: str) -> None:
    check_positive(f"{where}.threshold_nm", threshold_nm, expected="a positive finite distance in nm")
    check_positive(f"{where}.iterations", iterations, integer=True)


def _orient(n: np.ndarray) -> np.ndarray:
    for c in (n[2], n[0], n[1]):
        if abs(c) > 1e-12:
            return n if c > 0 else -n
    return n


def _fit(xp, p) -> Plane:
    c = p.mean(axis=0)
    q = p - c
    scatter = np.asarray(to_host(q.T @ q), dtype=np.float64)
    c = np.asarray(to_host(c), dtype=np.float64)
    w, v = np.linalg.eigh(scatter)
    n = _orient(v[:, 0] / np.linalg.norm(v[:, 0]))
    rms = float(np.sqrt(max(w[0], 0.0) / p.shape[0]))
    return Plane(tuple(float(a) for a in n), float(n @ c), rms, tuple(float(a) for a in c))


def _ransac(xp, p, thr: float, iterations: int, seed: int, refine: bool):
    m = p.shape[0]
    if m < 3:
        raise InputError("ransac_plane.points", f"{m} points", "at least 3")
    rng = np.random.default_rng(seed)
    tri = xp.asarray(rng.integers(0, m, size=(iterations, 3)))
    c = p.mean(axis=0)
    q = p - c  # centred: distances stay accurate far from the origin
    a, b, d = q[tri[:, 0]], q[tri[:, 1]], q[tri[:, 2]]
    n = xp.cross(b - a, d - a)
    norm = xp.sqrt((n * n).sum(axis=1))
    valid = norm > 1e-12 * xp.maximum(xp.abs(q).max(), 1.0) ** 2
    n = n / xp.where(valid, norm, 1.0)[:, None]
    off = (n * a).sum(axis=1)
    scores = xp.empty(iterations, dtype=np.int64)
    step = max(1, _RANSAC_CHUNK // max(m, 1))
    for s in range(0, iterations, step):
        dist = xp.abs(q @ n[s : s + step].T - off[s : s + step][None, :])
        scores[s : s + step] = (dist <= thr).sum(axis=0)
    scores = xp.where(valid, scores, -1)
    best = int(xp.argmax(scores))
    inl = xp.abs(q @ n[best] - off[best]) <= thr
    if refine and int(inl.sum()) >= 3:
        plane = _fit(xp, p[inl])
        inl = xp.abs(plane.distance(p)) <= thr
        if int(inl.sum()) >= 3:
            return _fit(xp, p[inl]), inl
        return plane, inl
    nb = _orient(np.asarray(to_host(n[best]), dtype=np.float64))
    sel = p[inl] if int(inl.sum()) > 0 else p
    cen = np.asarray(to_host(sel.mean(axis=0)), dtype=np.float64)
    offset = float(nb @ np.asarray(to_host(c))) + float(np.sign(nb @ np.asarray(to_host(n[best])))) * float(
        off[best]
    )
    rms = float(np.sqrt(float(((sel @ xp.asarray(nb) - offset) ** 2).mean())))
    return Plane(tuple(float(v) for v in nb), offset, rms, tuple(float(v) for v in cen)), inl
