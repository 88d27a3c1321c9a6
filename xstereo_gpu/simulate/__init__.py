"""Simulator of single-shot stereo diffraction: 3D phantom -> projections along both beams -> CCD frame.

The geometry is not assumed: each view is the projection of a 3D voxel object along its beam (path
length ``dz / cos a``), so the disparities the pipeline measures come from the physics of the setup.
"""

from .detector import MASK_SHADOWED, add_patterns, apply_beamstop, far_field, photon_counts
from .options import SAMPLES, SimulationOptions
from .phantoms import CrossLid, VoxelObject
from .projection import beta_from_attenuation, path_length, project, transmission
from .shot import exit_waves, illumination, simulate_shot

__all__ = [
    "simulate_shot",
    "SimulationOptions",
    "SAMPLES",
    "CrossLid",
    "VoxelObject",
    "project",
    "path_length",
    "transmission",
    "beta_from_attenuation",
    "exit_waves",
    "illumination",
    "far_field",
    "photon_counts",
    "add_patterns",
    "apply_beamstop",
    "MASK_SHADOWED",
]
