"""The numbers of ``xstereo batch``'s final table, read from the run store's summary table.

:func:`run_report` reads ``run.h5`` ``/summary`` (docs/format.md, "Run store") for the selected
shots: the statuses stored, the time per stage of the ok shots (median and 90th percentile of the
``time_<stage>_s`` columns) and the medians of their quality and accuracy columns (the accuracy
against the ground truth exists only for simulated shots). Computed from the store, the numbers are
the same whether the shots ran in this process or on a cluster (whose records come back without
their ``Results``), and a resumed run reports all of its shots. :mod:`~xstereo_gpu.batch.display`
prints them.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from .record import STATUSES

__all__ = ["RunReport", "QUALITY_COLUMNS", "run_report", "summary_rows"]

#: Summary columns whose median over the ok shots the report gives: (column, label).
QUALITY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("depth_error_median_nm", "depth error vs ground truth, median per shot [nm]"),
    ("completeness_2dz", "completeness within 2 voxel depths"),
    ("prtf_resolution_left_nm", "PRTF resolution, left view [nm]"),
    ("prtf_resolution_right_nm", "PRTF resolution, right view [nm]"),
    ("points", "points per cleaned cloud"),
)


@dataclass(frozen=True)
class RunReport:
    """What ``xstereo batch`` reports at the end.

    Attributes
    ----------
    run : dict of str to int
        Shots of this invocation per status (:data:`~xstereo_gpu.batch.record.STATUSES`).
    stored : dict of str to int
        Selected shots the store holds, per status.
    selected : int
        Shots selected from the inputs.
    wall_s : float
        Seconds this invocation spent on its shots [s].
    stages : tuple of (str, float, float, int)
        ``(stage, median_s, p90_s, shots)`` over the stored ok shots, in the columns' order; stages
        that no ok shot ran are left out.
    quality : tuple of (str, float, int)
        ``(label, median, shots)`` of :data:`QUALITY_COLUMNS` over the ok shots with a finite value.
    store : pathlib.Path
        The run store directory.
    """

    run: dict
    stored: dict
    selected: int
    wall_s: float
    stages: tuple
    quality: tuple
    store: pathlib.Path

    @property
    def done(self) -> int:
        """Shots this invocation processed."""
        return sum(self.run.values())

    @property
    def rate(self) -> float:
        """Shots per second of this invocation (0 when it did none)."""
        return self.done / self.wall_s if self.wall_s > 0 and self.done else 0.0


def summary_rows(store: str | os.PathLike, indices: Iterable[int]) -> np.ndarray:
    """The rows of ``<store>/run.h5`` ``/summary`` whose index is in ``indices`` (structured array).

    An empty array when the store has no ``run.h5`` yet.
    """
    import h5py

    path = pathlib.Path(store) / "run.h5"
    if not path.is_file():
        return np.zeros(0, dtype=[("index", np.int64), ("status", object)])
    with h5py.File(path, "r") as f:
        rows = f["summary"][()]
    return rows[np.isin(rows["index"], np.fromiter((int(i) for i in indices), dtype=np.int64))]


def _status(v) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def _stage_stats(ok: np.ndarray) -> tuple:
    out = []
    for name in ok.dtype.names or ():
        if not (name.startswith("time_") and name.endswith("_s")):
            continue
        t = np.asarray(ok[name], dtype=np.float64)
        t = t[np.isfinite(t)]
        if t.size:
            out.append((name[5:-2], float(np.median(t)), float(np.percentile(t, 90)), int(t.size)))
    return tuple(out)


def _quality_stats(ok: np.ndarray) -> tuple:
    out = []
    names = ok.dtype.names or ()
    for column, label in QUALITY_COLUMNS:
        if column not in names:
            continue
        v = np.asarray(ok[column], dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size:
            out.append((label, float(np.median(v)), int(v.size)))
    return tuple(out)


def run_report(
    store: str | os.PathLike, indices: Iterable[int], *, counts: Mapping[str, int], wall_s: float
) -> RunReport:
    """The final report of a ``process_run`` into ``store`` over the selected ``indices``.

    Parameters
    ----------
    store : str or path-like
        The run store directory (its ``run.h5`` is read; finalize the run first).
    indices : iterable of int
        The selected shots (a store may hold others).
    counts : mapping of str to int
        This invocation's shots per status.
    wall_s : float
        Its duration [s].

    Returns
    -------
    RunReport
    """
    indices = list(indices)
    rows = summary_rows(store, indices)
    statuses = [_status(s) for s in rows["status"]] if rows.size else []
    ok = rows[np.array([s == "ok" for s in statuses], dtype=bool)] if rows.size else rows
    return RunReport(
        run={k: int(counts.get(k, 0)) for k in STATUSES},
        stored={k: statuses.count(k) for k in STATUSES},
        selected=len(indices),
        wall_s=float(wall_s) if math.isfinite(wall_s) else 0.0,
        stages=_stage_stats(ok) if ok.size else (),
        quality=_quality_stats(ok) if ok.size else (),
        store=pathlib.Path(store),
    )
