"""What became of one shot of a run, and its row of the run store's summary table."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..geometry import StereoGeometry
from ..results import Results

__all__ = ["ShotRecord", "STATUSES", "STAGES", "COLUMNS", "record_row", "record_cloud"]

#: ``ok``: reconstructed; ``blank``: vetoed (too few photons, not phased); ``failed``: unreadable or
#: its reconstruction raised (``reason`` says why).
STATUSES = ("ok", "blank", "failed")
#: Timed steps of a shot, in the summary as ``time_<step>_s`` (NaN when the step did not run): ``read``
#: and ``veto`` by :func:`~xstereo_gpu.batch.process.process_run`, the rest by the pipeline.
STAGES = (
    "read",
    "veto",
    "prepare",
    "phase",
    "quality",
    "align",
    "stereo",
    "cloud",
    "reconstruct",
    "download",
    "score",
    "total",
)

_STR, _INT, _FLOAT = "str", "int", "float"
#: The summary table's columns (name, kind, meaning); floats are NaN where they do not apply.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("index", _INT, "index of the shot in the run (frame of a stack, position in the sorted file list)"),
    ("label", _STR, "file (and #frame of a stack) the shot was read from"),
    ("status", _STR, "ok, blank or failed"),
    ("reason", _STR, "why the shot is blank or failed; empty when ok"),
    ("photons_left", _FLOAT, "photons in the left pattern window (valid pixels)"),
    ("photons_right", _FLOAT, "photons in the right pattern window (valid pixels)"),
    ("pixel_size_nm", _FLOAT, "view pixel Dr [nm]"),
    ("angle_left_deg", _FLOAT, "beam angle t1 [deg]"),
    ("angle_right_deg", _FLOAT, "beam angle t2 [deg]"),
    ("voxel_depth_nm", _FLOAT, "depth voxel Dz, eq. (2) [nm]"),
    ("prtf_resolution_left_nm", _FLOAT, "PRTF resolution of the left view [nm]"),
    ("prtf_resolution_right_nm", _FLOAT, "PRTF resolution of the right view [nm]"),
    ("edge_resolution_left_nm", _FLOAT, "10-90 % edge resolution of the left view [nm]"),
    ("edge_resolution_right_nm", _FLOAT, "10-90 % edge resolution of the right view [nm]"),
    ("best_eps_median_left", _FLOAT, "median over the runs of the best iterate's eps_n, left view"),
    ("best_eps_median_right", _FLOAT, "median over the runs of the best iterate's eps_n, right view"),
    ("depth_error_median_nm", _FLOAT, "median depth error against the ground truth [nm]"),
    ("completeness_2dz", _FLOAT, "fraction of true edge points recovered within 2 voxel depths"),
    ("points", _INT, "points in the shot's cleaned cloud"),
    ("shots_per_launch", _INT, "shots phased in the same stack (time_phase_s is its share); 0: not phased"),
    *((f"time_{s}_s", _FLOAT, f"seconds spent in {s}") for s in STAGES),
)


@dataclass
class ShotRecord:
    """What became of one shot.

    Attributes
    ----------
    index : int
        Index of the shot in the run (:class:`~xstereo_gpu.batch.sources.ShotSource`).
    label : str
        Where it was read from (``run.cxi#12``, ``shots/shot-0003.cxi``).
    status : {"ok", "blank", "failed"}
        :data:`STATUSES`.
    reason : str
        Why the shot is blank or failed (``""`` when ok).
    photons : (2,) float64
        Photons in the left and right pattern windows [photons] (NaN when unreadable).
    timings : dict of str to float
        Seconds per step (:data:`STAGES`; the pipeline's stages when reconstructed).
    geometry : StereoGeometry or None
        View pixel and beam angles (None when unreadable).
    results : Results or None
        The host results of the reconstruction when ``ok``.
    shots_per_launch : int
        Shots phased in the same stacked launch as this one (0: not phased).
    """

    index: int
    label: str
    status: str
    reason: str = ""
    photons: np.ndarray = field(default_factory=lambda: np.full(2, np.nan))
    timings: dict = field(default_factory=dict)
    geometry: StereoGeometry | None = None
    results: Results | None = None
    shots_per_launch: int = 0

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"ShotRecord.status: found {self.status!r}; expected one of {STATUSES}")


def _f(value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v


def record_row(rec: ShotRecord) -> dict:
    """The record's row of the summary table: one value per :data:`COLUMNS` name (host scalars)."""
    row = {name: (math.nan if kind == _FLOAT else 0 if kind == _INT else "") for name, kind, _ in COLUMNS}
    row.update(index=int(rec.index), label=str(rec.label), status=rec.status, reason=str(rec.reason))
    row["photons_left"], row["photons_right"] = (_f(p) for p in np.asarray(rec.photons, np.float64)[:2])
    g = rec.geometry
    if g is not None:
        row.update(
            pixel_size_nm=g.pixel_size_m * 1e9,
            angle_left_deg=_f(g.angles_deg[0]),
            angle_right_deg=_f(g.angles_deg[1]),
            voxel_depth_nm=g.voxel_depth_m * 1e9,
        )
    for s in STAGES:
        row[f"time_{s}_s"] = _f(rec.timings.get(s, math.nan))
    row["shots_per_launch"] = int(rec.shots_per_launch)
    res = rec.results
    if res is None:
        return row
    q = res.quality or {}
    for view in ("left", "right"):
        vq = q.get(view) or {}
        row[f"prtf_resolution_{view}_nm"] = _f(vq.get("prtf_resolution_nm"))
        row[f"edge_resolution_{view}_nm"] = _f(vq.get("edge_resolution_nm"))
    eps = np.asarray(res.views.best_eps, dtype=np.float64)
    for k, view in enumerate(("left", "right")):
        if eps.ndim == 2 and k < eps.shape[0] and eps.shape[1]:
            row[f"best_eps_median_{view}"] = float(np.median(eps[k]))
    acc = res.accuracy or {}
    row["depth_error_median_nm"] = _f(acc.get("depth_error_median_nm"))
    row["completeness_2dz"] = _f(acc.get("completeness_2dz"))
    row["points"] = int(record_cloud(rec)[0].shape[0])
    return row


def record_cloud(rec: ShotRecord) -> tuple[np.ndarray, np.ndarray]:
    """The cleaned cloud of an ok record: points (M, 3) float64 [nm] and confidence (M,) float32.

    Empty arrays for a blank or failed record.
    """
    if rec.results is None:
        return np.zeros((0, 3), np.float64), np.zeros(0, np.float32)
    c = rec.results.cloud
    kept = np.asarray(c.kept, dtype=bool)
    return (
        np.asarray(c.points_nm, dtype=np.float64)[kept].reshape(-1, 3),
        np.asarray(c.confidence, dtype=np.float32)[kept],
    )
