"""``xstereo bench --shots N``: throughput of the many-shot path (issue 9, "Many shots").

One call simulates a run (:func:`~xstereo_gpu.simulate.simulate_run`: hits of the chosen samples at
random positions and blanks, no corrupt files) into a temporary directory, times four ways through it
on the current backend, and removes the directory:

``loop``
    The plain Python loop a user would write: ``read_shot`` every file, skip the blanks with the same
    hit veto (:func:`~xstereo_gpu.batch.veto.is_hit`), ``Pipeline.run`` every hit with one reused
    :class:`~xstereo_gpu.pipeline.Pipeline` per options. It skips blanks so that the speed-up of the
    others measures the batch machinery (and its batching of shots), not the veto.
``process_run``
    :func:`~xstereo_gpu.batch.process_run` in this process into a fresh run store (chunk files,
    ``run.h5``, ``summary.csv`` included in the time), its hits phased in stacks of
    ``shots_per_launch`` shots (default: sized from the free memory); the stack sizes used are
    reported (``launch_sizes`` of the row).
``process_run on Dask``
    The same with a ``distributed.Client(LocalCluster(n_workers=k, threads_per_worker=1))`` for each
    ``k`` of ``workers`` (cluster start-up excluded; with ``warmup`` each worker first reconstructs
    one hit outside the timing, as the in-process rows do).
``blanks``
    A second run of blanks only, through ``process_run`` in this process: shots/s and MB/s of frame
    data (detector ``data`` and ``mask`` datasets), against reading the same datasets of the same
    files with plain h5py (best of a warm pass and a timed pass: both read from the page cache when
    the files fit in memory, so the ratio is the read path's overhead over a raw read, the disk
    excluded; ``work_dir`` on the disk of interest and a cold cache measure the disk).

Each row reports wall seconds (``time.perf_counter``; the records are host data, so device work has
finished), shots/s, hit shots/s (reconstructed hits per second) and the speed-up over the loop (the
ratio of shots/s on the same shots). Options are the ``cpu`` profile's (with each sample's recipe),
so GPU figures compare with the issue's goal: at least :data:`GOAL_HIT_SHOTS_PER_S` hit shots/s at
``2 x 256^2`` on one H100-class GPU; ``quick`` swaps in 2 runs x 10 iterations (for tests, not for
figures). The JSON also holds the machine (CPU model and cores, GPU, versions), the run, the options
and the goal check.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import os
import pathlib
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import __version__
from .backend import device_info, select_backend
from .batch import VetoOptions, is_hit, open_source, process_run, window_photons
from .batch.cluster import OptionsBySample
from .batch.shots import DEFAULT_VETO, SHOT_ERRORS
from .config import PROFILES, PipelineOptions
from .errors import InputError
from .io import read_shot
from .pipeline import Pipeline
from .simulate import SAMPLES, RunSimulationOptions, simulate_run
from .simulate.run import SHOT_SIZES, sized_shot_options

__all__ = [
    "ShotBenchOptions",
    "run_shot_bench",
    "format_shot_table",
    "bench_pipeline_options",
    "time_loop",
    "time_process_run",
    "time_raw_read",
    "machine_facts",
    "GOAL_HIT_SHOTS_PER_S",
    "GOAL_PATTERN_SIZE",
    "FRAME_DATASETS",
]

#: Issue 9's goal on one H100-class GPU: hit shots per second at ``2 x GOAL_PATTERN_SIZE^2`` with the
#: CPU profile's iterations.
GOAL_HIT_SHOTS_PER_S = 20.0
GOAL_PATTERN_SIZE = 256
#: The datasets of a shot file that hold its frame (read by the raw h5py pass; docs/format.md).
FRAME_DATASETS = ("entry_1/instrument_1/detector_1/data", "entry_1/instrument_1/detector_1/mask")
#: Phasing of ``quick``: enough to run every stage, far from the profile's cost.
_QUICK = {"phasing__runs": 2, "phasing__iterations": 10}


def _whole(where: str, value, minimum: int) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or int(value) < minimum:
        raise InputError(where, repr(value), f"an integer >= {minimum}")
    return int(value)


@dataclass(frozen=True, kw_only=True)
class ShotBenchOptions:
    """What :func:`run_shot_bench` simulates and times; validated on construction.

    Bad values raise :class:`~xstereo_gpu.errors.InputError` naming the option (``bench.<name>``).
    """

    #: Shots of the timed run (hits and blanks), >= 1.
    shots: int = 40
    #: Fraction of the run's shots that are hits, in [0, 1].
    hit_rate: float = 0.3
    #: Crop side N of each pattern [px], one of ``SHOT_SIZES`` (see
    #: :func:`~xstereo_gpu.simulate.run.sized_shot_options`).
    size: int = 256
    #: Dask worker counts to time ``process_run`` with, one LocalCluster each; ``()`` = none.
    workers: tuple[int, ...] = (1, 2, 4)
    #: Shots of the all-blank run; ``None`` = ``shots``; 0 = no blank rows.
    blank_shots: int | None = None
    #: Samples of the hits (each reconstructed with its recipe), a subset of ``SAMPLES``.
    samples: tuple[str, ...] = ("cross",)
    #: Profile the recipes are built on (``"cpu"``: the issue's goal is stated with its iterations).
    profile: str = "cpu"
    #: 2 runs x 10 iterations instead of the profile's phasing (checks the plumbing; not for figures).
    quick: bool = False
    #: Seed of the simulated runs.
    seed: int = 0
    #: ``chunk_size`` of ``process_run``.
    chunk_size: int = 16
    #: ``shots_per_launch`` for ``process_run`` (only where it accepts the keyword); ``None`` = its default.
    shots_per_launch: int | None = None
    #: Reconstruct one hit outside the timing first (in this process and on each Dask worker).
    warmup: bool = True
    #: Backend (``"numpy"``, ``"cupy"``; ``None``: ``XSTEREO_BACKEND``, else CuPy when usable).
    backend: str | None = None
    #: Folder the temporary runs and stores go in (``None``: the system's temporary folder).
    work_dir: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "shots", _whole("bench.shots", self.shots, 1))
        h = self.hit_rate
        if not (isinstance(h, (int, float)) and not isinstance(h, bool) and math.isfinite(h) and 0 <= h <= 1):
            raise InputError("bench.hit_rate", repr(h), "a fraction in [0, 1]")
        object.__setattr__(self, "hit_rate", float(h))
        if isinstance(self.size, bool) or self.size not in SHOT_SIZES:
            raise InputError("bench.size", repr(self.size), f"one of {list(SHOT_SIZES)} px")
        object.__setattr__(self, "size", int(self.size))
        try:
            workers = tuple(self.workers)
        except TypeError:
            raise InputError("bench.workers", repr(self.workers), "worker counts >= 1") from None
        object.__setattr__(self, "workers", tuple(_whole("bench.workers", k, 1) for k in workers))
        if self.blank_shots is not None:
            object.__setattr__(self, "blank_shots", _whole("bench.blank_shots", self.blank_shots, 0))
        samples = (self.samples,) if isinstance(self.samples, str) else tuple(self.samples)
        if not samples or any(s not in SAMPLES for s in samples) or len(set(samples)) != len(samples):
            raise InputError("bench.samples", repr(self.samples), f"distinct names among {list(SAMPLES)}")
        object.__setattr__(self, "samples", samples)
        if self.profile not in PROFILES:
            raise InputError("bench.profile", repr(self.profile), f"one of {sorted(PROFILES)}")
        object.__setattr__(self, "seed", _whole("bench.seed", self.seed, 0))
        object.__setattr__(self, "chunk_size", _whole("bench.chunk_size", self.chunk_size, 1))
        if self.shots_per_launch is not None:
            spl = _whole("bench.shots_per_launch", self.shots_per_launch, 1)
            object.__setattr__(self, "shots_per_launch", spl)

    @property
    def n_blank_shots(self) -> int:
        """Shots of the all-blank run."""
        return self.shots if self.blank_shots is None else self.blank_shots

    def run_options(self, *, blanks: bool = False) -> RunSimulationOptions:
        """The simulated run: ``shots`` at ``hit_rate`` (or the all-blank run), no corrupt files."""
        return RunSimulationOptions(
            shots=self.n_blank_shots if blanks else self.shots,
            hit_rate=0.0 if blanks else self.hit_rate,
            corrupt_fraction=0.0,
            samples=self.samples,
            seed=self.seed + 1 if blanks else self.seed,
            shot_options=sized_shot_options(self.size),
        )


def bench_pipeline_options(
    samples: Sequence[str], profile: str = "cpu", *, quick: bool = False
) -> PipelineOptions | OptionsBySample:
    """Options of the bench's reconstructions: each sample's recipe on ``profile``.

    Returns
    -------
    PipelineOptions or OptionsBySample
        The recipe itself for one sample (``process_run`` then sees one options object), else a
        picklable per-sample choice (:class:`~xstereo_gpu.batch.cluster.OptionsBySample`). With
        ``quick``, 2 runs x 10 iterations.
    """

    def recipe(name: str) -> PipelineOptions:
        opts = PipelineOptions.for_sample(name, profile)
        return opts.replace(**_QUICK) if quick else opts

    samples = tuple(samples)
    if len(samples) == 1:
        return recipe(samples[0])
    base = PipelineOptions.for_profile(profile)
    default = base.replace(**_QUICK) if quick else base
    return OptionsBySample(tuple((s, recipe(s)) for s in samples), default, None, profile)


def _options_of(options, shot):
    return options(shot) if callable(options) else options


def _counts_row(
    name: str, method: str, workers: int | None, counts: dict, wall: float, timings: list
) -> dict:
    shots = sum(counts.values())
    means = {}
    for key in sorted({k for t in timings for k in t}):
        vals = [float(t[key]) for t in timings if key in t and np.isfinite(t[key])]
        if vals:
            means[key] = float(np.mean(vals))
    return {
        "name": name,
        "method": method,
        "workers": workers,
        "shots": shots,
        "ok": counts["ok"],
        "blank": counts["blank"],
        "failed": counts["failed"],
        "wall_s": wall,
        "shots_per_s": shots / wall if wall > 0 else None,
        "hit_shots_per_s": counts["ok"] / wall if wall > 0 else None,
        "stage_means_s": means,
        "launch_sizes": [],  # shots per phasing launch of the hits (process_run rows)
        "skipped": None,
    }


def time_loop(
    paths: Sequence[str | os.PathLike],
    options,
    *,
    backend: str | None = None,
    veto: VetoOptions = DEFAULT_VETO,
    warmup: str | os.PathLike | None = None,
) -> dict:
    """Time the plain loop over the files: read, veto, ``Pipeline.run`` each hit (one Pipeline per options).

    Parameters
    ----------
    paths : sequence of path-like
        The run's shot files, in order.
    options : PipelineOptions or callable
        As for ``process_run``.
    backend : str, optional
        Backend of the pipelines.
    veto : VetoOptions
        The hit veto (the same as the batch path's).
    warmup : path-like, optional
        A hit reconstructed first, outside the timing, with the pipeline its options choose.

    Returns
    -------
    dict
        A row (see :func:`run_shot_bench`): ``ok`` hits reconstructed, ``blank`` vetoed, ``failed``
        (unreadable, or the pipeline raised one of ``SHOT_ERRORS``), ``wall_s`` [s], rates, and
        ``stage_means_s`` (mean of each ``Results.timings`` entry over the ok hits [s]).
    """
    pipes: dict = {}

    def pipe_for(shot) -> Pipeline:
        opts = _options_of(options, shot)
        if opts not in pipes:
            pipes[opts] = Pipeline(opts, backend=backend)
        return pipes[opts]

    if warmup is not None:
        shot = read_shot(warmup)
        pipe_for(shot).run(shot)
    counts = dict.fromkeys(("ok", "blank", "failed"), 0)
    timings = []
    t0 = time.perf_counter()
    for path in paths:
        try:
            shot = read_shot(path)
        except (*SHOT_ERRORS, OSError):
            counts["failed"] += 1
            continue
        if not is_hit(window_photons(shot.frame, shot.mask, shot.centres_px, shot.pattern_size), veto):
            counts["blank"] += 1
            continue
        pipe = pipe_for(shot)
        try:
            res = pipe.run(shot)
        except SHOT_ERRORS:
            counts["failed"] += 1
            continue
        counts["ok"] += 1
        timings.append(dict(res.timings))
    wall = time.perf_counter() - t0
    return _counts_row("loop: read, veto, Pipeline.run", "loop", None, counts, wall, timings)


def time_process_run(
    paths: Sequence[str | os.PathLike],
    options,
    *,
    store: str | os.PathLike,
    backend: str | None = None,
    veto: VetoOptions = DEFAULT_VETO,
    chunk_size: int = 16,
    shots_per_launch: int | None = None,
    client=None,
    name: str | None = None,
) -> dict:
    """Time ``process_run`` over the files into a new run store (in this process, or on ``client``).

    Returns
    -------
    dict
        A row (see :func:`run_shot_bench`) with ``stage_means_s`` from the records' ``timings``.
    """
    kw: dict[str, Any] = dict(
        store=store,
        veto=veto,
        chunk_size=chunk_size,
        backend=backend,
        client=client,
        shots_per_launch=shots_per_launch,
    )
    launches: list[int] = []
    counts = dict.fromkeys(("ok", "blank", "failed"), 0)
    timings = []
    source = open_source([os.fspath(p) for p in paths])
    t0 = time.perf_counter()
    records = process_run(source, options, **kw)
    try:
        for rec in records:
            counts[rec.status] += 1
            if rec.status == "ok":
                timings.append(dict(rec.timings))
                launches.append(int(rec.shots_per_launch))
    finally:
        records.close()  # the store is finalised inside the timing
    wall = time.perf_counter() - t0
    workers = None
    if client is not None:
        workers = len(client.scheduler_info().get("workers", {}))
    method = "process_run" if client is None else "process_run+dask"
    default = "process_run (in process)" if client is None else f"process_run, Dask {workers} workers"
    row = _counts_row(name or default, method, workers, counts, wall, timings)
    row["launch_sizes"] = sorted(set(launches))
    return row


def time_raw_read(paths: Sequence[str | os.PathLike], *, datasets: Sequence[str] = FRAME_DATASETS) -> dict:
    """Read the frame datasets of every file with plain h5py: a warm pass, then the timed pass.

    Returns
    -------
    dict
        ``shots``, ``bytes`` (of the datasets read), ``wall_s`` [s], ``shots_per_s``, ``mb_per_s``
        [1e6 bytes / s].
    """
    import h5py  # imported where used, as in io/cxi.py

    def one_pass() -> int:
        total = 0
        for p in paths:
            with h5py.File(p, "r") as f:
                for name in datasets:
                    total += f[name][()].nbytes
        return total

    one_pass()
    t0 = time.perf_counter()
    nbytes = one_pass()
    wall = time.perf_counter() - t0
    return {
        "shots": len(paths),
        "bytes": nbytes,
        "wall_s": wall,
        "shots_per_s": len(paths) / wall if wall > 0 else None,
        "mb_per_s": nbytes / wall / 1e6 if wall > 0 else None,
    }


def _warm_worker(path: str, options, backend: str | None) -> None:
    """Run on each Dask worker before the timing: imports, device set-up, FFT plans, one hit."""
    shot = read_shot(path)
    Pipeline(_options_of(options, shot), backend=backend).run(shot)


def _cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit() -> str | None:
    root = pathlib.Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_facts(xp) -> dict:
    """The machine of a bench: :func:`~xstereo_gpu.backend.device_info` plus CPU, memory and versions.

    Returns
    -------
    dict
        ``device_info`` keys (backend, device, GPU name, driver, clocks, numpy, scipy, python, host,
        ``cpu_threads`` this process may use), and ``cpu_model``, ``cpu_count`` (logical CPUs of the
        machine), ``memory_bytes``, ``platform``, ``xstereo_gpu``, ``h5py``, ``distributed`` (``None``
        when not installed), ``commit`` (``None`` outside a git checkout).
    """
    import h5py

    info = dict(device_info(xp))
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    try:
        import distributed

        dist = distributed.__version__
    except ImportError:
        dist = None
    info.update(
        cpu_model=_cpu_model(),
        cpu_count=os.cpu_count(),
        memory_bytes=memory,
        platform=platform.platform(),
        xstereo_gpu=__version__,
        h5py=h5py.__version__,
        distributed=dist,
        commit=_commit(),
    )
    return info


def _skipped(name: str, method: str, workers: int | None, why: str) -> dict:
    row = _counts_row(name, method, workers, dict.fromkeys(("ok", "blank", "failed"), 0), 0.0, [])
    row.update(skipped=why)
    return row


def _dask_rows(opts: ShotBenchOptions, paths, options, backend, veto, spl, root, warm, say) -> list[dict]:
    if not opts.workers:
        return []
    try:
        import distributed
    except ImportError:
        why = "no Dask distributed installed (pip install 'xstereo-gpu[dask]')"
        return [_skipped(f"process_run, Dask {k} workers", "process_run+dask", k, why) for k in opts.workers]
    rows = []
    for k in opts.workers:
        say(f"process_run on a Dask LocalCluster of {k} workers")
        with (
            distributed.LocalCluster(
                n_workers=k, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            client.wait_for_workers(k)
            if warm is not None:
                client.run(_warm_worker, os.fspath(warm), options, backend)
            rows.append(
                time_process_run(
                    paths,
                    options,
                    store=root / f"store-dask-{k}",
                    backend=backend,
                    veto=veto,
                    chunk_size=opts.chunk_size,
                    shots_per_launch=spl,
                    client=client,
                    name=f"process_run, Dask {k} worker{'s' if k > 1 else ''}",
                )
            )
    return rows


def _pipeline_facts(options) -> dict:
    recipes = options.recipes if isinstance(options, OptionsBySample) else (("", options),)
    p = recipes[0][1].phasing
    return {
        "profile": recipes[0][1].profile,
        "recipes": [name for name, _ in recipes if name],
        "runs": int(p.runs),
        "iterations": int(p.iterations),
        "final_er": int(getattr(p, "final_er", 0)),
    }


def run_shot_bench(
    options: ShotBenchOptions | None = None, *, progress: Callable[[str], None] | None = None
) -> dict:
    """Simulate a run and time the loop, ``process_run`` in process and on Dask, and the blanks.

    Parameters
    ----------
    options : ShotBenchOptions, optional
        Default ``ShotBenchOptions()`` (40 shots, 30 % hits, 2 x 256^2, Dask 1, 2 and 4 workers).
    progress : callable, optional
        Called as ``progress(message)`` at each step.

    Returns
    -------
    dict
        ``kind`` (``"xstereo-bench-shots"``), ``date`` (UTC, ISO 8601), ``machine``
        (:func:`machine_facts`), ``options`` (the ``ShotBenchOptions``), ``run`` (``shots``, ``hits``,
        ``blanks`` of the manifest, ``pattern_size``, ``frame_shape``, ``samples``, ``seed``,
        ``position_jitter``), ``pipeline`` (``profile``, ``recipes``, ``runs``, ``iterations``,
        ``final_er``, ``quick``), ``shots_per_launch`` (``accepted`` by ``process_run``, ``value``
        used: the option, else the keyword's default, ``None`` when not accepted), ``rows`` (one per
        timed way: ``name``, ``method`` (``loop``, ``process_run``, ``process_run+dask``),
        ``workers``, ``shots``, ``ok``, ``blank``, ``failed``, ``wall_s`` [s], ``shots_per_s``,
        ``hit_shots_per_s``, ``speedup_vs_loop``, ``stage_means_s``, ``skipped`` (why, or ``None``)),
        ``blanks`` (``None`` without blank shots, else ``shots``, ``bytes``, ``bytes_per_shot``,
        ``process_run`` and ``raw_h5py`` (``wall_s``, ``shots_per_s``, ``mb_per_s``),
        ``ratio_to_raw`` (MB/s of ``process_run`` over the raw read's)) and ``goal`` (issue 9's
        target, ``best_hit_shots_per_s``, ``comparable`` (GPU, 256 px, the CPU profile, not quick),
        ``met`` (``None`` when not comparable)).

    Raises
    ------
    InputError
        Bad options.
    """
    opts = ShotBenchOptions() if options is None else options
    if not isinstance(opts, ShotBenchOptions):
        raise InputError("run_shot_bench: options", type(opts).__name__, "a ShotBenchOptions")
    say = progress or (lambda message: None)
    xp = select_backend(opts.backend)
    backend = "numpy" if xp is np else "cupy"
    pipeline_options = bench_pipeline_options(opts.samples, opts.profile, quick=opts.quick)
    veto = DEFAULT_VETO
    spl = opts.shots_per_launch
    result: dict[str, Any] = {
        "kind": "xstereo-bench-shots",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(xp),
        "options": dataclasses.asdict(opts),
        "pipeline": dict(_pipeline_facts(pipeline_options), quick=opts.quick),
        "shots_per_launch": spl,
    }
    if opts.work_dir is not None:
        pathlib.Path(opts.work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="xstereo-bench-shots-", dir=opts.work_dir) as tmp:
        root = pathlib.Path(tmp)
        say(f"simulating {opts.shots} shots ({opts.hit_rate:g} hits, 2 x {opts.size}^2) in {root}")
        manifest = simulate_run(root / "run", opts.run_options())
        paths = manifest.paths()
        hits = manifest.paths("hit")
        first = read_shot(paths[0])
        result["run"] = {
            "shots": len(paths),
            "hits": manifest.counts["hit"],
            "blanks": manifest.counts["blank"],
            "pattern_size": opts.size,
            "frame_shape": list(np.shape(first.frame)),
            "samples": list(opts.samples),
            "seed": opts.seed,
            "position_jitter": manifest.options.position_jitter,
        }
        del first
        warm = hits[0] if (opts.warmup and hits) else None

        say("plain loop: read, veto, Pipeline.run")
        rows = [time_loop(paths, pipeline_options, backend=backend, veto=veto, warmup=warm)]
        say("process_run in this process")
        rows.append(
            time_process_run(
                paths,
                pipeline_options,
                store=root / "store",
                backend=backend,
                veto=veto,
                chunk_size=opts.chunk_size,
                shots_per_launch=spl,
            )
        )
        rows += _dask_rows(opts, paths, pipeline_options, backend, veto, spl, root, warm, say)
        loop_rate = rows[0]["shots_per_s"]
        for row in rows:
            rate = row["shots_per_s"]
            row["speedup_vs_loop"] = rate / loop_rate if (rate and loop_rate and not row["skipped"]) else None
        result["rows"] = rows

        result["blanks"] = None
        if opts.n_blank_shots > 0:
            say(f"simulating {opts.n_blank_shots} blank shots")
            blanks = simulate_run(root / "blanks", opts.run_options(blanks=True)).paths()
            say("blank shots: raw h5py read, then process_run")
            raw = time_raw_read(blanks)
            row = time_process_run(
                blanks,
                pipeline_options,
                store=root / "store-blanks",
                backend=backend,
                veto=veto,
                chunk_size=opts.chunk_size,
                shots_per_launch=spl,
                name="process_run, blanks only",
            )
            mb = raw["bytes"] / row["wall_s"] / 1e6 if row["wall_s"] > 0 else None
            result["blanks"] = {
                "shots": len(blanks),
                "bytes": raw["bytes"],
                "bytes_per_shot": raw["bytes"] / len(blanks),
                "process_run": {
                    "wall_s": row["wall_s"],
                    "shots_per_s": row["shots_per_s"],
                    "mb_per_s": mb,
                    "blank": row["blank"],
                    "ok": row["ok"],
                    "failed": row["failed"],
                },
                "raw_h5py": {k: raw[k] for k in ("wall_s", "shots_per_s", "mb_per_s")},
                "ratio_to_raw": (mb / raw["mb_per_s"]) if (mb and raw["mb_per_s"]) else None,
            }
        with contextlib.suppress(Exception):  # free device memory before the caller goes on
            if xp is not np:
                xp.get_default_memory_pool().free_all_blocks()

    timed = [r["hit_shots_per_s"] for r in result["rows"] if not r["skipped"] and r["hit_shots_per_s"]]
    best = max(timed) if timed else None
    comparable = (
        backend == "cupy" and opts.size == GOAL_PATTERN_SIZE and opts.profile == "cpu" and not opts.quick
    )
    result["goal"] = {
        "hit_shots_per_s": GOAL_HIT_SHOTS_PER_S,
        "pattern_size": GOAL_PATTERN_SIZE,
        "profile": "cpu",
        "device": "one H100-class GPU",
        "best_hit_shots_per_s": best,
        "comparable": comparable,
        "met": (best is not None and best >= GOAL_HIT_SHOTS_PER_S) if comparable else None,
    }
    return result


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_shot_table(result: dict) -> str:
    """Plain-text table of :func:`run_shot_bench` output: machine and run lines, one row per way, blanks."""
    m, run, pipe = result["machine"], result["run"], result["pipeline"]
    gpu = f", GPU {m.get('device')}" if m.get("backend") == "cupy" else ""
    head = [
        f"machine: {m.get('cpu_model')}, {m.get('cpu_count')} logical CPUs ({m.get('cpu_threads')} usable)"
        f"{gpu}; backend {m.get('backend')}; xstereo-gpu {m.get('xstereo_gpu')}"
        + (f" ({m['commit']})" if m.get("commit") else ""),
        f"run: {run['shots']} shots ({run['hits']} hits, {run['blanks']} blanks; "
        f"{', '.join(run['samples'])}; "
        f"position jitter {run['position_jitter']:g}), 2 x {run['pattern_size']}^2 patterns, frame "
        f"{' x '.join(str(s) for s in run['frame_shape'])}",
        f"pipeline: profile {pipe['profile']}{' (quick: not for figures)' if pipe['quick'] else ''}, "
        f"{pipe['runs']} runs x ({pipe['iterations']} + {pipe['final_er']}) iterations per view; "
        "shots per launch: "
        + (str(spl) if (spl := result["shots_per_launch"]) is not None else "sized from the free memory"),
        f"{'what':36s} {'shots':>5s} {'ok':>4s} {'blank':>5s} {'failed':>6s} {'wall [s]':>9s} "
        f"{'shots/s':>8s} {'hits/s':>8s} {'vs loop':>8s}",
    ]
    lines = list(head)
    for r in result["rows"]:
        if r["skipped"]:
            lines.append(f"{r['name']:36s} skipped: {r['skipped']}")
            continue
        speed = "-" if r["speedup_vs_loop"] is None else f"{r['speedup_vs_loop']:.2f}x"
        lines.append(
            f"{r['name']:36s} {r['shots']:5d} {r['ok']:4d} {r['blank']:5d} {r['failed']:6d} "
            f"{_num(r['wall_s'], '9.2f')} {_num(r['shots_per_s'], '8.3f')} "
            f"{_num(r['hit_shots_per_s'], '8.3f')} {speed:>8s}"
        )
    b = result.get("blanks")
    if b:
        pr, raw = b["process_run"], b["raw_h5py"]
        lines.append(
            f"blanks: {b['shots']} blank shots, {b['bytes_per_shot'] / 1e6:.2f} MB of frame data each: "
            f"process_run {_num(pr['shots_per_s'], '.1f')} shots/s ({_num(pr['mb_per_s'], '.1f')} MB/s), "
            f"raw h5py read {_num(raw['shots_per_s'], '.1f')} shots/s ({_num(raw['mb_per_s'], '.1f')} MB/s): "
            f"{_num(b['ratio_to_raw'], '.2f')} of the raw read"
        )
    g = result["goal"]
    verdict = (
        "not comparable here (needs the GPU backend, 256 px, the cpu profile, not --quick)"
        if not g["comparable"]
        else ("met" if g["met"] else "not met")
    )
    lines.append(
        f"goal (issue 9): >= {g['hit_shots_per_s']:g} hit shots/s at 2 x {g['pattern_size']}^2 on "
        f"{g['device']}; best here {_num(g['best_hit_shots_per_s'], '.3f')}: {verdict}"
    )
    return "\n".join(lines)
