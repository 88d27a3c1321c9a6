"""The typed results of the stages, and of a whole run.

Every stage returns one dataclass; its arrays live on the device of the stage's input (NumPy or
CuPy) until :meth:`to_host` copies them. The types sit in their own module, below the stages, so that
any stage, front end or worker can name them without importing the stages (no import cycles)::

    Pipeline.phase  -> phasing.runs.PhasingResult   (R runs per view, best iterates, coherent average)
    Pipeline.align  -> ViewsResult                   (both views in one frame, supports)
    Pipeline.stereo -> StereoResult                  (consistent disparity maps, per map pair)
    Pipeline.cloud  -> CloudResult                   (depth, the cloud, the outlier mask)
    Pipeline.reconstruct -> Reconstruction           (planes, volume, mesh; host)
    Pipeline.run    -> Results                       (all of the above on the host, with the scores)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backend import to_host
from .config import PipelineOptions
from .geometry import StereoGeometry

__all__ = ["ViewsResult", "MapPair", "StereoResult", "CloudResult", "Reconstruction", "Results"]


def _host_copy(obj):
    """A copy of the dataclass ``obj`` with every array field on the host (nested dataclasses and lists "
    "too)."""
    changes = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            changes[f.name] = _host_copy(v)
        elif isinstance(v, list):
            changes[f.name] = [_host_copy(x) if dataclasses.is_dataclass(x) else to_host(x) for x in v]
        elif hasattr(v, "shape") and hasattr(v, "dtype"):
            changes[f.name] = to_host(v)
    return dataclasses.replace(obj, **changes)


@dataclass
class ViewsResult:
    """Phased views in one frame and orientation: the input of the stereo stage.

    Attributes
    ----------
    views : (V, N, N) complex64 (or float32 for views given as real images)
        Left and right views (V = 2; V = 1 for ``xstereo phase``), device of the phasing.
    supports : (V, N, N) bool
        Shrink-wrap supports of the aligned views (all False for views given as they are).
    best_eps : (V, R) float32
        eps_n of the best iterate of every run (R = 0 without phasing).
    geometry : StereoGeometry or None
        Pixel and beam angles of the views (None: unknown; no depth then).
    history : dict
        The phasing's per-run records (``averaged``, ``memory``...), host values.
    names : tuple of str
        The views' names in files (``("left", "right")``).
    alignment : dict or None
        What :func:`~xstereo_gpu.phasing.align.align_views` did, host values: ``left_shift``,
        ``right_shift`` (pixels), ``right_twin``, ``peak`` and ``twin_choice`` (scores of both readings
        of the right view, ``margin``, ``ambiguous``...); None when the views were not aligned.
    """

    views: Any
    supports: Any
    best_eps: Any
    geometry: StereoGeometry | None = None
    history: dict = field(default_factory=dict)
    names: tuple = ("left", "right")
    alignment: dict | None = None

    def to_host(self) -> ViewsResult:
        return _host_copy(self)


@dataclass
class MapPair:
    """One pair of left-right consistent disparity maps (one pre-processing of the views).

    Attributes
    ----------
    mode : str
        Pre-processing of the views matched (:data:`~xstereo_gpu.config.PREPROCESS_MODES`).
    disparity_left, disparity_right : (uH, uW) float32
        Consistent disparities [matching-grid pixels], NaN where invalid (outside the mask).
    confidence_left, confidence_right : (uH, uW) float32
        The matcher's confidence per pixel.
    """

    mode: str
    disparity_left: Any
    disparity_right: Any
    confidence_left: Any
    confidence_right: Any

    def to_host(self) -> MapPair:
        return _host_copy(self)


@dataclass
class StereoResult:
    """What the stereo stage made of two views: pre-processed images and consistent disparity maps.

    Attributes
    ----------
    images : (2, uH, uW) float32
        Pre-processed views of the first map pair, on the matching grid.
    upsample : int
        Matching-grid pixels per view pixel.
    thresholds : (float, float) or None
        Binary thresholds used (left, right); None without binarisation.
    disparity_left, disparity_right : (uH, uW) float32
        Consistent maps merged over the map pairs (the first pair's value where it has one)
        [matching-grid pixels], NaN where invalid.
    pairs : list of MapPair
        Each pre-processing's own consistent maps and confidences, the first one first.
    matched_views : (2, H, W) float32
        The images that were matched (amplitude or phase, after rectification).
    amplitude : (2, H, W) float32
        The views' amplitude on the same (rectified) grid (empty-space carving).
    rectification : RectifyResult or None
        ``F``, homographies and matched points when the views were rectified.
    """

    images: Any
    upsample: int
    thresholds: tuple | None
    disparity_left: Any
    disparity_right: Any
    pairs: list
    matched_views: Any
    amplitude: Any
    rectification: Any = None

    @property
    def modes(self) -> list:
        """Pre-processing of each map pair, e.g. ``["none", "gradient"]``."""
        return [p.mode for p in self.pairs]

    def valid_fractions(self) -> tuple[float, float]:
        """Fraction of valid pixels of the merged left and right maps (host floats)."""
        return tuple(float(to_host((d == d).mean())) for d in (self.disparity_left, self.disparity_right))

    def to_host(self) -> StereoResult:
        return _host_copy(self)


@dataclass
class CloudResult:
    """Depth and the 3D point cloud of the consistent maps, with the outlier mask.

    Attributes
    ----------
    depth : (uH, uW) float32
        Depth of the left map [nm], NaN where invalid.
    points_nm : (M, 3) float64
        Cloud ``x, y, z`` before outlier removal [nm] (both maps, every map pair).
    confidence : (M,) float32
    view_index : (M,) int8
        Which view's map a point came from (0 left, 1 right).
    pixel : (M, 2) int64
        Its row and column on the matching grid of that view.
    kept : (M,) bool
        Not an outlier (:func:`~xstereo_gpu.cloud.outliers.statistical_outlier_filter`).
    """

    depth: Any
    points_nm: Any
    confidence: Any
    view_index: Any
    pixel: Any
    kept: Any

    @property
    def cleaned_nm(self):
        """The cleaned cloud, (M', 3) float64 [nm]."""
        return self.points_nm[self.kept]

    def to_host(self) -> CloudResult:
        return _host_copy(self)


@dataclass
class Reconstruction:
    """What the post-processing made of the cleaned cloud (paper, Methods), on the host.

    Attributes
    ----------
    planes : list of dict
        Fitted planes: ``normal``, ``offset_nm``, ``rms_nm``, ``tilt_deg``, ``inliers``.
    volume : (Z, Y, X) bool or None
        Occupancy after interpolation and carving.
    voxel_nm, origin_nm : (3,) float
        ``(dz, dy, dx)`` and the centre of voxel (0, 0, 0) ``(z0, y0, x0)``  [nm].
    vertices_nm : (V, 3) float64 or None
        Surface mesh vertices ``x, y, z``  [nm] (marching cubes).
    faces : (F, 3) int64 or None
    """

    planes: list = field(default_factory=list)
    volume: np.ndarray | None = None
    voxel_nm: tuple = ()
    origin_nm: tuple = ()
    vertices_nm: np.ndarray | None = None
    faces: np.ndarray | None = None


@dataclass
class Results:
    """Everything one run produced, on the host: the stages' results and the run's records.

    Attributes
    ----------
    geometry : StereoGeometry
    options : PipelineOptions
    device : dict
        :func:`~xstereo_gpu.backend.device_info` of the device that ran it.
    views : ViewsResult
    stereo : StereoResult
    cloud : CloudResult
    reconstruction : Reconstruction or None
    quality : dict or None
        Phasing quality per view (PRTF, 10-90 % edge resolution, error against the truth).
    accuracy : dict or None
        Score against the ground truth, when the shot carries one.
    hdr : dict or None
        Exposure times and measured intensity ratios of an HDR series.
    timings : dict
        Seconds per stage (device work synchronised).
    memory : dict or None
        The memory plan (:meth:`Pipeline.plan_memory`) and, on NumPy, the measured peak RSS.
    source, sample : str
        Where the shot came from; the sample's name.
    """

    geometry: StereoGeometry
    options: PipelineOptions
    device: dict
    views: ViewsResult
    stereo: StereoResult
    cloud: CloudResult
    reconstruction: Reconstruction | None = None
    quality: dict | None = None
    accuracy: dict | None = None
    hdr: dict | None = None
    timings: dict = field(default_factory=dict)
    memory: dict | None = None
    source: str = ""
    sample: str = ""
