"""Start-up of the Dask cluster that ``xstereo batch`` computes its shots on.

``--workers`` chooses it (:func:`start_client`):

* ``auto`` (the default): an embedded cluster sized to this machine. With CuPy and CUDA devices, one
  worker per visible GPU: dask-cuda's ``LocalCUDACluster`` when ``dask_cuda`` is installed (the
  ``cuda12`` / ``cuda13`` extras), else a ``SpecCluster`` of Dask nannies, each pinned to its GPU
  through ``CUDA_VISIBLE_DEVICES`` (:func:`pinned_gpu_cluster`). On the CPU a ``LocalCluster`` of
  single-threaded worker processes, as many as :func:`cpu_workers` allows: one per core this process
  may use, no more than the memory holds at :func:`shot_bytes` plus :data:`WORKER_OVERHEAD_BYTES` each,
  no more than the shots to do. When that comes to one worker or none (one GPU, one core, a single
  shot to do, a resumed run with nothing left) the shots run in this process instead: a lone worker
  process would only add its start-up.
* ``N``: N worker processes (on GPUs, pinned to them in turn); ``0``: in this process, no Dask.
* ``--scheduler ADDRESS`` joins an existing cluster (docs/cluster.md: SLURM through dask-jobqueue,
  ``dask scheduler`` / ``dask worker`` / ``dask cuda worker``).

Embedded clusters keep Dask's own log lines below ERROR out of the output, have no dashboard, and
their workers ignore SIGINT (:mod:`~xstereo_gpu.batch._worker_setup`): Ctrl-C reaches this process,
which stores what finished and closes the cluster (the caller's ``ExitStack``).

``distributed`` (a core dependency) and ``dask_cuda`` are imported in the functions that start a
cluster, so that commands which start none do not pay for their import.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from ..backend import select_backend
from ..config import PipelineOptions
from ..errors import InputError, check
from ..memory import AUTO_FRACTION, CPU_SPLIT_BYTES, GIB, available_memory, format_size
from ..pipeline import Pipeline
from .sources import ShotSource

__all__ = [
    "AUTO",
    "WORKER_OVERHEAD_BYTES",
    "parse_workers",
    "cpu_workers",
    "shot_bytes",
    "visible_gpus",
    "gpu_worker_envs",
    "pinned_gpu_cluster",
    "start_client",
]

#: ``--workers auto``: the embedded cluster sized to this machine.
AUTO = "auto"
#: Bytes a worker process holds besides its shot: the interpreter, NumPy / SciPy / h5py and the
#: package imported, the Dask worker itself (about 250 MiB measured on the CPU; counted twice).
WORKER_OVERHEAD_BYTES = GIB // 2
#: Level of Dask's own loggers in an embedded cluster (its INFO and WARNING lines are noise here).
SILENCE = logging.ERROR
#: Module each embedded worker loads at start (Dask ``preload``).
PRELOAD = "xstereo_gpu.batch._worker_setup"


def parse_workers(value, scheduler: str | None = None) -> int | str | None:
    """``--workers`` checked against ``--scheduler``: :data:`AUTO`, a number of workers >= 0, or None
    (``--scheduler`` without ``--workers``: that cluster's workers).

    ``value`` is ``None`` when not given (``auto``), ``"auto"``, or a count (int or str).

    Raises
    ------
    InputError
        Anything else, or a ``--workers`` given with ``--scheduler``, naming ``--workers``.
    """
    if scheduler is not None:
        if value is not None:
            raise InputError(
                "--workers",
                f"{value!r} with --scheduler {scheduler}",
                "one of --workers, --scheduler (the shots then run on that cluster's workers)",
            )
        return None
    if value is None or (isinstance(value, str) and value.strip().lower() == AUTO):
        return AUTO
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = None
    check(
        n is not None and n >= 0,
        "--workers",
        repr(value),
        "auto, or a number of workers >= 0 (0: the shots in this process)",
    )
    return n


def cpu_workers(*, cores: int, available_bytes: int, shot_bytes: int, shots: int) -> int:
    """Worker processes of an embedded CPU cluster (``--workers auto``): the rule, as a pure function.

    One single-threaded worker per core, no more than ``available_bytes`` holds at ``shot_bytes +``
    :data:`WORKER_OVERHEAD_BYTES` each, no more than ``shots``; 0 (the shots in this process) when
    that leaves fewer than two.

    Parameters
    ----------
    cores : int
        CPU cores this process may use (``len(os.sched_getaffinity(0))``).
    available_bytes : int
        Memory the workers may share [B] (``start_client`` passes :data:`~xstereo_gpu.memory.AUTO_FRACTION`
        of the free RAM).
    shot_bytes : int
        Estimated peak of one shot on a worker [B] (:func:`shot_bytes`).
    shots : int
        Shots to do.

    Returns
    -------
    int
        0, or the number of workers (>= 2).
    """
    per_worker = max(int(shot_bytes), 1) + WORKER_OVERHEAD_BYTES
    n = min(int(cores), int(available_bytes) // per_worker, int(shots))
    return n if n >= 2 else 0


def _plan_peak(options: PipelineOptions, n: int, max_memory: int | None) -> int:
    """Peak bytes of the pipeline's memory plan for ``n x n`` views on the CPU."""
    pipe = Pipeline(options, backend="numpy", max_memory=max_memory)
    try:
        plan = pipe.plan_memory(n)
    except InputError:  # does not fit even split: the whole limit (the shot fails with the message)
        return int(pipe.max_memory or AUTO_FRACTION * available_memory(np)[0])
    return max(int(plan["phasing"]["estimated_peak_bytes"]), int(plan["matching"]["estimated_peak_bytes"]))


def shot_bytes(
    source: ShotSource,
    options: Iterable[PipelineOptions],
    *,
    indices: Sequence[int] | None = None,
    max_memory: int | None = None,
) -> int:
    """Estimated peak bytes of one shot on a CPU worker: the largest memory plan of ``options``.

    The plan (:meth:`~xstereo_gpu.pipeline.Pipeline.plan_memory`: phasing batches and SGM strips
    under the budget, ``max_memory`` or :data:`~xstereo_gpu.memory.CPU_SPLIT_BYTES` at most) is made
    for the pattern size of the first readable shot among ``indices`` (default: the first three
    selected); shots of one run share their detector. Reading it costs one shot's read, with its
    warnings silenced (the worker that reconstructs it shows them).

    Returns
    -------
    int
        Bytes; ``CPU_SPLIT_BYTES`` when none of those shots can be read.
    """
    indices = source.indices[:3] if indices is None else indices
    for i in indices:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                shot = source.read(i)
        except (InputError, OSError, ValueError):
            continue
        return max(_plan_peak(o, int(o.prepare.crop or shot.pattern_size), max_memory) for o in options)
    return CPU_SPLIT_BYTES


def visible_gpus(environ: Mapping[str, str], count: int) -> list[str]:
    """The CUDA devices a worker may be pinned to: ``CUDA_VISIBLE_DEVICES`` entries, else ``0..count-1``.

    Parameters
    ----------
    environ : mapping
        The environment (``os.environ``).
    count : int
        Devices the CUDA runtime sees (``cupy.cuda.runtime.getDeviceCount()``).

    Returns
    -------
    list of str
        Device ids or UUIDs, at most ``count`` of them.
    """
    given = environ.get("CUDA_VISIBLE_DEVICES")
    if given is None:
        return [str(i) for i in range(int(count))]
    return [d.strip() for d in given.split(",") if d.strip()][: int(count)]


def gpu_worker_envs(devices: Sequence[str], n: int) -> list[dict[str, str]]:
    """The environment of each of ``n`` pinned GPU workers: ``CUDA_VISIBLE_DEVICES`` of one device each,
    the devices taken in turn (more workers than devices share them)."""
    check(len(devices) > 0, "CUDA_VISIBLE_DEVICES", "no device", "at least one CUDA device")
    return [{"CUDA_VISIBLE_DEVICES": str(devices[k % len(devices)])} for k in range(int(n))]


def pinned_gpu_cluster(devices: Sequence[str], n: int):
    """A local Dask cluster of ``n`` single-threaded worker processes, each seeing one GPU of ``devices``.

    Each worker is a ``distributed.Nanny`` whose process starts with its own ``CUDA_VISIBLE_DEVICES``
    (:func:`gpu_worker_envs`), so that its CuPy device 0 is its GPU; what dask-cuda's
    ``LocalCUDACluster`` does, without dask-cuda. Host memory is shared evenly between the workers.

    Returns
    -------
    distributed.SpecCluster
        Started; close it (a context manager).
    """
    from distributed import Nanny, Scheduler, SpecCluster

    common = {
        "nthreads": 1,
        "host": "127.0.0.1",
        "memory_limit": 1.0 / max(int(n), 1),  # a fraction of the host memory per worker
        "silence_logs": SILENCE,
        "preload": [PRELOAD],
        "dashboard": False,
    }
    workers = {
        f"gpu-{k}": {"cls": Nanny, "options": {**common, "env": env}}
        for k, env in enumerate(gpu_worker_envs(devices, n))
    }
    scheduler = {
        "cls": Scheduler,
        "options": {"host": "127.0.0.1", "port": 0, "dashboard": False, "dashboard_address": None},
    }
    return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=SILENCE)


