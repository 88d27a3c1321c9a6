"""One shot of a run: veto, then the whole pipeline, into a :class:`ShotRecord` (never raises for a bad shot).

Shared by the in-process loop (:mod:`~xstereo_gpu.batch.process`) and the cluster's tasks
(:mod:`~xstereo_gpu.batch.cluster`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import InputError
from ..pipeline import Pipeline
from ..shot import Shot
from .record import ShotRecord
from .veto import VetoOptions, is_hit, window_photons

__all__ = ["process_shot", "SHOT_ERRORS", "DEFAULT_VETO"]

#: What a reconstruction may raise for one bad shot; the shot is then ``failed`` and the run goes on.
#: Anything else (a bug, MemoryError, KeyboardInterrupt) ends the run, after storing what was done.
SHOT_ERRORS = (InputError, ValueError, FloatingPointError)
#: The default hit veto (:data:`~xstereo_gpu.batch.veto.DEFAULT_MIN_PHOTONS`).
DEFAULT_VETO = VetoOptions()


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def process_shot(
    pipe: Pipeline | Callable[[Shot], Pipeline],
    index: int,
    label: str,
    shot: Shot | Exception,
    *,
    veto: VetoOptions = DEFAULT_VETO,
    read_s: float = float("nan"),
) -> ShotRecord:
    """One shot: veto, then (a hit) the whole pipeline; never raises for a bad shot.

    Parameters
    ----------
    pipe : Pipeline or callable
        Reused from shot to shot (its device, options and progress); or ``pipe(shot)`` giving the
        pipeline for this shot (a recipe per sample), called for hits only.
    index, label : int, str
        The shot's index and label in its run.
    shot : Shot or Exception
        The shot, or the exception its read raised (the record is then ``failed``).
    veto : VetoOptions
        Threshold of the hit veto.
    read_s : float
        Seconds the read took (recorded as ``timings["read"]``).

    Returns
    -------
    ShotRecord
        ``failed`` (unreadable, or the reconstruction raised one of :data:`SHOT_ERRORS`), ``blank``
        (fewer than ``veto.min_photons`` in a pattern window) or ``ok`` with its host ``Results``.
    """
    timings = {"read": read_s}
    if isinstance(shot, BaseException):
        return ShotRecord(index, label, "failed", _reason(shot), timings=timings)
    t0 = time.perf_counter()
    photons = window_photons(shot.frame, shot.mask, shot.centres_px, shot.pattern_size)
    hit = is_hit(photons, veto)
    timings["veto"] = time.perf_counter() - t0
    try:
        geometry = shot.geometry if callable(pipe) else pipe.geometry(shot)
    except SHOT_ERRORS:
        geometry = None
    if not hit:
        reason = f"{photons.min():.4g} photons in the weaker pattern window < {veto.min_photons:.4g}"
        return ShotRecord(index, label, "blank", reason, photons, timings, geometry)
    if callable(pipe):
        try:
            pipe = pipe(shot)
        except SHOT_ERRORS as exc:
            return ShotRecord(index, label, "failed", _reason(exc), photons, timings, geometry)
    pipe.timings, pipe.hdr = {}, None  # per shot
    try:
        res = pipe.run(shot)
    except SHOT_ERRORS as exc:
        timings.update(pipe.timings)
        return ShotRecord(index, label, "failed", _reason(exc), photons, timings, geometry)
    timings.update(res.timings)
    return ShotRecord(index, label, "ok", "", photons, timings, res.geometry, res)
