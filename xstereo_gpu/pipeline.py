"""The orchestrator: one shot in, views, disparity maps, depth and a cleaned point cloud out.

Data stays on the compute device (CuPy when present) from the upload of the frame to the end of the
cloud stage; only the final results are copied to the host. Two entry points (STYLE practice 13):

* :func:`run_pipeline` — functional: ``results = run_pipeline(shot, options)``;
* :class:`Pipeline` — a context manager that keeps its device and options and runs the stages one by
  one or all at once with :meth:`Pipeline.run`, and frees the device memory pool on exit::

      prepare(shot)                 -> intensities, valid        (2, N, N) on the device
      phase(intensities, valid)     -> PhasingResult
      align(phased, geometry)       -> ViewsResult
      stereo(views)                 -> StereoResult
      cloud(stereo, geometry)       -> CloudResult
      reconstruct(cloud, stereo, geometry) -> Reconstruction
      results(...)                  -> Results (host), scored against a ground truth when given

Each method only times and reports a stage function of its package (``phasing``, ``stereo.stage``,
``cloud.stage``, ``cloud.reconstruct``), so one stage can be swapped, batched or run on a worker alone;
the result types are in :mod:`xstereo_gpu.results`.
"""

from __future__ import annotations

import resource
import time

import numpy as np

from .accuracy import score
from .backend import device_info, select_backend, to_host
from .cloud.reconstruct import empty_space, reconstruct
from .cloud.stage import build_cloud
from .config import PipelineOptions
from .errors import warn
from .geometry import StereoGeometry, real_space_pixel
from .io.staging import output_directory
from .memory import MAX_SHOTS_PER_LAUNCH, memory_budget, plan_matching, plan_phasing, plan_shots
from .outputs import write_run_files
from .phasing.align import AMBIGUOUS_PROFILE_MARGIN, AMBIGUOUS_TWIN_MARGIN, align_views
from .phasing.prepare import split_patterns
from .phasing.quality import edge_resolution, prtf, prtf_resolution, view_error
from .phasing.runs import PhasingResult, phase_retrieval
from .phasing.support import shrink_wrap
from .progress import Progress
from .results import CloudResult, Reconstruction, Results, StereoResult, ViewsResult
from .shot import Shot
from .stereo.stage import match_views
from .timing import StageTimer

