"""3D phantoms as voxel objects: the paper's cross-lid sample and the nanoparticle pyramid.

The sample (paper, Methods): a cross cut by a focused ion beam in an opaque membrane. The inner
cross (the *lid*, the cross shrunk by the kerf width) stays attached at two opposite contact points,
the tips of its horizontal arm, and is tilted out of plane about the line through them. Light passes
only through the kerf and where the tilted lid uncovers the hole.

Frames
------
*Sample frame* ``(u, v, w)``: the cross centred at the origin, horizontal arm along ``u``, the
membrane mid-plane at ``w = 0``. *Lid frame*: the lid rotated by the tilt ``t`` about the ``u`` axis,
``(u, v', w') -> (u, v' cos t - w' sin t, v' sin t + w' cos t)``, so the ``+v`` end of the vertical
arm goes downstream (``+z``) for ``t > 0``. *Object frame* ``(x, y, z)`` (docs/geometry.md): the
sample frame rotated by ``phi`` about ``z``, ``x = u cos phi - v sin phi``, ``y = u sin phi + v cos phi``,
``z = w``; ``x, y`` measured from the view-grid centre pixel ``(N//2, N//2)``.

The pyramid (paper Fig. 4, :class:`Pyramid`): an inverted pyramid notch in a flat membrane whose
mid-plane is ``z = 0``. Its apex points *downstream* (``+z``): the notch's mid-surface is
``z = H (1 - 2 max(|u|, |v|) / B)`` inside the base square (``B`` base side, ``H`` height, ``(u, v)``
the object frame rotated by the pyramid's in-plane rotation) and ``z = 0`` outside. Nanospheres line
the faces on the inside of the notch (the upstream side, ``z`` below the surface).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..checks import check_positive
from ..errors import InputError

__all__ = [
    "VoxelObject",
    "CrossLid",
    "Pyramid",
    "cross_polygon",
    "inside_cross",
    "slab_overlap",
    "voxelise_spheres",
]


@dataclass
class VoxelObject:
    """An occupancy volume on a sub-box of the view grid.

    Attributes
    ----------
    occupancy : (Nz, Ny, Nx) float32
        Fraction of each voxel filled with material, in [0, 1].
    z_m : (Nz,) float64
        Centres of the slices, downstream positive, uniformly spaced by ``dz_m``  [m].
    dz_m : float
        Slice thickness  [m].
    pixel_m : float
        Lateral voxel side, equal to the view-grid pixel ``Dr``  [m].
    origin_px : tuple of int
        ``(row, col)`` of the view-grid pixel holding voxel ``(:, 0, 0)``.
    background_path_m : float
        Material thickness along z outside the sub-box (plain membrane)  [m].
    """

    occupancy: np.ndarray
    z_m: np.ndarray
    dz_m: float
    pixel_m: float
    origin_px: tuple[int, int]
    background_path_m: float


def _box_origin(n: int, hr: int, hc: int) -> tuple[int, int]:
    """Top-left pixel of a (2 hr + 1) x (2 hc + 1) box centred on an n x n view grid; error if it does not "
    "fit."""
    r0, c0 = n // 2 - hr, n // 2 - hc
    if r0 < 0 or c0 < 0 or n // 2 + hr >= n or n // 2 + hc >= n:
        raise InputError(
            "pattern_size",
            repr(n),
            f"a view grid of at least {2 * max(hr, hc) + 2} pixels to hold the sample",
        )
    return r0, c0


def rotate_in_plane(u, v, angle_deg: float):
    """Rotate ``(u, v)`` about z by ``angle_deg`` (counter-clockwise in x, y): arrays, any length unit."""
    phi = math.radians(angle_deg)
    c, s = math.cos(phi), math.sin(phi)
    return u * c - v * s, u * s + v * c


def cross_polygon(half_x: float, half_y: float, half_arm: float) -> np.ndarray:
    """Vertices of a cross outline, counter-clockwise in ``(u, v)``.

    Parameters
    ----------
    half_x, half_y : float
        Half extents of the horizontal and vertical arms (any length unit).
    half_arm : float
        Half width of both arms (same unit).

    Returns
    -------
    (12, 2) float64
    """
    a, b, w = half_x, half_y, half_arm
    return np.array(
        [
            (a, -w),
            (a, w),
            (w, w),
            (w, b),
            (-w, b),
            (-w, w),
            (-a, w),
            (-a, -w),
            (-w, -w),
            (-w, -b),
            (w, -b),
            (w, -w),
        ],
        dtype=float,
    )


def inside_cross(u, v, half_x: float, half_y: float, half_arm: float):
    """Boolean indicator of the cross ``|u| <= a, |v| <= w`` or ``|u| <= w, |v| <= b`` (broadcasts)."""
    au, av = abs(u), abs(v)
    return ((au <= half_x) & (av <= half_arm)) | ((au <= half_arm) & (av <= half_y))


