"""The many-shot loop: read (a thread ahead), veto, reconstruct (hits phased in stacks), store every shot."""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Iterator

import numpy as np

from .. import __version__
from ..config import PipelineOptions
from ..errors import InputError, check
from ..memory import MAX_SHOTS_PER_LAUNCH
from ..pipeline import Pipeline
from ..progress import Progress
from ..shot import Shot
from .cluster import iter_distributed
from .prefetch import prefetch
from .record import ShotRecord, record_cloud, record_row
from .shots import DEFAULT_VETO, SHOT_ERRORS, Hit, reconstruct_hits, screen_shot
from .sources import ShotSource, open_source
from .store import RunStore
from .veto import VetoOptions

__all__ = ["process_run", "SHOT_ERRORS", "MAX_HELD"]

#: Shots held back, at most, while hits wait for a full phasing launch (their records are then
#: yielded and stored late: a kill loses them with the chunk in flight).
MAX_HELD = 64


def _timed(items: Iterator[tuple]) -> Iterator[tuple]:
    """``(index, label, shot, read_s)``: each item of ``items`` with the seconds its read took."""
    while True:
        t0 = time.perf_counter()
        try:
            item = next(items)
        except StopIteration:
            return
        yield (*item, time.perf_counter() - t0)


def process_run(
    inputs,
    options: PipelineOptions | Callable[[Shot], PipelineOptions] | None = None,
    *,
    store: str | os.PathLike | None = None,
    veto: VetoOptions = DEFAULT_VETO,
    chunk_size: int = 16,
    retry_failed: bool = False,
    backend: str | None = None,
    progress: Progress | None = None,
    max_memory: int | None = None,
    client=None,
    shots_per_launch: int | None = None,
) -> Iterator[ShotRecord]:
    """Reconstruct every shot of a run, yielding each shot's record as it finishes.

    A generator: nothing runs until it is iterated (``for rec in process_run(...)``, or
    ``list(...)``), and a consumer may stop at any record. One :class:`~xstereo_gpu.pipeline.Pipeline`
    serves the whole run (device and options set up once); the next shots are read on a thread
    while the current ones compute (:func:`~xstereo_gpu.batch.prefetch.prefetch`), and the hits of
    one pipeline are phased a stack of shots at a time (:mod:`~xstereo_gpu.batch.launch`: one set
    of batched FFT launches for several shots, sized from the free memory, each shot's result the
    same as alone). A shot that cannot be read, or whose
    reconstruction raises ``InputError``, ``ValueError`` or ``FloatingPointError``, is ``failed``
    with the reason and the run goes on; a blank shot (hit veto, :mod:`~xstereo_gpu.batch.veto`)
    costs only its read and two window sums.

    Parameters
    ----------
    inputs : ShotSource, str, path-like or sequence of them
        A source (:func:`~xstereo_gpu.batch.sources.open_source`, also for a selection ``start``,
        ``stop``, ``step`` or geometry overrides), or what ``open_source`` takes: a stack file, shot
        files, glob patterns.
    options : PipelineOptions or callable, optional
        Every shot's options (default: the pipeline's profile for the backend), or
        ``options(shot) -> PipelineOptions`` called for each hit (a run of several samples, each with
        its recipe: ``lambda shot: PipelineOptions.for_sample(shot.sample, "cpu")``); one pipeline
        per distinct options, on one device.
    store : str or path-like, optional
        A run store directory (:class:`~xstereo_gpu.batch.store.RunStore`, created when missing).
        Shots already stored there are skipped (not yielded); records are written one chunk file per
        ``chunk_size`` shots as the chunk fills, and ``run.h5`` / ``summary.csv`` are rewritten when
        the iteration ends: exhausted, stopped by the consumer, or ended by an exception (what was
        finished is stored, the shot in flight is lost).
    veto : VetoOptions
        The hit veto's threshold.
    chunk_size : int
        Shots per chunk file (a kill loses at most one chunk of work).
    retry_failed : bool
        Also redo the shots stored as ``failed``; their new record replaces the old one.
    backend, progress, max_memory
        As for :class:`~xstereo_gpu.pipeline.Pipeline`.
    client : distributed.Client, optional
        Compute the shots on this Dask cluster's workers (:mod:`~xstereo_gpu.batch.cluster`: one
        task per shot, a pipeline per options on each worker, a killed worker's shots rerun
        elsewhere); the records stream back here, and this process alone writes the store. Then
        ``options`` must pickle (``PipelineOptions``, a module-level function, a
        ``functools.partial``, :class:`~xstereo_gpu.batch.cluster.OptionsBySample`; not a lambda),
        ``progress`` only reports the records, and a chunk holds the rows that finished (in order
        of completion, not of index).

    shots_per_launch : int, optional
        Hits phased in one stack at most (default: as many as the memory budget holds, at most
        :data:`~xstereo_gpu.memory.MAX_SHOTS_PER_LAUNCH`; 1: each alone). Hits wait, at most
        :data:`MAX_HELD` shots, for a full stack; with a ``client``, a task holds this many shots
        (default :data:`~xstereo_gpu.batch.cluster.SHOTS_PER_TASK`).

    Yields
    ------
    ShotRecord
        One per shot processed: in index order, with the host Results of ok shots in ``results``;
        with a ``client``, in order of completion and with ``results=None``.

    Raises
    ------
    InputError
        ``chunk_size`` or ``shots_per_launch`` < 1, or a store whose stored labels differ from the
        inputs' (another run's store: the indices would not name the same shots).
    """
    check(isinstance(chunk_size, int) and chunk_size >= 1, "chunk_size", repr(chunk_size), "an integer >= 1")
    check(
        shots_per_launch is None or (isinstance(shots_per_launch, int) and shots_per_launch >= 1),
        "shots_per_launch",
        repr(shots_per_launch),
        "None (sized from the free memory) or an integer >= 1",
    )
    source = inputs if isinstance(inputs, ShotSource) else open_source(inputs)
    run_store = RunStore(store) if store is not None else None
    skip: set[int] = set()
    if run_store is not None:
        stored = run_store.labels()
        wrong = [
            (i, lab) for i, lab in sorted(stored.items()) if i in source.indices and source.label(i) != lab
        ]
        if wrong:
            i, lab = wrong[0]
            raise InputError(
                str(run_store.path),
                f"shot {i} stored as {lab!r} but the inputs give "
                f"{source.label(i)!r} ({len(wrong)} such shots)",
                "the inputs of the run that made the store (or a new store)",
            )
        skip = run_store.done(retry_failed=retry_failed)
    make = functools.partial(Pipeline, backend=backend, progress=progress, max_memory=max_memory)
    pipes: dict[PipelineOptions, Pipeline] = {}

    def pipeline_for(shot: Shot) -> Pipeline:
        opts = options(shot)
        if opts not in pipes:
            pipes[opts] = make(opts)
        return pipes[opts]

    pipe = pipeline_for if callable(options) else make(options)
    first = make(None) if callable(options) else pipe
    metadata = {
        "options_toml": first.options.to_toml() if not callable(options) else "# options chosen per shot\n",
        "program": "xstereo-gpu",
        "version": __version__,
        "backend": "numpy" if first.xp is np else "cupy",
        "sources": json.dumps(source.describe()),
        "veto_min_photons": float(veto.min_photons),
        "chunk_size": int(chunk_size),
    }
    pending: list[tuple[dict, tuple]] = []  # rows and clouds of the chunk in flight (no Results kept)

    sizes: dict[tuple[int, int], int] = {}  # (pipeline, pattern side) -> shots per launch

    def launch_size(hit: Hit) -> int:
        key = (id(hit.pipe), hit.pattern_side)
        if key not in sizes:
            sizes[key] = hit.pipe.shots_per_launch(hit.pattern_side, cap=shots_per_launch)
        return sizes[key]

    def flush(held: list) -> Iterator[tuple[ShotRecord, None, None]]:
        done = iter(reconstruct_hits([h for h in held if isinstance(h, Hit)], max_shots=shots_per_launch))
        for item in held:
            yield (next(done) if isinstance(item, Hit) else item), None, None

    def local() -> Iterator[tuple[ShotRecord, dict | None, tuple | None]]:
        items = prefetch(_timed(source.items(skip=skip)), max(shots_per_launch or 1, MAX_SHOTS_PER_LAUNCH))
        held: list[ShotRecord | Hit] = []  # in index order; the hits wait for a full launch
        try:
            for index, label, shot, read_s in items:
                held.append(screen_shot(pipe, index, label, shot, veto=veto, read_s=read_s))
                del shot
                hits = [h for h in held if isinstance(h, Hit)]
                if hits and len(hits) < min(map(launch_size, hits)) and len(held) < MAX_HELD:
                    continue
                yield from flush(held)
                held = []
            yield from flush(held)
        finally:
            items.close()

    if client is None:
        outcomes = local()
    else:
        remote = iter_distributed(
            source,
            options,
            client=client,
            skip=skip,
            veto=veto,
            backend=backend,
            max_memory=max_memory,
            shots_per_task=shots_per_launch,
        )
        outcomes = ((o.record, o.row, o.cloud) for o in remote)
    try:
        for rec, row, cloud in outcomes:
            if progress is not None:
                progress.stage("batch", f"shot {rec.index} ({rec.label}): {rec.status} {rec.reason}".rstrip())
            if run_store is not None:
                if row is None:
                    row, cloud = record_row(rec), record_cloud(rec)
                pending.append((row, cloud))
                if len(pending) >= chunk_size:
                    run_store.write_rows(*zip(*pending), metadata=metadata)
                    pending = []
            yield rec
    finally:
        outcomes.close()
        if run_store is not None:
            if pending:
                run_store.write_rows(*zip(*pending), metadata=metadata)
            run_store.finalize(metadata=metadata)
