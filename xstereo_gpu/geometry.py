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

from .checks import check_positive
from .errors import InputError, warn

__all__ = ["StereoGeometry", "real_space_pixel", "check_plausible", "PLAUSIBLE", "POSSIBLE"]

ANGLE_RANGE_DEG = (0.0, 60.0)

#: Ranges outside which a value draws a warning (SI): X-rays of 0.01-100 nm (the paper: 24 nm and
#: 1.65 nm), sample-detector distances of 5 mm - 20 m (paper: 26 mm), detector pixels of 1 um - 1 mm
#: (binned; paper: 13.5 um), view pixels of 0.1 nm - 10 um.
PLAUSIBLE = {
    "wavelength_m": (1e-11, 1e-7),
    "distance_m": (5e-3, 20.0),
    "detector_pixel_m": (1e-6, 1e-3),
    "pixel_size_m": (1e-10, 1e-5),
}
#: Ranges outside which a value is refused: it cannot be right (a wavelength of 1 m, a distance in mm
#: given as metres, a pixel in um given as metres).
POSSIBLE = {"wavelength_m": (1e-13, 1e-5), "distance_m": (1e-4, 100.0), "detector_pixel_m": (1e-7, 1e-2)}
#: ``tan t1 + tan t2`` below this is refused: the voxel depth (eq. 2) would exceed 1000 view pixels
#: (t1 + t2 below about 0.06 deg), the two views carry no depth.
MIN_TAN_SUM = 1e-3
#: Below this ``t1 + t2`` [deg] a warning: the voxel depth exceeds ~29 view pixels (paper: 7 to 19 deg).
PLAUSIBLE_SEPARATION_DEG = 2.0
_WORDS = {
    "wavelength_m": "wavelength",
    "distance_m": "sample-detector distance",
    "detector_pixel_m": "detector pixel",
    "pixel_size_m": "view pixel (lambda D / (N p))",
}


def _si(value: float) -> str:
    for unit, f in (("m", 1.0), ("mm", 1e-3), ("um", 1e-6), ("nm", 1e-9), ("pm", 1e-12), ("fm", 1e-15)):
        if abs(value) >= f:
            return f"{value / f:.4g} {unit}"
    return f"{value:.3g} m"


def check_plausible(*, where: dict[str, str] | None = None, **values: float | None) -> None:
    """Refuse impossible and warn about implausible geometry (see ``PLAUSIBLE``, ``POSSIBLE``).

    Parameters
    ----------
    where : dict, optional
        Field name -> label for messages (the file and dataset, or the command-line option).
    **values : float or None
        Any of ``wavelength_m``, ``distance_m``, ``detector_pixel_m``, ``pixel_size_m`` [m] and
        ``angles_deg`` (t1, t2) [deg]. None, non-finite and non-positive values are left to the
        validation that refuses them.

    Raises
    ------
    InputError
        A value outside ``POSSIBLE`` or beam angles with ``tan t1 + tan t2 < MIN_TAN_SUM``.

    Warns
    -----
    InputWarning
        A value outside ``PLAUSIBLE``, or ``t1 + t2 < PLAUSIBLE_SEPARATION_DEG``.
    """
    where = where or {}
    for name, value in values.items():
        if name == "angles_deg":
            if value is not None:
                _check_angles(tuple(value), where.get(name, "angles"))
            continue
        if value is None or not (math.isfinite(value) and value > 0):
            continue
        label = where.get(name, name)
        shown = f"{value:g} m" if _si(value) == f"{value:g} m" else f"{value:g} m ({_si(value)})"
        lo, hi = PLAUSIBLE[name]
        text = f"{_WORDS[name]} in {_si(lo)} .. {_si(hi)}"
        if name in POSSIBLE:
            plo, phi = POSSIBLE[name]
            if not plo <= value <= phi:
                raise InputError(
                    label,
                    f"{shown}, not a possible {_WORDS[name]}",
                    f"{text} (refused outside {_si(plo)} .. {_si(phi)}; values are in metres)",
                )
        if not lo <= value <= hi:
            warn(label, shown, text + " (values are in metres)", stacklevel=3)


def _check_angles(angles: tuple, label: str) -> None:
    lo, hi = ANGLE_RANGE_DEG
    if len(angles) != 2 or not all(math.isfinite(a) and lo < a < hi for a in angles):
        return  # refused by StereoGeometry with its own message
    tan_sum = math.tan(math.radians(angles[0])) + math.tan(math.radians(angles[1]))
    found = (
        f"{angles[0]:g} + {angles[1]:g} deg (tan t1 + tan t2 = {tan_sum:.3g}: a voxel depth of "
        f"{1 / tan_sum:.3g} view pixels)"
    )
    if tan_sum < MIN_TAN_SUM:
        raise InputError(
            label,
            found + ", no depth information",
            f"beam angles with tan t1 + tan t2 >= {MIN_TAN_SUM:g} (t1 + t2 above ~0.06 deg; "
            "the paper: 3.5 to 9.5 deg each)",
        )
    if angles[0] + angles[1] < PLAUSIBLE_SEPARATION_DEG:
        warn(
            label,
            found,
            "t1 + t2 of a few degrees or more (the paper: 3.5 to 9.5 deg each); "
            "check that the angles are in degrees",
            stacklevel=4,
        )


def real_space_pixel(wavelength_m: float, distance_m: float, detector_pixel_m: float, size: int) -> float:
    """Real-space pixel of a view reconstructed from an ``size`` x ``size`` crop: ``lambda D / (N p)``  "
    "[m]."""
    for name, v in (
        ("wavelength", wavelength_m),
        ("distance", distance_m),
        ("detector pixel", detector_pixel_m),
    ):
        check_positive(name, v, expected="a positive finite value in metres")
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
        check_positive("pixel size", self.pixel_size_m, expected="a positive finite value in metres")
        if len(self.angles_deg) != 2:
            raise InputError("angles", repr(self.angles_deg), "two angles (t1, t2) in degrees")
        lo, hi = ANGLE_RANGE_DEG
        for i, a in enumerate(self.angles_deg):
            if not (math.isfinite(a) and lo < a < hi):
                raise InputError(f"angles[{i}]", f"{a!r} deg", f"a magnitude in ({lo:g}, {hi:g}) deg")
        object.__setattr__(self, "angles_deg", (float(self.angles_deg[0]), float(self.angles_deg[1])))
        if self.tan_sum < MIN_TAN_SUM:
            _check_angles(self.angles_deg, "angles")

    @classmethod
    def from_detector(
        cls,
        *,
        wavelength_m: float,
        distance_m: float,
        detector_pixel_m: float,
        pattern_size: int,
        angles_deg: tuple[float, float],
    ) -> StereoGeometry:
        """Geometry of views phased from ``pattern_size`` x ``pattern_size`` crops of the detector."""
        return cls(
            real_space_pixel(wavelength_m, distance_m, detector_pixel_m, pattern_size), tuple(angles_deg)
        )

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
        """Coordinate correction ``x = x_k - z tan a_k`` for view 0 (left) or 1 (right); same units in and "
        "out."""
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
            check_positive("resolution", resolution_m, expected="a positive finite value in metres")
            rz = resolution_m / self.tan_sum
            out.update(
                resolution_xy_nm=resolution_m * 1e9,
                resolution_z_nm=rz * 1e9,
                resolution_nm=[resolution_m * 1e9, resolution_m * 1e9, rz * 1e9],
            )
        return out

    def to_dict(self) -> dict:
        return asdict(self)
