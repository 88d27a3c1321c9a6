"""The orchestrator: one shot in, views, disparity maps, depth and a cleaned point cloud out.

Data stays on the compute device (CuPy when present) from the upload of the frame to the end of the
cloud stage; only the final results are copied to the host. Two entry points (STYLE practice 13):

* :func:`run_pipeline` — functional: ``results = run_pipeline(shot, options)``;
* :class:`Pipeline` — a context manager that keeps its device and options, runs the stages one by one
  (``prepare``, ``phase``, ``align``, ``stereo``, ``cloud``) or all at once with :meth:`Pipeline.run`,
  and frees the device memory pool on exit.

Stage functions for other front ends live in their packages (``phasing``; ``stereo.stage.match_views``
for the stereo and cloud stages; ``cloud.reconstruct.reconstruct`` for planes, volume and mesh); this
module only chains them and times them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backend import device_info, select_backend, to_host
from .cloud.reconstruct import Reconstruction, reconstruct
from .config import PipelineOptions
from .geometry import StereoGeometry, real_space_pixel
from .phasing.align import align_views
from .phasing.prepare import split_patterns
from .phasing.runs import phase_retrieval
from .phasing.support import shrink_wrap
from .progress import Progress
from .shot import Shot
from .stereo.stage import StageTimer as _Timer
from .stereo.stage import match_views, view_images

__all__ = ["Pipeline", "Results", "Reconstruction", "run_pipeline", "match_views", "view_images", "reconstruct"]


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
    quality : dict or None
        Phasing quality per view (PRTF, 10-90 % edge resolution, error against the truth).
    hdr : dict or None
        Exposure times and measured intensity ratios of an HDR series.
    matched_views : (2, N, N) float32
        The images that were matched (amplitude or phase, after rectification); the cloud's
        ``x_k, y`` coordinates refer to them.
    rectification : dict or None
        ``F``, ``H_left``, ``H_right``, matched points and residual when the views were rectified.
    maps : list of str
        Pre-processing modes of the disparity map pairs whose points were merged.
    reconstruction : Reconstruction or None
        Fitted planes, volume and surface mesh (see :class:`Reconstruction`).
    memory : dict or None
        The memory plan (:meth:`Pipeline.plan_memory`: budget, estimated peak per stage, batches
        and strips) and, on NumPy, the process's measured peak RSS; written to ``summary.json``.
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
    quality: dict | None = None
    hdr: dict | None = None
    matched_views: np.ndarray | None = None
    rectification: dict | None = None
    maps: list = field(default_factory=list)
    reconstruction: Any = None
    memory: dict | None = None

    @property
    def cloud_nm(self) -> np.ndarray:
        """The cleaned cloud, (M', 3) float64 [nm]."""
        return self.points_nm[self.kept]


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
    max_memory : int, optional
        Bytes a stage may allocate (``--max-memory``); default: most of the free memory of the
        device (:func:`~xstereo_gpu.memory.memory_budget`). Stages that do not fit are split
        (phasing runs in batches, SGM in strips); a request that cannot fit even so is refused
        with :class:`~xstereo_gpu.errors.InputError` before any compute (:meth:`plan_memory`).

    Examples
    --------
    >>> from xstereo_gpu import Pipeline, simulate_shot
    >>> shot = simulate_shot()
    >>> with Pipeline() as pipe:                      # doctest: +SKIP
    ...     results = pipe.run(shot)
    ...     pipe.export(results, "out", shot=shot)
    """

    def __init__(self, options: PipelineOptions | None = None, *, backend: str | None = None,
                 progress: Progress | None = None, max_memory: int | None = None):
        self.xp = select_backend(backend)
        if options is None:
            options = PipelineOptions.for_profile("cpu" if self.xp is np else "paper")
        self.options = options
        self.progress = progress or Progress(enabled=False)
        self.timings: dict[str, float] = {}
        self.hdr: dict | None = None
        self.max_memory = None if max_memory is None else int(max_memory)
        self.memory: dict | None = None

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

    def plan_memory(self, n: int, *, phasing: bool = True) -> dict:
        """Plan the memory of the stages for ``n x n`` views, before anything is allocated.

        The budget is ``max_memory`` or most of the free memory now; phasing gets a batch size of
        runs (:func:`~xstereo_gpu.memory.plan_phasing`), matching on the ``n * upsample`` grid a
        whole-volume or strip plan (:func:`~xstereo_gpu.memory.plan_matching`). Raises
        :class:`~xstereo_gpu.errors.InputError` when a stage cannot fit. The plan is kept in
        :attr:`memory` (and in the results' ``memory``).
        """
        from .memory import memory_budget, plan_matching, plan_phasing

        o = self.options
        budget = memory_budget(self.xp, self.max_memory)
        b, lim = budget["budget_bytes"], budget["limit_bytes"]
        plan: dict = {"budget_bytes": b, "limit_bytes": lim, "budget_source": budget["source"],
                      "available_bytes": budget["available_bytes"]}
        if phasing:
            plan["phasing"] = plan_phasing(2, o.phasing.runs, n, b, limit=lim).to_dict()
        u = int(n) * int(o.preprocess.upsample)
        plan["matching"] = plan_matching(u, u, o.match.dmax - o.match.dmin + 1, b, limit=lim,
                                         method=o.match.method, paths=o.match.sgm_paths,
                                         device=self.xp is not np).to_dict()
        self.memory = plan
        return plan

    def _batch(self) -> int | None:
        """Runs per batch of the plan (None without a plan)."""
        return None if self.memory is None or "phasing" not in self.memory else \
            int(self.memory["phasing"]["runs_per_batch"])

    # -- stages --------------------------------------------------------------------------------
    def prepare(self, shot: Shot):
        """Upload the frame and split it into the two patterns: (2, N, N) intensities and valid masks."""
        xp, say = self.xp, self.progress
        shot.validate()
        n = self.options.prepare.crop or shot.pattern_size
        with self._timer("prepare"):
            say.stage("prepare", f"splitting {shot.frame_shape} frame into two {n}x{n} patterns")
            frame = xp.asarray(np.asarray(shot.frame, dtype=np.float32))
            mask = xp.asarray(np.asarray(shot.mask, dtype=np.uint32))
            intensities, valid, hdr = split_patterns(
                frame, mask, np.asarray(shot.centres_px), n, overlap_ratio=self.options.prepare.overlap_ratio,
                exposure_times_s=shot.exposure_times_s, return_hdr=True)
            if hdr is not None:
                say.note(f"HDR merge of {shot.n_exposures} exposures {list(shot.exposure_times_s)} s: measured "
                         f"ratios {np.round(to_host(hdr.ratios), 3).tolist()}")
                self.hdr = {"exposure_times_s": [float(t) for t in shot.exposure_times_s],
                            "ratios": to_host(hdr.ratios).tolist(), "time_ratios": np.asarray(hdr.time_ratios).tolist()}
        return intensities, valid

    def phase(self, intensities, valid):
        """Phase both views: R runs each on one batched array; returns the PhasingResult."""
        o = self.options.phasing
        with self._timer("phase"):
            self.progress.stage("phase", f"{o.algorithm.upper()}, {o.runs} runs x ({o.iterations} + {o.final_er} ER) "
                                         f"iterations, {intensities.shape[0]} views on {self._backend_name()}")
            result = phase_retrieval(intensities, valid, o, progress=self.progress.counter, max_memory=self.max_memory,
                                     runs_per_batch=self._batch())
            mem = result.history.get("memory", {})
            if mem.get("batches", 1) > 1:
                self.progress.note(f"runs in {mem['batches']} batches of {mem['runs_per_batch']} (memory budget "
                                   f"{mem['budget_bytes'] / 2**30:.2f} GiB)")
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

    def quality(self, views, intensities, valid, geometry: StereoGeometry, truth=None) -> dict:
        """Phasing quality per view: PRTF and its 1/e resolution (when the measured ``intensities`` are
        given), 10-90 % edge resolution, and the error against the true exit wave when ``truth`` is
        given. Host scalars and short curves."""
        from .phasing.quality import edge_resolution, prtf, prtf_resolution, view_error

        with self._timer("quality"):
            self.progress.stage("quality", ("PRTF, " if intensities is not None else "")
                                + "10-90 % edge resolution, error against the truth")
            pix = geometry.pixel_size_m
            if intensities is not None:
                q, curves = prtf(views, intensities, valid, pixel_m=pix)
                q, curves = to_host(q), to_host(curves)
            out: dict = {}
            for k, name in enumerate(("left", "right")):
                edges = edge_resolution(views[k], pixel_m=pix)
                entry = {}
                if intensities is not None:
                    entry.update(prtf_q_per_nm=(q * 1e-9).round(8).tolist(),
                                 prtf=np.round(curves[k].astype(float), 5).tolist(),
                                 prtf_resolution_nm=float(prtf_resolution(q, curves[k])) * 1e9)
                entry.update(
                    edge_resolution_nm=None if not np.isfinite(edges["median_m"]) else edges["median_m"] * 1e9,
                    edge_resolution_iqr_nm=None if not np.isfinite(edges["iqr_m"]) else edges["iqr_m"] * 1e9,
                    edges_used=int(edges["n_edges"]))
                if truth is not None and tuple(truth.views.shape[1:]) == tuple(views.shape[1:]):
                    err = view_error(to_host(views[k]), np.asarray(truth.phasable_views[k]))
                    entry["view_error"] = float(err["error"])
                out[name] = entry
            er = [out[v]["edge_resolution_nm"] for v in ("left", "right")]
            if all(e is not None for e in er):
                # paper, Methods: the XY resolution of the views (10-90 %) and its depth by eq. (2)
                rep = geometry.report(max(er) * 1e-9)
                out["resolution_nm"] = rep.get("resolution_nm")
        return out

    def run(self, shot: Shot) -> Results:
        """All stages on one shot; returns host results (scored when the shot carries ground truth)."""
        t0 = time.perf_counter()
        shot.validate()  # the pattern size against the frame, before the memory plan
        geometry = self.geometry(shot)
        self.plan_memory(int(self.options.prepare.crop or shot.pattern_size))
        intensities, valid = self.prepare(shot)
        phased = self.phase(intensities, valid)
        same_grid = self.options.prepare.crop in (None, shot.pattern_size)
        truth = shot.truth if same_grid else None
        quality = self.quality(phased.views, intensities, valid, geometry, truth)
        views, supports = self.align(phased.views)
        best_eps = to_host(phased.best_eps)
        history = {k: to_host(v) for k, v in dict(phased.history).items()}
        del phased, intensities, valid  # the runs' best iterates (V, R, N, N) are not needed any more
        return self._after_views(
            t0, views, geometry, truth=truth, sample=shot.sample, source=shot.source, quality=quality,
            supports=to_host(supports), best_eps=best_eps, history=history)

    def run_views(self, views, geometry: StereoGeometry, *, truth=None, sample: str = "",
                  source: str = "") -> Results:
        """The stages after phasing on two views given as they are (the paper's pyramid: its views were
        provided by another reconstruction, already in one frame).

        Parameters
        ----------
        views : (2, N, N) complex64 or float32
            Left and right views in the same frame and orientation.
        geometry : StereoGeometry
            Their pixel and beam angles.
        truth : GroundTruth, optional
            Scores the result (and the views) when given.
        """
        t0 = time.perf_counter()
        self.plan_memory(int(np.shape(views)[-1]), phasing=False)
        dev = self.xp.asarray(np.asarray(views))
        quality = self.quality(dev, None, None, geometry, truth)
        return self._after_views(t0, dev, geometry, truth=truth, sample=sample, source=source, quality=quality,
                                 supports=np.zeros(dev.shape, dtype=bool), best_eps=np.zeros((2, 0), np.float32))

    def _after_views(self, t0: float, views, geometry: StereoGeometry, *, truth, sample: str, source: str,
                     quality: dict, supports, best_eps, history: dict | None = None) -> Results:
        """Stereo, cloud, reconstruction, download and score: the stages shared by :meth:`run` and
        :meth:`run_views` (``views`` on the device, the phasing outputs already on the host)."""
        st = match_views(views, geometry, self.options, timings=self.timings, progress=self.progress,
                         max_memory=self.max_memory)
        pts = st["points"]
        with self._timer("reconstruct"):
            rec = self.options.reconstruct
            if rec.planes or rec.interpolate:
                self.progress.stage("reconstruct", "planes" + (", natural-neighbour interpolation, carving, mesh"
                                                               if rec.interpolate else ""))
            recon = reconstruct(pts.points_nm[st["kept"]], geometry, self.options, view_shape=tuple(views.shape[1:]),
                                empty=st["empty"], upsample=int(st["upsample"]), progress=self.progress)
        with self._timer("download"):
            rect = st["rectification"]
            res = Results(
                geometry=geometry, options=self.options, device=device_info(self.xp),
                views=to_host(views).astype(np.complex64), supports=supports, best_eps=best_eps,
                images=to_host(st["images"]), upsample=int(st["upsample"]), thresholds=st["thresholds"],
                disparity_left=to_host(st["disparity_left"]), disparity_right=to_host(st["disparity_right"]),
                depth=to_host(st["depth"]), points_nm=to_host(pts.points_nm), confidence=to_host(pts.confidence),
                view=to_host(pts.view), kept=to_host(st["kept"]), phasing_history=history or {},
                source=source, sample=sample, quality=quality, hdr=self.hdr,
                matched_views=to_host(st["matched_views"]), maps=list(st["maps"]), reconstruction=recon,
                rectification=None if rect is None else {
                    "F": rect.F.tolist(), "H_left": rect.H_left.tolist(), "H_right": rect.H_right.tolist(),
                    "matches": int(len(rect.points_left)),
                    "residual_rms_px": float(np.sqrt(np.mean(np.square(rect.residual)))) if len(rect.residual) else None},
            )
        if truth is not None:
            from .accuracy import score

            with self._timer("score"):
                self.progress.stage("score", "comparing the cloud with the simulator's ground truth")
                res.accuracy = score(res.cloud_nm, res.views, truth, geometry)  # H_left = identity
        self.timings["total"] = time.perf_counter() - t0
        res.timings = dict(self.timings)
        res.memory = self._memory_report()
        return res

    def _memory_report(self) -> dict | None:
        """The plan, with the process's measured peak RSS on NumPy (``ru_maxrss``, Linux: KiB)."""
        if self.memory is None:
            return None
        rep = dict(self.memory)
        if self.xp is np:
            try:
                import resource

                rep["measured_peak_rss_bytes"] = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
            except (ImportError, OSError):  # pragma: no cover - not POSIX
                pass
        return rep

    def export(self, results: Results, path, *, shot: Shot | None = None, overwrite: bool = False,
               figures: bool = True, extra_summary: dict | None = None, inputs=()) -> dict:
        """Write the output directory of DESIGN section 6 atomically; returns the summary dict.

        ``inputs`` (files the run read) must not lie in ``path``, which is replaced as a whole.
        """
        from .io import output_directory

        with output_directory(path, overwrite=overwrite, inputs=inputs) as tmp:
            return self.write(results, tmp, shot=shot, figures=figures, extra_summary=extra_summary, label=path)

    def write(self, results: Results, folder, *, shot: Shot | None = None, figures: bool = True,
              extra_summary: dict | None = None, label=None) -> dict:
        """Write the run's files into the existing empty ``folder`` (a staged output directory)."""
        from .report import write_run_files

        with self._timer("export"):
            self.progress.stage("export", f"writing {label or folder}")
            if results.memory is not None:
                extra_summary = {"memory": results.memory, **(extra_summary or {})}
            return write_run_files(results, folder, shot=shot, figures=figures, extra_summary=extra_summary)

    def _backend_name(self) -> str:
        return "CuPy" if self.xp is not np else "NumPy"


def run_pipeline(shot: Shot, options: PipelineOptions | None = None, *, backend: str | None = None,
                 progress: Progress | None = None, max_memory: int | None = None) -> Results:
    """Functional entry point: run every stage on ``shot`` and return host :class:`Results`."""
    with Pipeline(options, backend=backend, progress=progress, max_memory=max_memory) as pipe:
        return pipe.run(shot)