__all__ = ["Pipeline", "Results", "run_pipeline"]


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

    def __init__(
        self,
        options: PipelineOptions | None = None,
        *,
        backend: str | None = None,
        progress: Progress | None = None,
        max_memory: int | None = None,
    ):
        self.xp = select_backend(backend)
        if options is None:
            options = PipelineOptions.for_profile("cpu" if self.xp is np else "paper")
        self.options = options
        self.progress = progress or Progress(enabled=False)
        self.timings: dict[str, float] = {}
        self.hdr: dict | None = None
        self.max_memory = None if max_memory is None else int(max_memory)
        self.memory: dict | None = None

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        if self.xp is not np:
            self.xp.get_default_memory_pool().free_all_blocks()

    def _timer(self, name: str) -> StageTimer:
        return StageTimer(self.xp, self.timings, name)

    def geometry(self, shot: Shot) -> StereoGeometry:
        """Geometry of the views phased from this shot with these options."""
        n = self.options.prepare.crop or shot.pattern_size
        return StereoGeometry(
            real_space_pixel(shot.wavelength_m, shot.distance_m, shot.detector_pixel_m, n),
            tuple(shot.angles_deg),
        )

    def plan_memory(self, n: int, *, phasing: bool = True) -> dict:
        """Plan the memory of the stages for ``n x n`` views, before anything is allocated.

        The budget is ``max_memory`` or most of the free memory now; phasing gets a batch size of
        runs (:func:`~xstereo_gpu.memory.plan_phasing`), matching on the ``n * upsample`` grid a
        whole-volume or strip plan (:func:`~xstereo_gpu.memory.plan_matching`). Raises
        :class:`~xstereo_gpu.errors.InputError` when a stage cannot fit. The plan is kept in
        :attr:`memory` (and in the results' ``memory``).
        """
        o = self.options
        budget = memory_budget(self.xp, self.max_memory)
        b, lim = budget["budget_bytes"], budget["limit_bytes"]
        plan: dict = {
            "budget_bytes": b,
            "limit_bytes": lim,
            "budget_source": budget["source"],
            "available_bytes": budget["available_bytes"],
        }
        if phasing:
            plan["phasing"] = plan_phasing(2, o.phasing.runs, n, b, limit=lim).to_dict()
        u = int(n) * int(o.preprocess.upsample)
        plan["matching"] = plan_matching(
            u,
            u,
            o.match.dmax - o.match.dmin + 1,
            b,
            limit=lim,
            method=o.match.method,
            paths=o.match.sgm_paths,
            device=self.xp is not np,
            cost=o.match.cost,
        ).to_dict()
        self.memory = plan
        return plan

    def shots_per_launch(self, n: int, *, cap: int | None = None) -> int:
        """Shots of ``n x n`` patterns whose phasing fits one stack in the memory budget now.

        :func:`~xstereo_gpu.memory.plan_shots` with the budget of :meth:`plan_memory` (``max_memory``
        or most of the free device memory, 2 GiB aims on NumPy), at most ``cap`` (default
        :data:`~xstereo_gpu.memory.MAX_SHOTS_PER_LAUNCH`).
        """
        budget = memory_budget(self.xp, self.max_memory)["budget_bytes"]
        cap = MAX_SHOTS_PER_LAUNCH if cap is None else max(1, int(cap))
        return plan_shots(2, self.options.phasing.runs, int(n), budget, cap=cap)

    def _batch(self) -> int | None:
        """Runs per batch of the plan (None without a plan)."""
        return (
            None
            if self.memory is None or "phasing" not in self.memory
            else int(self.memory["phasing"]["runs_per_batch"])
        )

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
                frame,
                mask,
                np.asarray(shot.centres_px),
                n,
                overlap_ratio=self.options.prepare.overlap_ratio,
                exposure_times_s=shot.exposure_times_s,
                return_hdr=True,
            )
            if hdr is not None:
                say.note(
                    f"HDR merge of {shot.n_exposures} exposures {list(shot.exposure_times_s)} s: measured "
                    f"ratios {np.round(to_host(hdr.ratios), 3).tolist()}"
                )
                self.hdr = {
                    "exposure_times_s": [float(t) for t in shot.exposure_times_s],
                    "ratios": to_host(hdr.ratios).tolist(),
                    "time_ratios": np.asarray(hdr.time_ratios).tolist(),
                }
        return intensities, valid

    def phase(self, intensities, valid, *, shots: int = 1, support=None):
        """Phase the views: R runs each on one batched array; returns the PhasingResult.

        ``support``: a (V, N, N) bool initial support (e.g. :func:`~xstereo_gpu.io.read_support`
        of a file) instead of the one the options choose; shrink-wrap then updates it.

        ``shots > 1``: the ``(2 * shots, N, N)`` views of that many shots stacked, phased in one set
        of launches, each shot with the random starts of its own phasing
        (:func:`~xstereo_gpu.phasing.runs.split_phasing` gives the shots' results); the runs are
        then batched by their own plan, not by :meth:`plan_memory`'s one-shot plan.
        """
        o = self.options.phasing
        with self._timer("phase"):
            self.progress.stage(
                "phase",
                f"{o.algorithm.upper()}, {o.runs} runs x ({o.iterations} + {o.final_er} ER) "
                f"iterations, {intensities.shape[0]} views"
                + (f" of {shots} shots" if shots > 1 else "")
                + f" on {self._backend_name()}",
            )
            result = phase_retrieval(
                intensities,
                valid,
                o,
                support=support,
                progress=self.progress.counter,
                max_memory=self.max_memory,
                runs_per_batch=self._batch() if shots == 1 else None,
                view_groups=shots,
            )
            mem = result.history.get("memory", {})
            if mem.get("batches", 1) > 1:
                self.progress.note(
                    f"runs in {mem['batches']} batches of {mem['runs_per_batch']} (memory budget "
                    f"{mem['budget_bytes'] / 2**30:.2f} GiB)"
                )
        return result

    def align(self, phased: PhasingResult, geometry: StereoGeometry | None = None) -> ViewsResult:
        """Put both views in the same orientation and frame (twin choice, subpixel registration).

        Returns the aligned views with their supports (a shrink-wrap of the aligned views, with the
        last sigma and the threshold of the phasing options), on the device.
        """
        o = self.options.phasing
        with self._timer("align"):
            self.progress.stage(
                "align", "twin choice and subpixel registration of the right view onto the left"
            )
            aligned, info = align_views(phased.views, upsample=o.register_upsample)
            supports = shrink_wrap(aligned, sigma=o.shrinkwrap_sigma[1], threshold=o.shrinkwrap_threshold)
        choice = info["twin_choice"]
        if choice["ambiguous"]:
            warn(
                "align: twin of the right view",
                f"an ambiguous choice (scores {choice['scores'][0]:.4f} as it is, "
                f"{choice['scores'][1]:.4f} as its twin: margin {choice['margin']:.4f}, row-profile "
                f"margin {choice['profile_margin']:.4f}; "
                "the two readings give different depths)",
                f"a margin of at least {AMBIGUOUS_TWIN_MARGIN} and a row-profile margin of at least "
                f"{AMBIGUOUS_PROFILE_MARGIN}; the depths may come out flattened (summary.json "
                "align.twin_choice): features laid out centrosymmetrically in (x, y) cannot be read "
                "unambiguously, and poorly phased views blur the evidence",
            )
        return ViewsResult(
            views=aligned,
            supports=supports,
            best_eps=phased.best_eps,
            geometry=geometry,
            history={k: to_host(v) for k, v in dict(phased.history).items()},
            alignment={
                "left_shift_px": [round(float(v), 4) for v in info["left_shift"]],
                "right_shift_px": [round(float(v), 4) for v in info["right_shift"]],
                "right_twin": bool(info["right_twin"]),
                "peak": round(float(info["peak"]), 5),
                "twin_choice": dict(choice),
            },
        )

    def quality(self, views, intensities, valid, geometry: StereoGeometry, truth=None) -> dict:
        """Phasing quality per view: PRTF and its 1/e resolution (when the measured ``intensities`` are
        given), 10-90 % edge resolution, and the error against the true exit wave when ``truth`` is
        given. Host scalars and short curves."""
        with self._timer("quality"):
            self.progress.stage(
                "quality",
                ("PRTF, " if intensities is not None else "")
                + "10-90 % edge resolution, error against the truth",
            )
            pix = geometry.pixel_size_m
            if intensities is not None:
                q, curves = prtf(views, intensities, valid, pixel_m=pix)
                q, curves = to_host(q), to_host(curves)
            out: dict = {}
            for k, name in enumerate(("left", "right")):
                edges = edge_resolution(views[k], pixel_m=pix)
                entry = {}
                if intensities is not None:
                    entry.update(
                        prtf_q_per_nm=(q * 1e-9).round(8).tolist(),
                        prtf=np.round(curves[k].astype(float), 5).tolist(),
                        prtf_resolution_nm=float(prtf_resolution(q, curves[k])) * 1e9,
                    )
                entry.update(
                    edge_resolution_nm=None
                    if not np.isfinite(edges["median_m"])
                    else edges["median_m"] * 1e9,
                    edge_resolution_iqr_nm=None if not np.isfinite(edges["iqr_m"]) else edges["iqr_m"] * 1e9,
                    edges_used=int(edges["n_edges"]),
                )
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

    def stereo(self, views) -> StereoResult:
        """Consistent disparity maps of the two views (:func:`~xstereo_gpu.stereo.stage.match_views`).

        ``views``: a :class:`ViewsResult` or the (2, N, N) views themselves (put on this device).
        """
        o = self.options
        views = views.views if isinstance(views, ViewsResult) else views
        return match_views(
            self.xp.asarray(views),
            o.stereo,
            preprocess_options=o.preprocess,
            match_options=o.match,
            timings=self.timings,
            progress=self.progress,
            max_memory=self.max_memory,
        )

    def cloud(self, stereo: StereoResult, geometry: StereoGeometry) -> CloudResult:
        """Depth, the point cloud and its outlier mask (:func:`~xstereo_gpu.cloud.stage.build_cloud`)."""
        return build_cloud(stereo, geometry, self.options.cloud, timings=self.timings, progress=self.progress)

    def reconstruct(
        self, cloud: CloudResult, stereo: StereoResult, geometry: StereoGeometry
    ) -> Reconstruction:
        """Planes, natural-neighbour interpolation, carving and mesh of the cleaned cloud (host result)."""
        rec = self.options.reconstruct
        with self._timer("reconstruct"):
            if rec.planes or rec.interpolate:
                self.progress.stage(
                    "reconstruct",
                    "planes"
                    + (", natural-neighbour interpolation, carving, mesh" if rec.interpolate else ""),
                )
            return reconstruct(
                cloud.cleaned_nm,
                geometry,
                rec,
                view_shape=tuple(stereo.matched_views.shape[1:]),
                empty=empty_space(stereo) if rec.interpolate else None,
                upsample=stereo.upsample,
                progress=self.progress,
            )

    def truth(self, shot: Shot):
        """The shot's ground truth when the views are phased on its grid (no ``crop``), else None."""
        return shot.truth if self.options.prepare.crop in (None, shot.pattern_size) else None

    def setup(self, shot: Shot) -> tuple[StereoGeometry, object, object]:
        """Check the shot, plan the memory and :meth:`prepare`: ``(geometry, intensities, valid)``."""
        shot.validate()  # the pattern size against the frame, before the memory plan
        geometry = self.geometry(shot)
        self.plan_memory(int(self.options.prepare.crop or shot.pattern_size))
        intensities, valid = self.prepare(shot)
        return geometry, intensities, valid

    def run(self, shot: Shot) -> Results:
        """All stages on one shot; returns host results (scored when the shot carries ground truth).

        :attr:`timings` and :attr:`hdr` start afresh for each shot.
        """
        t0 = time.perf_counter()
        self.timings, self.hdr = {}, None
        geometry, intensities, valid = self.setup(shot)
        phased = self.phase(intensities, valid)
        truth = self.truth(shot)
        quality = self.quality(phased.views, intensities, valid, geometry, truth)
        views = self.align(phased, geometry)
        del phased, intensities, valid  # the runs' best iterates (V, R, N, N) are not needed any more
        return self.finish(t0, views, truth=truth, sample=shot.sample, source=shot.source, quality=quality)

    def run_views(
        self, views, geometry: StereoGeometry, *, truth=None, sample: str = "", source: str = ""
    ) -> Results:
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
        self.timings, self.hdr = {}, None
        self.plan_memory(int(np.shape(views)[-1]), phasing=False)
        dev = self.xp.asarray(np.asarray(views))
        quality = self.quality(dev, None, None, geometry, truth)
        given = ViewsResult(
            views=dev,
            supports=self.xp.zeros(dev.shape, dtype=bool),
            best_eps=np.zeros((2, 0), np.float32),
            geometry=geometry,
        )
        return self.finish(t0, given, truth=truth, sample=sample, source=source, quality=quality)

    def finish(
        self, t0: float, views: ViewsResult, *, truth, sample: str, source: str, quality: dict
    ) -> Results:
        """Stereo, cloud, reconstruction, download and score: the stages after the views.

        ``t0`` is the :func:`time.perf_counter` the shot's ``timings["total"]`` counts from;
        ``quality`` the result of :meth:`quality`. Returns the host :class:`Results`.
        """
        geometry = views.geometry
        stereo = self.stereo(views)
        cloud = self.cloud(stereo, geometry)
        recon = self.reconstruct(cloud, stereo, geometry)
        with self._timer("download"):
            res = Results(
                geometry=geometry,
                options=self.options,
                device=device_info(self.xp),
                views=views.to_host(),
                stereo=stereo.to_host(),
                cloud=cloud.to_host(),
                reconstruction=recon,
                quality=quality,
                hdr=self.hdr,
                source=source,
                sample=sample,
            )
            res.views.views = res.views.views.astype(np.complex64)
        if truth is not None:
            with self._timer("score"):
                self.progress.stage("score", "comparing the cloud with the simulator's ground truth")
                res.accuracy = score(
                    res.cloud.cleaned_nm, res.views.views, truth, geometry
                )  # H_left = identity
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
            rep["measured_peak_rss_bytes"] = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
        return rep

    def export(
        self,
        results: Results,
        path,
        *,
        shot: Shot | None = None,
        overwrite: bool = False,
        figures: bool = True,
        extra_summary: dict | None = None,
        inputs=(),
    ) -> dict:
        """Write the output directory of DESIGN section 6 atomically; returns the summary dict.

        ``inputs`` (files the run read) must not lie in ``path``, which is replaced as a whole.
        """
        with output_directory(path, overwrite=overwrite, inputs=inputs) as tmp:
            return self.write(
                results, tmp, shot=shot, figures=figures, extra_summary=extra_summary, label=path
            )

    def write(
        self,
        results: Results,
        folder,
        *,
        shot: Shot | None = None,
        figures: bool = True,
        extra_summary: dict | None = None,
        label=None,
    ) -> dict:
        """Write the run's files into the existing empty ``folder`` (a staged output directory)."""
        with self._timer("export"):
            self.progress.stage("export", f"writing {label or folder}")
            if results.memory is not None:
                extra_summary = {"memory": results.memory, **(extra_summary or {})}
            return write_run_files(results, folder, shot=shot, figures=figures, extra_summary=extra_summary)

    def _backend_name(self) -> str:
        return "CuPy" if self.xp is not np else "NumPy"


def run_pipeline(
    shot: Shot,
    options: PipelineOptions | None = None,
    *,
    backend: str | None = None,
    progress: Progress | None = None,
    max_memory: int | None = None,
) -> Results:
    """Functional entry point: run every stage on ``shot`` and return host :class:`Results`."""
    with Pipeline(options, backend=backend, progress=progress, max_memory=max_memory) as pipe:
        return pipe.run(shot)
