"""Simulate a single-shot stereo acquisition of the paper's cross-lid sample.

Steps: build the 3D voxel object (:mod:`.phantoms`), project it along each beam (:mod:`.projection`),
multiply by the Gaussian illumination, propagate to the far field, scale to the photon budget, draw
Poisson noise and put both patterns on one CCD frame with a beamstop (:mod:`.detector`).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..shot import GroundTruth, Shot
from .detector import add_patterns, apply_beamstop, far_field, photon_counts
from .options import SimulationOptions
from .phantoms import CrossLid
from .projection import beta_from_attenuation, path_length, transmission

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
    """The two true exit waves of the cross-lid sample and the phantom they come from.

    Returns
    -------
    views : (2, N, N) complex64
        Left and right exit waves on the view grid (pixel ``options.pixel_size_m``).
    phantom : CrossLid
        The sample geometry.
    voxels : VoxelObject
        Its occupancy volume.
    """
    say = progress or (lambda message: None)
    n = options.pattern_size
    dr = options.pixel_size_m
    t1, t2 = (math.radians(a) for a in options.angles_deg)
    signed = (t1, -t2)
    phantom = CrossLid.from_options(options)
    voxels = phantom.voxelise(pixel_m=dr, grid_size=n, dz_m=options.voxel_depth_nm * 1e-9,
                              max_tan=max(math.tan(t1), math.tan(t2)), supersample=options.supersample)
    nz, ny, nx = voxels.occupancy.shape
    say(f"voxel object {nz} x {ny} x {nx} (dz {voxels.dz_m * 1e9:g} nm, pixel {dr * 1e9:.1f} nm)")
    beta = beta_from_attenuation(options.wavelength_m, options.attenuation_length_nm * 1e-9)
    illum = illumination(n, dr, None if options.beam_fwhm_um is None
                         else (options.beam_fwhm_um[0] * 1e-6, options.beam_fwhm_um[1] * 1e-6))
    r0, c0 = voxels.origin_px
    views = np.empty((2, n, n), dtype=np.complex64)
    for k, a in enumerate(signed):
        say(f"projecting along the {('left', 'right')[k]} beam ({math.degrees(a):+.2f} deg)")
        path = np.full((n, n), voxels.background_path_m / math.cos(a), dtype=np.float32)
        path[r0:r0 + ny, c0:c0 + nx] = path_length(voxels.occupancy, z_m=voxels.z_m, pixel_m=dr, angle_rad=a,
                                                   dz_m=voxels.dz_m)
        views[k] = illum * transmission(path, wavelength_m=options.wavelength_m, delta=0.0, beta=beta)
    return views, phantom, voxels


def simulate_shot(options: SimulationOptions | None = None, *,
                  progress: Callable[[str], None] | None = None) -> Shot:
    """Simulate one stereo CCD frame of the cross-lid sample, with its ground truth.

    Parameters
    ----------
    options : SimulationOptions, optional
        Simulation parameters; default ``SimulationOptions()`` (demo size, 256 x 256 crops of a 4 x 4
        binned CCD). ``SimulationOptions.paper()`` gives the paper's size.
    progress : callable, optional
        Called as ``progress(message)`` at each step.

    Returns
    -------
    Shot
        ``frame`` (H, W) float32 Poisson counts of both patterns (incoherent sum), ``mask`` (H, W)
        uint32 with the beamstop discs flagged 0x10, geometry, and ``truth`` (:class:`GroundTruth`:
        exit waves, edge points, description).

    Examples
    --------
    >>> shot = simulate_shot()
    >>> shot.frame.shape, shot.truth.views.shape
    ((512, 512), (2, 256, 256))
    """
    opts = SimulationOptions() if options is None else options
    if not isinstance(opts, SimulationOptions):
        from ..errors import InputError

        raise InputError("simulate_shot: options", type(opts).__name__, "a SimulationOptions")
    say = progress or (lambda message: None)
    n = opts.pattern_size
    dr = opts.pixel_size_m
    views, phantom, voxels = exit_waves(opts, progress=progress)

    say(f"far field of both views ({n} x {n}) and Poisson noise ({opts.photons:.3g} photons per pattern)")
    rng = np.random.default_rng(opts.seed)
    intensities = far_field(views)
    patterns = np.stack([photon_counts(intensities[k], photons=opts.photons, rng=rng) for k in range(2)])

    side = opts.frame_side
    centres = np.asarray(opts.centres_px, dtype=np.float64)
    say(f"detector frame {side} x {side}, centres {centres.tolist()}, beamstop radius {opts.beamstop_radius_px:g} px")
    frame = add_patterns(patterns, centres, (side, side))
    mask = np.zeros((side, side), dtype=np.uint32)
    apply_beamstop(frame, mask, centres, opts.beamstop_radius_px)

    points, labels = phantom.edge_points(dr / 4)
    description = (f"{phantom.describe()}; amplitude sample, intensity attenuation length "
                   f"{opts.attenuation_length_nm:g} nm; voxels {dr * 1e9:.2f} x {dr * 1e9:.2f} x "
                   f"{voxels.dz_m * 1e9:g} nm; beams {opts.angles_deg[0]:g} / {opts.angles_deg[1]:g} deg, "
                   f"illumination FWHM {opts.beam_fwhm_um} um; wavelength {opts.wavelength_m * 1e9:g} nm, "
                   f"distance {opts.distance_m * 1e3:g} mm, detector pixel {opts.detector_pixel_m * 1e6:g} um "
                   f"(binning {opts.binning}), N = {n}; {opts.photons:.3g} photons per pattern, seed {opts.seed}; "
                   "twin beams mutually incoherent (intensities added)")
    truth = GroundTruth(views=views, pixel_size_m=dr, edge_points_m=points, edge_labels=labels,
                        description=description)
    shot = Shot(frame=frame, mask=mask, wavelength_m=opts.wavelength_m, distance_m=opts.distance_m,
                detector_pixel_m=opts.detector_pixel_m, angles_deg=tuple(opts.angles_deg), centres_px=centres,
                pattern_size=n, sample=opts.sample, truth=truth,
                extra={"photons": float(opts.photons), "seed": int(opts.seed), "binning": int(opts.binning)})
    say("simulation done")
    return shot
