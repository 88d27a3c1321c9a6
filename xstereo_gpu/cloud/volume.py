"""From a cleaned point cloud to a volume: frame points, height field, voxels, empty-space carving, mesh.

Paper (Methods): "By fitting a 3D plane in the cross-shape cut of the membrane, a 3D plane surface is
computed and a square frame with three points of length is added to the extremities of the point
cloud, defining the limits of our 3D reconstruction. A 3D interpolation is, then, realized over the
resultant point cloud [...] Natural Neighbour Interpolation [...]. Crossing the information on the
white regions of our stereo views (object transmission function equal to 1), an extra stereo point
cloud is computed, composed by stacks of planar points, which we know to correspond to the empty
volume of our sample. Excluding from the interpolated 3D mesh the neighbours (0.2 micrometre
precision) of the empty region cloud, we reach a final 3D reconstruction of the sample."

Volumes are ``(Z, Y, X)`` arrays on a :class:`VolumeGrid` (voxel ``(Dz, Dr, Dr)`` by default, eq. 2);
points are ``(M, 3)`` ``x, y, z`` in nm in the object frame of docs/geometry.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..backend import get_array_module, scipy_module, to_host
from ..checks import check_positive
from ..errors import InputError
from ..geometry import StereoGeometry
from .interpolate import sibson_grid
from .segment import Plane, ransac_plane

__all__ = [
    "VolumeGrid",
    "CloudVolume",
    "frame_points",
    "height_field",
    "voxelise",
    "empty_space",
    "carve",
    "surface_mesh",
    "cloud_to_volume",
]


@dataclass(frozen=True)
class VolumeGrid:
    """A regular ``(Z, Y, X)`` voxel grid in the object frame.

    Attributes
    ----------
    shape : (int, int, int)
        ``(Z, Y, X)`` voxels.
    voxel_nm : (float, float, float)
        ``(dz, dy, dx)`` voxel size  [nm].
    origin_nm : (float, float, float)
        ``(z0, y0, x0)``: coordinates of the centre of voxel ``(0, 0, 0)``  [nm]; voxel
        ``(k, i, j)`` is centred at ``z = z0 + k dz``, ``y = y0 + i dy``, ``x = x0 + j dx``.
    """

    shape: tuple[int, int, int]
    voxel_nm: tuple[float, float, float]
    origin_nm: tuple[float, float, float]

    def __post_init__(self):
        if len(self.shape) != 3 or min(int(s) for s in self.shape) < 1:
            raise InputError("VolumeGrid.shape", repr(self.shape), "(Z, Y, X), three positive integers")
        if len(self.voxel_nm) != 3 or not all(math.isfinite(v) and v > 0 for v in self.voxel_nm):
            raise InputError(
                "VolumeGrid.voxel_nm", repr(self.voxel_nm), "(dz, dy, dx), three positive sizes in nm"
            )
        if len(self.origin_nm) != 3 or not all(math.isfinite(v) for v in self.origin_nm):
            raise InputError(
                "VolumeGrid.origin_nm", repr(self.origin_nm), "(z0, y0, x0), three finite values in nm"
            )
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "voxel_nm", tuple(float(v) for v in self.voxel_nm))
        object.__setattr__(self, "origin_nm", tuple(float(v) for v in self.origin_nm))

    @classmethod
    def for_views(
        cls,
        geometry: StereoGeometry,
        view_shape: tuple[int, int],
        z_range_nm: tuple[float, float],
        *,
        dz_nm: float | None = None,
    ) -> VolumeGrid:
        """The grid under the view grid: ``dy = dx = Dr``, ``dz = Dz`` (eq. 2) unless given.

        Voxel column ``(i, j)`` is view pixel ``(i, j)`` (``y = (i - H//2) Dr``,
        ``x = (j - W//2) Dr``); the z axis covers ``z_range_nm`` (``(z_min, z_max)`` [nm]) with
        ``z0`` a multiple of ``dz`` (so ``z = 0`` falls on a voxel centre).
        """
        if len(view_shape) != 2 or min(int(s) for s in view_shape) < 1:
            raise InputError("VolumeGrid.for_views.view_shape", repr(view_shape), "(H, W) of the views")
        lo, hi = (float(v) for v in z_range_nm)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise InputError(
                "VolumeGrid.for_views.z_range_nm", repr(z_range_nm), "finite (z_min, z_max), z_min <= z_max"
            )
        dr = geometry.pixel_size_m * 1e9
        dz = float(dz_nm) if dz_nm is not None else geometry.voxel_depth_m * 1e9
        check_positive("VolumeGrid.for_views.dz_nm", dz, expected="a positive voxel depth in nm")
        k0 = math.floor(lo / dz + 1e-9)
        k1 = math.ceil(hi / dz - 1e-9)
        h, w = (int(s) for s in view_shape)
        return cls((k1 - k0 + 1, h, w), (dz, dr, dr), (k0 * dz, -(h // 2) * dr, -(w // 2) * dr))

    def axis(self, a: int, xp=np):
        """Voxel-centre coordinates along axis ``a`` (0 = z, 1 = y, 2 = x)  [nm], float64."""
        return self.origin_nm[a] + self.voxel_nm[a] * xp.arange(self.shape[a], dtype=np.float64)


def frame_points(points, plane: Plane, *, spacing_nm: float, width: int = 3, margin_nm: float = 0.0):
    """The square frame on the fitted membrane plane around the cloud's extremities (paper, Methods).

    The frame is the border, ``width`` points thick, of a square lattice with step ``spacing_nm``
    covering the cloud's x-y bounding box grown by ``margin_nm``; each frame point lies on
    ``plane`` (``z = plane.z_at(x, y)``). Added to the cloud before interpolation, it pins the
    border of the interpolated surface to the membrane.

    Parameters
    ----------
    points : (M, 3) float
        The cloud  [nm], NumPy or CuPy (M >= 1).
    plane : Plane
        The membrane plane (not parallel to z).
    spacing_nm : float
        Lattice step  [nm] (the view pixel ``Dr`` is the natural choice).
    width : int
        Thickness of the frame in points (paper: 3).
    margin_nm : float
        Growth of the bounding box on each side  [nm] (>= 0).

    Returns
    -------
    (F, 3) float64
        Frame points ``x, y, z``  [nm], on the device of ``points``.
    """
    xp = get_array_module(points)
    p = xp.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] < 1:
        raise InputError("frame_points.points", f"shape {tuple(p.shape)}", "(M, 3) x, y, z with M >= 1")
    check_positive("frame_points.spacing_nm", spacing_nm, expected="a positive lattice step in nm")
    check_positive("frame_points.width", width, integer=True, expected="a positive integer number of points")
    check_positive(
        "frame_points.margin_nm", margin_nm, allow_zero=True, expected="a non-negative distance in nm"
    )
    lo = np.asarray(to_host(p[:, :2].min(axis=0)), dtype=np.float64) - margin_nm
    hi = np.asarray(to_host(p[:, :2].max(axis=0)), dtype=np.float64) + margin_nm
    n = np.maximum(np.ceil((hi - lo) / spacing_nm - 1e-9).astype(int) + 1, 1)
    ix, iy = np.meshgrid(np.arange(n[0]), np.arange(n[1]), indexing="ij")
    border = (ix < width) | (ix >= n[0] - width) | (iy < width) | (iy >= n[1] - width)
    x = lo[0] + ix[border] * spacing_nm
    y = lo[1] + iy[border] * spacing_nm
    z = plane.z_at(x, y)
    return xp.asarray(np.column_stack([x, y, z]))


def height_field(
    points,
    *,
    shape: tuple[int, int],
    pixel_nm: float,
    origin_nm: tuple[float, float] | None = None,
    max_radius_nm: float | None = None,
):
    """Height ``z(x, y)`` of a cloud on a 2-D grid by discrete Sibson interpolation.

    Parameters
    ----------
    points : (M, 3) float
        ``x, y, z``  [nm], NumPy or CuPy. Points falling into one pixel are averaged.
    shape : (int, int)
        ``(H, W)`` of the grid (usually the view grid).
    pixel_nm : float
        Grid step  [nm] (usually ``Dr``).
    origin_nm : (float, float), optional
        ``(y0, x0)`` of pixel ``(0, 0)``  [nm]; default the view-grid convention
        ``(-(H//2) Dr, -(W//2) Dr)``.
    max_radius_nm : float, optional
        Pixels farther than this from every point get NaN (see
        :func:`~xstereo_gpu.cloud.interpolate.discrete_sibson`).

    Returns
    -------
    (H, W) float64
        Height  [nm], NaN where undefined; same device as ``points``.
    """
    xp = get_array_module(points)
    p = xp.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise InputError("height_field.points", f"shape {tuple(p.shape)}", "(M, 3) x, y, z")
    check_positive("height_field.pixel_nm", pixel_nm, expected="a positive grid step in nm")
    h, w = (int(s) for s in shape)
    if origin_nm is None:
        origin_nm = (-(h // 2) * pixel_nm, -(w // 2) * pixel_nm)
    return sibson_grid(
        p[:, [1, 0]],
        p[:, 2],
        shape=(h, w),
        origin=origin_nm,
        spacing=(pixel_nm, pixel_nm),
        max_radius=max_radius_nm,
    )


def voxelise(data, grid: VolumeGrid, *, thickness_nm: float | None = None):
    """Occupancy ``(Z, Y, X)`` of a height field or of a point cloud on ``grid``.

    Parameters
    ----------
    data : (Y, X) float or (M, 3) float
        A height field ``z(y, x)`` [nm] on the grid's ``(Y, X)`` columns (NaN: empty column), or a
        cloud ``x, y, z`` [nm]. A 2-D array of shape ``grid.shape[1:]`` is taken as a height field,
        anything else of shape ``(M, 3)`` as a cloud.
    grid : VolumeGrid
        The voxel grid.
    thickness_nm : float, optional
        Height field only: a voxel is occupied when its centre is within ``thickness_nm / 2`` of
        the surface (default and minimum ``dz``, so every defined column holds at least one voxel).

    Returns
    -------
    (Z, Y, X) bool
        Occupancy, on the device of ``data``. For a cloud, the voxels containing at least one point
        (points outside the grid are ignored).
    """
    xp = get_array_module(data)
    d = xp.asarray(data, dtype=np.float64)
    Z, Y, X = grid.shape
    dz = grid.voxel_nm[0]
    if d.ndim == 2 and tuple(d.shape) == (Y, X):
        half = max(float(thickness_nm) if thickness_nm is not None else dz, dz) / 2.0
        z = grid.axis(0, xp)[:, None, None]
        with np.errstate(invalid="ignore"):
            return xp.abs(z - d[None, :, :]) <= half * (1 + 1e-9)
    if d.ndim == 2 and d.shape[1] == 3:
        idx = [xp.rint((d[:, 2 - a] - grid.origin_nm[a]) / grid.voxel_nm[a]) for a in range(3)]
        ok = xp.isfinite(d).all(axis=1)
        flat = xp.zeros(d.shape[0], dtype=np.int64)
        for a, i in enumerate(idx):
            ok &= (i >= 0) & (i <= grid.shape[a] - 1)
            flat = flat * grid.shape[a] + xp.clip(xp.nan_to_num(i), 0, grid.shape[a] - 1).astype(np.int64)
        occ = xp.bincount(flat[ok], minlength=Z * Y * X) > 0
        return occ.reshape(Z, Y, X)
    raise InputError(
        "voxelise.data",
        f"shape {tuple(d.shape)}",
        f"a height field {(Y, X)} on the grid's columns or an (M, 3) cloud",
    )


def empty_space(
    grid: VolumeGrid,
    empty_left,
    empty_right,
    geometry: StereoGeometry,
    *,
    upsample: int = 1,
    outside_empty: bool = False,
    require: str = "both",
):
    """Voxels known to be empty: their projections fall on empty pixels of BOTH views.

    ``require="both"`` is the paper's stereo crossing of the white regions (a voxel is empty when
    both views see transmission 1 there). ``require="either"`` is classical space carving: one
    view's transmission 1 already proves its whole ray empty, so only the visual hull remains
    (right for opaque, pure-amplitude samples; it removes more).

    Voxel centre ``(x, y, z)`` projects to ``x_k = x + z tan a_k``, ``y_k = y`` in view ``k``
    (``a_left = +t1``, ``a_right = -t2``); the nearest mask pixel is read.

    Parameters
    ----------
    grid : VolumeGrid
        The voxel grid.
    empty_left, empty_right : (uH, uW) bool
        True where the view shows transmission 1 (nothing in the beam). Mask pixel ``(r, c)`` is at
        view coordinates ``((r + 0.5)/u - 0.5, (c + 0.5)/u - 0.5)``, view pixel ``(i, j)`` at
        ``y = (i - H//2) Dr``, ``x = (j - W//2) Dr`` (``Dr = geometry.pixel_size_m``).
    geometry : StereoGeometry
        View pixel and beam angles.
    upsample : int
        ``u``: mask pixels per view pixel (1: the masks are on the view grid).
    outside_empty : bool
        How to treat projections falling outside a view: unknown (not empty, the default) or empty.
    require : {"both", "either"}
        How many views must see a voxel's projection as empty.

    Returns
    -------
    (Z, Y, X) bool
        On the device of the masks.
    """
    if require not in ("both", "either"):
        raise InputError("empty_space.require", repr(require), "'both' or 'either'")
    xp = get_array_module(empty_left, empty_right)
    ml = xp.asarray(empty_left).astype(bool)
    mr = xp.asarray(empty_right).astype(bool)
    if ml.ndim != 2 or mr.shape != ml.shape:
        raise InputError(
            "empty_space.empty_right",
            f"shapes {tuple(ml.shape)} and {tuple(mr.shape)}",
            "two 2-D masks of the same shape",
        )
    u = int(check_positive("empty_space.upsample", upsample, integer=True))
    H, W = ml.shape
    if H % u or W % u:
        raise InputError(
            "empty_space.empty_left", f"shape {(H, W)}", f"a multiple of upsample={u} on both axes"
        )
    hv, wv = H // u, W // u
    dr = geometry.pixel_size_m * 1e9
    z = grid.axis(0, xp)
    y = grid.axis(1, xp)
    x = grid.axis(2, xp)
    r = xp.rint((y / dr + hv // 2 + 0.5) * u - 0.5).astype(np.int64)
    r_in = (r >= 0) & (r < H)
    r = xp.clip(r, 0, H - 1)
    out = None
    for k, m in enumerate((ml, mr)):
        tan_a = math.tan(geometry.signed_angles_rad[k])
        xk = x[None, :] + z[:, None] * tan_a  # (Z, X)
        c = xp.rint((xk / dr + wv // 2 + 0.5) * u - 0.5).astype(np.int64)
        c_in = (c >= 0) & (c < W)
        c = xp.clip(c, 0, W - 1)
        e = m[r[None, :, None], c[:, None, :]]
        inside = r_in[None, :, None] & c_in[:, None, :]
        e = xp.where(inside, e, bool(outside_empty))
        out = e if out is None else (out & e if require == "both" else out | e)
    return out


def carve(
    volume,
    empty_left,
    empty_right,
    geometry: StereoGeometry,
    *,
    grid: VolumeGrid,
    distance_um: float = 0.2,
    upsample: int = 1,
    outside_empty: bool = False,
    require: str = "both",
):
    """Remove the voxels within ``distance_um`` of the space both views see as empty (paper: 0.2 um).

    Parameters
    ----------
    volume : (Z, Y, X) bool or float
        Occupancy (or any volume; removed voxels are set to 0 / False).
    empty_left, empty_right : (uH, uW) bool
        Empty pixels of the views (see :func:`empty_space`).
    geometry : StereoGeometry
        View pixel and beam angles.
    grid : VolumeGrid
        The grid of ``volume``.
    distance_um : float
        Voxels whose centre is at most this far from the centre of an empty voxel are removed  [um]
        (distances in nm with the anisotropic voxel size, exact Euclidean distance transform).
    upsample, outside_empty, require
        See :func:`empty_space` (default: the paper's rule, empty in both views).

    Returns
    -------
    (Z, Y, X), dtype of ``volume``
        The carved volume, on its device.
    """
    xp = get_array_module(volume, empty_left, empty_right)
    vol = xp.asarray(volume)
    if tuple(vol.shape) != grid.shape:
        raise InputError("carve.volume", f"shape {tuple(vol.shape)}", f"the grid's shape {grid.shape}")
    check_positive(
        "carve.distance_um", distance_um, allow_zero=True, expected="a non-negative distance in um"
    )
    empty = empty_space(
        grid,
        xp.asarray(empty_left),
        xp.asarray(empty_right),
        geometry,
        upsample=upsample,
        outside_empty=outside_empty,
        require=require,
    )
    if not bool(empty.any()):
        return vol.copy()
    dist = scipy_module(xp, "ndimage").distance_transform_edt(~empty, sampling=grid.voxel_nm)
    near = dist <= distance_um * 1e3 * (1 + 1e-9)
    return xp.where(near, xp.zeros((), dtype=vol.dtype), vol)


def surface_mesh(
    volume, voxel_size, *, origin_nm=(0.0, 0.0, 0.0), level: float | None = None, smooth_sigma: float = 0.0
):
    """Closed triangle mesh of a volume's surface by marching cubes (scikit-image, on the host).

    Parameters
    ----------
    volume : (Z, Y, X) bool or float
        Occupancy, or a scalar field that is larger inside. NumPy or CuPy (copied to the host after
        the optional smoothing).
    voxel_size : (float, float, float)
        ``(dz, dy, dx)``  [nm].
    origin_nm : (float, float, float)
        ``(z0, y0, x0)``: centre of voxel ``(0, 0, 0)``  [nm] (``VolumeGrid.origin_nm``).
    level : float, optional
        Iso-level; default 0.5 for a bool volume, the midpoint of the value range otherwise.
    smooth_sigma : float
        Gaussian smoothing [voxels] applied first (softens the staircase of a binary volume;
        0: none).

    Returns
    -------
    vertices : (V, 3) float64
        ``x, y, z``  [nm] (note the order: like the point clouds, not like the volume axes).
    faces : (F, 3) int64
        Vertex indices, counter-clockwise seen from outside (normals point out of the object).
        Both are empty when the volume has no surface at ``level``. The volume is padded with one
        layer of outside values, so the mesh is closed even where the object touches the border.
    """
    from skimage.measure import marching_cubes

    xp = get_array_module(volume)
    vol = xp.asarray(volume)
    if vol.ndim != 3:
        raise InputError("surface_mesh.volume", f"shape {tuple(vol.shape)}", "a 3-D (Z, Y, X) volume")
    sp = tuple(float(s) for s in voxel_size)
    if len(sp) != 3 or not all(math.isfinite(s) and s > 0 for s in sp):
        raise InputError(
            "surface_mesh.voxel_size", repr(voxel_size), "(dz, dy, dx), three positive sizes in nm"
        )
    is_bool = vol.dtype == bool
    v = vol.astype(np.float32)
    if smooth_sigma > 0:
        v = scipy_module(xp, "ndimage").gaussian_filter(
            v, float(smooth_sigma), mode="constant", cval=0.0 if is_bool else float(v.min())
        )
    v = np.asarray(to_host(v), dtype=np.float32)
    empty = (np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    if v.size == 0:
        return empty
    lo, hi = float(v.min()), float(v.max())
    if level is None:
        level = 0.5 if is_bool else 0.5 * (lo + hi)
    pad = 0.0 if is_bool else min(lo, float(level)) - 1.0
    v = np.pad(v, 1, mode="constant", constant_values=pad)
    if not (v.min() < level < v.max()):
        return empty
    verts, faces, _, _ = marching_cubes(v, level=float(level), spacing=sp, allow_degenerate=False)
    verts = verts - np.asarray(sp) + np.asarray(origin_nm, dtype=np.float64)
    # marching_cubes winds its faces inward in (z, y, x); the odd permutation to (x, y, z) turns them outward
    return np.ascontiguousarray(verts[:, ::-1], dtype=np.float64), np.ascontiguousarray(faces, dtype=np.int64)


@dataclass
class CloudVolume:
    """Result of :func:`cloud_to_volume`.

    Attributes
    ----------
    volume : (Z, Y, X) bool
        Occupancy after carving, on the device of the points.
    grid : VolumeGrid
        Its grid (columns = view pixels, ``dz = Dz`` unless given).
    height_nm : (Y, X) float64
        The interpolated height field before voxelisation  [nm], NaN where undefined.
    plane : Plane or None
        The membrane plane the frame was placed on (``None`` without a frame).
    n_frame : int
        Frame points added to the cloud.
    """

    volume: object
    grid: VolumeGrid
    height_nm: object
    plane: Plane | None
    n_frame: int


def cloud_to_volume(
    points,
    geometry: StereoGeometry,
    *,
    view_shape: tuple[int, int],
    empty_left=None,
    empty_right=None,
    upsample: int = 1,
    plane: Plane | None = None,
    frame: bool = True,
    frame_width: int = 3,
    frame_margin_nm: float = 0.0,
    thickness_nm: float | None = None,
    dz_nm: float | None = None,
    max_radius_nm: float | None = None,
    distance_um: float = 0.2,
    require: str = "both",
    ransac_threshold_nm: float | None = None,
    seed: int = 0,
) -> CloudVolume:
    """The paper's post-processing of one surface cloud: frame, Sibson height field, voxels, carving.

    1. ``plane`` (default: RANSAC on ``points`` with ``ransac_threshold_nm``, default ``2 Dz``) and
       the square frame of ``frame_width`` points around the cloud on it (:func:`frame_points`);
    2. discrete Sibson height field ``z(x, y)`` on the view grid (:func:`height_field`);
    3. voxels on :meth:`VolumeGrid.for_views` (:func:`voxelise`, ``thickness_nm`` default ``Dz``);
    4. when the empty masks are given, carving within ``distance_um`` of the space empty in both
       views (:func:`carve`).

    For several components (the phase cross's two planes) call it once per inlier cloud and
    combine the volumes with ``|`` on a common grid (pass the same ``dz_nm`` and compare grids).

    Parameters
    ----------
    points : (M, 3) float
        Cleaned cloud ``x, y, z``  [nm], NumPy or CuPy (M >= 3).
    geometry : StereoGeometry
        View pixel ``Dr`` and angles (``Dz`` by eq. 2).
    view_shape : (int, int)
        ``(H, W)`` of the views.
    empty_left, empty_right : (uH, uW) bool, optional
        Pixels where the views show transmission 1; both or neither.
    upsample, require, distance_um
        See :func:`carve`.
    plane, frame, frame_width, frame_margin_nm
        See :func:`frame_points`; ``frame=False`` adds none.
    thickness_nm, dz_nm, max_radius_nm
        See :func:`voxelise`, :meth:`VolumeGrid.for_views`, :func:`height_field`.
    ransac_threshold_nm, seed
        Of the plane fit when ``plane`` is not given.

    Returns
    -------
    CloudVolume
    """
    xp = get_array_module(points)
    p = xp.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] < 3:
        raise InputError("cloud_to_volume.points", f"shape {tuple(p.shape)}", "(M, 3) x, y, z with M >= 3")
    if (empty_left is None) != (empty_right is None):
        raise InputError(
            "cloud_to_volume.empty_right" if empty_right is None else "cloud_to_volume.empty_left",
            "None",
            "both empty masks or neither",
        )
    dr = geometry.pixel_size_m * 1e9
    dz = float(dz_nm) if dz_nm is not None else geometry.voxel_depth_m * 1e9
    n_frame = 0
    if frame:
        if plane is None:
            thr = float(ransac_threshold_nm) if ransac_threshold_nm is not None else 2.0 * dz
            plane, _ = ransac_plane(p, threshold_nm=thr, seed=seed)
        fr = frame_points(p, plane, spacing_nm=dr, width=frame_width, margin_nm=frame_margin_nm)
        n_frame = int(fr.shape[0])
        p = xp.concatenate([p, fr], axis=0)
    h = height_field(p, shape=tuple(view_shape), pixel_nm=dr, max_radius_nm=max_radius_nm)
    finite = xp.isfinite(h)
    if not bool(finite.any()):
        raise InputError(
            "cloud_to_volume.points", "no point on the view grid", "points inside the views' field"
        )
    hv = h[finite]
    half = max(float(thickness_nm) if thickness_nm is not None else dz, dz) / 2.0
    lo, hi = float(hv.min()) - half - dz, float(hv.max()) + half + dz
    grid = VolumeGrid.for_views(geometry, tuple(view_shape), (lo, hi), dz_nm=dz)
    vol = voxelise(h, grid, thickness_nm=thickness_nm)
    if empty_left is not None:
        vol = carve(
            vol,
            xp.asarray(empty_left),
            xp.asarray(empty_right),
            geometry,
            grid=grid,
            distance_um=distance_um,
            upsample=upsample,
            require=require,
        )
    return CloudVolume(vol, grid, h, plane, n_frame)