def slab_overlap(z_lo, z_hi, s_lo, s_hi):
    """Length of the overlap of intervals ``[z_lo, z_hi]`` and ``[s_lo, s_hi]`` (broadcasts, >= 0)."""
    return np.clip(np.minimum(z_hi, s_hi) - np.maximum(z_lo, s_lo), 0.0, None)


@dataclass(frozen=True)
class CrossLid:
    """The cross-lid sample: a cross cut in a membrane, its lid tilted about its horizontal arm.

    Parameters
    ----------
    size_m : tuple of float
        Outer extents ``(x, y)`` of the cut cross, before the in-plane rotation  [m].
    arm_width_m : float
        Width of both arms of the cut  [m].
    kerf_m : float
        Width of the cut; the lid is the cross shrunk by it on every side  [m].
    thickness_m : float
        Thickness of the membrane and of the lid  [m].
    tilt_deg : float
        Out-of-plane tilt of the lid about its horizontal arm's centre line  [deg].
    rotation_deg : float
        In-plane rotation of the whole sample about z  [deg].
    lid_thickness_m : float or None
        Thickness of the lid  [m]; ``None`` = ``thickness_m`` (a lid cut from the membrane).
    """

    size_m: tuple[float, float]
    arm_width_m: float
    kerf_m: float
    thickness_m: float
    tilt_deg: float
    rotation_deg: float
    lid_thickness_m: float | None = None

    @classmethod
    def from_options(cls, options) -> CrossLid:
        """The sample described by a :class:`~xstereo_gpu.simulate.SimulationOptions`."""
        lid_t = None
        if getattr(options, "lid_layers", None) is not None:
            lid_t = sum(t for _, t in options.lid_layers) * 1e-9
        return cls(
            size_m=(options.cross_size_um[0] * 1e-6, options.cross_size_um[1] * 1e-6),
            arm_width_m=options.arm_width_um * 1e-6,
            kerf_m=options.kerf_nm * 1e-9,
            thickness_m=options.membrane_thickness_nm * 1e-9,
            tilt_deg=options.lid_tilt_deg,
            rotation_deg=options.in_plane_rotation_deg,
            lid_thickness_m=lid_t,
        )

    @property
    def lid_t(self) -> float:
        """Thickness of the lid  [m]."""
        return self.thickness_m if self.lid_thickness_m is None else self.lid_thickness_m

    # -- outlines ----------------------------------------------------------------------------------
    @property
    def outer(self) -> tuple[float, float, float]:
        """Half extents ``(a, b, w)`` of the cut (hole) outline  [m]."""
        return self.size_m[0] / 2, self.size_m[1] / 2, self.arm_width_m / 2

    @property
    def inner(self) -> tuple[float, float, float]:
        """Half extents ``(a, b, w)`` of the lid outline (outer shrunk by the kerf)  [m]."""
        a, b, w = self.outer
        k = self.kerf_m
        return a - k, b - k, w - k

    def sample_to_object(self, u, v):
        """In-plane rotation: sample-frame ``(u, v)`` to object-frame ``(x, y)`` (arrays, any unit)."""
        return rotate_in_plane(u, v, self.rotation_deg)

    def object_to_sample(self, x, y):
        """Inverse of :meth:`sample_to_object`: object-frame ``(x, y)`` to sample-frame ``(u, v)``."""
        return rotate_in_plane(x, y, -self.rotation_deg)

    def lid_to_object(self, u, vp):
        """Object-frame ``(x, y, z)`` of lid mid-plane point ``(u, v')`` (arrays, metres)."""
        t = math.radians(self.tilt_deg)
        v, z = vp * math.cos(t), vp * math.sin(t)
        x, y = self.sample_to_object(u, v)
        return x, y, z

    def lid_z_extent(self) -> float:
        """Largest ``|z|`` reached by the tilted lid slab (mid-plane plus half thickness)  [m]."""
        t = math.radians(self.tilt_deg)
        b = self.inner[1]
        return b * abs(math.sin(t)) + 0.5 * self.lid_t * abs(math.cos(t))

    def z_extent(self) -> float:
        """Largest ``|z|`` of any material of the object  [m]."""
        return max(self.lid_z_extent(), 0.5 * self.thickness_m)

    def hidden_in_views(self, points, labels, signed_angles_rad, *, margin_m: float = 0.0) -> np.ndarray:
        """Which lid edge points lie behind (or in front of) the membrane in each view.

        The ray of view ``k`` through a point ``(x, y, z)`` crosses the membrane's plane at the point's
        view coordinates ``(x + z tan a_k, y)``; the point is hidden by the membrane in that view when
        this lies on membrane material, at least ``margin_m`` outside the cut hole. Cut-edge points
        (label 0) are never flagged.

        Parameters
        ----------
        points : (M, 3) float64
            Object-frame points  [m].
        labels : (M,) int
            0 = cut, 1 = lid.
        signed_angles_rad : sequence of float
            Signed beam angles of the views (left ``+t1``, right ``-t2``)  [rad].
        margin_m : float
            Minimum distance from the hole's outline  [m].

        Returns
        -------
        (M, V) bool
        """
        p = np.asarray(points, dtype=np.float64)
        lid = np.asarray(labels) == 1
        a, b, w = self.outer
        m = float(margin_m)
        out = np.zeros((p.shape[0], len(signed_angles_rad)), dtype=bool)
        for k, ang in enumerate(signed_angles_rad):
            u, v = self.object_to_sample(p[:, 0] + p[:, 2] * math.tan(ang), p[:, 1])
            out[:, k] = lid & ~inside_cross(u, v, a + m, b + m, w + m)
        return out

    def lateral_extent(self) -> tuple[float, float]:
        """Largest ``|x|`` and ``|y|`` of the cut outline after the in-plane rotation  [m]."""
        x, y = self.sample_to_object(*cross_polygon(*self.outer).T)
        return float(np.abs(x).max()), float(np.abs(y).max())

    def edge_points(self, spacing_m: float) -> tuple[np.ndarray, np.ndarray]:
        """Points every ``spacing_m`` (or closer) along every edge of the cut and of the lid.

        Cut edges lie in the membrane mid-plane ``z = 0`` (label 0); lid edges on the lid's tilted
        mid-plane (label 1). Object frame, metres.

        Returns
        -------
        points : (M, 3) float64
            ``x, y, z``  [m].
        labels : (M,) int8
        """
        check_positive("edge point spacing", spacing_m, expected="a positive length in metres")
        out, labels = [], []
        for label, half in ((0, self.outer), (1, self.inner)):
            poly = cross_polygon(*half)
            seg_u, seg_v = [], []
            for p0, p1 in zip(poly, np.roll(poly, -1, axis=0)):
                n = max(1, math.ceil(math.hypot(*(p1 - p0)) / spacing_m))
                f = np.arange(n) / n
                seg_u.append(p0[0] + f * (p1[0] - p0[0]))
                seg_v.append(p0[1] + f * (p1[1] - p0[1]))
            u, v = np.concatenate(seg_u), np.concatenate(seg_v)
            if label == 0:
                x, y = self.sample_to_object(u, v)
                z = np.zeros_like(x)
            else:
                x, y, z = self.lid_to_object(u, v)
            out.append(np.stack([x, y, z], axis=1))
            labels.append(np.full(len(u), label, dtype=np.int8))
        return np.concatenate(out), np.concatenate(labels)

    # -- voxels ------------------------------------------------------------------------------------
    def box_half_px(self, pixel_m: float, max_tan: float, margin_px: int = 3) -> tuple[int, int]:
        """Half sizes ``(rows, cols)`` of the sub-box holding the object and its shifts  [pixels]."""
        ex, ey = self.lateral_extent()
        shift = self.z_extent() * max_tan
        return (math.ceil(ey / pixel_m) + margin_px, math.ceil((ex + shift) / pixel_m) + margin_px)

    def voxelise_parts(
        self, *, pixel_m: float, grid_size: int, dz_m: float, max_tan: float, supersample: int = 4
    ) -> tuple[VoxelObject, VoxelObject]:
        """Occupancies of the membrane and of the lid, separately, on the same sub-box.

        Same parameters as :meth:`voxelise`, which returns their (clipped) sum. The membrane part
        carries ``background_path_m = thickness_m``, the lid part 0.

        Returns
        -------
        membrane, lid : VoxelObject
        """
        mem, lid, z, origin = self._occupancies(
            pixel_m=pixel_m, grid_size=grid_size, dz_m=dz_m, max_tan=max_tan, supersample=supersample
        )
        np.clip(lid, 0.0, 1.0, out=lid)
        kw = dict(z_m=z, dz_m=float(dz_m), pixel_m=float(pixel_m), origin_px=origin)
        return (
            VoxelObject(occupancy=mem, background_path_m=float(self.thickness_m), **kw),
            VoxelObject(occupancy=lid, background_path_m=0.0, **kw),
        )

    def voxelise(
        self, *, pixel_m: float, grid_size: int, dz_m: float, max_tan: float, supersample: int = 4
    ) -> VoxelObject:
        """Occupancy of membrane and lid on a sub-box of the ``grid_size`` x ``grid_size`` view grid.

        Laterally, each voxel averages ``supersample**2`` point samples of the outlines. Along z, each
        sample contributes the exact overlap of the slice ``[z_j - dz/2, z_j + dz/2]`` with the slab
        (membrane ``|z| <= t/2``; lid ``|w'| <= t/2`` around its tilted mid-plane), the lid outline being
        evaluated at the slice centre.

        Parameters
        ----------
        pixel_m : float
            Lateral voxel side = view pixel ``Dr``  [m].
        grid_size : int
            Side N of the view grid [pixels]; the object is centred on pixel ``(N//2, N//2)``.
        dz_m : float
            Slice step  [m].
        max_tan : float
            Largest ``|tan a_k|`` of the beams, to leave room for the shifted projections.
        supersample : int
            Lateral point samples per voxel and axis.

        Returns
        -------
        VoxelObject
        """
        mem, lid, z, origin = self._occupancies(
            pixel_m=pixel_m, grid_size=grid_size, dz_m=dz_m, max_tan=max_tan, supersample=supersample
        )
        occ = mem + lid
        np.clip(occ, 0.0, 1.0, out=occ)
        return VoxelObject(
            occupancy=occ,
            z_m=z,
            dz_m=float(dz_m),
            pixel_m=float(pixel_m),
            origin_px=origin,
            background_path_m=float(self.thickness_m),
        )

    def _occupancies(self, *, pixel_m: float, grid_size: int, dz_m: float, max_tan: float, supersample: int):
        """Membrane and lid occupancies (not clipped), slice centres, box origin."""
        n = int(grid_size)
        hr, hc = self.box_half_px(pixel_m, max_tan)
        r0, c0 = _box_origin(n, hr, hc)
        ny, nx = 2 * hr + 1, 2 * hc + 1
        s = int(supersample)
        # Supersampled lateral coordinates (float32 is plenty for nm on a 10 um field).
        off = (np.arange(s) + 0.5) / s - 0.5
        ys = ((np.arange(ny)[:, None] - hr) + off[None, :]).reshape(-1) * pixel_m
        xs = ((np.arange(nx)[:, None] - hc) + off[None, :]).reshape(-1) * pixel_m
        u, v = self.object_to_sample(xs[None, :], ys[:, None])
        u = u.astype(np.float32)
        v = v.astype(np.float32)

        def block_mean(a):
            return a.reshape(ny, s, nx, s).mean(axis=(1, 3), dtype=np.float32)

        half_t = 0.5 * self.thickness_m
        nz = 2 * max(0, math.ceil(self.z_extent() / dz_m - 0.5)) + 1
        z = (np.arange(nz) - nz // 2) * dz_m
        occ = np.zeros((nz, ny, nx), dtype=np.float32)

        # Membrane: (1 - hole fraction) x exact slab overlap of each slice (separable).
        membrane = block_mean((~inside_cross(u, v, *self.outer)).astype(np.float32))
        mem_z = slab_overlap(z - dz_m / 2, z + dz_m / 2, -half_t, half_t) / dz_m
        occ += mem_z[:, None, None].astype(np.float32) * membrane[None]
        mem_occ = occ
        occ = np.zeros((nz, ny, nx), dtype=np.float32)
        half_t = 0.5 * self.lid_t

        # Lid: slab |w'| <= t/2 with w' = z cos t - v sin t, i.e. z in [v tan t - h, v tan t + h],
        # h = t / (2 cos t); outline evaluated at v' = v cos t + z sin t.
        tilt = math.radians(self.tilt_deg)
        ct, st = math.cos(tilt), math.sin(tilt)
        zc = v * np.float32(math.tan(tilt))
        h = half_t / ct
        for j, zj in enumerate(z):
            frac = slab_overlap(
                np.float32(zj - dz_m / 2), np.float32(zj + dz_m / 2), zc - np.float32(h), zc + np.float32(h)
            ) * np.float32(1.0 / dz_m)
            vp = v * np.float32(ct) + np.float32(zj * st)
            lid = inside_cross(u, vp, *self.inner)
            occ[j] += block_mean(np.where(lid, frac, np.float32(0)))
        return mem_occ, occ, z, (r0, c0)

    def describe(self) -> str:
        """One-line human-readable description of the sample and its parameters."""
        a, b, w = self.outer
        return (
            f"cross-lid: {2 * a * 1e6:.2f} x {2 * b * 1e6:.2f} um cross, arms {2 * w * 1e6:.2f} um, "
            f"cut in a {self.thickness_m * 1e9:.0f} nm membrane with a {self.kerf_m * 1e9:.0f} nm kerf; "
            f"lid tilted {self.tilt_deg:g} deg about its horizontal arm (contact points at its tips), "
            f"sample rotated {self.rotation_deg:g} deg in plane"
        )


def voxelise_spheres(
    centres: np.ndarray,
    r: float,
    *,
    pixel_m: float,
    dz_m: float,
    box: tuple[int, int, int],
    centre_px: tuple[int, int],
    j0: int,
    supersample: int,
) -> np.ndarray:
    """Occupancy of spheres on a voxel box: exact chord overlap along z, ``supersample**2`` lateral samples.

    Parameters
    ----------
    centres : (S, 3) float64
        Sphere centres ``x, y, z`` in the object frame (``x, y`` from the box's centre pixel)  [m].
    r : float
        Sphere radius  [m].
    pixel_m, dz_m : float
        Lateral voxel side and slice step  [m].
    box : (int, int, int)
        ``(nz, ny, nx)`` of the box.
    centre_px : (int, int)
        ``(row, col)`` of the box pixel at ``x = y = 0``.
    j0 : int
        Slice ``k`` of the box is centred at ``z = (k + j0) dz_m``.
    supersample : int
        Lateral point samples per voxel and axis.

    Returns
    -------
    (nz, ny, nx) float32 in [0, 1]
    """
    nz, ny, nx = box
    hr, hc = centre_px
    s = int(supersample)
    off = (np.arange(s) + 0.5) / s - 0.5
    sph = np.zeros((nz, ny, nx), dtype=np.float32)
    if not len(centres):
        return sph
    k = math.ceil(2 * r / pixel_m) + 2  # lateral block of pixels per sphere
    kz = math.ceil(2 * r / dz_m) + 2  # slices per sphere
    row0 = np.floor((centres[:, 1] - r) / pixel_m + 0.5).astype(int) + hr  # box row of the block start
    col0 = np.floor((centres[:, 0] - r) / pixel_m + 0.5).astype(int) + hc
    sl0 = np.floor((centres[:, 2] - r) / dz_m + 0.5).astype(int) - j0
    loc = (np.arange(k)[:, None] + off[None, :]).reshape(-1)  # (k s,) in pixels
    py = (row0[:, None] - hr + loc[None, :]) * pixel_m - centres[:, 1:2]  # (S, k s)
    px = (col0[:, None] - hc + loc[None, :]) * pixel_m - centres[:, 0:1]
    rho2 = py[:, :, None] ** 2 + px[:, None, :] ** 2
    chord = np.sqrt(np.clip(r * r - rho2, 0.0, None))  # half chord (S, k s, k s)
    rr = row0[:, None, None] + np.arange(k)[None, :, None]
    cc = col0[:, None, None] + np.arange(k)[None, None, :]
    for dj in range(kz):
        jj = sl0 + dj
        zj = (jj + j0) * dz_m
        frac = (
            slab_overlap(
                (zj - dz_m / 2)[:, None, None],
                (zj + dz_m / 2)[:, None, None],
                centres[:, 2, None, None] - chord,
                centres[:, 2, None, None] + chord,
            )
            / dz_m
        )
        blk = frac.reshape(-1, k, s, k, s).mean(axis=(2, 4)).astype(np.float32)
        ok = (jj >= 0) & (jj < nz)
        np.add.at(
            sph,
            (
                np.broadcast_to(jj[:, None, None], blk.shape)[ok],
                rr[ok].reshape(-1, k, 1).repeat(k, axis=2),
                cc[ok].reshape(-1, 1, k).repeat(k, axis=1),
            ),
            blk[ok],
        )
    np.clip(sph, 0.0, 1.0, out=sph)
    return sph


@dataclass(frozen=True)
class Pyramid:
    """Nanospheres lining the faces of an inverted pyramid notch in a flat membrane (paper Fig. 4).

    Pyramid frame ``(u, v)``: the object frame ``(x, y)`` rotated by ``-rotation_deg`` (base edges
    along ``u`` and ``v``), centred on the view-grid centre. The membrane's mid-surface is ``z = 0``
    outside the base square and ``z = H (1 - 2 max(|u|, |v|) / B)`` inside it: the apex is at
    ``(0, 0, +H)``, downstream. The membrane has thickness ``t`` along the normal of each facet; on a
    face (slope ``alpha``, ``tan alpha = 2 H / B``) that is ``t / cos alpha`` along z.

    Faces are numbered by the base edge they rest on: 0 ``u = +B/2``, 1 ``v = +B/2``, 2 ``u = -B/2``,
    3 ``v = -B/2``. Spheres sit on the inner (upstream, ``-z``) side of the faces, touching the
    membrane: centre = foot on the mid-surface + ``(t/2 + r)`` along the face's inner normal.

    Parameters
    ----------
    base_m, height_m : float
        Side ``B`` of the base square and depth ``H`` of the apex  [m].
    thickness_m : float
        Membrane thickness ``t``  [m].
    sphere_radius_m : float
        Radius ``r`` of the spheres  [m].
    coverage : float
        Fraction of the faces' area covered by the spheres' cross-sections ``pi r^2``.
    rotation_deg : float
        In-plane rotation of the pyramid about z  [deg].
    seed : int
        Seed of the random sequential placement of the spheres.
    stray_spheres : int
        Spheres on the flat membrane outside the notch (face label 4), feet uniform in the band
        ``B/2 + 2r <= max(|u|, |v|) <= B/2 + stray_band_m`` of the base plane, centres ``t/2 + r`` upstream
        of the mid-plane. They break the centrosymmetry of the notch's (square) exit-wave support.
    stray_band_m : float
        Width of that band  [m].
    """

    base_m: float
    height_m: float
    thickness_m: float
    sphere_radius_m: float
    coverage: float
    rotation_deg: float = 0.0
    seed: int = 0
    stray_spheres: int = 0
    stray_band_m: float = 0.2e-6

    @classmethod
    def from_options(cls, options) -> Pyramid:
        """The sample described by a :class:`~xstereo_gpu.simulate.SimulationOptions`."""
        return cls(
            base_m=options.pyramid_base_um * 1e-6,
            height_m=options.pyramid_height_um * 1e-6,
            thickness_m=options.membrane_thickness_nm * 1e-9,
            sphere_radius_m=options.sphere_diameter_nm * 0.5e-9,
            coverage=float(options.sphere_coverage),
            rotation_deg=float(options.pyramid_rotation_deg),
            seed=int(options.seed),
            stray_spheres=int(getattr(options, "stray_spheres", 0)),
            stray_band_m=float(getattr(options, "stray_band_um", 0.2)) * 1e-6,
        )

    # -- frames and facts ----------------------------------------------------------------------------
    def to_object(self, u, v):
        """Pyramid-frame ``(u, v)`` to object-frame ``(x, y)``."""
        return rotate_in_plane(u, v, self.rotation_deg)

    def to_pyramid(self, x, y):
        """Object-frame ``(x, y)`` to pyramid-frame ``(u, v)``."""
        return rotate_in_plane(x, y, -self.rotation_deg)

    @property
    def slope(self) -> float:
        """``tan alpha = 2 H / B`` of the faces."""
        return 2.0 * self.height_m / self.base_m

    @property
    def apex_m(self) -> np.ndarray:
        """(3,) float64: the apex of the mid-surface, ``(0, 0, H)``  [m]."""
        return np.array([0.0, 0.0, self.height_m])

    @property
    def base_corners_m(self) -> np.ndarray:
        """(4, 3) float64: corners of the base square at ``z = 0``, in order around the base  [m]."""
        h = self.base_m / 2
        u = np.array([h, -h, -h, h])
        v = np.array([h, h, -h, -h])
        x, y = self.to_object(u, v)
        return np.stack([x, y, np.zeros(4)], axis=1)

    def surface_z(self, x, y):
        """Mid-surface depth ``z`` at object-frame ``(x, y)`` (arrays)  [m]."""
        u, v = self.to_pyramid(x, y)
        m = np.maximum(np.abs(u), np.abs(v))
        return np.where(m < self.base_m / 2, self.height_m * (1.0 - m / (self.base_m / 2)), 0.0)

    def _face_normals(self) -> np.ndarray:
        """(4, 3) inner unit normals of the faces, pyramid frame."""
        k = self.slope
        e = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
        n = -np.concatenate([k * e, np.ones((4, 1))], axis=1)
        return n / np.linalg.norm(n, axis=1, keepdims=True)

    def face_area_m2(self) -> float:
        """Total area of the four faces (mid-surface)  [m^2]."""
        return self.base_m**2 * math.sqrt(1.0 + self.slope**2)

    # -- spheres -------------------------------------------------------------------------------------
    def spheres(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Seeded random sequential placement of non-overlapping spheres on the faces.

        Feet are drawn uniformly over the faces (uniform in the base square, since every face has
        the same slope); a candidate is kept when its sphere stays ``r`` inside its face's outline,
        clears the other faces' membrane and touches no sphere already placed. Placement stops at the
        target count ``coverage * area / (pi r^2)`` or after a bounded number of candidates.

        Returns
        -------
        centres : (S, 3) float64
            Sphere centres, object frame  [m].
        faces : (S,) int8
            Face of each sphere (0..3, see the class docstring).
        feet : (S, 3) float64
            Foot of each sphere on the face's mid-surface, object frame  [m].
        """
        r, t, half = self.sphere_radius_m, self.thickness_m, self.base_m / 2
        target = int(round(self.coverage * self.face_area_m2() / (math.pi * r * r)))
        rng = np.random.default_rng([int(self.seed), 0x5EED])
        normals = self._face_normals()
        e = normals[:, :2] / np.linalg.norm(normals[:, :2], axis=1, keepdims=True) * -1.0  # outward (u, v)
        norm = math.sqrt(1.0 + self.slope**2)
        accepted = np.empty((max(target, 1), 3))
        feet = np.empty((max(target, 1), 3))
        faces = np.empty(max(target, 1), dtype=np.int8)
        count = 0
        cell = 2 * r
        grid: dict[tuple[int, int, int], list[int]] = {}
        tries = 0
        max_tries = 50 * max(target, 1)
        while count < target and tries < max_tries:
            batch = rng.uniform(-half, half, size=(1024, 2))
            tries += len(batch)
            for uu, vv in batch:
                f = 0 if uu >= abs(vv) else 2 if -uu >= abs(vv) else 1 if vv > 0 else 3
                s_along = uu * e[f, 0] + vv * e[f, 1]  # distance from the axis toward face f's base edge
                across = abs(uu * e[f, 1] - vv * e[f, 0])
                # stay r (measured in the base plane) inside the face's outline: rim and both ridges
                if s_along > half - r or s_along - across < r * math.sqrt(2.0):
                    continue
                foot = np.array([uu, vv, self.height_m * (1.0 - s_along / half)])
                c = foot + (t / 2 + r) * normals[f]
                # clear every face's membrane: signed distance to each face's mid-plane <= -(t/2 + r)
                dist = (c[2] - self.height_m + self.slope * (c[0] * e[:, 0] + c[1] * e[:, 1])) / norm
                if np.any(dist > -(t / 2 + r) + 1e-15):
                    continue
                key = tuple(int(math.floor(q / cell)) for q in c)
                clash = False
                for dk in ((a, b, d) for a in (-1, 0, 1) for b in (-1, 0, 1) for d in (-1, 0, 1)):
                    for j in grid.get((key[0] + dk[0], key[1] + dk[1], key[2] + dk[2]), ()):
                        if np.sum((accepted[j] - c) ** 2) < (2 * r) ** 2:
                            clash = True
                            break
                    if clash:
                        break
                if clash:
                    continue
                accepted[count], feet[count], faces[count] = c, foot, f
                grid.setdefault(key, []).append(count)
                count += 1
                if count >= target:
                    break
        centres, feet, faces = accepted[:count].copy(), feet[:count].copy(), faces[:count].copy()
        if self.stray_spheres:
            sc, sf = self._stray_spheres()
            centres, feet = np.concatenate([centres, sc]), np.concatenate([feet, sf])
            faces = np.concatenate([faces, np.full(len(sc), 4, dtype=np.int8)])
        for arr in (centres, feet):
            arr[:, 0], arr[:, 1] = self.to_object(arr[:, 0].copy(), arr[:, 1].copy())
        return centres, faces, feet

    def _stray_spheres(self) -> tuple[np.ndarray, np.ndarray]:
        """Centres and feet (pyramid frame) of the spheres on the flat membrane beside the rim.

        Seeded on a stream of their own (the notch's spheres do not change with their number);
        non-overlapping; the notch's spheres stay ``r`` inside the rim, these ``2 r`` outside it.
        """
        r, t, half = self.sphere_radius_m, self.thickness_m, self.base_m / 2
        rng = np.random.default_rng([int(self.seed), 0x57A7])
        out: list[np.ndarray] = []
        tries = 0
        while len(out) < self.stray_spheres and tries < 1000 * self.stray_spheres:
            tries += 1
            u, v = rng.uniform(-half - self.stray_band_m, half + self.stray_band_m, size=2)
            if max(abs(u), abs(v)) < half + 2 * r:
                continue
            c = np.array([u, v, -(t / 2 + r)])
            if any(np.sum((c - q) ** 2) < (2 * r) ** 2 for q in out):
                continue
            out.append(c)
        centres = np.array(out, dtype=np.float64).reshape(-1, 3)
        feet = centres.copy()
        feet[:, 2] = 0.0
        return centres, feet

    # -- voxels --------------------------------------------------------------------------------------
    def box_half_px(self, pixel_m: float, max_tan: float, margin_px: int = 3) -> tuple[int, int]:
        """Half sizes ``(rows, cols)`` of the sub-box holding the notch, spheres and shifts  [pixels]."""
        x, y, _ = self.base_corners_m.T
        if self.stray_spheres:  # the band around the rim
            grow = (self.base_m / 2 + self.stray_band_m) / (self.base_m / 2)
            x, y = x * grow, y * grow
        ex = float(np.abs(x).max()) + 2 * self.sphere_radius_m
        ey = float(np.abs(y).max()) + 2 * self.sphere_radius_m
        shift = (self.height_m + self.thickness_m + 2 * self.sphere_radius_m) * max_tan
        return (math.ceil(ey / pixel_m) + margin_px, math.ceil((ex + shift) / pixel_m) + margin_px)

    def voxelise_parts(
        self,
        *,
        pixel_m: float,
        grid_size: int,
        dz_m: float,
        max_tan: float,
        supersample: int = 4,
        spheres=None,
    ) -> tuple[VoxelObject, VoxelObject]:
        """Occupancies of the membrane (with its notch) and of the spheres on one sub-box.

        Laterally each voxel averages ``supersample**2`` point samples; along z each sample contributes
        the exact overlap of the slice with the membrane's vertical extent (``|z - z_s| <= t / 2`` on
        the flat part, ``t / (2 cos alpha)`` on the faces) or with the sphere's chord.

        Parameters
        ----------
        pixel_m : float
            Lateral voxel side = view pixel ``Dr``  [m].
        grid_size : int
            Side N of the view grid [pixels]; the notch's axis is on pixel ``(N//2, N//2)``.
        dz_m : float
            Slice step  [m].
        max_tan : float
            Largest ``|tan a_k|`` of the beams.
        supersample : int
            Lateral point samples per voxel and axis.
        spheres : tuple, optional
            The result of :meth:`spheres` (computed when omitted).

        Returns
        -------
        membrane, spheres : VoxelObject
            The membrane part carries ``background_path_m = t`` (flat membrane outside the box).
        """
        centres = (self.spheres() if spheres is None else spheres)[0]
        n = int(grid_size)
        hr, hc = self.box_half_px(pixel_m, max_tan)
        r0, c0 = _box_origin(n, hr, hc)
        ny, nx = 2 * hr + 1, 2 * hc + 1
        s = int(supersample)
        r, t = self.sphere_radius_m, self.thickness_m
        cosa = 1.0 / math.sqrt(1.0 + self.slope**2)
        z_lo = min(-t / 2, float(centres[:, 2].min() - r) if len(centres) else 0.0)
        z_hi = max(self.height_m + t / (2 * cosa), float(centres[:, 2].max() + r) if len(centres) else 0.0)
        j0 = math.floor(z_lo / dz_m + 0.5)
        j1 = math.ceil(z_hi / dz_m - 0.5)
        z = np.arange(j0, j1 + 1) * dz_m
        nz = len(z)

        off = (np.arange(s) + 0.5) / s - 0.5
        ys = ((np.arange(ny)[:, None] - hr) + off[None, :]).reshape(-1) * pixel_m
        xs = ((np.arange(nx)[:, None] - hc) + off[None, :]).reshape(-1) * pixel_m
        u, v = self.to_pyramid(xs[None, :], ys[:, None])
        m = np.maximum(np.abs(u), np.abs(v))
        on_face = m < self.base_m / 2
        zs = np.where(on_face, self.height_m * (1.0 - m / (self.base_m / 2)), 0.0).astype(np.float32)
        h = np.where(on_face, t / (2 * cosa), t / 2).astype(np.float32)
        lo, hi = zs - h, zs + h

        def block_mean(a):
            return a.reshape(ny, s, nx, s).mean(axis=(1, 3), dtype=np.float32)

        mem = np.empty((nz, ny, nx), dtype=np.float32)
        for j, zj in enumerate(z):
            mem[j] = block_mean(
                slab_overlap(np.float32(zj - dz_m / 2), np.float32(zj + dz_m / 2), lo, hi)
            ) * np.float32(1.0 / dz_m)
        np.clip(mem, 0.0, 1.0, out=mem)

        sph = voxelise_spheres(
            centres, r, pixel_m=pixel_m, dz_m=dz_m, box=(nz, ny, nx), centre_px=(hr, hc), j0=j0, supersample=s
        )
        kw = dict(z_m=z, dz_m=float(dz_m), pixel_m=float(pixel_m), origin_px=(r0, c0))
        return (
            VoxelObject(occupancy=mem, background_path_m=float(t), **kw),
            VoxelObject(occupancy=sph, background_path_m=0.0, **kw),
        )

    def describe(self, n_spheres: int | None = None) -> str:
        """One-line human-readable description of the sample and its parameters."""
        count = "" if n_spheres is None else f"{n_spheres} "
        return (
            f"nanoparticle pyramid: {count}spheres of {2 * self.sphere_radius_m * 1e9:g} nm diameter "
            f"lining the faces of an inverted pyramid notch (base {self.base_m * 1e6:g} um, height "
            f"{self.height_m * 1e6:g} um, apex downstream at z = +H, rotated {self.rotation_deg:g} deg in "
            f"plane) in a {self.thickness_m * 1e9:g} nm membrane; face coverage {self.coverage:g}, "
            f"placement seed {self.seed}"
            + (
                f"; {self.stray_spheres} stray spheres on the flat membrane within "
                f"{self.stray_band_m * 1e6:g} um of the rim (label 4)"
                if self.stray_spheres
                else ""
            )
        )
