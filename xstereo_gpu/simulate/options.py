"""Options of the stereo-shot simulator (:func:`xstereo_gpu.simulate.simulate_shot`).

The defaults are a *demo* size that simulates in about a second on two CPU cores: the CCD is binned
4 x 4 (512 x 512 frame of 54 um pixels) and each view is phased from a 256 x 256 crop. The real-space
pixel ``lambda D / (N p)`` is then 45.1 nm, the same as the paper's unbinned 1024 x 1024 crops, so the
sample is sampled identically in both sizes; :meth:`SimulationOptions.paper` gives the paper's size.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..errors import InputError
from ..geometry import ANGLE_RANGE_DEG

__all__ = ["SimulationOptions", "SAMPLES"]

#: Samples the simulator knows.
SAMPLES = ("cross",)


def _finite_positive(name: str, value, *, allow_zero: bool = False) -> None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(name, repr(value), "a number") from None
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        raise InputError(name, repr(value),
                         "a non-negative finite number" if allow_zero else "a positive finite number")


def _integer(name: str, value, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) and not (
            isinstance(value, float) and value.is_integer()):
        raise InputError(name, repr(value), f"an integer >= {minimum}")
    if int(value) < minimum:
        raise InputError(name, repr(value), f"an integer >= {minimum}")


def _pair(name: str, value, unit: str) -> tuple[float, float]:
    try:
        pair = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(name, repr(value), f"two numbers ({unit})") from None
    if len(pair) != 2:
        raise InputError(name, repr(value), f"two numbers ({unit})")
    return pair  # type: ignore[return-value]


@dataclass(frozen=True, kw_only=True)
class SimulationOptions:
    """Parameters of a simulated stereo shot of the paper's cross-lid sample.

    All options are keyword-only and validated on construction (:class:`~xstereo_gpu.errors.InputError`
    names the option, the value found and what was expected). Lengths carry their unit in the name.
    """

    #: Sample to simulate; only ``"cross"`` (the paper's FIB-cut cross with a tilted lid) for now.
    sample: str = "cross"
    #: Wavelength [m] (harmonic 33 of Ti:Sa: 24 nm).
    wavelength_m: float = 24e-9
    #: Sample-detector distance [m].
    distance_m: float = 26e-3
    #: Side of the (square) CCD [unbinned pixels].
    ccd_pixels: int = 2048
    #: CCD pixel pitch [m].
    ccd_pixel_m: float = 13.5e-6
    #: On-chip binning; the effective detector pixel is ``ccd_pixel_m * binning`` and the frame side
    #: ``ccd_pixels // binning``.
    binning: int = 4
    #: Side N of the square crop around each pattern centre, i.e. of each view grid [pixels].
    pattern_size: int = 256
    #: Beam angle magnitudes ``(t1, t2)`` of the left and right views [deg], each in (0, 60).
    angles_deg: tuple[float, float] = (9.5, 9.5)
    #: Expected photons per pattern (before the beamstop), the sum of each noiseless pattern.
    photons: float = 1e7
    #: Radius of the beamstop disc around each pattern centre [frame pixels]; 0 = no beamstop.
    beamstop_radius_px: float = 3
    #: Seed of ``numpy.random.default_rng`` for the Poisson noise.
    seed: int = 0
    #: Outer extents ``(x, y)`` of the cut cross before the in-plane rotation [um].
    cross_size_um: tuple[float, float] = (6.9, 6.1)
    #: Width of both arms of the cut cross [um].
    arm_width_um: float = 2.0
    #: Width of the FIB cut; the lid is the cross shrunk by it on every side [nm].
    kerf_nm: float = 150.0
    #: Out-of-plane tilt of the lid about the centre line of its horizontal arm [deg].
    lid_tilt_deg: float = 12.0
    #: Rotation of the whole sample about z [deg], so that no edge is parallel to the x baseline.
    in_plane_rotation_deg: float = 30.0
    #: Thickness of the membrane and of the lid (75 nm Si3N4 + 150 nm Au + 4 nm Cr) [nm].
    membrane_thickness_nm: float = 229.0
    #: 1/e length of the *intensity* in the membrane material at the wavelength [nm].
    attenuation_length_nm: float = 20.0
    #: Slice step dz of the voxel object [nm].
    voxel_depth_nm: float = 20.0
    #: FWHM ``(x, y)`` of the Gaussian intensity profile of each sub-beam in the sample plane [um];
    #: ``None`` = flat illumination.
    beam_fwhm_um: tuple[float, float] | None = (10.0, 7.0)
    #: Lateral supersampling factor of the voxel occupancy (anti-aliasing), per axis.
    supersample: int = 4

    def __post_init__(self):
        if self.sample not in SAMPLES:
            raise InputError("simulate.sample", repr(self.sample), f"one of {list(SAMPLES)}")
        for name in ("wavelength_m", "distance_m", "ccd_pixel_m", "photons", "arm_width_um", "kerf_nm",
                     "membrane_thickness_nm", "attenuation_length_nm", "voxel_depth_nm"):
            _finite_positive(f"simulate.{name}", getattr(self, name))
        _finite_positive("simulate.beamstop_radius_px", self.beamstop_radius_px, allow_zero=True)
        _integer("simulate.ccd_pixels", self.ccd_pixels, minimum=2)
        _integer("simulate.binning", self.binning, minimum=1)
        _integer("simulate.pattern_size", self.pattern_size, minimum=16)
        _integer("simulate.seed", self.seed, minimum=0)
        _integer("simulate.supersample", self.supersample, minimum=1)
        if self.supersample > 16:
            raise InputError("simulate.supersample", repr(self.supersample), "an integer in [1, 16]")
        for name in ("ccd_pixels", "binning", "pattern_size", "seed", "supersample"):
            object.__setattr__(self, name, int(getattr(self, name)))

        angles = _pair("simulate.angles_deg", self.angles_deg, "t1, t2 in degrees")
        lo, hi = ANGLE_RANGE_DEG
        for i, a in enumerate(angles):
            if not (math.isfinite(a) and lo < a < hi):
                raise InputError(f"simulate.angles_deg[{i}]", f"{a!r} deg", f"a magnitude in ({lo:g}, {hi:g}) deg")
        object.__setattr__(self, "angles_deg", angles)

        size = _pair("simulate.cross_size_um", self.cross_size_um, "x, y extents in um")
        if not all(math.isfinite(s) and s > 0 for s in size):
            raise InputError("simulate.cross_size_um", repr(self.cross_size_um), "two positive extents in um")
        object.__setattr__(self, "cross_size_um", size)
        if not self.arm_width_um < min(size):
            raise InputError("simulate.arm_width_um", repr(self.arm_width_um),
                             f"less than the smaller cross extent {min(size):g} um")
        if not self.kerf_nm * 1e-3 < self.arm_width_um / 2:
            raise InputError("simulate.kerf_nm", repr(self.kerf_nm),
                             f"less than half the arm width ({self.arm_width_um * 500:g} nm)")
        if not (math.isfinite(self.lid_tilt_deg) and abs(self.lid_tilt_deg) < 60):
            raise InputError("simulate.lid_tilt_deg", repr(self.lid_tilt_deg), "a tilt in (-60, 60) deg")
        if not math.isfinite(self.in_plane_rotation_deg):
            raise InputError("simulate.in_plane_rotation_deg", repr(self.in_plane_rotation_deg),
                             "a finite angle in deg")
        if self.beam_fwhm_um is not None:
            fwhm = _pair("simulate.beam_fwhm_um", self.beam_fwhm_um, "x, y FWHM in um, or None")
            if not all(math.isfinite(f) and f > 0 for f in fwhm):
                raise InputError("simulate.beam_fwhm_um", repr(self.beam_fwhm_um), "two positive FWHM in um, or None")
            object.__setattr__(self, "beam_fwhm_um", fwhm)

        # Both N x N crops must lie inside the frame.
        side = self.frame_side
        n = self.pattern_size
        for k, (row, col) in enumerate(self.centres_px):
            name = ("left", "right")[k]
            if row - n // 2 < 0 or col - n // 2 < 0 or row - n // 2 + n > side or col - n // 2 + n > side:
                raise InputError("simulate.pattern_size", repr(n),
                                 f"a crop that fits in the {side} x {side} frame around the {name} pattern "
                                 f"centre (row {row:g}, col {col:g}); use a smaller pattern_size, a smaller "
                                 "binning or smaller angles")
        # The view grid must hold the sample (and its shifts in both views) with a margin.
        fov_um = n * self.pixel_size_m * 1e6
        need_um = 2 * (math.hypot(max(size) / 2, self.arm_width_um / 2) + 0.5)
        if fov_um < need_um:
            raise InputError("simulate.pattern_size", f"{n} (view field {fov_um:.2f} um)",
                             f"a view field of at least {need_um:.2f} um to hold the sample "
                             f"(pattern_size >= {math.ceil(need_um / (self.pixel_size_m * 1e6))})")

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def paper(cls, **changes) -> "SimulationOptions":
        """The paper's size: unbinned 2048 x 2048 CCD, 1024 x 1024 crops, 12-pixel beamstop."""
        kw = dict(binning=1, pattern_size=1024, beamstop_radius_px=12)
        kw.update(changes)
        return cls(**kw)

    def replace(self, **changes) -> "SimulationOptions":
        """A validated copy with some options changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def detector_pixel_m(self) -> float:
        """Effective (binned) detector pixel ``p``  [m]."""
        return self.ccd_pixel_m * self.binning

    @property
    def frame_side(self) -> int:
        """Side ``H = W`` of the binned frame [pixels]."""
        return self.ccd_pixels // self.binning

    @property
    def pixel_size_m(self) -> float:
        """Real-space pixel of the view grid ``Dr = lambda D / (N p)``  [m]."""
        return self.wavelength_m * self.distance_m / (self.pattern_size * self.detector_pixel_m)

    @property
    def centres_px(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """``((row, col) left, (row, col) right)`` of the zero frequencies on the frame [pixels].

        The left view's pattern lies left of the frame centre by ``round(D tan t1 / p)`` (it comes from
        the beam arriving from the right, paper Fig. 2a), the right one right of it by
        ``round(D tan t2 / p)``.
        """
        side = self.frame_side
        p = self.detector_pixel_m
        t1, t2 = (math.radians(a) for a in self.angles_deg)
        off_l = round(self.distance_m * math.tan(t1) / p)
        off_r = round(self.distance_m * math.tan(t2) / p)
        return ((float(side // 2), float(side // 2 - off_l)), (float(side // 2), float(side // 2 + off_r)))
