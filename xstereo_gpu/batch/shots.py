"""Shots of a run into records: the hit veto, then the hits' reconstruction with stacked phasing.

Shared by the in-process loop (:mod:`~xstereo_gpu.batch.process`) and the cluster's tasks
(:mod:`~xstereo_gpu.batch.cluster`). Never raises for a bad shot: an unreadable shot, or one whose
reconstruction raises one of :data:`~xstereo_gpu.batch.launch.SHOT_ERRORS`, is ``failed`` with the
reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..pipeline import Pipeline
from ..shot import Shot
from .launch import SHOT_ERRORS, run_launch
from .record import ShotRecord
from .veto import VetoOptions, is_hit, window_photons

__all__ = ["Hit", "screen_shot", "reconstruct_hits", "process_shots", "SHOT_ERRORS", "DEFAULT_VETO"]

#: The default hit veto (:data:`~xstereo_gpu.batch.veto.DEFAULT_MIN_PHOTONS`).
DEFAULT_VETO = VetoOptions()


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclass
class Hit:
    """A shot that passed the veto, waiting for its reconstruction.

    Attributes
    ----------
    record : ShotRecord
        Its record so far (``ok``, photons, read and veto timings, geometry, no results yet).
    shot : Shot
        The shot.
    pipe : Pipeline
        The pipeline that reconstructs it.
    """

    record: ShotRecord
    shot: Shot
    pipe: Pipeline

    @property
    def pattern_side(self) -> int:
        """Side of its phased patterns [px] (shots of one side share a launch)."""
        return int(self.pipe.options.prepare.crop or self.shot.pattern_size)


def screen_shot(
    pipe: Pipeline | Callable[[Shot], Pipeline],
    index: int,
    label: str,
    shot: Shot | BaseException,
    *,
    veto: VetoOptions = DEFAULT_VETO,
    read_s: float = float("nan"),
) -> ShotRecord | Hit:
    """The hit veto of one shot: its final record (``failed``, ``blank``), or a :class:`Hit`.

    Parameters
    ----------
    pipe : Pipeline or callable
        The run's pipeline, or ``pipe(shot)`` giving the pipeline of this shot (a recipe per
        sample), called for hits only.
    index, label : int, str
        The shot's index and label in its run.
    shot : Shot or Exception
        The shot, or the exception its read raised (the record is then ``failed``).
    veto : VetoOptions
        Threshold of the hit veto.
    read_s : float
        Seconds the read took (``timings["read"]``).
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
    return Hit(ShotRecord(index, label, "ok", "", photons, timings, geometry), shot, pipe)


def reconstruct_hits(hits: Sequence[Hit], *, max_shots: int | None = None) -> list[ShotRecord]:
    """Reconstruct hits, those of one pipeline and pattern side with stacked phasing launches.

    Parameters
    ----------
    hits : sequence of Hit
        From :func:`screen_shot`.
    max_shots : int, optional
        Shots per phasing launch at most (default: as many as the memory budget holds,
        :func:`~xstereo_gpu.batch.launch.run_launch`).

    Returns
    -------
    list of ShotRecord
        In the order of ``hits``: ``ok`` with the host ``Results``, or ``failed`` with the reason;
        ``shots_per_launch`` says how many shots shared the phasing launch.
    """
    by_pipe: dict[int, list[int]] = {}
    for k, h in enumerate(hits):
        by_pipe.setdefault(id(h.pipe), []).append(k)
    out: list[ShotRecord] = [h.record for h in hits]
    for ks in by_pipe.values():
        pipe = hits[ks[0]].pipe
        for k, (res, launch) in zip(ks, run_launch(pipe, [hits[k].shot for k in ks], max_shots=max_shots)):
            rec = out[k]
            rec.shots_per_launch = launch
            if isinstance(res, BaseException):
                rec.status, rec.reason = "failed", _reason(res)
            else:
                rec.timings.update(res.timings)
                rec.geometry, rec.results = res.geometry, res
    return out


def process_shots(
    pipe: Pipeline | Callable[[Shot], Pipeline],
    items: Sequence[tuple[int, str, Shot | BaseException, float]],
    *,
    veto: VetoOptions = DEFAULT_VETO,
    max_shots: int | None = None,
) -> list[ShotRecord]:
    """Veto, then reconstruct, several shots; their records in the order of ``items``.

    ``items`` are ``(index, label, shot_or_exception, read_s)``; see :func:`screen_shot` and
    :func:`reconstruct_hits`.
    """
    screened = [screen_shot(pipe, i, lab, shot, veto=veto, read_s=t) for i, lab, shot, t in items]
    hits = [s for s in screened if isinstance(s, Hit)]
    done = iter(reconstruct_hits(hits, max_shots=max_shots))
    return [next(done) if isinstance(s, Hit) else s for s in screened]