def _cpu_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _local_cuda_cluster():
    """dask-cuda's ``LocalCUDACluster`` class, or None when dask-cuda is missing or does not import
    (a release built for another Dask)."""
    if importlib.util.find_spec("dask_cuda") is None:
        return None
    try:
        from dask_cuda import LocalCUDACluster
    except Exception:  # noqa: BLE001 - any import failure: the pinned cluster does the same
        return None
    return LocalCUDACluster


def _gpu_count() -> int:
    import cupy

    return int(cupy.cuda.runtime.getDeviceCount())


def start_client(
    workers,
    scheduler: str | None,
    *,
    stack: contextlib.ExitStack,
    backend: str | None = None,
    say: Callable[[str], None] | None = None,
    shots: int | None = None,
    shot_bytes: Callable[[], int] | None = None,
):
    """The ``distributed.Client`` that ``xstereo batch`` computes on, or None for this process.

    Parameters
    ----------
    workers : None, "auto", int or str
        ``--workers`` (:func:`parse_workers`; ``None`` when not given: :data:`AUTO`).
    scheduler : str or None
        ``--scheduler``: the address of an existing cluster's scheduler (``tcp://host:8786``).
    stack : contextlib.ExitStack
        The client and the embedded cluster close with it (on exit, errors and Ctrl-C), the client
        first.
    backend : str, optional
        ``--backend``: CuPy makes the embedded cluster one worker per GPU.
    say : callable, optional
        ``say(message)``: one line saying where the shots run and why.
    shots : int, optional
        Shots to do (``auto`` starts no more workers; default: no limit).
    shot_bytes : callable, optional
        ``shot_bytes() -> int``, the estimated peak of one shot (:func:`shot_bytes`), called only by
        ``auto`` on the CPU (default :data:`~xstereo_gpu.memory.CPU_SPLIT_BYTES`).

    Returns
    -------
    distributed.Client or None
        None: compute in this process.

    Raises
    ------
    InputError
        A bad ``--workers``, ``--workers`` given with ``--scheduler``, or a scheduler that cannot be
        reached (within Dask's connect timeout, ``distributed.comm.timeouts.connect``).
    """
    say = say or (lambda message: None)
    n = parse_workers(workers, scheduler)
    if scheduler is not None:
        import distributed

        try:
            client = stack.enter_context(distributed.Client(scheduler))
        except (OSError, ValueError, TypeError) as exc:  # unreachable, timed out, not an address
            raise InputError(
                "--scheduler",
                f"{scheduler!r} ({exc})",
                "the address of a running Dask scheduler (tcp://host:8786, docs/cluster.md)",
            ) from None
        count = len(client.scheduler_info().get("workers", {}))
        say(f"shots on the Dask cluster at {scheduler} ({count} workers now)")
        return client
    if n == 0:
        say("shots in this process (--workers 0)")
        return None
    todo = 1 << 62 if shots is None else int(shots)
    gpu = select_backend(backend) is not np
    devices = visible_gpus(os.environ, _gpu_count()) if gpu else []
    if n == AUTO:
        if gpu:
            n = min(len(devices), todo)
            n = n if n >= 2 else 0
            why = f"{len(devices)} GPU{'s' if len(devices) != 1 else ''}"
        else:
            cores, free = _cpu_cores(), int(AUTO_FRACTION * available_memory(np)[0])
            per_shot = CPU_SPLIT_BYTES if shot_bytes is None else int(shot_bytes())
            n = cpu_workers(cores=cores, available_bytes=free, shot_bytes=per_shot, shots=todo)
            why = f"{cores} cores, {format_size(free)} free, about {format_size(per_shot)} per shot"
        if n == 0:
            left = "" if shots is None else f", {shots} to do"
            say(f"shots in this process (--workers auto: {why}{left})")
            return None
        why = f"--workers auto: {why}"
    else:
        why = f"--workers {n}"
    import distributed

    if gpu:
        local_cuda = _local_cuda_cluster() if n <= len(devices) else None
        if local_cuda is not None:
            cluster = local_cuda(
                CUDA_VISIBLE_DEVICES=",".join(devices),
                n_workers=n,
                threads_per_worker=1,
                dashboard_address=None,
                silence_logs=SILENCE,
                preload=[PRELOAD],
            )
            kind = "dask-cuda LocalCUDACluster"
        else:
            cluster = pinned_gpu_cluster(devices, n)
            kind = "local Dask cluster pinned by CUDA_VISIBLE_DEVICES"
        stack.enter_context(cluster)
        say(f"shots on {n} GPU workers ({kind}, devices {', '.join(devices)}; {why})")
    else:
        cluster = stack.enter_context(
            distributed.LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=SILENCE,
                preload=[PRELOAD],
            )
        )
        say(f"shots on {n} local Dask worker processes ({why})")
    return stack.enter_context(distributed.Client(cluster))
