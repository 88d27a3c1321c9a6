"""The orchestrator: one shot in, views, disparity maps, depth and a cleaned point cloud out.

Data stays on the compute device (CuPy when present) from the upload of the frame to the end of the
cloud stage; only the final results are copied to the host. Two entry points (STYLE practice 13):

* :func:`run_pipeline` — functional: ``results = run_pipeline(shot, options)``;
* :class:`Pipeline` — a context manager that keeps its device and options, runs the stages one by one
  (``prepare``, ``phase``, ``align``, ``stereo``, ``cloud``) or all at once with :meth:`Pipeline.run`,
  and frees the device memory pool on exit.

Stage functions for other front ends live in their packages (``phasing``, ``stereo``, ``cloud``); this
module only chains them and times them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backend import device_info, get_array_module, select_backend, synchronize, to_host
from .cloud.outliers import statistical_outlier_filter
from .config import PipelineOptions
from .errors import InputError
from .geometry import StereoGeometry, real_space_pixel
from .phasing.align import align_views
from .phasing.prepare import split_patterns
from .phasing.runs import phase_retrieval
from .phasing.support import shrink_wrap
from .progress import Progress
from .shot import Shot
from .stereo.depth import depth_map, lr_consistency, points_from_disparity
from .stereo.disparity import block_match
from .stereo.preprocess import preprocess

__all__ = ["Pipeline", "Results", "run_pipeline", "match_views"]


@dataclass
class Results:
    """Everything one run produced, on the host.

    Attributes
    ----------
    geometry : StereoGeometry
    views : (2, N, N) complex64
        Phased, averaged and aligned views (left, right).
    supports : (2, N, N) bool
    best_eps : (2, R) float
        eps_n of the best iterate of every run.
    images : (2, uN, uN) float32
        Pre-processed views on the matching grid (upsampled by ``upsample``).
    upsample : int
        Matching-grid pixels per view pixel.
    thresholds : (float, float) or None
        Binary thresholds used (left, right); None without binarisation.
    disparity_left, disparity_right : (uN, uN) float32
        Consistent disparity maps [matching-grid pixels], NaN where invalid.
    depth : (uN, uN) float32
        Depth of the left map  [nm], NaN where invalid.
    points_nm : (M, 3) float64
        Cloud before outlier removal  [nm]; ``kept`` selects the cleaned cloud.
    confidence : (M,) float32
    view : (M,) int8
    kept : (M,) bool
    timings : dict
        Seconds per stage (device work synchronised).
    accuracy : dict or None
        Score against the ground truth, when the shot carries one.
    """

    geometry: StereoGeometry
    options: PipelineOptions
    device: dict
    views: np.ndarray
    supports: np.ndarray
    best_eps: np.ndarray
    images: np.ndarray
    upsample: int
    thresholds: tuple | None
    disparity_left: np.ndarray
    disparity_right: np.ndarray
    depth: np.ndarray
    points_nm: np.ndarray
    confidence: np.ndarray
    view: np.ndarray
    kept: np.ndarray
    timings: dict = field(default_factory=dict)
    accuracy: dict | None = None
    phasing_history: dict = field(default_factory=dict)
    source: str = ""
    sample: str = ""

    @property
    def cloud_nm(self) -> np.ndarray:
        """The cleaned cloud, (M', 3) float64 [nm]."""
        return self.points_nm[self.kept]


class _Timer:
    def __init__(self, xp, timings: dict, name: str):
        self.xp, self.timings, self.name = xp, timings, name

    def __enter__(self):
        synchronize(self.xp)
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        synchronize(self.xp)
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.t0


def match_views(views, geometry: StereoGeometry | None, options: PipelineOptions, *, timings: dict | None = None,
                progress: Progress | None = None) -> dict[str, Any]:
    """The stereo and cloud stages on two views already in the same frame (left, right).

    Parameters
    ----------
    views : (2, N, N) real or complex, NumPy or CuPy
        Views; complex views are matched on their amplitude.
    geometry : StereoGeometry or None
        Without it only disparity maps are produced (no depth, no cloud).
    options : PipelineOptions
        Uses ``preprocess``, ``match`` and ``cloud``.

    Returns
    -------
    dict of device arrays
        ``images``, ``upsample``, ``disparity_left``, ``disparity_right`` (consistent maps), ``match``
        (raw :class:`~xstereo_gpu.stereo.disparity.MatchResult`) and, with a geometry, ``depth``,
        ``points`` (:class:`~xstereo_gpu.stereo.depth.CloudPoints`) and ``kept``.
    """
    xp = get_array_module(views)
    timings = {} if timings is None else timings
    say = progress or Progress(enabled=False)
    views = xp.asarray(views)
    if views.ndim != 3 or views.shape[0] != 2:
        raise InputError("views", f"shape {tuple(views.shape)}", "(2, H, W): left and right views")
    amp = xp.abs(views) if xp.iscomplexobj(views) else views.astype(xp.float32)
    out: dict[str, Any] = {}
    with _Timer(xp, timings, "stereo"):
        say.stage("stereo", f"pre-processing ({options.preprocess.mode}, x{options.preprocess.upsample})")
        m = options.match
        pre = preprocess(amp, options.preprocess, search_range=(m.dmin, m.dmax))
        say.note(f"block matching {m.block}x{m.block}, d in [{m.dmin}, {m.dmax}] on {tuple(pre.images.shape[1:])}")
        match = block_match(pre.images[0], pre.images[1], m)
        dl, dr = lr_consistency(match.disparity_left, match.disparity_right, tolerance=m.lr_tolerance)
        out.update(images=pre.images, upsample=pre.upsample, thresholds=pre.thresholds, match=match,
                   disparity_left=dl, disparity_right=dr)
    if geometry is None:
        return out
    with _Timer(xp, timings, "cloud"):
        say.stage("cloud", "depth by eq. (1), coordinate correction, outlier removal")
        n = tuple(views.shape[1:])
        pts = points_from_disparity(dl, dr, geometry, upsample=pre.upsample, view_shape=n,
                                    confidence_left=match.confidence_left, confidence_right=match.confidence_right)
        kept = statistical_outlier_filter(pts.points_nm, options.cloud)
        out.update(depth=depth_map(dl, geometry, upsample=pre.upsample), points=pts, kept=kept)
    return out


class Pipeline:
    """Runs the stages on one device, keeping the data there between stages.

    Parameters
    ----------
    options : PipelineOptions, optional
        Defaults to the ``"paper"`` profile on CuPy and the ``"cpu"`` profile on NumPy.
    backend : {"auto", "numpy", "cupy"}, optional
        See :func:`xstereo_gpu.backend.select_backend`.
    progress : Progress, optional
        Where stage banners and iteration counters go (silent by default).

    Examples
    --------
    >>> from xstereo_gpu import Pipeline, simulate_shot
    >>> shot = simulate_shot()
    >>> with Pipeline() as pipe:                      # doctest: +SKIP
    ...     results = pipe.run(shot)
    ...     pipe.export(results, "out", shot=shot)
    """

    def __init__(self, options: PipelineOptions | None = None, *, backend: str | None = None,
                 progress: Progress | None = None):
        self.xp = select_backend(backend)
        if options is None:
            options = PipelineOptions.for_profile("cpu" if self.xp is np else "paper")
        self.options = options
        self.progress = progress or Progress(enabled=False)
        self.timings: dict[str, float] = {}

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc) -> None:
        if self.xp is not np:
            self.xp.get_default_memory_pool().free_all_blocks()

    def _timer(self, name: str) -> _Timer:
        return _Timer(self.xp, self.timings, name)

    def geometry(self, shot: Shot) -> StereoGeometry:
        """Geometry of the views phased from this shot with these options."""
        n = self.options.prepare.crop or shot.pattern_size
        return StereoGeometry(real_space_pixel(shot.wavelength_m, shot.distance_m, shot.detector_pixel_m, n),
                              tuple(shot.angles_deg))

    # -- stages --------------------------------------------------------------------------------
    def prepare(self, shot: Shot):
        """Upload the frame and split it into the two patterns: (2, N, N) intensities and valid masks."""
        xp, say = self.xp, self.progress
        shot.validate()
        n = self.options.prepare.crop or shot.pattern_size
        with self._timer("prepare"):
            say.stage("prepare", f"splitting {shot.frame.shape} frame into two {n}x{n} patterns")
            frame = xp.asarray(np.asarray(shot.frame, dtype=np.float32))
            mask = xp.asarray(np.asarray(shot.mask, dtype=np.uint32))
            intensities, valid = split_patterns(frame, mask, np.asarray(shot.centres_px), n,
                                                overlap_ratio=self.options.prepare.overlap_ratio)
        return intensities, valid

    def phase(self, intensities, valid):
        """Phase both views: R runs each on one batched array; returns the PhasingResult."""
        o = self.options.phasing
        with self._timer("phase"):
            self.progress.stage("phase", f"{o.algorithm.upper()}, {o.runs} runs x ({o.iterations} + {o.final_er} ER) "
                                         f"iterations, {intensities.shape[0]} views on {self._backend_name()}")
            result = phase_retrieval(intensities, valid, o, progress=self.progress.counter)
        return result

    def align(self, views):
        """Put both views in the same orientation and frame (twin choice, subpixel registration).

        Returns the aligned (2, N, N) views and their supports (a shrink-wrap of the aligned views,
        with the last sigma and the threshold of the phasing options).
        """
        o = self.options.phasing
        with self._timer("align"):
            self.progress.stage("align", "twin choice and subpixel registration of the right view onto the left")
            aligned, _ = align_views(views, upsample=o.register_upsample)
            supports = shrink_wrap(aligned, sigma=o.shrinkwrap_sigma[1], threshold=o.shrinkwrap_threshold)
        return aligned, supports

    def run(self, shot: Shot) -> Results:
        """All stages on one shot; returns host results (scored when the shot carries ground truth)."""
        t0 = time.perf_counter()
        geometry = self.geometry(shot)
        intensities, valid = self.prepare(shot)
        phased = self.phase(intensities, valid)
        views, supports = self.align(phased.views)
        st = match_views(views, geometry, self.options, timings=self.timings, progress=self.progress)
        with self._timer("download"):
            pts = st["points"]
            res = Results(
                geometry=geometry, options=self.options, device=device_info(self.xp),
                views=to_host(views).astype(np.complex64), supports=to_host(supports),
                best_eps=to_host(phased.best_eps), images=to_host(st["images"]), upsample=int(st["upsample"]),
                thresholds=st["thresholds"],
                disparity_left=to_host(st["disparity_left"]), disparity_right=to_host(st["disparity_right"]),
                depth=to_host(st["depth"]), points_nm=to_host(pts.points_nm), confidence=to_host(pts.confidence),
                view=to_host(pts.view), kept=to_host(st["kept"]), phasing_history={k: to_host(v) for k, v in dict(phased.history).items()},
                source=shot.source, sample=shot.sample,
            )
        if shot.truth is not None and (self.options.prepare.crop in (None, shot.pattern_size)):
            from .accuracy import score

            with self._timer("score"):
                self.progress.stage("score", "comparing the cloud with the simulator's ground truth")
                res.accuracy = score(res.cloud_nm, res.views, shot.truth, geometry)
        self.timings["total"] = time.perf_counter() - t0
        res.timings = dict(self.timings)
        return res

    def export(self, results: Results, path, *, shot: Shot | None = None, overwrite: bool = False,
               figures: bool = True, extra_summary: dict | None = None) -> dict:
        """Write the output directory of DESIGN section 6 atomically; returns the summary dict."""
        from .report import write_run_directory

        with self._timer("export"):
            self.progress.stage("export", f"writing {path}")
            summary = write_run_directory(results, path, shot=shot, overwrite=overwrite, figures=figures,
                                          extra_summary=extra_summary)
        return summary

    def _backend_name(self) -> str:
        return "CuPy" if self.xp is not np else "NumPy"


def run_pipeline(shot: Shot, options: PipelineOptions | None = None, *, backend: str | None = None,
                 progress: Progress | None = None) -> Results:
    """Functional entry point: run every stage on ``shot`` and return host :class:`Results`."""
    with Pipeline(options, backend=backend, progress=progress) as pipe:
        return pipe.run(shot)

