"""Options of the stereo-shot simulator (:func:`xstereo_gpu.simulate.simulate_shot`).

Six samples (``SAMPLES``), each with its own defaults from :meth:`SimulationOptions.for_sample`: the
paper's three (``PAPER_SAMPLES``) and three of general 3D structure (``PARTICLE_SAMPLES``):

``"cross"`` (paper Figs. 2-3a,b; ``SimulationOptions()``)
    The amplitude cross-lid. The defaults are a *demo* size that simulates in about a second on two
    CPU cores: the CCD is binned 4 x 4 (512 x 512 frame of 54 um pixels) and each view is phased from
    a 256 x 256 crop. The real-space pixel ``lambda D / (N p)`` is then 45.1 nm, the same as the
    paper's unbinned 1024 x 1024 crops; :meth:`SimulationOptions.paper` gives the paper's size.
``"phase-cross"`` (paper Fig. 3c,d, simulated)
    The same cross geometry, semi-transparent: membrane 60 nm Si3N4, lid 10 nm Si3N4 + 5 nm Au, with
    delta/beta from ``xraydb`` at 24 nm (51.7 eV); views 12 deg apart (6 + 6), the two patterns side by
    side on the frame (``pattern_separation_px`` = 256, see there); flat illumination (the
    membrane's uniform transmission then only adds to the zero frequency, under the beamstop); the
    lid tilted 45 deg with a 60 nm kerf so that parts of its edges hide behind the membrane in one
    view; the right view's exit wave rotated by 1 deg and shifted 2 pixels down (rectification needed).
``"pyramid"`` (paper Fig. 4)
    750 eV, views 7 deg apart (3.5 + 3.5), 15 nm pixels (384 x 384 crops of a 2 x 2 binned
    2048 x 2048 CCD of 13.5 um pixels at 94.08 mm), 50 nm Au spheres lining the faces of an
    inverted pyramid notch (base 2.5 um, height 1.8 um, apex downstream) in a 100 nm Si3N4 membrane.
``"clusters"``, ``"curve"``, ``"rough-surface"`` (:mod:`.particles`; not in the paper)
    50 nm Au spheres in random 3D clusters, along a 3D curve, or covering a tilted rough surface,
    over 1.4 um laterally and 1.3 um in depth (15 voxel depths), on a 20 nm Si3N4 film (a uniform
    transmission: only the zero frequency); 750 eV, views 10 deg apart (5 + 5), 15 nm pixels
    (256 x 256 crops of a 2 x 2 binned CCD), flat illumination: phased from their own patterns at
    the demo's size like the crosses.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from ..checks import check_positive
from ..errors import InputError
from ..geometry import ANGLE_RANGE_DEG
from .materials import HC_EV_M, parse_layers
from .particles import PARTICLE_SAMPLES, Particles
from .phantoms import CrossLid, Pyramid

__all__ = ["SimulationOptions", "SAMPLES", "PAPER_SAMPLES", "PARTICLE_SAMPLES", "SAMPLE_DEFAULTS"]

#: The paper's samples (and the only ones of simulated runs, :mod:`.run`).
PAPER_SAMPLES = ("cross", "phase-cross", "pyramid")
#: Samples the simulator knows.
SAMPLES = PAPER_SAMPLES + PARTICLE_SAMPLES

_PYRAMID_WAVELENGTH_M = HC_EV_M / 750.0
#: Option values of each sample that differ from the dataclass defaults (which are the cross's).
SAMPLE_DEFAULTS: dict[str, dict] = {
    # the paper's cross data were recorded as two exposures (30 s and 240 s) and merged (HDR)
    "cross": dict(exposures_s=(30.0, 240.0)),
    "phase-cross": dict(
        sample="phase-cross",
        angles_deg=(6.0, 6.0),
        beam_fwhm_um=None,
        kerf_nm=60.0,
        lid_tilt_deg=45.0,
        membrane_layers=(("Si3N4", 60.0),),
        lid_layers=(("Si3N4", 10.0), ("Au", 5.0)),
        right_rotation_deg=1.0,
        right_shift_px=(2.0, 0.0),
        photons=1e9,
        pattern_separation_px=256.0,
    ),
    "pyramid": dict(
        sample="pyramid",
        wavelength_m=_PYRAMID_WAVELENGTH_M,
        # lambda D / (N p) = 15 nm with N = 384, p = 2 x 13.5 um
        distance_m=15e-9 * 384 * 27e-6 / _PYRAMID_WAVELENGTH_M,
        binning=2,
        pattern_size=384,
        angles_deg=(3.5, 3.5),
        beam_fwhm_um=None,
        membrane_layers=(("Si3N4", 100.0),),
        voxel_depth_nm=15.0,
        photons=1e10,
        beamstop_radius_px=3,
    ),
    **{
        name: dict(
            sample=name,
            wavelength_m=_PYRAMID_WAVELENGTH_M,
            # lambda D / (N p) = 15 nm with N = 256, p = 2 x 13.5 um
            distance_m=15e-9 * 256 * 27e-6 / _PYRAMID_WAVELENGTH_M,
            binning=2,
            pattern_size=256,
            angles_deg=(5.0, 5.0),
            beam_fwhm_um=None,
            membrane_layers=(("Si3N4", 20.0),),
            voxel_depth_nm=15.0,
            photons=1e10,
            beamstop_radius_px=3,
            particle_count={"clusters": 150, "curve": 90, "rough-surface": 100}[name],
        )
        for name in PARTICLE_SAMPLES
    },
}


def _integer(name: str, value, *, minimum: int) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        and not (isinstance(value, float) and value.is_integer())
    ):
        raise InputError(name, repr(value), f"an integer >= {minimum}")
    if int(value) < minimum:
        raise InputError(name, repr(value), f"an integer >= {minimum}")


def _whole(value) -> bool:
    """An integer, or a float with an integral value (not a bool)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, (numbers.Integral, float))
        and float(value).is_integer()
    )


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
    """Parameters of a simulated stereo shot (the dataclass defaults are the amplitude cross's).

    ``SimulationOptions()`` is the amplitude cross at demo size; ``SimulationOptions.for_sample(name,
    **changes)`` gives each sample's own defaults (``SAMPLE_DEFAULTS``). Options that a sample does not
    use are ignored by it (the cross-outline options by the pyramid, the pyramid options by the crosses).

    All options are keyword-only and validated on construction (:class:`~xstereo_gpu.errors.InputError`
    names the option, the value found and what was expected). Lengths carry their unit in the name.
    """

    #: Sample to simulate, one of ``SAMPLES``; use :meth:`for_sample` to get a sample's defaults.
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
    #: Integration times of an HDR series [s] (paper: 30 and 240), or ``None`` for one frame.
    #: ``photons`` is then the expected photons per pattern in the longest exposure; the detector
    #: saturates at :func:`~xstereo_gpu.simulate.detector.saturation_level` (the long exposure's
    #: central speckles saturate, the short exposure's do not).
    exposures_s: tuple[float, ...] | None = None
    #: Layers ``((formula, thickness_nm), ...)`` of the membrane, with delta/beta from ``xraydb``;
    #: ``None`` = an amplitude membrane of ``membrane_thickness_nm`` and ``attenuation_length_nm``
    #: (the cross). When given, ``membrane_thickness_nm`` is set to their total.
    membrane_layers: tuple | None = None
    #: Layers of the lid (phase cross); ``None`` = the membrane's layers.
    lid_layers: tuple | None = None
    #: Distance between the two pattern centres on the frame [frame pixels]; ``None`` = the physical
    #: ``D (tan t1 + tan t2) / p`` (rounded per side). Set for the phase cross, whose 12 deg at 24 nm
    #: and 45 nm pixels would put each pattern's centre 0.39 N from the other's, inside its crop: there
    #: the two patterns are recorded side by side (as on two detectors; the paper simulated its phase
    #: views directly). The depth geometry (angles) is unchanged.
    pattern_separation_px: float | None = None
    #: In-plane rotation applied to the right view's exit wave about its grid centre [deg]
    #: (counter-clockwise in ``(x, y)``, y = row axis): a known misalignment that rectification removes.
    right_rotation_deg: float = 0.0
    #: Shift ``(rows, cols)`` applied to the right view's exit wave after the rotation [view pixels].
    right_shift_px: tuple[float, float] = (0.0, 0.0)
    #: Lateral position of the sample: the whole object moved by ``(rows, cols)`` whole view pixels
    #: from the view-grid centre (``y = rows Dr``, ``x = cols Dr``) under the same, centred
    #: illumination; the ground truth moves with it (``truth.extra["sample_offset_m"]``). Each axis
    #: at most :attr:`max_sample_offset_px` (the room the view field leaves around the sample).
    sample_offset_px: tuple[int, int] = (0, 0)
    #: Side of the square base of the pyramid notch [um].
    pyramid_base_um: float = 2.5
    #: Depth of the notch's apex below the membrane mid-plane (downstream, +z) [um].
    pyramid_height_um: float = 1.8
    #: In-plane rotation of the pyramid about z [deg].
    pyramid_rotation_deg: float = 0.0
    #: Diameter of the nanospheres lining the notch's faces [nm].
    sphere_diameter_nm: float = 50.0
    #: Material of the spheres (a formula ``xraydb`` knows).
    sphere_material: str = "Au"
    #: Fraction of the faces' area covered by the spheres' cross-sections (random sequential placement
    #: without overlaps, seeded by ``seed`` on a stream of its own; at most 0.5).
    sphere_coverage: float = 0.2
    #: Spheres lying on the flat membrane outside the notch, within ``stray_band_um`` of its rim
    #: (drop-cast particles that dried outside the notch; seeded like the others). The notch's exit
    #: wave alone has a square, centrosymmetric support, on which difference-map runs stagnate in an
    #: object + twin superposition; a few spheres beside the rim make the support non-centrosymmetric.
    stray_spheres: int = 0
    #: Width of the band around the notch's rim where the stray spheres lie [um].
    stray_band_um: float = 0.2
    #: Spheres of the particle samples (``PARTICLE_SAMPLES``; fewer when their layout cannot hold them).
    particle_count: int = 150
    #: Lateral extent of the particle samples' layout [um].
    particle_span_um: float = 1.4
    #: Depth extent of the particle samples' layout [um] (1.3 um = 15 voxel depths of 86 nm at 5 + 5 deg).
    particle_depth_um: float = 1.3

    def __post_init__(self):
        if self.sample not in SAMPLES:
            raise InputError("simulate.sample", repr(self.sample), f"one of {list(SAMPLES)}")
        for name in (
            "wavelength_m",
            "distance_m",
            "ccd_pixel_m",
            "photons",
            "arm_width_um",
            "kerf_nm",
            "membrane_thickness_nm",
            "attenuation_length_nm",
            "voxel_depth_nm",
        ):
            check_positive(f"simulate.{name}", getattr(self, name))
        check_positive("simulate.beamstop_radius_px", self.beamstop_radius_px, allow_zero=True)
        _integer("simulate.ccd_pixels", self.ccd_pixels, minimum=2)
        _integer("simulate.binning", self.binning, minimum=1)
        _integer("simulate.pattern_size", self.pattern_size, minimum=16)
        _integer("simulate.seed", self.seed, minimum=0)
        _integer("simulate.supersample", self.supersample, minimum=1)
        if self.supersample > 16:
            raise InputError("simulate.supersample", repr(self.supersample), "an integer in [1, 16]")
        for name in ("ccd_pixels", "binning", "pattern_size", "seed", "supersample"):
            object.__setattr__(self, name, int(getattr(self, name)))
        self._check_sample_options()

        angles = _pair("simulate.angles_deg", self.angles_deg, "t1, t2 in degrees")
        lo, hi = ANGLE_RANGE_DEG
        for i, a in enumerate(angles):
            if not (math.isfinite(a) and lo < a < hi):
                raise InputError(
                    f"simulate.angles_deg[{i}]", f"{a!r} deg", f"a magnitude in ({lo:g}, {hi:g}) deg"
                )
        object.__setattr__(self, "angles_deg", angles)

        size = _pair("simulate.cross_size_um", self.cross_size_um, "x, y extents in um")
        if not all(math.isfinite(s) and s > 0 for s in size):
            raise InputError("simulate.cross_size_um", repr(self.cross_size_um), "two positive extents in um")
        object.__setattr__(self, "cross_size_um", size)
        if not self.arm_width_um < min(size):
            raise InputError(
                "simulate.arm_width_um",
                repr(self.arm_width_um),
                f"less than the smaller cross extent {min(size):g} um",
            )
        if not self.kerf_nm * 1e-3 < self.arm_width_um / 2:
            raise InputError(
                "simulate.kerf_nm",
                repr(self.kerf_nm),
                f"less than half the arm width ({self.arm_width_um * 500:g} nm)",
            )
        if not (math.isfinite(self.lid_tilt_deg) and abs(self.lid_tilt_deg) < 60):
            raise InputError("simulate.lid_tilt_deg", repr(self.lid_tilt_deg), "a tilt in (-60, 60) deg")
        if not math.isfinite(self.in_plane_rotation_deg):
            raise InputError(
                "simulate.in_plane_rotation_deg", repr(self.in_plane_rotation_deg), "a finite angle in deg"
            )
        if self.exposures_s is not None:
            times = tuple(float(t) for t in self.exposures_s)
            if len(times) < 2 or not all(math.isfinite(t) and t > 0 for t in times):
                raise InputError(
                    "simulate.exposures_s",
                    repr(self.exposures_s),
                    "two or more positive integration times in s, or None",
                )
            object.__setattr__(self, "exposures_s", times)
        if self.beam_fwhm_um is not None:
            fwhm = _pair("simulate.beam_fwhm_um", self.beam_fwhm_um, "x, y FWHM in um, or None")
            if not all(math.isfinite(f) and f > 0 for f in fwhm):
                raise InputError(
                    "simulate.beam_fwhm_um", repr(self.beam_fwhm_um), "two positive FWHM in um, or None"
                )
            object.__setattr__(self, "beam_fwhm_um", fwhm)

        # Both N x N crops must lie inside the frame.
        side = self.frame_side
        n = self.pattern_size
        for k, (row, col) in enumerate(self.centres_px):
            name = ("left", "right")[k]
            if row - n // 2 < 0 or col - n // 2 < 0 or row - n // 2 + n > side or col - n // 2 + n > side:
                raise InputError(
                    "simulate.pattern_size",
                    repr(n),
                    f"a crop that fits in the {side} x {side} frame around the {name} pattern "
                    f"centre (row {row:g}, col {col:g}); use a smaller pattern_size, a smaller "
                    "binning or smaller angles",
                )
        # The view grid must hold the sample (and its shifts in both views) with a margin.
        fov_um = n * self.pixel_size_m * 1e6
        need_um = self._need_um()
        if fov_um < need_um:
            raise InputError(
                "simulate.pattern_size",
                f"{n} (view field {fov_um:.2f} um)",
                f"a view field of at least {need_um:.2f} um to hold the sample "
                f"(pattern_size >= {math.ceil(need_um / (self.pixel_size_m * 1e6))})",
            )
        self._check_offset()

    def _need_um(self) -> float:
        """Side of the centred square the sample and its margin need on the view grid [um]."""
        if self.sample in PARTICLE_SAMPLES:
            shift = (self.particle_depth_um + 0.1) * max(math.tan(math.radians(a)) for a in self.angles_deg)
            return self.particle_span_um + 2 * (shift + self.sphere_diameter_nm * 1e-3 + 0.2)
        if self.sample == "pyramid":
            rot = math.radians(self.pyramid_rotation_deg)
            half = self.pyramid_base_um / 2 * (abs(math.cos(rot)) + abs(math.sin(rot)))
            shift = (self.pyramid_height_um + 0.1) * max(math.tan(math.radians(a)) for a in self.angles_deg)
            band = (
                self.stray_band_um * (abs(math.cos(rot)) + abs(math.sin(rot))) if self.stray_spheres else 0.0
            )
            return 2 * (half + band + shift + self.sphere_diameter_nm * 1e-3 + 0.2)
        return 2 * (math.hypot(max(self.cross_size_um) / 2, self.arm_width_um / 2) + 0.5)

    def _check_offset(self) -> None:
        """``sample_offset_px``: two integers, each within :attr:`max_sample_offset_px`."""
        where = "simulate.sample_offset_px"
        try:
            off = tuple(self.sample_offset_px)
        except TypeError:
            off = ()
        if not (len(off) == 2 and all(_whole(v) for v in off)):
            raise InputError(
                where, repr(self.sample_offset_px), "two whole numbers of view pixels (rows, cols)"
            )
        off = (int(off[0]), int(off[1]))
        object.__setattr__(self, "sample_offset_px", off)
        if off == (0, 0):
            return
        limit = self.max_sample_offset_px
        if abs(off[0]) > limit[0] or abs(off[1]) > limit[1]:
            raise InputError(
                where,
                repr(off),
                f"offsets of at most ({limit[0]}, {limit[1]}) view pixels (rows, cols): the room the "
                f"{self.pattern_size} px view field leaves around the sample",
            )

    def _check_sample_options(self) -> None:
        """Materials, misalignment and pyramid options (called first by ``__post_init__``)."""
        if self.sample == "cross" and self.membrane_layers is not None:
            raise InputError(
                "simulate.membrane_layers",
                repr(self.membrane_layers),
                "None for the amplitude cross (it uses membrane_thickness_nm and attenuation_length_nm)",
            )
        for name in ("membrane_layers", "lid_layers"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, parse_layers(v, f"simulate.{name}"))
        if self.membrane_layers is not None:
            object.__setattr__(self, "membrane_thickness_nm", float(sum(t for _, t in self.membrane_layers)))
        elif self.sample != "cross":
            raise InputError(
                "simulate.membrane_layers",
                "None",
                f"the membrane's layers for the {self.sample!r} sample "
                f"(use SimulationOptions.for_sample({self.sample!r}))",
            )
        if self.lid_layers is not None and self.sample != "phase-cross":
            raise InputError(
                "simulate.lid_layers", repr(self.lid_layers), "None (only the phase cross has lid layers)"
            )
        if self.pattern_separation_px is not None:
            check_positive("simulate.pattern_separation_px", self.pattern_separation_px)
            object.__setattr__(self, "pattern_separation_px", float(self.pattern_separation_px))
        if not math.isfinite(self.right_rotation_deg) or abs(self.right_rotation_deg) > 45:
            raise InputError(
                "simulate.right_rotation_deg", repr(self.right_rotation_deg), "an angle in [-45, 45] deg"
            )
        shift = _pair("simulate.right_shift_px", self.right_shift_px, "rows, cols in view pixels")
        if not all(math.isfinite(v) and abs(v) <= self.pattern_size / 4 for v in shift):
            raise InputError(
                "simulate.right_shift_px",
                repr(self.right_shift_px),
                f"two finite shifts of at most N/4 = {self.pattern_size / 4:g} pixels",
            )
        object.__setattr__(self, "right_shift_px", shift)
        for name in ("pyramid_base_um", "pyramid_height_um", "sphere_diameter_nm"):
            check_positive(f"simulate.{name}", getattr(self, name))
        if not math.isfinite(self.pyramid_rotation_deg):
            raise InputError(
                "simulate.pyramid_rotation_deg", repr(self.pyramid_rotation_deg), "a finite angle in deg"
            )
        if not (isinstance(self.sphere_material, str) and self.sphere_material):
            raise InputError(
                "simulate.sphere_material", repr(self.sphere_material), "a chemical formula such as 'Au'"
            )
        c = self.sphere_coverage
        if not (isinstance(c, (int, float)) and math.isfinite(c) and 0 < c <= 0.5):
            raise InputError("simulate.sphere_coverage", repr(c), "a fraction in (0, 0.5]")
        _integer("simulate.particle_count", self.particle_count, minimum=1)
        object.__setattr__(self, "particle_count", int(self.particle_count))
        for name in ("particle_span_um", "particle_depth_um"):
            check_positive(f"simulate.{name}", getattr(self, name))
        _integer("simulate.stray_spheres", self.stray_spheres, minimum=0)
        object.__setattr__(self, "stray_spheres", int(self.stray_spheres))
        check_positive("simulate.stray_band_um", self.stray_band_um)
        if self.stray_spheres and self.stray_band_um < 3 * self.sphere_diameter_nm * 1e-3:
            raise InputError(
                "simulate.stray_band_um",
                repr(self.stray_band_um),
                f"at least three sphere diameters ({3 * self.sphere_diameter_nm * 1e-3:g} um) "
                "to hold stray spheres",
            )
        if self.sphere_diameter_nm * 1e-3 >= self.pyramid_base_um / 4:
            raise InputError(
                "simulate.sphere_diameter_nm",
                repr(self.sphere_diameter_nm),
                f"less than a quarter of the pyramid base ({self.pyramid_base_um * 250:g} nm)",
            )

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def for_sample(cls, name: str, **changes) -> SimulationOptions:
        """Options of a sample with its own defaults (``SAMPLE_DEFAULTS``), then ``changes``.

        Parameters
        ----------
        name : str
            One of ``SAMPLES``.
        **changes
            Options to override.

        Examples
        --------
        >>> SimulationOptions.for_sample("pyramid").pixel_size_m  # doctest: +ELLIPSIS
        1.5...e-08
        """
        if name not in SAMPLES:
            raise InputError("simulate.sample", repr(name), f"one of {list(SAMPLES)}")
        kw = dict(SAMPLE_DEFAULTS[name])
        kw.update(changes)
        kw.setdefault("sample", name)
        return cls(**kw)

    @property
    def energy_eV(self) -> float:
        """Photon energy ``h c / lambda``  [eV]."""
        return HC_EV_M / self.wavelength_m

    @classmethod
    def paper(cls, **changes) -> SimulationOptions:
        """The paper's size: unbinned 2048 x 2048 CCD, 1024 x 1024 crops, 12-pixel beamstop."""
        kw = dict(binning=1, pattern_size=1024, beamstop_radius_px=12)
        kw.update(changes)
        return cls(**kw)

    def replace(self, **changes) -> SimulationOptions:
        """A validated copy with some options changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def detector_pixel_m(self) -> float:
        """Effective (binned) detector pixel ``p``  [m]."""
        return self.ccd_pixel_m * self.binning

    @property
    def max_sample_offset_px(self) -> tuple[int, int]:
        """Largest ``|sample_offset_px|`` ``(rows, cols)`` that keeps the sample on the view grid.

        On each axis the smaller of two rooms [view pixels]: what the view field leaves around the
        sample and its margin (the square that the size check of ``pattern_size`` asks for), and what
        it leaves around the sample's voxel box (the object and its projections' shifts). 0 when there
        is no room; independent of the offset itself.
        """
        n = self.pattern_size
        dr_um = self.pixel_size_m * 1e6
        free = max(0, math.floor((n * dr_um - self._need_um()) / (2 * dr_um) + 1e-9))
        max_tan = max(math.tan(math.radians(a)) for a in self.angles_deg)
        phantom = self.phantom()
        half = phantom.box_half_px(self.pixel_size_m, max_tan)
        box = [max(0, min(n // 2 - h, n - 1 - n // 2 - h)) for h in half]
        return (min(free, box[0]), min(free, box[1]))

    def phantom(self):
        """The sample's geometry: a :class:`CrossLid`, :class:`Pyramid` or :class:`Particles`."""
        if self.sample == "pyramid":
            return Pyramid.from_options(self)
        if self.sample in PARTICLE_SAMPLES:
            return Particles.from_options(self)
        return CrossLid.from_options(self)

    @property
    def sample_offset_m(self) -> tuple[float, float]:
        """``(x, y)`` of the sample's centre from the view-grid centre [m]: ``sample_offset_px`` x ``Dr``."""
        dr = self.pixel_size_m
        return (self.sample_offset_px[1] * dr, self.sample_offset_px[0] * dr)

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
        ``round(D tan t2 / p)``; with ``pattern_separation_px`` = S, by ``round(S tan t1 / (tan t1 +
        tan t2))`` and the rest of ``round(S)``.
        """
        side = self.frame_side
        p = self.detector_pixel_m
        t1, t2 = (math.radians(a) for a in self.angles_deg)
        if self.pattern_separation_px is not None:
            sep = round(self.pattern_separation_px)
            off_l = round(sep * math.tan(t1) / (math.tan(t1) + math.tan(t2)))
            off_r = sep - off_l
            return (
                (float(side // 2), float(side // 2 - off_l)),
                (float(side // 2), float(side // 2 + off_r)),
            )
        off_l = round(self.distance_m * math.tan(t1) / p)
        off_r = round(self.distance_m * math.tan(t2) / p)
        return ((float(side // 2), float(side // 2 - off_l)), (float(side // 2), float(side // 2 + off_r)))
