"""Stereo geometry: real-space pixel, eq. (1), eq. (2), coordinate correction, resolution report.

Conventions (docs/geometry.md): lab frame with z along the CCD normal, downstream; x horizontal in
the plane of the two beams (the disparity direction); y vertical. The paper's angles are magnitudes
``(t1, t2)`` on either side of the normal; the left view has signed angle ``a_left = +t1`` and the
right view ``a_right = -t2``. A point ``(x, y, z)`` appears in view ``k`` at ``x_k = x + z tan a_k``,
``y_k = y``, so the disparity ``d = x_left - x_right = z (tan t1 + tan t2)`` (eq. 1) and the
coordinate correction is ``x = x_k - z tan a_k``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .errors import InputError

__all__ = ["StereoGeometry", "real_space_pixel"]

ANGLE_RANGE_DEG = (0.0, 60.0)


def real_space_pixel(wavelength_m: float, distance_m: float, detector_pixel_m: float, size: int) -> float:
    """Real-space pixel of a view reconstructed from an ``size`` x ``size`` crop: ``lambda D / (N p)``  [m]."""
    for name, v in (("wavelength", wavelength_m), ("distance", distance_m), ("detector pixel", detector_pixel_m)):
        if not (math.isfinite(v) and v > 0):
            raise InputError(name, repr(v), "a positive finite value in metres")
    if int(size) < 2:
        raise InputError("pattern size", repr(size), "at least 2 pixels")
    return wavelength_m * distance_m / (int(size) * detector_pixel_m)


@dataclass(frozen=True)
class StereoGeometry:
    """Geometry of one stereo pair of reconstructed views.

    Parameters
    ----------
    pixel_size_m : float
        Real-space pixel of both views, ``Dr``  [m].
    angles_deg : tuple of float
        ``(t1, t2)``: magnitudes of the angles between the CCD normal and the left and right beams
        [deg], each in (0, 60).
    """

    pixel_size_m: float
    angles_deg: tuple[float, float]

    def __post_init__(self):
        if not (math.isfinite(self.pixel_size_m) and self.pixel_size_m > 0):
            raise InputError("pixel size", repr(self.pixel_size_m), "a positive finite value in metres")
        if len(self.angles_deg) != 2:
            raise InputError("angles", repr(self.angles_deg), "two angles (t1, t2) in degrees")
        lo, hi = ANGLE_RANGE_DEG
        for i, a in enumerate(self.angles_deg):
            if not (math.isfinite(a) and lo < a < hi):
                raise InputError(f"angles[{i}]", f"{a!r} deg", f"a magnitude in ({lo:g}, {hi:g}) deg")
        object.__setattr__(self, "angles_deg", (float(self.angles_deg[0]), float(self.angles_deg[1])))

    @classmethod
    def from_detector(cls, *, wavelength_m: float, distance_m: float, detector_pixel_m: float,
                      pattern_size: int, angles_deg: tuple[float, float]) -> "StereoGeometry":
        """Geometry of views phased from ``pattern_size`` x ``pattern_size`` crops of the detector."""
        return cls(real_space_pixel(wavelength_m, distance_m, detector_pixel_m, pattern_size), tuple(angles_deg))

    @property
    def signed_angles_rad(self) -> tuple[float, float]:
        """``(a_left, a_right) = (+t1, -t2)``  [rad]."""
        return math.radians(self.angles_deg[0]), -math.radians(self.angles_deg[1])

    @property
    def tan_sum(self) -> float:
        """``tan t1 + tan t2`` (dimensionless)."""
        return math.tan(math.radians(self.angles_deg[0])) + math.tan(math.radians(self.angles_deg[1]))

    @property
    def voxel_depth_m(self) -> float:
        """Eq. (2): ``Dz = Dr / (tan t1 + tan t2)``  [m]."""
        return self.pixel_size_m / self.tan_sum

    def depth(self, disparity_px, pixel_size_m: float | None = None):
        """Eq. (1): depth [m] from disparity in pixels of size ``pixel_size_m`` (default: the view pixel)."""
        return disparity_px * ((pixel_size_m or self.pixel_size_m) / self.tan_sum)

    def disparity(self, depth_m, pixel_size_m: float | None = None):
        """Inverse of :meth:`depth`: disparity in pixels of size ``pixel_size_m``."""
        return depth_m * (self.tan_sum / (pixel_size_m or self.pixel_size_m))

    def object_x(self, x_view, z, view: int):
        """Coordinate correction ``x = x_k - z tan a_k`` for view 0 (left) or 1 (right); same units in and out."""
        return x_view - z * math.tan(self.signed_angles_rad[view])

    def view_x(self, x, z, view: int):
        """Where object coordinate ``x`` at depth ``z`` appears in view ``view``: ``x + z tan a_k``."""
        return x + z * math.tan(self.signed_angles_rad[view])

    def report(self, resolution_m: float | None = None) -> dict:
        """Voxel size and resolution report (all lengths in nm), as printed by ``xstereo geometry``."""
        out = {
            "angles_deg": list(self.angles_deg),
            "separation_deg": self.angles_deg[0] + self.angles_deg[1],
            "tan_sum": self.tan_sum,
            "pixel_size_nm": self.pixel_size_m * 1e9,
            "voxel_depth_nm": self.voxel_depth_m * 1e9,
            "voxel_nm": [self.pixel_size_m * 1e9, self.pixel_size_m * 1e9, self.voxel_depth_m * 1e9],
        }
        if resolution_m is not None:
            if not (math.isfinite(resolution_m) and resolution_m > 0):
                raise InputError("resolution", repr(resolution_m), "a positive finite value in metres")
            rz = resolution_m / self.tan_sum
            out.update(resolution_xy_nm=resolution_m * 1e9, resolution_z_nm=rz * 1e9,
                       resolution_nm=[resolution_m * 1e9, resolution_m * 1e9, rz * 1e9])
        return out

    def to_dict(self) -> dict:
        return asdict(self)
