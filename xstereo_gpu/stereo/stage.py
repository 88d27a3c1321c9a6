"""The stereo stage of the pipeline: two aligned views in, consistent disparity maps and a cleaned cloud out.

:func:`match_views` chains, as each sample's recipe (:class:`~xstereo_gpu.config.ReconstructOptions`)
asks: the matched image of each view (amplitude or phase), rectification, a background mask,
pre-processing, disparity maps (block matching or SGM), left-right consistency, the extra Sobel-x maps
merged with the first, eq. (1) with the coordinate correction, and outlier removal. Arrays stay on the
device of the views.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from ..backend import get_array_module, synchronize
from ..cloud.outliers import statistical_outlier_filter
from ..config import PipelineOptions
from ..errors import InputError
from ..geometry import StereoGeometry
from ..progress import Progress
from .depth import CloudPoints, depth_map, lr_consistency, points_from_disparity
from .disparity import block_match
from .preprocess import preprocess

__all__ = ["match_views", "view_images", "StageTimer"]


class StageTimer:
    """Adds the synchronised wall time of a ``with`` block to ``timings[name]``  [s]."""

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


def _empty_from_amplitude(amplitude, upsample: int, *, level: float = 0.8):
    """Where semi-transparent views show transmission 1: the brightest amplitude level.

    The phased waves of a sample whose membrane fills the field are ``t - t_membrane`` (the zero order
    is behind the beamstop); bare membrane is ~0 and the empty space is the largest amplitude,
    ``|1 - t_membrane|``. Pixels above ``level`` times each view's 99.5th percentile, on the matching grid.
    """
    from .preprocess import upsample_mask

    xp = get_array_module(amplitude)
    ref = xp.percentile(amplitude.reshape(amplitude.shape[0], -1), 99.5, axis=1).reshape(-1, 1, 1)
    return upsample_mask(amplitude > level * ref, upsample)


def _match(left, right, options, max_memory=None):
    if options.method == "sgm":
        from .sgm import semi_global_match

        return semi_global_match(left, right, options, max_memory=max_memory)
    return block_match(left, right, options)


def _concat_points(parts):
    if len(parts) == 1:
        return parts[0]
    xp = get_array_module(parts[0].points_nm)
    return CloudPoints(*(xp.concatenate([getattr(p, f) for p in parts], axis=0)
                         for f in ("points_nm", "confidence", "view", "pixel")))


def match_views(views, geometry: StereoGeometry | None, options: PipelineOptions, *, timings: dict | None = None,
                progress: Progress | None = None, max_memory: int | None = None) -> dict[str, Any]:
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
    max_memory : int, optional
        Bytes the matching may take (default: most of the free memory). Checked before any
        compute (:func:`~xstereo_gpu.memory.plan_matching` on the upsampled grid: InputError when
        it cannot fit); SGM splits into strips to fit.

    Returns
    -------
    dict
        ``images`` (pre-processed views of the first maps), ``upsample``, ``thresholds``,
        ``disparity_left``, ``disparity_right`` (consistent maps, merged over the map pairs),
        ``match`` (raw :class:`~xstereo_gpu.stereo.disparity.MatchResult` of the first pair),
        ``matched_views`` (the images matched, after rectification), ``rectification``
        (:class:`~xstereo_gpu.stereo.rectify.RectifyResult` or None), ``empty`` ((2, uN, uN) bool:
        pixels showing transmission 1 — white in binary views, the brightest amplitude level of
        semi-transparent ones when the recipe interpolates — or None), ``maps`` (names of the map pairs) and, with a
        geometry, ``depth``, ``points`` (:class:`~xstereo_gpu.stereo.depth.CloudPoints`) and ``kept``.
    """
    xp = get_array_module(views)
    timings = {} if timings is None else timings
    say = progress or Progress(enabled=False)
    views = xp.asarray(views)
    if views.ndim != 3 or views.shape[0] != 2:
        raise InputError("views", f"shape {tuple(views.shape)}", "(2, H, W): left and right views")
    rec = options.reconstruct
    m = options.match
    from ..memory import memory_budget, plan_matching

    u = int(options.preprocess.upsample)
    b = memory_budget(xp, max_memory)
    plan_matching(views.shape[1] * u, views.shape[2] * u, m.dmax - m.dmin + 1, b["budget_bytes"], method=m.method,
                  limit=b["limit_bytes"], paths=m.sgm_paths, device=xp is not np)  # refuse before any compute
    out: dict[str, Any] = {"rectification": None}
    with StageTimer(xp, timings, "stereo"):
        images = view_images(views, rec.image)
        amplitude = xp.abs(views).astype(xp.float32) if xp.iscomplexobj(views) else images
        if rec.rectify:
            from .homography import rectify
            from .rectify import rectify_pair

            points = None
            if rec.rectify_points is not None:
                pp = np.asarray(rec.rectify_points, dtype=np.float64)
                points = (pp[:, :2], pp[:, 2:])
            say.stage("stereo", "rectification: " + ("the given point pairs" if points is not None
                                                      else "feature correspondences") + ", affine F, homographies")
            rect = rectify_pair(images, points)
            images = rect.views
            amplitude = rectify(amplitude, rect.H_left, rect.H_right)
            out["rectification"] = rect
            rot = float(np.degrees(np.arctan2(rect.H_right[1, 0], rect.H_right[0, 0])))
            say.note(f"{len(rect.points_left)} matches; right view rotated by {-rot:+.2f} deg; scatter of the matches "
                     f"about their rows {float(np.sqrt(np.mean(np.square(rect.residual)))):.2f} px rms")
        mask = None
        if rec.background_mask:
            from .preprocess import background_mask

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
            match = _match(pre.images[0], pre.images[1], m, max_memory)
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
        elif rec.interpolate:
            empty = _empty_from_amplitude(amplitude, pre.upsample)
        out.update(images=pre.images, upsample=pre.upsample, thresholds=pre.thresholds, match=match,
                   disparity_left=merged_l, disparity_right=merged_r, matched_views=images, amplitude=amplitude,
                   empty=empty, maps=[p[0] for p in pairs])
    if geometry is None:
        return out
    with StageTimer(xp, timings, "cloud"):
        say.stage("cloud", "depth by eq. (1), coordinate correction, outlier removal")
        n = tuple(views.shape[1:])
        parts = []
        for j, (_, pre_, mt, dl_, dr_) in enumerate(pairs):
            if j > 0:  # extra maps only fill the pixels the first maps left empty (as the merged maps do)
                dl_ = xp.where(xp.isfinite(dl), xp.nan, dl_).astype(xp.float32)
                dr_ = xp.where(xp.isfinite(dr), xp.nan, dr_).astype(xp.float32)
            parts.append(points_from_disparity(dl_, dr_, geometry, upsample=pre_.upsample, view_shape=n,
                                               confidence_left=mt.confidence_left,
                                               confidence_right=mt.confidence_right))
        if len(parts) > 1:
            say.note("merged points of the " + " and ".join(f"{p[0]} ({len(q)})" for p, q in zip(pairs, parts))
                     + " maps")
        pts = _concat_points(parts)
        kept = statistical_outlier_filter(pts.points_nm, options.cloud)
        out.update(depth=depth_map(merged_l, geometry, upsample=pre.upsample), points=pts, kept=kept)
    return out
