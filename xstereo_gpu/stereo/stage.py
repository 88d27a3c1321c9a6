"""The stereo stage: two aligned views in, left-right consistent disparity maps out.

:func:`match_views` chains, as each sample's recipe (:class:`~xstereo_gpu.config.StereoOptions`)
asks: the matched image of each view (amplitude or phase), rectification, a background mask,
pre-processing, disparity maps (block matching or SGM; SAD, census or ZNCC cost), left-right
consistency, the optional uniqueness, speckle and hole-filling clean-up (:mod:`.postfilter`), and the
extra Sobel-x maps merged with the first. Arrays stay on the device of the views; depth and the cloud
are the next stage (:func:`xstereo_gpu.cloud.stage.build_cloud`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..backend import get_array_module
from ..config import MatchOptions, PreprocessOptions, StereoOptions
from ..errors import InputError
from ..memory import memory_budget, plan_matching
from ..progress import Progress
from ..results import MapPair, StereoResult
from ..timing import StageTimer
from .depth import lr_consistency
from .disparity import block_match
from .homography import rectify
from .postfilter import fill_holes, remove_speckles
from .preprocess import background_mask, preprocess
from .rectify import rectify_pair
from .sgm import semi_global_match

__all__ = ["match_views", "view_images"]


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


def _match(left, right, options: MatchOptions, max_memory=None):
    if options.method == "sgm":
        return semi_global_match(left, right, options, max_memory=max_memory)
    if options.cost != "sad":  # block matching with census / ZNCC: the winner of the cost volume
        return semi_global_match(left, right, options, max_memory=max_memory, aggregate=False)
    return block_match(left, right, options)


def _clean(disparity, confidence, options: MatchOptions):
    """Uniqueness, speckle filter and hole filling of one left-right checked map, as ``options`` asks."""
    xp = get_array_module(disparity)
    if options.uniqueness > 0:
        disparity = xp.where(confidence >= options.uniqueness, disparity, xp.nan).astype(xp.float32)
    if options.speckle_size > 0:
        disparity = remove_speckles(disparity, options.speckle_size, options.speckle_range)
    if options.fill_holes:
        disparity = fill_holes(disparity)
    return disparity


def _rectified(images, amplitude, options: StereoOptions, say: Progress):
    """Rectify the matched images and the amplitude with the same homographies."""
    points = None
    if options.rectify_points is not None:
        pp = np.asarray(options.rectify_points, dtype=np.float64)
        points = (pp[:, :2], pp[:, 2:])
    say.stage(
        "stereo",
        "rectification: "
        + ("the given point pairs" if points is not None else "feature correspondences")
        + ", affine F, homographies",
    )
    rect = rectify_pair(images, points)
    rot = float(np.degrees(np.arctan2(rect.H_right[1, 0], rect.H_right[0, 0])))
    say.note(
        f"{len(rect.points_left)} matches; right view rotated by {-rot:+.2f} deg; scatter of the matches "
        f"about their rows {float(np.sqrt(np.mean(np.square(rect.residual)))):.2f} px rms"
    )
    return rect, rectify(amplitude, rect.H_left, rect.H_right)


def match_views(
    views,
    options: StereoOptions | None = None,
    *,
    preprocess_options: PreprocessOptions | None = None,
    match_options: MatchOptions | None = None,
    timings: dict | None = None,
    progress: Progress | None = None,
    max_memory: int | None = None,
) -> StereoResult:
    """The stereo stage on two views already in the same frame (left, right).

    Steps: the matched image of each view (``options.image``: amplitude or phase), optional
    rectification, optional background mask, pre-processing, disparity maps
    (``match_options.method``: block matching or SGM), left-right consistency, then as
    ``match_options`` asks uniqueness, speckle filter and hole filling; with
    ``options.gradient_maps`` a second pair of maps on Sobel-x views fills the pixels the first
    pair left empty.

    Parameters
    ----------
    views : (2, N, N) real or complex, NumPy or CuPy
        Views; complex views are matched on their amplitude or phase.
    options : StereoOptions, optional
        The sample's stereo recipe (default: the amplitude cross's).
    preprocess_options, match_options : PreprocessOptions, MatchOptions, optional
        Pre-processing and matcher (defaults: the paper's).
    timings : dict, optional
        ``timings["stereo"]`` gets the stage's synchronised seconds.
    max_memory : int, optional
        Bytes the matching may take (default: most of the free memory). Checked before any
        compute (:func:`~xstereo_gpu.memory.plan_matching` on the upsampled grid: InputError when
        it cannot fit); SGM splits into strips to fit.

    Returns
    -------
    StereoResult
        On the device of ``views``.
    """
    options = options or StereoOptions()
    popts = preprocess_options or PreprocessOptions()
    m = match_options or MatchOptions()
    xp = get_array_module(views)
    timings = {} if timings is None else timings
    say = progress or Progress(enabled=False)
    views = xp.asarray(views)
    if views.ndim != 3 or views.shape[0] != 2:
        raise InputError("views", f"shape {tuple(views.shape)}", "(2, H, W): left and right views")
    u = int(popts.upsample)
    b = memory_budget(xp, max_memory)
    plan_matching(
        views.shape[1] * u,
        views.shape[2] * u,
        m.dmax - m.dmin + 1,
        b["budget_bytes"],
        method=m.method,
        limit=b["limit_bytes"],
        paths=m.sgm_paths,
        device=xp is not np,
        cost=m.cost,
    )  # refuse before any compute
    with StageTimer(xp, timings, "stereo"):
        images = view_images(views, options.image)
        amplitude = xp.abs(views).astype(xp.float32) if xp.iscomplexobj(views) else images
        rect = None
        if options.rectify:
            rect, amplitude = _rectified(images, amplitude, options, say)
            images = rect.views
        mask = None
        if options.background_mask:
            mask = background_mask(images)
            say.note(f"background mask keeps {float(mask.mean()):.1%} of the view pixels")
        modes = [popts.mode]
        if options.gradient_maps and "gradient" not in modes:
            modes.append("gradient")
        pairs, first = [], None
        for mode in modes:
            p = dataclasses.replace(popts, mode=mode)
            say.stage("stereo", f"pre-processing ({mode}, x{p.upsample})")
            pre = preprocess(images, p, search_range=(m.dmin, m.dmax), mask=mask)
            say.note(
                f"{'semi-global matching' if m.method == 'sgm' else 'block matching'} {m.block}x{m.block}"
                f"{'' if m.cost == 'sad' else ' (' + m.cost + ' cost)'}, "
                f"d in [{m.dmin}, {m.dmax}] on {tuple(pre.images.shape[1:])}"
            )
            match = _match(pre.images[0], pre.images[1], m, max_memory)
            dl, dr = lr_consistency(match.disparity_left, match.disparity_right, tolerance=m.lr_tolerance)
            dl = _clean(dl, match.confidence_left, m)
            dr = _clean(dr, match.confidence_right, m)
            if pre.mask is not None:
                dl = xp.where(pre.mask[0], dl, xp.nan).astype(xp.float32)
                dr = xp.where(pre.mask[1], dr, xp.nan).astype(xp.float32)
            pairs.append(MapPair(mode, dl, dr, match.confidence_left, match.confidence_right))
            first = pre if first is None else first
        merged_l, merged_r = pairs[0].disparity_left, pairs[0].disparity_right
        for pair in pairs[1:]:
            merged_l = xp.where(xp.isfinite(merged_l), merged_l, pair.disparity_left)
            merged_r = xp.where(xp.isfinite(merged_r), merged_r, pair.disparity_right)
    return StereoResult(
        images=first.images,
        upsample=int(first.upsample),
        thresholds=first.thresholds,
        disparity_left=merged_l,
        disparity_right=merged_r,
        pairs=pairs,
        matched_views=images,
        amplitude=amplitude,
        rectification=rect,
    )
