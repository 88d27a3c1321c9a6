"""Many shots on a Dask ``distributed`` cluster: one task per shot, the records streamed to one writer.

The driver (:func:`iter_distributed`, used by :func:`~xstereo_gpu.batch.process.process_run` when
given a ``client``) submits one task per shot index, at most a bounded number in flight, and yields
the outcomes as they complete. A task (:func:`reconstruct_index`) reads its shot on the worker from a
one-shot :class:`~xstereo_gpu.batch.sources.ShotSource` (plain, picklable data: kind, path, index,
read overrides), reconstructs it with a :class:`~xstereo_gpu.pipeline.Pipeline` cached on the worker
per options, and returns only the small pieces the writer needs (the record without its ``Results``,
its summary row and its cleaned cloud). Workers never write the store. A worker that dies loses no
shot: the scheduler reruns its tasks on the other workers.

``distributed`` is an optional dependency (the ``dask`` extra); it is imported in the functions that
need it, so that the in-process path works without it.
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ..config import PipelineOptions
from ..diagnostics import recipe_warning
from ..pipeline import Pipeline
from ..shot import Shot
from .record import ShotRecord, record_cloud, record_row
from .single import DEFAULT_VETO, process_shot
from .sources import ShotSource
from .veto import VetoOptions

__all__ = ["OptionsBySample", "Outcome", "reconstruct_index", "iter_distributed", "one_shot_source"]

#: Tasks in flight per worker (the driver keeps ``IN_FLIGHT_PER_WORKER`` x workers submitted).
IN_FLIGHT_PER_WORKER = 4


@dataclass(frozen=True)
class OptionsBySample:
    """A picklable ``options(shot)``: the options of the shot's sample name, else a default.

    Attributes
    ----------
    recipes : tuple of (str, PipelineOptions)
        Options per sample name.
    default : PipelineOptions
        Options of a shot whose sample name is not in ``recipes``.
    sample_from : str or None
        Where the sample name was read; when given, a shot using ``default`` warns (once per name
        and process) as :func:`~xstereo_gpu.diagnostics.recipe_warning` does.
    profile : str
        The profile named by that warning.
    """

    recipes: tuple[tuple[str, PipelineOptions], ...]
    default: PipelineOptions
    sample_from: str | None = None
    profile: str = "cpu"

    def __call__(self, shot: Shot) -> PipelineOptions:
        for name, opts in self.recipes:
            if shot.sample == name:
                return opts
        if self.sample_from is not None:
            recipe_warning(shot.sample, self.sample_from, self.profile)
        return self.default


@dataclass
class Outcome:
    """What a task sends back for one shot (small: no ``Results``).

    Attributes
    ----------
    record : ShotRecord
        The shot's record with ``results=None``.
    row : dict
        Its summary row (:func:`~xstereo_gpu.batch.record.record_row`, made on the worker).
    cloud : tuple of ndarray
        Its cleaned cloud (:func:`~xstereo_gpu.batch.record.record_cloud`).
    warnings : list of Warning
        The warnings the shot raised on the worker, re-issued by the driver.
    """

    record: ShotRecord
    row: dict
    cloud: tuple
    warnings: list


def one_shot_source(source: ShotSource, index: int) -> ShotSource:
    """A source holding shot ``index`` only (small, to send with a task); iterate it for the shot.

    A stack keeps its file and the frame; a run of files keeps the shot's file (read as index 0); a
    EuXFEL run keeps the shot's train and its one file (read as the pulse's index in that train),
    with the same label.
    """
    if source.kind == "stack":
        return ShotSource("stack", source.paths, (int(index),), source.read_overrides)
    if source.kind == "extra-data":
        run, local = source.xfel.one_shot(int(index))
        return ShotSource("extra-data", source.paths, (local,), source.read_overrides, xfel=run)
    return ShotSource("files", (source.paths[int(index)],), (0,), source.read_overrides)


def _pipelines() -> dict:
    """The Dask worker's pipeline cache; outside a worker (a task called directly) a fresh one, so that
    the module keeps no state of its own."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return {}
    if not hasattr(worker, "_xstereo_pipelines"):
        worker._xstereo_pipelines = {}
    return worker._xstereo_pipelines


def _pipeline(options: PipelineOptions | None, backend: str | None, max_memory: int | None) -> Pipeline:
    cache, key = _pipelines(), (options, backend, max_memory)
    if key not in cache:
        cache[key] = Pipeline(options, backend=backend, max_memory=max_memory)
    return cache[key]


