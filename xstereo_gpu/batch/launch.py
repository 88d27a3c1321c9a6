"""Several shots with one phasing launch: their views stacked, phased together, finished one by one.

On a GPU one shot's ``2 x R`` runs of ``256^2`` leave most of the device idle between small FFTs;
stacking the hits of a chunk (:meth:`~xstereo_gpu.pipeline.Pipeline.shots_per_launch` of them, sized
from the free memory) fills it, with the same per-shot result: each shot keeps the random starts of
its own phasing (:func:`~xstereo_gpu.phasing.runs.split_phasing`), so the stack gives what one
:meth:`~xstereo_gpu.pipeline.Pipeline.run` per shot gives (bit-identical on NumPy). The stages after
phasing run shot by shot.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InputError
from ..geometry import StereoGeometry
from ..phasing.runs import split_phasing
from ..pipeline import Pipeline
from ..results import Results
from ..shot import Shot

__all__ = ["run_launch", "SHOT_ERRORS"]

#: What a reconstruction may raise for one bad shot; the shot is then ``failed`` and the run goes on.
#: Anything else (a bug, MemoryError, KeyboardInterrupt) ends the run, after storing what was done.
SHOT_ERRORS = (InputError, ValueError, FloatingPointError)


@dataclass
class _Prepared:
    """One shot between its upload and its phasing."""

    shot: Shot
    geometry: StereoGeometry
    intensities: object  # (2, N, N) float32 on the device
    valid: object  # (2, N, N) bool
    timings: dict
    hdr: dict | None
    memory: dict | None
    spent_s: float  # seconds of its own stages so far


def _prepare(pipe: Pipeline, shot: Shot) -> _Prepared:
    t0 = time.perf_counter()
    pipe.timings, pipe.hdr = {}, None
    geometry, intensities, valid = pipe.setup(shot)
    return _Prepared(
        shot,
        geometry,
        intensities,
        valid,
        dict(pipe.timings),
        pipe.hdr,
        pipe.memory,
        time.perf_counter() - t0,
    )


def _phase(pipe: Pipeline, group: list[_Prepared]) -> tuple[list, float]:
    """The PhasingResult of each shot of ``group`` and the seconds the launch took (all shots)."""
    xp = pipe.xp
    t0 = time.perf_counter()
    pipe.timings = {}
    if len(group) == 1:
        phased = [pipe.phase(group[0].intensities, group[0].valid)]
    else:
        stacked = pipe.phase(
            xp.concatenate([p.intensities for p in group]),
            xp.concatenate([p.valid for p in group]),
            shots=len(group),
        )
        phased = split_phasing(stacked, len(group))
    return phased, time.perf_counter() - t0


def _finish(pipe: Pipeline, p: _Prepared, phased, phase_s: float) -> Results:
    """The stages after phasing of one shot; its ``timings``: its own stages and its share of the launch."""
    pipe.timings, pipe.hdr, pipe.memory = dict(p.timings), p.hdr, p.memory
    pipe.timings["phase"] = phase_s
    t0 = time.perf_counter() - p.spent_s - phase_s
    truth = pipe.truth(p.shot)
    quality = pipe.quality(phased.views, p.intensities, p.valid, p.geometry, truth)
    views = pipe.align(phased, p.geometry)
    return pipe.finish(t0, views, truth=truth, sample=p.shot.sample, source=p.shot.source, quality=quality)


def run_launch(
    pipe: Pipeline, shots: Sequence[Shot], *, max_shots: int | None = None
) -> list[tuple[Results | BaseException, int]]:
    """Reconstruct ``shots`` with one pipeline, their phasing stacked a launch at a time.

    Parameters
    ----------
    pipe : Pipeline
        The pipeline (device, options) of every shot.
    shots : sequence of Shot
        The hits to reconstruct.
    max_shots : int, optional
        At most this many shots per launch (default: as many as the memory budget holds,
        :meth:`~xstereo_gpu.pipeline.Pipeline.shots_per_launch`; ``1`` phases each shot alone).
        Shots of different pattern sizes never share a launch.

    Returns
    -------
    list of (Results or Exception, int)
        Per shot, in order: its host results, or the exception of :data:`SHOT_ERRORS` its stages
        raised (the other shots go on); and the shots its phasing launch held (0 when it failed
        before phasing). A launch that raises is retried shot by shot, so that the one bad shot
        fails alone. The results' ``timings["phase"]`` is the launch's time divided among its shots.
    """
    out: list[tuple[Results | BaseException, int] | None] = [None] * len(shots)
    ready: dict[int, list[tuple[int, _Prepared]]] = defaultdict(list)  # by pattern side
    for i, shot in enumerate(shots):
        try:
            p = _prepare(pipe, shot)
        except SHOT_ERRORS as exc:
            out[i] = (exc, 0)
            continue
        ready[int(p.intensities.shape[-1])].append((i, p))
    for n, items in ready.items():
        size = pipe.shots_per_launch(n, cap=max_shots)
        launches = [items[k : k + size] for k in range(0, len(items), size)]
        while launches:
            launch = launches.pop(0)
            try:
                phased, launch_s = _phase(pipe, [p for _, p in launch])
            except SHOT_ERRORS as exc:
                if len(launch) > 1:  # find the bad shot: each alone
                    launches[:0] = [[item] for item in launch]
                else:
                    out[launch[0][0]] = (exc, 0)
                continue
            share = launch_s / len(launch)
            for (i, p), ph in zip(launch, phased):
                try:
                    out[i] = (_finish(pipe, p, ph, share), len(launch))
                except SHOT_ERRORS as exc:
                    out[i] = (exc, len(launch))
            del phased
    return out  # type: ignore[return-value]
