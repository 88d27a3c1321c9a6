"""xstereo-gpu: computed stereo lensless X-ray imaging on NumPy or CuPy.

Two coherent diffraction patterns of one shot in, phased views, disparity maps, depth and a cleaned
3D point cloud out (Duarte et al., "Computed stereo lensless X-ray imaging"). The same code runs on
NumPy (CPU) and on CuPy (GPU, when present); see :mod:`xstereo_gpu.backend`.

Stages, each usable alone::

    simulate_shot      -> Shot (the paper's three samples, simulated, with ground truth)
    read_shot          -> Shot (CXI file, docs/format.md; one frame or an HDR series)
    split_patterns     -> (2, N, N) intensities + valid masks (HDR exposures merged)
    phase_retrieval    -> PhasingResult (R runs per view, best iterates, coherent average)
    prtf, edge_resolution, view_error -> phasing quality
    align_views        -> both views in one frame and orientation
    rectify_pair, preprocess, block_match / semi_global_match, lr_consistency,
    points_from_disparity -> disparity, depth, cloud
    statistical_outlier_filter -> kept points
    match_views        -> StereoResult (the stereo stage: consistent maps of two views)
    build_cloud        -> CloudResult (the cloud stage: depth, cloud, outlier mask)
    reconstruct        -> Reconstruction (planes, natural-neighbour interpolation, carving, volume, mesh)
    Pipeline / run_pipeline    -> everything, data resident on the device
"""

__version__ = "0.1.0"

from .accuracy import score
from .backend import device_info, get_array_module, select_backend, to_host
from .batch import process_run
from .cloud.outliers import knn_mean_distance, remove_outliers, statistical_outlier_filter
from .cloud.reconstruct import reconstruct
from .cloud.stage import build_cloud
from .config import (
    CloudOptions,
    MatchOptions,
    PhasingOptions,
    PipelineOptions,
    PrepareOptions,
    PreprocessOptions,
    ReconstructOptions,
    StereoOptions,
)
from .errors import InputError, InputWarning
from .geometry import StereoGeometry, real_space_pixel
from .io import (
    read_image,
    read_mask,
    read_pattern,
    read_shot,
    read_support,
    read_views,
    write_ply,
    write_shot,
    write_views,
)
from .phasing.align import align_views, register_translation
from .phasing.prepare import single_pattern, split_patterns
from .phasing.quality import edge_resolution, prtf, view_error
from .phasing.runs import PhaseRetrieval, phase_retrieval
from .pipeline import Pipeline, run_pipeline
from .results import CloudResult, MapPair, Reconstruction, Results, StereoResult, ViewsResult
from .shot import GroundTruth, Shot
from .simulate import SimulationOptions, simulate_shot
from .stereo.depth import depth_map, lr_consistency, points_from_disparity
from .stereo.disparity import block_match
from .stereo.preprocess import preprocess
from .stereo.rectify import rectify_pair
from .stereo.sgm import semi_global_match
from .stereo.stage import match_views

__all__ = [
    "__version__",
    # configuration and geometry
    "PipelineOptions",
    "PrepareOptions",
    "PhasingOptions",
    "PreprocessOptions",
    "MatchOptions",
    "CloudOptions",
    "StereoOptions",
    "ReconstructOptions",
    "StereoGeometry",
    "real_space_pixel",
    "InputError",
    "InputWarning",
    # backend
    "select_backend",
    "get_array_module",
    "to_host",
    "device_info",
    # data and files
    "Shot",
    "GroundTruth",
    "read_shot",
    "write_shot",
    "read_pattern",
    "read_mask",
    "read_support",
    "read_image",
    "read_views",
    "write_views",
    "write_ply",
    "SimulationOptions",
    "simulate_shot",
    # stages
    "split_patterns",
    "single_pattern",
    "PhaseRetrieval",
    "phase_retrieval",
    "register_translation",
    "align_views",
    "prtf",
    "edge_resolution",
    "view_error",
    "rectify_pair",
    "semi_global_match",
    "preprocess",
    "block_match",
    "lr_consistency",
    "points_from_disparity",
    "depth_map",
    "knn_mean_distance",
    "remove_outliers",
    "statistical_outlier_filter",
    # orchestration and scoring
    "match_views",
    "build_cloud",
    "reconstruct",
    # stage results
    "ViewsResult",
    "MapPair",
    "StereoResult",
    "CloudResult",
    "Reconstruction",
    "Results",
    "Pipeline",
    "run_pipeline",
    "score",
    # many shots
    "process_run",
]
