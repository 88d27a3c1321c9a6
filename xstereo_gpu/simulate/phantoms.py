"""3D phantoms as voxel objects: the paper's cross-lid sample.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

__all__ = ["VoxelObject", "CrossLid", "cross_polygon", "inside_cross", "slab_overlap"]


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
    return np.array([(a, -w), (a, w), (w, w), (w, b), (-w, b), (-w, w), (-a, w), (-a, -w),
                     (-w, -w), (-w, -b), (w, -b), (w, -w)], dtype=float)


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
    """

    size_m: tuple[float, float]
    arm_width_m: float
    kerf_m: float
    thickness_m: float
    tilt_deg: float
    rotation_deg: float

    @classmethod
    def from_options(cls, options) -> "CrossLid":
        """The sample described by a :class:`~xstereo_gpu.simulate.SimulationOptions`."""
        return cls(size_m=(options.cross_size_um[0] * 1e-6, options.cross_size_um[1] * 1e-6),
                   arm_width_m=options.arm_width_um * 1e-6, kerf_m=options.kerf_nm * 1e-9,
                   thickness_m=options.membrane_thickness_nm * 1e-9, tilt_deg=options.lid_tilt_deg,
                   rotation_deg=options.in_plane_rotation_deg)

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
        phi = math.radians(self.rotation_deg)
        c, s = math.cos(phi), math.sin(phi)
        return u * c - v * s, u * s + v * c

    def object_to_sample(self, x, y):
        """Inverse of :meth:`sample_to_object`: object-frame ``(x, y)`` to sample-frame ``(u, v)``."""
        phi = math.radians(self.rotation_deg)
        c, s = math.cos(phi), math.sin(phi)
        return x * c + y * s, -x * s + y * c

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
        return b * abs(math.sin(t)) + 0.5 * self.thickness_m * abs(math.cos(t))

    def z_extent(self) -> float:
        """Largest ``|z|`` of any material of the object  [m]."""
        return max(self.lid_z_extent(), 0.5 * self.thickness_m)

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
        if not (math.isfinite(spacing_m) and spacing_m > 0):
            raise InputError("edge point spacing", repr(spacing_m), "a positive length in metres")
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

    def voxelise(self, *, pixel_m: float, grid_size: int, dz_m: float, max_tan: float,
                 supersample: int = 4) -> VoxelObject:
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
        n = int(grid_size)
        hr, hc = self.box_half_px(pixel_m, max_tan)
        r0, c0 = n // 2 - hr, n // 2 - hc
        if r0 < 0 or c0 < 0 or n // 2 + hr >= n or n // 2 + hc >= n:
            raise InputError("pattern_size", repr(n),
                             f"a view grid of at least {2 * max(hr, hc) + 2} pixels to hold the sample")
        ny, nx = 2 * hr + 1, 2 * hc + 1
        s = int(supersample)
        # Supersampled lateral coordinates (float32 is plenty for nm on a 10 um field).
        off = ((np.arange(s) + 0.5) / s - 0.5)
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

        # Lid: slab |w'| <= t/2 with w' = z cos t - v sin t, i.e. z in [v tan t - h, v tan t + h],
        # h = t / (2 cos t); outline evaluated at v' = v cos t + z sin t.
        tilt = math.radians(self.tilt_deg)
        ct, st = math.cos(tilt), math.sin(tilt)
        zc = (v * np.float32(math.tan(tilt)))
        h = half_t / ct
        for j, zj in enumerate(z):
            frac = slab_overlap(np.float32(zj - dz_m / 2), np.float32(zj + dz_m / 2), zc - np.float32(h),
                                zc + np.float32(h)) * np.float32(1.0 / dz_m)
            vp = v * np.float32(ct) + np.float32(zj * st)
            lid = inside_cross(u, vp, *self.inner)
            occ[j] += block_mean(np.where(lid, frac, np.float32(0)))
        np.clip(occ, 0.0, 1.0, out=occ)
        return VoxelObject(occupancy=occ, z_m=z, dz_m=float(dz_m), pixel_m=float(pixel_m), origin_px=(r0, c0),
                           background_path_m=float(self.thickness_m))

    def describe(self) -> str:
        """One-line human-readable description of the sample and its parameters."""
        a, b, w = self.outer
        return (f"cross-lid: {2 * a * 1e6:.2f} x {2 * b * 1e6:.2f} um cross, arms {2 * w * 1e6:.2f} um, "
                f"cut in a {self.thickness_m * 1e9:.0f} nm membrane with a {self.kerf_m * 1e9:.0f} nm kerf; "
                f"lid tilted {self.tilt_deg:g} deg about its horizontal arm (contact points at its tips), "
                f"sample rotated {self.rotation_deg:g} deg in plane")
