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

    @property
    def cloud_nm(self) -> np.ndarray:
        """The cleaned cloud, (M', 3) float64 [nm]."""
        return self.points_nm[self.kept]


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


def _plane_dict(plane, inliers: int) -> dict:
    return {"normal": [float(v) for v in plane.normal], "offset_nm": float(plane.offset),
            "rms_nm": float(plane.rms), "tilt_deg": float(plane.tilt_deg), "inliers": int(inliers)}


def reconstruct(cloud_nm, geometry: StereoGeometry, options: PipelineOptions, *, view_shape, empty=None,
                upsample: int = 1, progress: Progress | None = None) -> Reconstruction:
    """Planes, natural-neighbour interpolation, carving and a surface mesh from a cleaned cloud.

    ``options.reconstruct.planes`` = 1: RANSAC plane of the membrane cut, a frame on it, one
    interpolated surface; 2: two RANSAC planes, each inlier cloud interpolated and carved on its own,
    the volumes joined (the phase cross); 0: no plane. Without ``interpolate`` only the planes are fitted.

    Parameters
    ----------
    cloud_nm : (M, 3) float64
        Cleaned cloud  [nm], NumPy or CuPy.
    empty : (2, uH, uW) bool, optional
        Pixels of the views that show transmission 1 (carving); ``upsample`` = their grid factor.
    """
    from .cloud.segment import segment_planes
    from .cloud.volume import VolumeGrid, cloud_to_volume, surface_mesh

    say = progress or Progress(enabled=False)
    rec = options.reconstruct
    xp = get_array_module(cloud_nm)
    out = Reconstruction()
    dz = geometry.voxel_depth_m * 1e9
    thr = rec.ransac_threshold_voxels * dz
    if len(cloud_nm) < 10:
        return out
    groups = [cloud_nm]
    planes = [None]
    if rec.planes:
        found, labels = segment_planes(cloud_nm, rec.planes, threshold_nm=thr, seed=rec.seed)
        out.planes = [_plane_dict(pl, int((labels == k).sum())) for k, pl in enumerate(found)]
        say.note("planes: " + "; ".join(f"tilt {d['tilt_deg']:.1f} deg, {d['inliers']} inliers" for d in out.planes))
        if rec.planes == 2 and len(found) == 2:
            groups = [cloud_nm[labels == k] for k in range(2)]
            planes = list(found)
        else:
            planes = [found[0]] if found else [None]
    if not rec.interpolate:
        return out
    kw = dict(view_shape=tuple(view_shape), upsample=upsample, distance_um=rec.carve_distance_um, dz_nm=dz,
              seed=rec.seed, ransac_threshold_nm=thr)
    if empty is not None:
        kw.update(empty_left=empty[0], empty_right=empty[1])
    vols = []
    for pts, plane in zip(groups, planes):
        if len(pts) < 10:
            continue
        vols.append(cloud_to_volume(pts, geometry, plane=plane, frame=rec.planes > 0, **kw))
    if not vols:
        return out
    z0 = min(v.grid.origin_nm[0] for v in vols)
    z1 = max(v.grid.origin_nm[0] + (v.grid.shape[0] - 1) * dz for v in vols)
    grid = VolumeGrid.for_views(geometry, tuple(view_shape), (z0, z1), dz_nm=dz)
    volume = xp.zeros(grid.shape, dtype=bool)
    for v in vols:
        k0 = int(round((v.grid.origin_nm[0] - grid.origin_nm[0]) / dz))
        volume[k0:k0 + v.grid.shape[0]] |= v.volume
    say.note(f"volume {grid.shape} voxels of {grid.voxel_nm[2]:.1f} x {grid.voxel_nm[1]:.1f} x {dz:.1f} nm, "
             f"{int(volume.sum())} occupied after carving")
    verts, faces = surface_mesh(volume, grid.voxel_nm, origin_nm=grid.origin_nm)
    out.volume = to_host(volume)
    out.voxel_nm, out.origin_nm = grid.voxel_nm, grid.origin_nm
    out.vertices_nm, out.faces = verts, faces
    return out


class _Timer:
    def __init__(self, xp, timings: dict, name: str):
        self.xp, self.timings, self.name = xp, timings, name

    def __enter__(self):
        synchronize(self.xp)
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        synchronize(self.xp)
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.t0


def view_images(views, image: str = "amplitude"):
    """The real images of the (2, N, N) views that are matched.

    ``"amplitude"``: ``|v|``. ``"phase"``: the phase of each view relative to its amplitude-weighted
    mean phase (so a global phase does not matter), set to 0 where the amplitude is below 10 % of the
    view's maximum (no signal, no phase). Real views are returned as float32 unchanged.
    """
    xp = get_array_module(views)
    if not xp.iscomplexobj(views):
        return views.astype(xp.float32)
    amp = xp.abs(views)
    if image == "amplitude":
        return amp.astype(xp.float32)
    ref = xp.sum(views * amp, axis=(-2, -1), keepdims=True)
    ph = xp.angle(views * xp.conj(ref / (xp.abs(ref) + 1e-30)))
    signal = amp >= 0.1 * amp.max(axis=(-2, -1), keepdims=True)
    return xp.where(signal, ph, 0).astype(xp.float32)


