"""The cloud stage: consistent disparity maps in, depth and a cleaned 3D point cloud out.

Eq. (1) of the paper with the coordinate correction (:func:`~xstereo_gpu.stereo.depth.points_from_disparity`)
on every map pair of the stereo stage (the extra pairs only where the first left a pixel empty), then
the statistical outlier removal of the Methods. Arrays stay on the device of the maps.
"""

from __future__ import annotations

from ..backend import get_array_module
from ..config import CloudOptions
from ..geometry import StereoGeometry
from ..progress import Progress
from ..results import CloudResult, StereoResult
from ..stereo.depth import depth_map, points_from_disparity
from ..timing import StageTimer
from .outliers import statistical_outlier_filter

__all__ = ["build_cloud"]


def build_cloud(
    stereo: StereoResult,
    geometry: StereoGeometry,
    options: CloudOptions | None = None,
    *,
    timings: dict | None = None,
    progress: Progress | None = None,
) -> CloudResult:
    """Depth, the point cloud and its outlier mask from the stereo stage's maps.

    Parameters
    ----------
    stereo : StereoResult
        Consistent maps (each pair's points are computed on their own; a pair after the first only
        contributes the pixels that the first pair left empty, as in the merged maps).
    geometry : StereoGeometry
        View pixel and beam angles (eq. 1).
    options : CloudOptions, optional
        ``k`` and ``t`` of the outlier removal (default: the paper's 80 and 0.1).
    timings : dict, optional
        ``timings["cloud"]`` gets the stage's synchronised seconds.

    Returns
    -------
    CloudResult
        On the device of the maps.
    """
    options = options or CloudOptions()
    say = progress or Progress(enabled=False)
    xp = get_array_module(stereo.disparity_left)
    timings = {} if timings is None else timings
    with StageTimer(xp, timings, "cloud"):
        say.stage("cloud", "depth by eq. (1), coordinate correction, outlier removal")
        n = tuple(stereo.matched_views.shape[1:])
        first = stereo.pairs[0]
        parts = []
        for j, pair in enumerate(stereo.pairs):
            dl, dr = pair.disparity_left, pair.disparity_right
            if j > 0:  # extra maps only fill the pixels the first maps left empty (as the merged maps do)
                dl = xp.where(xp.isfinite(first.disparity_left), xp.nan, dl).astype(xp.float32)
                dr = xp.where(xp.isfinite(first.disparity_right), xp.nan, dr).astype(xp.float32)
            parts.append(
                points_from_disparity(
                    dl,
                    dr,
                    geometry,
                    upsample=stereo.upsample,
                    view_shape=n,
                    confidence_left=pair.confidence_left,
                    confidence_right=pair.confidence_right,
                )
            )
        if len(parts) > 1:
            say.note(
                "merged points of the "
                + " and ".join(f"{p.mode} ({len(q)})" for p, q in zip(stereo.pairs, parts))
                + " maps"
            )
        fields = [
            xp.concatenate([getattr(p, f) for p in parts], axis=0) if len(parts) > 1 else getattr(parts[0], f)
            for f in ("points_nm", "confidence", "view", "pixel")
        ]
        points, confidence, view_index, pixel = fields
        kept = statistical_outlier_filter(points, options)
        depth = depth_map(stereo.disparity_left, geometry, upsample=stereo.upsample)
    return CloudResult(
        depth=depth, points_nm=points, confidence=confidence, view_index=view_index, pixel=pixel, kept=kept
    )
