"""Score a reconstruction against the ground truth a simulated shot carries (and a disparity map against
a stereo benchmark's ground-truth map: :func:`disparity_scores`).

What a stereo pair fixes, and what it cannot (docs/validation.md):

* CDI recovers each view only up to a translation and the twin (point inversion); the engine registers
  the right view onto the left, so depth is *relative*: ``z = 0`` is the plane that best superposes
  the two views, and the whole reconstruction may come out point-inverted ``(x, y, z) -> (-x, -y, -z)``.
  The scorer therefore registers the recovered left view onto the true left view (translation and
  inversion, from the images alone) and removes one constant depth offset (reported as
  ``depth_offset_nm``).
* Points are compared in the coordinates of the left view (``x_L = x + z tan a_left``, ``y``), which
  do not depend on that depth offset.

Metrics (all in nm unless said otherwise):

``depth_error_median_nm``, ``depth_error_p90_nm``
    Over recovered points lying within ``match_radius`` view pixels of a true edge in the left view:
    ``|z + offset - z_true|`` taking the best of the true edge points within that radius.
``completeness_2dz``
    Fraction of all true edge points (hidden ones included) that have a recovered point within
    ``match_radius`` view pixels whose depth is within 2 voxel depths.
``points_near_edges``
    Fraction of recovered points that lie within ``match_radius`` of a true edge.
``completeness_hidden``
    Completeness over the true edge points hidden behind the membrane in one view (truth
    ``extra["edge_hidden"]``, the phase cross): the "behind the scene" features.
``pyramid_height_nm``, ``pyramid_height_error``
    The pyramid sample (truth ``extra["apex_m"]``, ``extra["base_corners_m"]``): the recovered depth,
    in the truth's datum, of every point is fitted with the notch's shape ``z = z_rim + h (1 - r)``,
    ``r`` = the point's normalised distance from the apex in the base square (0 at the apex, 1 on
    the rim; the lateral positions come from the registration); ``h`` is the recovered height and
    ``pyramid_height_error`` = ``|h| / true height - 1``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from .backend import to_host
from .errors import InputError
from .geometry import StereoGeometry
from .phasing.align import fourier_shift, register_translation
from .shot import GroundTruth

__all__ = ["score", "register_to_truth", "pyramid_height", "disparity_scores"]


def disparity_scores(disparity, truth) -> dict:
    """Score a disparity map against a ground-truth map as the stereo benchmarks do (Middlebury).

    Over the pixels where ``truth`` is finite, an invalid (NaN) disparity counts as bad.

    Parameters
    ----------
    disparity, truth : (H, W) array
        Disparity [pixels], NaN invalid; ground truth [pixels], inf or NaN unknown (NumPy or CuPy).

    Returns
    -------
    dict
        ``bad1``, ``bad2``: fractions of the scored pixels with no disparity or an error above 1 and
        2 px; ``density``: fraction with a disparity; ``mae``: mean absolute error over the scored
        pixels that have one [px] (NaN when none); ``pixels``: how many were scored.
    """
    d = np.asarray(to_host(disparity), dtype=np.float64)
    t = np.asarray(to_host(truth), dtype=np.float64)
    if d.shape != t.shape:
        raise InputError("disparity_scores.disparity", f"shape {d.shape}", f"the truth's shape {t.shape}")
    scored = np.isfinite(t)
    n = int(scored.sum())
    if n == 0:
        raise InputError("disparity_scores.truth", "no finite ground truth", "some pixels with ground truth")
    dd, tt = d[scored], t[scored]
    has = np.isfinite(dd)
    err = np.abs(dd[has] - tt[has])
    return {
        "bad1": 1.0 - float(np.count_nonzero(err <= 1.0)) / n,
        "bad2": 1.0 - float(np.count_nonzero(err <= 2.0)) / n,
        "density": float(has.mean()),
        "mae": float(err.mean()) if err.size else float("nan"),
        "pixels": n,
    }


def _invert(image: np.ndarray) -> np.ndarray:
    """Point inversion about pixel (N//2, N//2): index i -> (N - i) mod N on both axes."""
    return np.roll(image[..., ::-1, ::-1], 1, axis=(-2, -1))


def register_to_truth(recovered: np.ndarray, true: np.ndarray, *, upsample: int = 20) -> dict:
    """Translation and inversion that carry a recovered view onto the true one (amplitudes).

    Parameters
    ----------
    recovered, true : (N, N) complex or real
        Recovered and true views on the same grid.

    Returns
    -------
    dict
        ``inverted`` (bool), ``shift_px`` ``(dy, dx)`` applied after the inversion (a recovered pixel at
        centred coordinate ``u`` lies at ``s * u + shift`` in the truth, ``s = -1`` when inverted),
        ``correlation`` (normalised cross-correlation of the amplitudes after registration).
    """
    ref = np.abs(np.asarray(true)).astype(np.float32)
    best = None
    for inverted in (False, True):
        img = np.abs(np.asarray(recovered)).astype(np.float32)
        if inverted:
            img = _invert(img)
        shift, _ = register_translation(ref, img, upsample=upsample)
        shift = np.asarray(shift, dtype=float).reshape(2)
        moved = np.real(fourier_shift(img.astype(np.complex64), shift))
        a, b = moved - moved.mean(), ref - ref.mean()
        corr = float((a * b).sum() / math.sqrt(float((a * a).sum() * (b * b).sum()) + 1e-30))
        if best is None or corr > best["correlation"]:
            best = {"inverted": inverted, "shift_px": [float(shift[0]), float(shift[1])], "correlation": corr}
    return best


def score(
    points_nm: np.ndarray,
    views: np.ndarray,
    truth: GroundTruth,
    geometry: StereoGeometry,
    *,
    match_radius: float = 1.5,
) -> dict:
    """Accuracy of a point cloud against the true edges of the simulated object.

    Parameters
    ----------
    points_nm : (M, 3) float
        Recovered cloud ``x, y, z``  [nm], object frame of the recovered views.
    views : (2, N, N) complex
        The aligned recovered views the cloud came from (left first).
    truth : GroundTruth
        The simulator's truth (views, edge points).
    geometry : StereoGeometry
        Geometry of the recovered views (pixel must equal ``truth.pixel_size_m``).
    match_radius : float, optional
        Lateral tolerance [view pixels] for pairing recovered and true points in the left view.

    Returns
    -------
    dict
        The ``accuracy`` block of ``summary.json`` (see module docstring).
    """
    dr_nm = geometry.pixel_size_m * 1e9
    dz_nm = geometry.voxel_depth_m * 1e9
    tan_l = math.tan(geometry.signed_angles_rad[0])
    true_views = truth.phasable_views
    reg_l = register_to_truth(views[0], true_views[0])
    reg_r = register_to_truth(views[1], true_views[1])
    out = {
        "voxel_depth_nm": dz_nm,
        "match_radius_px": match_radius,
        "view_correlation": [reg_l["correlation"], reg_r["correlation"]],
        "inverted": reg_l["inverted"],
        "registration_shift_px": reg_l["shift_px"],
        "true_edge_points": int(len(truth.edge_points_m)),
        "recovered_points": int(len(points_nm)),
    }
    true = np.asarray(truth.edge_points_m, dtype=float) * 1e9
    t_uv = np.stack([true[:, 1], true[:, 0] + true[:, 2] * tan_l], axis=1) / dr_nm  # (y, x_L) in px
    pts = np.asarray(points_nm, dtype=float).reshape(-1, 3)
    if len(pts) == 0 or len(true) == 0:
        out.update(
            depth_error_median_nm=None,
            depth_error_p90_nm=None,
            completeness_2dz=0.0,
            points_near_edges=0.0,
            depth_offset_nm=None,
        )
        return out
    s = -1.0 if reg_l["inverted"] else 1.0
    uv = np.stack([pts[:, 1], pts[:, 0] + pts[:, 2] * tan_l], axis=1) / dr_nm
    uv = s * uv + np.asarray(reg_l["shift_px"])
    z = s * pts[:, 2]

    tree = cKDTree(t_uv)
    k = min(16, len(true))
    dist, idx = tree.query(uv, k=k, distance_upper_bound=match_radius)
    dist, idx = dist.reshape(len(uv), k), idx.reshape(len(uv), k)
    near = np.isfinite(dist)
    has = near.any(axis=1)
    out["points_near_edges"] = float(has.mean())
    if not has.any():
        out.update(
            depth_error_median_nm=None, depth_error_p90_nm=None, completeness_2dz=0.0, depth_offset_nm=None
        )
        return out
    zt = np.where(near, true[np.minimum(idx, len(true) - 1), 2], np.nan)  # (M, k) true depths nearby
    dz = zt - z[:, None]
    # depth datum: median difference to the nearest true edge point, refined with the best match
    offset = float(np.median(dz[has, 0]))
    for _ in range(3):
        pick = np.nanargmin(np.abs(dz[has] - offset), axis=1)
        offset = float(np.median(dz[has][np.arange(has.sum()), pick]))
    err = np.nanmin(np.abs(dz[has] - offset), axis=1)
    out["depth_offset_nm"] = offset
    out["depth_error_median_nm"] = float(np.median(err))
    out["depth_error_p90_nm"] = float(np.percentile(err, 90))
    out["depth_error_median_voxels"] = out["depth_error_median_nm"] / dz_nm

    # completeness: true points with a recovered point nearby in the left view and in depth
    rtree = cKDTree(uv)
    lists = rtree.query_ball_point(t_uv, r=match_radius)
    zc = z + offset
    ok = np.fromiter(
        (
            bool(near) and bool(np.any(np.abs(zc[near] - zt_) <= 2 * dz_nm))
            for near, zt_ in zip(lists, true[:, 2])
        ),
        dtype=bool,
        count=len(true),
    )
    out["completeness_2dz"] = float(ok.mean())
    labels = np.asarray(truth.edge_labels)
    out["completeness_2dz_by_part"] = {
        str(int(lab)): float(ok[labels == lab].mean()) for lab in np.unique(labels)
    }
    extra = getattr(truth, "extra", None) or {}
    hidden = extra.get("edge_hidden")
    if hidden is not None and np.asarray(hidden).shape == ok.shape and np.asarray(hidden).any():
        out["completeness_hidden"] = float(ok[np.asarray(hidden, dtype=bool)].mean())
    if "apex_m" in extra and "base_corners_m" in extra:
        x = (uv[:, 1] * dr_nm) - zc * tan_l  # object x in the truth frame [nm]
        y = uv[:, 0] * dr_nm
        out.update(pyramid_height(np.stack([x, y, zc], axis=1), extra))
    return out


def pyramid_height(points_nm: np.ndarray, extra: dict) -> dict:
    """Height of the pyramid notch fitted to points already in the truth frame (see module docstring).

    Parameters
    ----------
    points_nm : (M, 3) float
        Recovered points in the truth's object frame [nm].
    extra : dict
        ``apex_m`` (3,), ``base_corners_m`` (4, 3) in order around the base, ``pyramid_height_m``.
    """
    apex = np.asarray(extra["apex_m"], dtype=float) * 1e9
    corners = np.asarray(extra["base_corners_m"], dtype=float).reshape(4, 3) * 1e9
    true_h = (
        float(np.asarray(extra.get("pyramid_height_m", abs(apex[2] - corners[:, 2].mean()) * 1e-9))) * 1e9
    )
    e1 = corners[1, :2] - corners[0, :2]
    e2 = corners[3, :2] - corners[0, :2]
    half = 0.5 * np.array([np.linalg.norm(e1), np.linalg.norm(e2)])
    basis = np.stack([e1 / np.linalg.norm(e1), e2 / np.linalg.norm(e2)])
    rel = (points_nm[:, :2] - apex[:2]) @ basis.T
    r = np.max(np.abs(rel) / half, axis=1)
    sel = r <= 1.0
    if sel.sum() < 10:
        return {
            "pyramid_height_nm": None,
            "pyramid_height_true_nm": true_h,
            "pyramid_height_error": None,
            "pyramid_points": int(sel.sum()),
        }
    a = np.stack([np.ones(int(sel.sum())), 1.0 - r[sel]], axis=1)
    z = points_nm[sel, 2]
    coef = np.linalg.lstsq(a, z, rcond=None)[0]
    for _ in range(3):  # robust refit: drop the points farther than 3 MAD from the model
        res = z - a @ coef
        mad = float(np.median(np.abs(res - np.median(res)))) + 1e-9
        keep = np.abs(res) <= 3 * 1.4826 * mad
        coef = np.linalg.lstsq(a[keep], z[keep], rcond=None)[0]
    h = float(abs(coef[1]))
    return {
        "pyramid_height_nm": h,
        "pyramid_height_true_nm": true_h,
        "pyramid_height_error": h / true_h - 1.0,
        "pyramid_points": int(sel.sum()),
    }