def _match(left, right, options):
    if options.method == "sgm":
        from .stereo.sgm import semi_global_match

        return semi_global_match(left, right, options)
    return block_match(left, right, options)


def _concat_points(parts):
    from .stereo.depth import CloudPoints

    if len(parts) == 1:
        return parts[0]
    xp = get_array_module(parts[0].points_nm)
    return CloudPoints(*(xp.concatenate([getattr(p, f) for p in parts], axis=0)
                         for f in ("points_nm", "confidence", "view", "pixel")))


def match_views(views, geometry: StereoGeometry | None, options: PipelineOptions, *, timings: dict | None = None,
                progress: Progress | None = None) -> dict[str, Any]:
    """The stereo and cloud stages on two views already in the same frame (left, right).

    Steps (``options.reconstruct`` selects the sample's recipe): the matched image of each view
    (amplitude or phase), optional rectification, optional background mask, pre-processing,
    disparity maps (``options.match.method``: block matching or SGM), left-right consistency; with
    ``gradient_maps`` a second pair of maps on Sobel-x views whose consistent points are merged
    with the first; then depth, the point cloud and outlier removal.

    Parameters
    ----------
    views : (2, N, N) real or complex, NumPy or CuPy
        Views; complex views are matched on their amplitude or phase.
    geometry : StereoGeometry or None
        Without it only disparity maps are produced (no depth, no cloud).
    options : PipelineOptions
        Uses ``preprocess``, ``match``, ``cloud`` and ``reconstruct``.

    Returns
    -------
    dict
        ``images`` (pre-processed views of the first maps), ``upsample``, ``thresholds``,
        ``disparity_left``, ``disparity_right`` (consistent maps, merged over the map pairs),
        ``match`` (raw :class:`~xstereo_gpu.stereo.disparity.MatchResult` of the first pair),
        ``matched_views`` (the images matched, after rectification), ``rectification``
        (:class:`~xstereo_gpu.stereo.rectify.RectifyResult` or None), ``empty`` ((2, uN, uN) bool:
        pixels showing transmission 1, or None), ``maps`` (names of the map pairs) and, with a
        geometry, ``depth``, ``points`` (:class:`~xstereo_gpu.stereo.depth.CloudPoints`) and ``kept``.
    """
    import dataclasses

    xp = get_array_module(views)
    timings = {} if timings is None else timings
    say = progress or Progress(enabled=False)
    views = xp.asarray(views)
    if views.ndim != 3 or views.shape[0] != 2:
        raise InputError("views", f"shape {tuple(views.shape)}", "(2, H, W): left and right views")
    rec = options.reconstruct
    m = options.match
    out: dict[str, Any] = {"rectification": None}
    with _Timer(xp, timings, "stereo"):
        images = view_images(views, rec.image)
        amplitude = xp.abs(views).astype(xp.float32) if xp.iscomplexobj(views) else images
        if rec.rectify:
            from .stereo.rectify import rectify, rectify_pair

            points = None
            if rec.rectify_points is not None:
                pp = np.asarray(rec.rectify_points, dtype=np.float64)
                points = (pp[:, :2], pp[:, 2:])
            rect = rectify_pair(images, points)
            images = rect.views
            amplitude = rectify(amplitude, rect.H_left, rect.H_right)
            out["rectification"] = rect
            say.note(f"rectified on {len(rect.points_left)} feature matches, residual vertical disparity "
                     f"{float(np.sqrt(np.mean(np.square(rect.residual)))):.2f} px rms")
        mask = None
        if rec.background_mask:
            from .stereo.preprocess import background_mask

            mask = background_mask(images)
            say.note(f"background mask keeps {float(mask.mean()):.1%} of the view pixels")
        modes = [options.preprocess.mode]
        if rec.gradient_maps and "gradient" not in modes:
            modes.append("gradient")
        pairs = []
        for mode in modes:
            popt = dataclasses.replace(options.preprocess, mode=mode)
            say.stage("stereo", f"pre-processing ({mode}, x{popt.upsample})")
            pre = preprocess(images, popt, search_range=(m.dmin, m.dmax), mask=mask)
            say.note(f"{'semi-global matching' if m.method == 'sgm' else 'block matching'} {m.block}x{m.block}, "
                     f"d in [{m.dmin}, {m.dmax}] on {tuple(pre.images.shape[1:])}")
            match = _match(pre.images[0], pre.images[1], m)
            dl, dr = lr_consistency(match.disparity_left, match.disparity_right, tolerance=m.lr_tolerance)
            if pre.mask is not None:
                dl = xp.where(pre.mask[0], dl, xp.nan).astype(xp.float32)
                dr = xp.where(pre.mask[1], dr, xp.nan).astype(xp.float32)
            pairs.append((mode, pre, match, dl, dr))
        mode0, pre, match, dl, dr = pairs[0]
        merged_l, merged_r = dl, dr
        for _, _, _, dl2, dr2 in pairs[1:]:
            merged_l = xp.where(xp.isfinite(merged_l), merged_l, dl2)
            merged_r = xp.where(xp.isfinite(merged_r), merged_r, dr2)
        empty = None
        if mode0 == "binary":
            empty = pre.images > 0.5  # white = transmission 1 (the paper's empty space)
        out.update(images=pre.images, upsample=pre.upsample, thresholds=pre.thresholds, match=match,
                   disparity_left=merged_l, disparity_right=merged_r, matched_views=images, amplitude=amplitude,
                   empty=empty, maps=[p[0] for p in pairs])
    if geometry is None:
        return out
    with _Timer(xp, timings, "cloud"):
        say.stage("cloud", "depth by eq. (1), coordinate correction, outlier removal")
        n = tuple(views.shape[1:])
        parts = [points_from_disparity(dl_, dr_, geometry, upsample=pre_.upsample, view_shape=n,
                                       confidence_left=mt.confidence_left, confidence_right=mt.confidence_right)
                 for _, pre_, mt, dl_, dr_ in pairs]
        if len(parts) > 1:
            say.note("merged points of the " + " and ".join(f"{p[0]} ({len(q)})" for p, q in zip(pairs, parts))
                     + " maps")
        pts = _concat_points(parts)
        kept = statistical_outlier_filter(pts.points_nm, options.cloud)
        out.update(depth=depth_map(merged_l, geometry, upsample=pre.upsample), points=pts, kept=kept)
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
        self.hdr: dict | None = None

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

    def quality(self, views, intensities, valid, geometry: StereoGeometry, truth=None) -> dict:
        """Phasing quality per view: PRTF and its 1/e resolution, 10-90 % edge resolution, and the error
        against the true exit wave when the shot carries one. Host scalars and short curves."""
        from .phasing.quality import edge_resolution, prtf, prtf_resolution, view_error

        with self._timer("quality"):
            self.progress.stage("quality", "PRTF, 10-90 % edge resolution, error against the truth")
            pix = geometry.pixel_size_m
            q, curves = prtf(views, intensities, valid, pixel_m=pix)
            q, curves = to_host(q), to_host(curves)
            out: dict = {}
            for k, name in enumerate(("left", "right")):
                res_m = float(prtf_resolution(q, curves[k]))
                edges = edge_resolution(views[k], pixel_m=pix)
                entry = {"prtf_q_per_nm": (q * 1e-9).round(8).tolist(),
                         "prtf": np.round(curves[k].astype(float), 5).tolist(),
                         "prtf_resolution_nm": res_m * 1e9,
                         "edge_resolution_nm": None if not np.isfinite(edges["median_m"]) else edges["median_m"] * 1e9,
                         "edge_resolution_iqr_nm": None if not np.isfinite(edges["iqr_m"]) else edges["iqr_m"] * 1e9,
                         "edges_used": int(edges["n_edges"])}
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
        geometry = self.geometry(shot)
        intensities, valid = self.prepare(shot)
        phased = self.phase(intensities, valid)
        same_grid = self.options.prepare.crop in (None, shot.pattern_size)
        quality = self.quality(phased.views, intensities, valid, geometry, shot.truth if same_grid else None)
        views, supports = self.align(phased.views)
        st = match_views(views, geometry, self.options, timings=self.timings, progress=self.progress)
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
                views=to_host(views).astype(np.complex64), supports=to_host(supports),
                best_eps=to_host(phased.best_eps), images=to_host(st["images"]), upsample=int(st["upsample"]),
                thresholds=st["thresholds"],
                disparity_left=to_host(st["disparity_left"]), disparity_right=to_host(st["disparity_right"]),
                depth=to_host(st["depth"]), points_nm=to_host(pts.points_nm), confidence=to_host(pts.confidence),
                view=to_host(pts.view), kept=to_host(st["kept"]), phasing_history={k: to_host(v) for k, v in dict(phased.history).items()},
                source=shot.source, sample=shot.sample, quality=quality, hdr=self.hdr,
                matched_views=to_host(st["matched_views"]), maps=list(st["maps"]), reconstruction=recon,
                rectification=None if rect is None else {
                    "F": rect.F.tolist(), "H_left": rect.H_left.tolist(), "H_right": rect.H_right.tolist(),
                    "matches": int(len(rect.points_left)),
                    "residual_rms_px": float(np.sqrt(np.mean(np.square(rect.residual)))) if len(rect.residual) else None},
            )
        if shot.truth is not None and same_grid:
            from .accuracy import score

            with self._timer("score"):
                self.progress.stage("score", "comparing the cloud with the simulator's ground truth")
                res.accuracy = score(res.cloud_nm, res.views, shot.truth, geometry)  # H_left = identity
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

