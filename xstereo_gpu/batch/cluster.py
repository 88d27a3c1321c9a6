"""Many shots on a Dask ``distributed`` cluster: a task per few shots, the records streamed to one writer.

The driver (:func:`iter_distributed`, used by :func:`~xstereo_gpu.batch.process.process_run` when
given a ``client``) submits one task per group of :data:`SHOTS_PER_TASK` shot indices, at most a
bounded number in flight, and yields the outcomes as they complete. A task
(:func:`reconstruct_indices`) reads its shots on the worker from one-shot
:class:`~xstereo_gpu.batch.sources.ShotSource` s (plain, picklable data: kind, path, index, read
overrides), vetoes them and reconstructs the hits (their phasing stacked,
:mod:`~xstereo_gpu.batch.launch`) with a :class:`~xstereo_gpu.pipeline.Pipeline` cached on the
worker per options, and returns only the small pieces the writer needs (each record without its
``Results``, its summary row and its cleaned cloud). Workers never write the store. A worker that
dies loses no shot: the scheduler reruns its tasks on the other workers; a task that kills every
worker it runs on (``KilledWorker``) is split into one task per shot, and the shot that still kills
its worker is stored ``failed`` with that reason.

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
from .shots import DEFAULT_VETO, process_shots
from .sources import ShotSource
from .veto import VetoOptions

__all__ = [
    "OptionsBySample",
    "Outcome",
    "reconstruct_indices",
    "iter_distributed",
    "one_shot_source",
    "SHOTS_PER_TASK",
]

#: Tasks in flight per worker (the driver keeps ``IN_FLIGHT_PER_WORKER`` x workers submitted).
IN_FLIGHT_PER_WORKER = 4
#: Shots per task by default: blanks cost a task's overhead a few at a time, hits of a task share a
#: phasing launch, and a lost worker's task reruns few shots.
SHOTS_PER_TASK = 4


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


def reconstruct_indices(
    shot_sources: list[ShotSource],
    indices: list[int],
    labels: list[str],
    options: PipelineOptions | Callable[[Shot], PipelineOptions] | None,
    veto: VetoOptions,
    backend: str | None = None,
    max_memory: int | None = None,
    max_shots: int | None = None,
) -> list[Outcome]:
    """The worker's task: read, veto and reconstruct a few shots; return their small outcomes.

    Parameters
    ----------
    shot_sources : list of ShotSource
        :func:`one_shot_source` of the run's source for each shot.
    indices, labels : list of int, list of str
        The shots' indices and labels in the run.
    options : PipelineOptions, picklable callable or None
        As for :func:`~xstereo_gpu.batch.process.process_run`; a callable must pickle (a
        module-level function, a ``functools.partial``, :class:`OptionsBySample`), not a lambda.
    veto : VetoOptions
        The hit veto.
    backend, max_memory
        As for :class:`~xstereo_gpu.pipeline.Pipeline` (one pipeline per options per worker process).
    max_shots : int, optional
        Shots per phasing launch at most (default: sized from the worker's free memory).

    Returns
    -------
    list of Outcome
        Per shot, in order: the record without ``Results``, its row and cloud; the warnings
        raised by the task go with the first.
    """
    if callable(options):

        def pipe(shot: Shot) -> Pipeline:
            return _pipeline(options(shot), backend, max_memory)

    else:
        pipe = _pipeline(options, backend, max_memory)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = []
        for src, index, label in zip(shot_sources, indices, labels):
            t0 = time.perf_counter()
            _, _, shot = next(src.items())
            items.append((index, label, shot, time.perf_counter() - t0))
        records = process_shots(pipe, items, veto=veto, max_shots=max_shots)
        del items
        pieces = [(record_row(rec), record_cloud(rec)) for rec in records]
    out = []
    for k, (rec, (row, cloud)) in enumerate(zip(records, pieces)):
        rec.results = None
        out.append(Outcome(rec, row, cloud, [_portable(w) for w in caught] if k == 0 else []))
    return out


def _killed(index: int, label: str, exc: BaseException) -> Outcome:
    """The outcome of a shot whose task killed every worker it ran on."""
    rec = ShotRecord(index, label, "failed", f"{type(exc).__name__}: {exc}")
    return Outcome(rec, record_row(rec), record_cloud(rec), [])


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
    shots_per_task: int | None = None,
) -> Iterator[Outcome]:
    """Reconstruct the shots of ``source`` not in ``skip`` on the workers of ``client``.

    One task per ``shots_per_task`` shots (:func:`reconstruct_indices`), at most ``max_in_flight``
    submitted at a time; outcomes are yielded in order of completion, and the warnings of each task
    re-issued here. A task that ``KilledWorker`` ends (its shots killed the workers it was retried
    on) is resubmitted one task per shot, and a one-shot task that does is that shot's ``failed``
    outcome: the run goes on. When the iteration ends early (the consumer stops, an error) the tasks
    still pending are cancelled.

    Parameters
    ----------
    source : ShotSource
        The run's shots.
    options : PipelineOptions, picklable callable or None
        See :func:`reconstruct_indices`.
    client : distributed.Client
        The cluster to compute on.
    skip : iterable of int
        Indices not to compute (stored already).
    veto, backend, max_memory
        See :func:`reconstruct_indices`.
    max_in_flight : int, optional
        Tasks submitted at once (default :data:`IN_FLIGHT_PER_WORKER` x the workers, at least 4).
    shots_per_task : int, optional
        Shots per task, which are also the most a worker stacks in one phasing launch (default
        :data:`SHOTS_PER_TASK`).

    Yields
    ------
    Outcome
        One per shot computed, as it completes.

    Raises
    ------
    Exception
        What a task raised beyond a bad shot (a bug).
    """
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    if max_in_flight is None:
        workers = len(client.scheduler_info().get("workers", {}))
        max_in_flight = max(4, IN_FLIGHT_PER_WORKER * workers)
    size = SHOTS_PER_TASK if shots_per_task is None else max(1, int(shots_per_task))
    skip = frozenset(int(i) for i in skip)
    indices = [i for i in source.indices if i not in skip]
    todo = iter([indices[k : k + size] for k in range(0, len(indices), size)])
    run = uuid.uuid4().hex[:12]

    def submit(group: list[int]):
        return client.submit(
            reconstruct_indices,
            [one_shot_source(source, i) for i in group],
            group,
            [source.label(i) for i in group],
            options,
            veto,
            backend,
            max_memory,
            size,
            pure=False,
            key=f"xstereo-shots-{run}-{group[0]}-{len(group)}",
        )

    groups: dict = {}  # future -> its indices
    pending = set()

    def add(group: list[int]):
        future = submit(group)
        groups[future] = group
        pending.add(future)
        return future

    queue = as_completed([add(g) for _, g in zip(range(max_in_flight), todo)])
    try:
        for future in queue:
            pending.discard(future)
            group = groups.pop(future)
            try:
                outcomes = future.result()
            except KilledWorker as exc:
                future.release()
                if len(group) > 1:  # find the shot that kills: one task each
                    for i in group:
                        queue.add(add([i]))
                    continue
                outcomes = [_killed(group[0], source.label(group[0]), exc)]
            else:
                future.release()
            nxt = next(todo, None)
            if nxt is not None:
                queue.add(add(nxt))
            for outcome in outcomes:
                for w in outcome.warnings:
                    warnings.warn(w, stacklevel=2)
                yield outcome
    finally:
        queue.clear()
        if pending:
            client.cancel(list(pending))
