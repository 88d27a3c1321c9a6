"""Simulate a single-shot stereo acquisition of one of the samples (``SAMPLES``).

Steps: build the 3D voxel object (:mod:`.phantoms`), project it along each beam (:mod:`.projection`),
multiply by the illumination, propagate to the far field, scale to the photon budget, draw Poisson
noise and put both patterns on one CCD frame with a beamstop (:mod:`.detector`).

Samples made of several materials (the phase cross: membrane and lid; the pyramid: membrane and
spheres) are projected per material, and the view is ``prod_m exp(-i k (delta_m - i beta_m) L_m)``
with ``delta``, ``beta`` from :mod:`.materials` (``xraydb``) at the photon energy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from ..errors import InputError
from ..shot import GroundTruth, Shot
from .detector import MASK_SATURATED, add_patterns, apply_beamstop, expose, far_field, photon_counts
from .materials import stack_delta_beta
from .options import SAMPLES, SimulationOptions
from .particles import PARTICLE_SAMPLES, Particles
from .phantoms import CrossLid, Pyramid, VoxelObject
from .projection import beta_from_attenuation, misalign, misalignment_matrix, path_length, transmission

__all__ = ["simulate_shot", "illumination", "exit_waves"]


def illumination(n: int, pixel_m: float, fwhm_m: tuple[float, float] | None) -> np.ndarray:
    """Amplitude of a Gaussian beam on the N x N view grid, centred on pixel ``(N//2, N//2)``.

    Parameters
    ----------
    n : int
        Grid side N [pixels].
    pixel_m : float
        Grid pixel  [m].
    fwhm_m : tuple of float or None
        FWHM ``(x, y)`` of the beam's *intensity* in the sample plane  [m]; ``None`` = flat (ones).

    Returns
    -------
    (N, N) float32
        Amplitude, 1 at the centre: ``exp(-2 ln 2 (x^2 / fx^2 + y^2 / fy^2))``.
    """
    if fwhm_m is None:
        return np.ones((n, n), dtype=np.float32)
    c = (np.arange(n) - n // 2) * pixel_m
    gx = np.exp(-2.0 * math.log(2.0) * (c / fwhm_m[0]) ** 2)
    gy = np.exp(-2.0 * math.log(2.0) * (c / fwhm_m[1]) ** 2)
    return (gy[:, None] * gx[None, :]).astype(np.float32)


def exit_waves(options: SimulationOptions, *, progress: Callable[[str], None] | None = None):
    """The two true exit waves of the sample and the phantom they come from.

    Returns
    -------
    views : (2, N, N) complex64
        Left and right exit waves on the view grid (pixel ``options.pixel_size_m``); for the phase
        cross the right one carries the misalignment of ``options.right_*``.
    phantom : CrossLid or Pyramid
        The sample geometry.
    voxels : VoxelObject or tuple of VoxelObject
        Its occupancy volume (cross), or one volume per material (phase cross: membrane, lid;
        pyramid: membrane, spheres).
    """
    say = progress or (lambda message: None)
    if options.sample == "cross":
        return _cross_waves(options, say)
    if options.sample == "phase-cross":
        views, phantom, parts, _ = _phase_cross_waves(options, say)
        return views, phantom, parts
    if options.sample == "pyramid":
        views, phantom, parts, _, _ = _pyramid_waves(options, say)
        return views, phantom, parts
    if options.sample in PARTICLE_SAMPLES:
        views, phantom, voxels, _, _ = _particle_waves(options, say)
        return views, phantom, voxels
    raise InputError("simulate.sample", repr(options.sample), f"one of {list(SAMPLES)}")


def _illumination(options: SimulationOptions) -> np.ndarray:
    fwhm = options.beam_fwhm_um
    return illumination(
        options.pattern_size, options.pixel_size_m, None if fwhm is None else (fwhm[0] * 1e-6, fwhm[1] * 1e-6)
    )


def _material_views(options: SimulationOptions, parts, constants, say) -> np.ndarray:
    """Illumination x product over materials of their transmissions along each beam (both views)."""
    n = options.pattern_size
    dr = options.pixel_size_m
    t1, t2 = (math.radians(a) for a in options.angles_deg)
    illum = _illumination(options)
    views = np.empty((2, n, n), dtype=np.complex64)
    for k, a in enumerate((t1, -t2)):
        say(
            f"projecting {len(parts)} materials along the {('left', 'right')[k]} beam "
            f"({math.degrees(a):+.2f} deg)"
        )
        wave = illum.astype(np.complex64)
        for vox, (delta, beta) in zip(parts, constants):
            nz, ny, nx = vox.occupancy.shape
            r0, c0 = vox.origin_px
            path = np.full((n, n), vox.background_path_m / math.cos(a), dtype=np.float32)
            path[r0 : r0 + ny, c0 : c0 + nx] = path_length(
                vox.occupancy, z_m=vox.z_m, pixel_m=dr, angle_rad=a, dz_m=vox.dz_m
            )
            wave *= transmission(path, wavelength_m=options.wavelength_m, delta=delta, beta=beta)
        views[k] = wave
    return views


def _constants(layers, options: SimulationOptions) -> tuple[float, float]:
    d, b, _ = stack_delta_beta([(f, t * 1e-9) for f, t in layers], options.energy_eV)
    return d, b


def _phase_cross_waves(options: SimulationOptions, say: Callable[[str], None]):
    """Exit waves of the phase cross; the right one misaligned. Returns views, phantom, parts, constants."""
    n = options.pattern_size
    dr = options.pixel_size_m
    t1, t2 = (math.radians(a) for a in options.angles_deg)
    phantom = CrossLid.from_options(options)
    parts = phantom.voxelise_parts(
        pixel_m=dr,
        grid_size=n,
        dz_m=options.voxel_depth_nm * 1e-9,
        max_tan=max(math.tan(t1), math.tan(t2)),
        supersample=options.supersample,
    )
    parts = tuple(_placed(p, options) for p in parts)
    nz, ny, nx = parts[0].occupancy.shape
    say(
        f"voxel object {nz} x {ny} x {nx} per material (dz {options.voxel_depth_nm:g} nm, pixel "
        f"{dr * 1e9:.1f} nm)"
    )
    lid_layers = options.lid_layers if options.lid_layers is not None else options.membrane_layers
    constants = (_constants(options.membrane_layers, options), _constants(lid_layers, options))
    views = _material_views(options, parts, constants, say)
    rot, shift = options.right_rotation_deg, options.right_shift_px
    if rot != 0 or shift[0] != 0 or shift[1] != 0:
        say(f"misaligning the right view: rotation {rot:g} deg, shift {shift} px (rows, cols)")
        views[1] = misalign(views[1], rotation_deg=rot, shift_px=shift)
    return views, phantom, parts, constants


def _pyramid_waves(options: SimulationOptions, say: Callable[[str], None]):
    """Exit waves of the pyramid. Returns views, phantom, parts, constants, spheres."""
    n = options.pattern_size
    dr = options.pixel_size_m
    t1, t2 = (math.radians(a) for a in options.angles_deg)
    phantom = Pyramid.from_options(options)
    spheres = phantom.spheres()
    say(
        f"{len(spheres[0])} spheres of {options.sphere_diameter_nm:g} nm {options.sphere_material} on the "
        "faces"
    )
    parts = phantom.voxelise_parts(
        pixel_m=dr,
        grid_size=n,
        dz_m=options.voxel_depth_nm * 1e-9,
        max_tan=max(math.tan(t1), math.tan(t2)),
        supersample=options.supersample,
        spheres=spheres,
    )
    parts = tuple(_placed(p, options) for p in parts)
    nz, ny, nx = parts[0].occupancy.shape
    say(
        f"voxel object {nz} x {ny} x {nx} per material (dz {options.voxel_depth_nm:g} nm, pixel "
        f"{dr * 1e9:.1f} nm)"
    )
    constants = (
        _constants(options.membrane_layers, options),
        _constants(((options.sphere_material, 1.0),), options),
    )
    views = _material_views(options, parts, constants, say)
    return views, phantom, parts, constants, spheres


def _particle_waves(options: SimulationOptions, say: Callable[[str], None]):
    """Exit waves of a particle sample (:mod:`.particles`) on its uniform film.

    Returns views, phantom, voxels (the spheres), the spheres' and the film's ``(delta, beta)``, and
    ``(centres, labels)``. The film is uniform over the field: its transmission multiplies each view
    (``_background``).
    """
    n = options.pattern_size
    dr = options.pixel_size_m
    t1, t2 = (math.radians(a) for a in options.angles_deg)
    phantom = Particles.from_options(options)
    centres, labels = phantom.spheres()
    say(f"{len(centres)} spheres of {options.sphere_diameter_nm:g} nm {options.sphere_material}")
    voxels = phantom.voxelise(
        pixel_m=dr,
        grid_size=n,
        dz_m=options.voxel_depth_nm * 1e-9,
        max_tan=max(math.tan(t1), math.tan(t2)),
        supersample=options.supersample,
        centres=centres,
    )
    voxels = _placed(voxels, options)
    nz, ny, nx = voxels.occupancy.shape
    say(f"voxel object {nz} x {ny} x {nx} (dz {options.voxel_depth_nm:g} nm, pixel {dr * 1e9:.1f} nm)")
    sphere = _constants(((options.sphere_material, 1.0),), options)
    film = _constants(options.membrane_layers, options)
    views = _material_views(options, (voxels,), (sphere,), say)
    views *= _background(options, *film, options.membrane_thickness_nm * 1e-9).astype(np.complex64)[
        :, None, None
    ]
    return views, phantom, voxels, (sphere, film), (centres, labels)


def _background(opts: SimulationOptions, delta: float, beta: float, thickness_m: float) -> np.ndarray:
    """(2,) complex128: exit wave of the plain membrane in each view (flat illumination: the wave far
    from the sample), ``exp(-i k (delta - i beta) t / cos a_k)``."""
    k = 2.0 * math.pi / opts.wavelength_m
    t1, t2 = (math.radians(a) for a in opts.angles_deg)
    return np.array([np.exp(-1j * k * (delta - 1j * beta) * thickness_m / math.cos(a)) for a in (t1, -t2)])


def _layers_text(layers) -> str:
    return " + ".join(f"{t:g} nm {f}" for f, t in layers)


def _separation_text(opts: SimulationOptions) -> str:
    if opts.pattern_separation_px is None:
        return ""
    t1, t2 = (math.radians(a) for a in opts.angles_deg)
    physical = opts.distance_m * (math.tan(t1) + math.tan(t2)) / opts.detector_pixel_m
    return (
        f"patterns side by side on the frame, {opts.pattern_separation_px:g} px apart (the physical "
        f"separation would be {physical:.0f} px); "
    )


def _geometry_text(opts: SimulationOptions, dz_m: float) -> str:
    dr = opts.pixel_size_m
    return (
        f"voxels {dr * 1e9:.2f} x {dr * 1e9:.2f} x {dz_m * 1e9:g} nm; beams {opts.angles_deg[0]:g} / "
        f"{opts.angles_deg[1]:g} deg, illumination FWHM {opts.beam_fwhm_um} um; wavelength "
        f"{opts.wavelength_m * 1e9:.4g} nm ({opts.energy_eV:.4g} eV), distance {opts.distance_m * 1e3:.4g} "
        "mm, "
        f"detector pixel {opts.detector_pixel_m * 1e6:g} um (binning {opts.binning}), N = "
        f"{opts.pattern_size}; "
        f"{opts.photons:.3g} photons per pattern, seed {opts.seed}; twin beams mutually incoherent "
        "(intensities added)"
    )


def _placed(voxels: VoxelObject, options: SimulationOptions) -> VoxelObject:
    """``voxels`` moved by ``options.sample_offset_px`` on the view grid (its box origin shifted)."""
    dy, dx = options.sample_offset_px
    if dy == 0 and dx == 0:
        return voxels
    r0, c0 = voxels.origin_px
    _, ny, nx = voxels.occupancy.shape
    n = options.pattern_size
    if not (0 <= r0 + dy and r0 + dy + ny <= n and 0 <= c0 + dx and c0 + dx + nx <= n):
        raise InputError(  # options.max_sample_offset_px keeps the box inside: a bug if reached
            "simulate.sample_offset_px",
            repr(options.sample_offset_px),
            f"an offset that keeps the {ny} x {nx} voxel box inside the {n} x {n} view grid",
        )
    return dataclasses.replace(voxels, origin_px=(r0 + dy, c0 + dx))


def _moved(opts: SimulationOptions, points: np.ndarray, extra: dict) -> tuple[np.ndarray, dict]:
    """Edge points and truth facts of a centred sample moved to ``opts.sample_offset_px``.

    Points and positions (``apex_m``, ``base_corners_m``, ``surface_points_m``) move by
    ``(x, y) = opts.sample_offset_m``; a plane ``a x + b y + c z + d = 0`` gets ``d - a x - b y``;
    ``extra["sample_offset_m"]`` (2,) float64 records the move. Directions, angles and the right
    view's misalignment (about the grid centre) do not change. Unchanged when the offset is zero.
    """
    if tuple(opts.sample_offset_px) == (0, 0):
        return points, extra
    shift = np.array([*opts.sample_offset_m, 0.0])
    out = dict(extra)
    for key in ("apex_m", "base_corners_m", "surface_points_m"):
        if key in out:
            out[key] = np.asarray(out[key], dtype=np.float64) + shift
    if "planes" in out:
        planes = np.array(out["planes"], dtype=np.float64)
        planes[:, 3] -= planes[:, :3] @ shift
        out["planes"] = planes
    out["sample_offset_m"] = shift[:2].copy()
    return np.asarray(points, dtype=np.float64) + shift, out


def _truth(opts: SimulationOptions, say: Callable[[str], None]):
    """Views and the ground truth of any sample at its position: views, points, labels, extra, description."""
    views, points, labels, extra, description = _centred_truth(opts, say)
    points, extra = _moved(opts, points, extra)
    if tuple(opts.sample_offset_px) != (0, 0):
        x, y = opts.sample_offset_m
        description += f"; sample moved by x = {x * 1e9:.1f} nm, y = {y * 1e9:.1f} nm from the grid centre"
    return views, points, labels, extra, description


def _centred_truth(opts: SimulationOptions, say: Callable[[str], None]):
    """Views (at the sample's position) and the ground truth of the centred sample."""
    dr = opts.pixel_size_m
    if opts.sample == "cross":
        views, phantom, voxels = _cross_waves(opts, say)
        points, labels = phantom.edge_points(dr / 4)
        description = (
            f"{phantom.describe()}; amplitude sample, intensity attenuation length "
            f"{opts.attenuation_length_nm:g} nm; voxels {dr * 1e9:.2f} x {dr * 1e9:.2f} x "
            f"{voxels.dz_m * 1e9:g} nm; beams {opts.angles_deg[0]:g} / {opts.angles_deg[1]:g} deg, "
            f"illumination FWHM {opts.beam_fwhm_um} um; wavelength {opts.wavelength_m * 1e9:g} nm, "
            f"distance {opts.distance_m * 1e3:g} mm, detector pixel {opts.detector_pixel_m * 1e6:g} um "
            f"(binning {opts.binning}), N = {opts.pattern_size}; {opts.photons:.3g} photons per pattern, "
            f"seed {opts.seed}; twin beams mutually incoherent (intensities added)"
        )
        return views, points, labels, {}, description

    if opts.sample == "phase-cross":
        views, phantom, parts, ((dm, bm), (dl, bl)) = _phase_cross_waves(opts, say)
        points, labels = phantom.edge_points(dr / 4)
        t1, t2 = (math.radians(a) for a in opts.angles_deg)
        by_view = phantom.hidden_in_views(points, labels, (t1, -t2), margin_m=dr / 2)
        tilt, phi = math.radians(phantom.tilt_deg), math.radians(phantom.rotation_deg)
        lid_plane = np.array([-math.tan(tilt) * math.sin(phi), math.tan(tilt) * math.cos(phi), -1.0, 0.0])
        lid_plane /= np.linalg.norm(lid_plane[:3])
        lid_layers = opts.lid_layers if opts.lid_layers is not None else opts.membrane_layers
        extra = {
            "edge_hidden": by_view.any(axis=1),
            "edge_hidden_by_view": by_view,
            "right_rotation_deg": float(opts.right_rotation_deg),
            "right_shift_px": np.asarray(opts.right_shift_px, dtype=np.float64),
            "right_view_transform": misalignment_matrix(
                opts.pattern_size, rotation_deg=opts.right_rotation_deg, shift_px=opts.right_shift_px
            ),
            "planes": np.stack([np.array([0.0, 0.0, 1.0, 0.0]), lid_plane]),
            "membrane_delta": dm,
            "membrane_beta": bm,
            "lid_delta": dl,
            "lid_beta": bl,
            "membrane_thickness_m": phantom.thickness_m,
            "lid_thickness_m": phantom.lid_t,
            "background_transmission": _background(opts, dm, bm, phantom.thickness_m),
        }
        description = (
            f"{phantom.describe()}; phase sample: membrane {_layers_text(opts.membrane_layers)} "
            f"(delta {dm:.4g}, beta {bm:.4g}), lid {_layers_text(lid_layers)} (delta {dl:.4g}, "
            f"beta {bl:.4g}), optical constants from xraydb; right view misaligned by "
            f"{opts.right_rotation_deg:g} deg and {tuple(opts.right_shift_px)} px (rows, cols); "
            f"{int(extra['edge_hidden'].sum())} of {len(labels)} edge points hidden behind the "
            f"membrane in one view; {_separation_text(opts)}{_geometry_text(opts, parts[0].dz_m)}"
        )
        return views, points, labels, extra, description

    if opts.sample == "pyramid":
        views, phantom, parts, ((dm, bm), (ds, bs)), (centres, faces, feet) = _pyramid_waves(opts, say)
        extra = {
            "pyramid_height_m": float(phantom.height_m),
            "pyramid_base_m": float(phantom.base_m),
            "apex_m": phantom.apex_m,
            "base_corners_m": phantom.base_corners_m,
            "surface_points_m": feet,
            "sphere_radius_m": float(phantom.sphere_radius_m),
            "membrane_delta": dm,
            "membrane_beta": bm,
            "sphere_delta": ds,
            "sphere_beta": bs,
            "membrane_thickness_m": phantom.thickness_m,
            "background_transmission": _background(opts, dm, bm, phantom.thickness_m),
        }
        description = (
            f"{phantom.describe(len(centres))}; membrane {_layers_text(opts.membrane_layers)} "
            f"(delta {dm:.4g}, beta {bm:.4g}), spheres {opts.sphere_material} (delta {ds:.4g}, "
            f"beta {bs:.4g}), optical constants from xraydb; edge points = sphere centres, "
            f"labels = face (0: +u, 1: +v, 2: -u, 3: -v); {_geometry_text(opts, parts[0].dz_m)}"
        )
        return views, centres, faces, extra, description

    if opts.sample in PARTICLE_SAMPLES:
        views, phantom, voxels, ((ds, bs), (df, bf)), (centres, labels) = _particle_waves(opts, say)
        extra = {
            "sphere_radius_m": float(phantom.sphere_radius_m),
            "sphere_delta": ds,
            "sphere_beta": bs,
            "membrane_delta": df,
            "membrane_beta": bf,
            "membrane_thickness_m": opts.membrane_thickness_nm * 1e-9,
            "background_transmission": _background(opts, df, bf, opts.membrane_thickness_nm * 1e-9),
        }
        if opts.sample == "rough-surface":
            extra["surface_points_m"] = centres.copy()
        description = (
            f"{phantom.describe(len(centres))}; spheres {opts.sphere_material} (delta {ds:.4g}, "
            f"beta {bs:.4g}) on a uniform film {_layers_text(opts.membrane_layers)} (delta {df:.4g}, "
            f"beta {bf:.4g}), optical constants from xraydb; edge points = sphere centres"
            + (", labels = cluster" if opts.sample == "clusters" else "")
            + f"; {_geometry_text(opts, voxels.dz_m)}"
        )
        return views, centres, labels, extra, description
    raise InputError("simulate.sample", repr(opts.sample), f"one of {list(SAMPLES)}")


def _cross_waves(options: SimulationOptions, say: Callable[[str], None]):
    """Exit waves of the amplitude cross (unchanged since the first version, bit for bit)."""
    n = options.pattern_size
    dr = options.pixel_size_m
    t1, t2 = (math.radians(a) for a in options.angles_deg)
    signed = (t1, -t2)
    phantom = CrossLid.from_options(options)
    voxels = phantom.voxelise(
        pixel_m=dr,
        grid_size=n,
        dz_m=options.voxel_depth_nm * 1e-9,
        max_tan=max(math.tan(t1), math.tan(t2)),
        supersample=options.supersample,
    )
    voxels = _placed(voxels, options)
    nz, ny, nx = voxels.occupancy.shape
    say(f"voxel object {nz} x {ny} x {nx} (dz {voxels.dz_m * 1e9:g} nm, pixel {dr * 1e9:.1f} nm)")
    beta = beta_from_attenuation(options.wavelength_m, options.attenuation_length_nm * 1e-9)
    illum = illumination(
        n,
        dr,
        None
        if options.beam_fwhm_um is None
        else (options.beam_fwhm_um[0] * 1e-6, options.beam_fwhm_um[1] * 1e-6),
    )
    r0, c0 = voxels.origin_px
    views = np.empty((2, n, n), dtype=np.complex64)
    for k, a in enumerate(signed):
        say(f"projecting along the {('left', 'right')[k]} beam ({math.degrees(a):+.2f} deg)")
        path = np.full((n, n), voxels.background_path_m / math.cos(a), dtype=np.float32)
        path[r0 : r0 + ny, c0 : c0 + nx] = path_length(
            voxels.occupancy, z_m=voxels.z_m, pixel_m=dr, angle_rad=a, dz_m=voxels.dz_m
        )
        views[k] = illum * transmission(path, wavelength_m=options.wavelength_m, delta=0.0, beta=beta)
    return views, phantom, voxels


def simulate_shot(
    options: SimulationOptions | None = None, *, progress: Callable[[str], None] | None = None
) -> Shot:
    """Simulate one stereo CCD frame of a sample, with its ground truth.

    Parameters
    ----------
    options : SimulationOptions, optional
        Simulation parameters; default ``SimulationOptions()`` (the amplitude cross at demo size,
        256 x 256 crops of a 4 x 4 binned CCD). ``SimulationOptions.paper()`` gives the paper's size,
        ``SimulationOptions.for_sample("phase-cross" | "pyramid")`` the other samples.
    progress : callable, optional
        Called as ``progress(message)`` at each step.

    Returns
    -------
    Shot
        ``frame`` (H, W) float32 Poisson counts of both patterns (incoherent sum), ``mask`` (H, W)
        uint32 with the beamstop discs flagged 0x10, geometry, and ``truth`` (:class:`GroundTruth`:
        exit waves, edge points and labels, description, and sample-specific ``extra``).

        ``truth.extra`` of the phase cross: ``edge_hidden`` (M,) bool (lid edge points that lie, in at
        least one view, on membrane at least half a pixel outside the cut), ``edge_hidden_by_view``
        (M, 2) bool, ``right_rotation_deg``, ``right_shift_px`` (rows, cols), ``right_view_transform``
        (3, 3) (``(col, row, 1)`` of the aligned right view -> misaligned), ``planes`` (2, 4) (membrane
        and lid mid-planes ``a x + b y + c z + d = 0``, unit normal, metres), delta/beta and
        thicknesses. Both the phase cross and the pyramid: ``background_transmission`` (2,) complex,
        the plain membrane's exit wave in each view. With flat illumination that constant only feeds
        the zero frequency (under the beamstop), so phasing recovers ``view - background``, which is
        what a phased view should be compared with. Of the pyramid: ``pyramid_height_m``, ``pyramid_base_m``,
        ``apex_m`` (3,),
        ``base_corners_m`` (4, 3), ``surface_points_m`` (S, 3) (feet of the spheres on the notch's
        mid-surface), ``sphere_radius_m``, delta/beta; its edge points are the sphere centres, its labels
        the face of each sphere.

        A sample off centre (``options.sample_offset_px``) has its views, edge points and positions
        (``apex_m``, ``base_corners_m``, ``surface_points_m``, ``planes``) moved by
        ``options.sample_offset_m``, and ``truth.extra["sample_offset_m"]`` (2,) ``(x, y)`` [m].

    Examples
    --------
    >>> shot = simulate_shot()
    >>> shot.frame.shape, shot.truth.views.shape
    ((512, 512), (2, 256, 256))
    """
    opts = SimulationOptions() if options is None else options
    if not isinstance(opts, SimulationOptions):
        raise InputError("simulate_shot: options", type(opts).__name__, "a SimulationOptions")
    say = progress or (lambda message: None)
    n = opts.pattern_size
    dr = opts.pixel_size_m
    views, points, labels, truth_extra, description = _truth(opts, say)

    say(f"far field of both views ({n} x {n}) and Poisson noise ({opts.photons:.3g} photons per pattern)")
    rng = np.random.default_rng(opts.seed)
    intensities = far_field(views)

    side = opts.frame_side
    centres = np.asarray(opts.centres_px, dtype=np.float64)
    say(
        f"detector frame {side} x {side}, centres {centres.tolist()}, beamstop radius "
        f"{opts.beamstop_radius_px:g} px"
    )
    times = None
    if opts.exposures_s is None:
        patterns = np.stack([photon_counts(intensities[k], photons=opts.photons, rng=rng) for k in range(2)])
        frame = add_patterns(patterns, centres, (side, side))
        mask = np.zeros((side, side), dtype=np.uint32)
        apply_beamstop(frame, mask, centres, opts.beamstop_radius_px)
    else:
        # HDR series: the expected frame per second, then one Poisson draw per exposure with saturation
        times = np.asarray(opts.exposures_s, dtype=np.float64)
        rate = add_patterns(
            np.stack(
                [
                    intensities[k] * (opts.photons / times.max() / float(intensities[k].sum()))
                    for k in range(2)
                ]
            ).astype(np.float64),
            centres,
            (side, side),
        )
        base = np.zeros((side, side), dtype=np.uint32)
        apply_beamstop(rate, base, centres, opts.beamstop_radius_px)
        frame, mask, full_well = expose(rate, times, rng=rng, mask=base)
        say(
            f"HDR exposures {times.tolist()} s, saturation at {full_well:.4g} counts: "
            f"{[int(((m & MASK_SATURATED) != 0).sum()) for m in mask]} saturated pixels"
        )

    truth = GroundTruth(
        views=views,
        pixel_size_m=dr,
        edge_points_m=points,
        edge_labels=labels,
        description=description,
        extra=truth_extra,
    )
    shot = Shot(
        frame=frame,
        mask=mask,
        wavelength_m=opts.wavelength_m,
        distance_m=opts.distance_m,
        detector_pixel_m=opts.detector_pixel_m,
        angles_deg=tuple(opts.angles_deg),
        centres_px=centres,
        pattern_size=n,
        sample=opts.sample,
        truth=truth,
        exposure_times_s=times,
        extra={"photons": float(opts.photons), "seed": int(opts.seed), "binning": int(opts.binning)},
    )
    say("simulation done")
    return shot