def _portable(w: warnings.WarningMessage) -> Warning:
    """The warning itself when it pickles (an ``InputWarning`` keeps its category), else its text."""
    import pickle

    try:
        return pickle.loads(pickle.dumps(w.message))
    except Exception:  # noqa: BLE001 - any unpicklable warning travels as its text
        return UserWarning(str(w.message))


def reconstruct_index(
    shot_source: ShotSource,
    index: int,
    label: str,
    options: PipelineOptions | Callable[[Shot], PipelineOptions] | None,
    veto: VetoOptions,
    backend: str | None = None,
    max_memory: int | None = None,
) -> Outcome:
    """The worker's task: read, veto and reconstruct one shot; return its small outcome.

    Parameters
    ----------
    shot_source : ShotSource
        :func:`one_shot_source` of the run's source for this shot.
    index, label : int, str
        The shot's index and label in the run.
    options : PipelineOptions, picklable callable or None
        As for :func:`~xstereo_gpu.batch.process.process_run`; a callable must pickle (a
        module-level function, a ``functools.partial``, :class:`OptionsBySample`), not a lambda.
    veto : VetoOptions
        The hit veto.
    backend, max_memory
        As for :class:`~xstereo_gpu.pipeline.Pipeline` (one pipeline per options per worker process).

    Returns
    -------
    Outcome
        The record without ``Results``, its row and cloud, and the warnings raised.
    """
    if callable(options):

        def pipe(shot: Shot) -> Pipeline:
            return _pipeline(options(shot), backend, max_memory)

    else:
        pipe = _pipeline(options, backend, max_memory)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        _, _, shot = next(shot_source.items())
        read_s = time.perf_counter() - t0
        rec = process_shot(pipe, index, label, shot, veto=veto, read_s=read_s)
        del shot
        row, cloud = record_row(rec), record_cloud(rec)
    rec.results = None
    return Outcome(rec, row, cloud, [_portable(w) for w in caught])


def iter_distributed(
    source: ShotSource,
    options: PipelineOptions | Callable[[Shot], PipelineOptions] | None,
    *,
    client,
    skip: Iterable[int] = (),
    veto: VetoOptions = DEFAULT_VETO,
    backend: str | None = None,
    max_memory: int | None = None,
    max_in_flight: int | None = None,
) -> Iterator[Outcome]:
    """Reconstruct the shots of ``source`` not in ``skip`` on the workers of ``client``.

    One task per shot (:func:`reconstruct_index`), at most ``max_in_flight`` submitted at a time;
    outcomes are yielded in order of completion, and the warnings of each shot re-issued here. When
    the iteration ends early (the consumer stops, an error) the tasks still pending are cancelled.

    Parameters
    ----------
    source : ShotSource
        The run's shots.
    options : PipelineOptions, picklable callable or None
        See :func:`reconstruct_index`.
    client : distributed.Client
        The cluster to compute on.
    skip : iterable of int
        Indices not to compute (stored already).
    veto, backend, max_memory
        See :func:`reconstruct_index`.
    max_in_flight : int, optional
        Tasks submitted at once (default :data:`IN_FLIGHT_PER_WORKER` x the workers, at least 4).

    Yields
    ------
    Outcome
        One per shot computed, as it completes.

    Raises
    ------
    Exception
        What a task raised beyond a bad shot (a bug), or ``distributed``'s ``KilledWorker`` when a
        shot killed several workers in turn.
    """
    from distributed import as_completed

    if max_in_flight is None:
        workers = len(client.scheduler_info().get("workers", {}))
        max_in_flight = max(4, IN_FLIGHT_PER_WORKER * workers)
    skip = frozenset(int(i) for i in skip)
    todo = iter([i for i in source.indices if i not in skip])
    run = uuid.uuid4().hex[:12]

    def submit(i: int):
        return client.submit(
            reconstruct_index,
            one_shot_source(source, i),
            i,
            source.label(i),
            options,
            veto,
            backend,
            max_memory,
            pure=False,
            key=f"xstereo-shot-{run}-{i}",
        )

    pending = {submit(i) for _, i in zip(range(max_in_flight), todo)}
    queue = as_completed(list(pending))
    try:
        for future in queue:
            pending.discard(future)
            outcome = future.result()
            future.release()
            nxt = next(todo, None)
            if nxt is not None:
                new = submit(nxt)
                pending.add(new)
                queue.add(new)
            for w in outcome.warnings:
                warnings.warn(w, stacklevel=2)
            yield outcome
    finally:
        queue.clear()
        if pending:
            client.cancel(list(pending))
