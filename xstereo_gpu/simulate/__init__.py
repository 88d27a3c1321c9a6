"""Simulator of single-shot stereo diffraction: 3D phantom -> projections along both beams -> CCD frame.

The geometry is not assumed: each view is the projection of a 3D voxel object along its beam (path
length ``dz / cos a``), so the disparities the pipeline measures come from the physics of the setup.
Samples (``SAMPLES``): the paper's amplitude cross (``SimulationOptions()``), the simulated phase
cross and the nanoparticle pyramid (``PAPER_SAMPLES``), and nanoparticles in general 3D arrangements
(``PARTICLE_SAMPLES``, :mod:`.particles`: clusters, a curve, scratches on a rough surface), each from
``SimulationOptions.for_sample(name)``; optical constants of the materials come from ``xraydb``
(:mod:`.materials`).
"""

from .detector import MASK_SHADOWED, add_patterns, apply_beamstop, far_field, photon_counts
from .materials import (
    Layer,
    delta_beta,
    energy_from_wavelength,
    stack_delta_beta,
    stack_transmission,
    wavelength_from_energy,
)
from .options import PAPER_SAMPLES, PARTICLE_SAMPLES, SAMPLE_DEFAULTS, SAMPLES, SimulationOptions
from .particles import Particles
from .phantoms import CrossLid, Pyramid, VoxelObject
from .projection import (
    beta_from_attenuation,
    misalign,
    misalignment_matrix,
    path_length,
    project,
    transmission,
)
from .run import RunManifest, RunSimulationOptions, SimulatedShot, read_manifest, simulate_run
from .simulator import exit_waves, illumination, simulate_shot
from .views import provided_views

__all__ = [
    "simulate_shot",
    "simulate_run",
    "RunSimulationOptions",
    "RunManifest",
    "SimulatedShot",
    "read_manifest",
    "provided_views",
    "SimulationOptions",
    "SAMPLES",
    "PAPER_SAMPLES",
    "PARTICLE_SAMPLES",
    "SAMPLE_DEFAULTS",
    "CrossLid",
    "Pyramid",
    "Particles",
    "VoxelObject",
    "project",
    "path_length",
    "transmission",
    "beta_from_attenuation",
    "misalign",
    "misalignment_matrix",
    "delta_beta",
    "stack_delta_beta",
    "stack_transmission",
    "Layer",
    "wavelength_from_energy",
    "energy_from_wavelength",
    "exit_waves",
    "illumination",
    "far_field",
    "photon_counts",
    "add_patterns",
    "apply_beamstop",
    "MASK_SHADOWED",
]
