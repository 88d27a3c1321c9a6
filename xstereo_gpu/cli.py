"""The ``xstereo`` command: demo, simulate, run, batch, stream, serve-run, phase, stereo, geometry, info, ...

Every subcommand is a thin layer over the Python API. Bad input ends with a message on stderr naming
the file or field, the value found and what was expected, and exit status 2; outputs are written to a
temporary name and renamed when complete, so a failed command leaves nothing that looks finished.
"""

from __future__ import annotations

import argparse
import contextlib
import errno as _errno
import functools
import importlib.util
import json
import math
import os
import pathlib
import shutil
import signal
import sys
import threading
import time
import tomllib
import warnings
from typing import Any

import numpy as np

from . import __version__
from .backend import cupy_available, device_info, select_backend, to_host
from .batch import RunStore, VetoOptions, open_source, process_run
from .batch.cluster import OptionsBySample
from .batch.clusters import parse_workers, shot_bytes, start_client
from .batch.display import BatchProgress, print_report
from .batch.report import run_report
from .bench import format_table, run_bench
from .bench_shots import ShotBenchOptions, format_shot_table, run_shot_bench
from .cli_options import BACKENDS, DEMO_STARTS, PIPELINE_FLAGS
from .config import PROFILES, RECIPE_NAMES, SAMPLE_NAMES, PipelineOptions
from .diagnostics import check_matches, recipe_warning, run_with_warnings, with_source
from .errors import InputError, check
from .geometry import StereoGeometry, check_plausible, real_space_pixel
from .io import (
    check_file_target,
    output_directory,
    read_image,
    read_pattern,
    read_shot,
    read_support,
    write_json,
    write_shot,
)
from .io.images import MASK_CONVENTIONS
from .io.xfel import xfel_geometry
from .memory import memory_budget, parse_size, plan_phasing
from .outputs import (
    cloud_summary,
    phasing_summary,
    run_record,
    stereo_summary,
    write_cloud_files,
    write_stereo_files,
    write_views_files,
)
from .phasing.algorithms import fourier_constraint, r_factor
from .phasing.prepare import single_pattern
from .phasing.quality import prtf, prtf_resolution
from .pipeline import Pipeline
from .progress import Progress
from .results import ViewsResult
from .shot import VIEW_NAMES
from .simulate import RunSimulationOptions, SimulationOptions, provided_views, simulate_run, simulate_shot
from .stream import Publisher, StreamOptions, run_stream, serve_run
from .stream.bridge import SOCKETS
from .stream.deps import require as require_stream
from .stream.queues import POLICIES
from .stream.serve import SERVER_TYPES

__all__ = ["main"]


def _options(args, sample: str | None = None, sample_from: str | None = None):
    """PipelineOptions from --profile / --config, the sample's recipe and the per-stage flags in ``args``.

    ``sample`` (the shot's sample name, or ``--sample``) selects the paper's recipe for that experiment
    (:meth:`PipelineOptions.for_sample`); unknown sample names use the plain profile, with a warning
    naming ``sample_from`` (where the name was read) unless ``--recipe`` was given.
    """
    if getattr(args, "config", None):
        path = pathlib.Path(args.config)
        if not path.is_file():
            raise InputError(str(path), "no such file", "an options TOML file (see `xstereo config`)")
        try:
            opts = PipelineOptions.from_toml(path.read_text())
        except InputError as exc:  # name the file: "opts.toml: [phasing] runs: found 'many' ..."
            raise InputError(f"{path}: {exc.where}", exc.found, exc.expected) from None
    else:
        profile = getattr(args, "profile", None)
        if profile is None:
            profile = "cpu" if select_backend(getattr(args, "backend", None)) is np else "paper"

        recipe = getattr(args, "recipe", None)
        sample = recipe or sample
        if sample in RECIPE_NAMES:
            opts = PipelineOptions.for_sample(sample, profile)
        else:
            opts = PipelineOptions.for_profile(profile)
            if sample_from is not None or hasattr(args, "recipe"):
                recipe_warning(sample, sample_from, profile)

    changes: dict[str, Any] = {}
    for flag in PIPELINE_FLAGS:  # the flags this subcommand has and that were given
        value = getattr(args, flag.dest, None)
        if value is not None:
            changes.update(flag.changes(value))
    return opts.replace(**changes) if changes else opts


def _max_memory(args):
    """``--max-memory`` in bytes, or None (the stages then plan with most of the free memory)."""
    value = getattr(args, "max_memory", None)
    return None if value is None else parse_size(value, "--max-memory")


def _progress(args):
    return Progress(enabled=not getattr(args, "quiet", False))


def _print_accuracy(acc: dict, out=sys.stdout) -> None:
    if not acc:
        return
    med = acc.get("depth_error_median_nm")
    p90 = acc.get("depth_error_p90_nm")
    dz = acc["voxel_depth_nm"]
    if med is None:
        print("accuracy: no recovered point near a true edge", file=out)
        return
    print(
        f"accuracy vs ground truth: depth error median {med:.1f} nm ({med / dz:.2f} voxel depths of {dz:.1f} "
        "nm), "
        f"p90 {p90:.1f} nm; completeness within 2 voxel depths {acc['completeness_2dz']:.3f}; "
        f"view correlation {acc['view_correlation'][0]:.3f} / {acc['view_correlation'][1]:.3f}",
        file=out,
    )
    if acc.get("pyramid_height_nm") is not None:
        print(
            f"pyramid height {acc['pyramid_height_nm']:.0f} nm (true {acc['pyramid_height_true_nm']:.0f} nm, "
            f"{100 * acc['pyramid_height_error']:+.1f} %)",
            file=out,
        )
    if acc.get("completeness_hidden") is not None:
        print(
            f"edges hidden behind the membrane in one view: completeness {acc['completeness_hidden']:.3f}",
            file=out,
        )


def _print_outputs(path, summary) -> None:
    t = summary["timings_s"]
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in t.items() if k not in ("total",))
    print(f"timings: {stages}; total {t.get('total', float('nan')):.1f} s on {summary['device']['device']}")
    print(f"outputs in {pathlib.Path(path).resolve()}/: " + ", ".join(summary["outputs"]))


# -- subcommands -------------------------------------------------------------------------------------


def cmd_info(args) -> int:
    xp = select_backend(args.backend)
    info = device_info(xp)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"xstereo-gpu {__version__}")
    if info["backend"] == "numpy":
        why = (
            "CuPy is installed but sees no CUDA device"
            if _cupy_installed() and not cupy_available()
            else "CuPy is not installed (pip install '.[cuda12]' or '.[cuda13]')"
            if not _cupy_installed()
            else "selected"
        )
        print(f"backend: NumPy (CPU path; {why})")
    else:
        print("backend: CuPy (GPU path)")
    for k, v in info.items():
        if k != "backend":
            print(f"  {k}: {v}")
    return 0


def _cupy_installed() -> bool:
    return importlib.util.find_spec("cupy") is not None


def cmd_geometry(args) -> int:
    if args.pixel_size is None:
        missing = [
            n for n in ("wavelength", "distance", "detector_pixel", "size") if getattr(args, n) is None
        ]
        if missing:
            raise InputError(
                "--pixel-size",
                "not given",
                "--pixel-size M, or all of --wavelength --distance "
                "--detector-pixel --size (missing: "
                + ", ".join("--" + m.replace("_", "-") for m in missing)
                + ")",
            )
        pixel = real_space_pixel(args.wavelength, args.distance, args.detector_pixel, args.size)
    else:
        pixel = args.pixel_size
    g = StereoGeometry(pixel, tuple(args.angles))
    check_plausible(
        wavelength_m=args.wavelength,
        distance_m=args.distance,
        detector_pixel_m=args.detector_pixel,
        pixel_size_m=pixel,
        angles_deg=tuple(args.angles),
        where={
            "wavelength_m": "--wavelength",
            "distance_m": "--distance",
            "detector_pixel_m": "--detector-pixel",
            "angles_deg": "--angles",
            "pixel_size_m": "--pixel-size" if args.pixel_size is not None else "view pixel",
        },
    )
    rep = g.report(args.resolution)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    t1, t2 = g.angles_deg
    print(f"beam angles {t1:g} + {t2:g} deg (separation {t1 + t2:g} deg), tan t1 + tan t2 = {g.tan_sum:.5f}")
    print(f"real-space pixel   {rep['pixel_size_nm']:.1f} nm")
    print(
        f"voxel              {rep['pixel_size_nm']:.1f} x {rep['pixel_size_nm']:.1f} x "
        f"{rep['voxel_depth_nm']:.1f} nm^3 (eq. 2)"
    )
    if args.resolution is not None:
        r = rep["resolution_nm"]
        print(f"resolution         {r[0]:.1f} x {r[1]:.1f} x {r[2]:.1f} nm^3")
    return 0


_SHOT_BENCH_FLAGS = ("hit_rate", "workers", "size", "blank_shots", "shots_per_launch", "work_dir")


def cmd_bench(args) -> int:
    if args.shots is not None:
        return _bench_shots(args)
    given = [f for f in _SHOT_BENCH_FLAGS if getattr(args, f) is not None]
    if given:
        raise InputError(
            "--" + given[0].replace("_", "-"), "given without --shots", "--shots N (the many-shot bench)"
        )
    xp = select_backend(args.backend)
    progress = _progress(args)
    progress.stage("bench", "timing the hot paths on " + ("CuPy" if xp.__name__ == "cupy" else "NumPy"))
    result = run_bench(xp, quick=args.quick, pipeline=not args.no_pipeline, progress=progress.note)
    print(format_table(result))
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def _bench_shots(args) -> int:
    """``xstereo bench --shots N``: shots/s of the loop, process_run in process and on Dask, blanks."""
    if args.no_pipeline:
        raise InputError("--no-pipeline", "given with --shots", "one of --shots N, --no-pipeline")
    changes = {k: getattr(args, k) for k in _SHOT_BENCH_FLAGS if getattr(args, k) is not None}
    opts = ShotBenchOptions(shots=args.shots, quick=args.quick, backend=args.backend, **changes)
    progress = _progress(args)
    progress.stage(
        "bench",
        f"{opts.shots} shots at 2 x {opts.size}^2: loop, process_run, Dask workers {list(opts.workers)}",
    )
    result = run_shot_bench(opts, progress=progress.note)
    print(format_shot_table(result))
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def _worker_counts(text: str) -> tuple[int, ...]:
    """``--workers 1,2,4``: Dask worker counts; ``0`` or ``none``: no Dask rows."""
    if text.strip().lower() in ("0", "none", ""):
        return ()
    try:
        counts = tuple(int(v) for v in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected worker counts >= 1 such as 1,2,4, or 0 for none"
        )
    return counts


def cmd_config(args) -> int:
    sys.stdout.write(PipelineOptions.for_profile(args.profile).to_toml())
    return 0


def _simulation_options(args):
    sample = getattr(args, "sample", None) or "cross"
    if args.paper_size and sample != "cross":
        raise InputError(
            "--paper-size", f"with --sample {sample}", "the cross sample (the paper's CCD geometry)"
        )
    changes = {}
    for name in ("seed", "binning", "pattern_size", "photons", "lid_tilt_deg"):
        v = getattr(args, name, None)
        if v is not None:
            changes[name] = v
    if getattr(args, "angles", None):
        changes["angles_deg"] = tuple(args.angles)
    hdr = getattr(args, "hdr", None)
    if hdr is not None:
        changes["exposures_s"] = (30.0, 240.0) if hdr else None
    if args.paper_size:
        return SimulationOptions.paper(**changes)
    return SimulationOptions.for_sample(sample, **changes)


def cmd_simulate(args) -> int:
    if args.shots is not None:
        return _simulate_run(args)
    given = [f for f in ("hit_rate", "corrupt_fraction", "position_jitter") if getattr(args, f) is not None]
    if given:
        raise InputError(
            "--" + given[0].replace("_", "-"), "given without --shots", "--shots N (a simulated run)"
        )
    out = pathlib.Path(args.output)
    check_file_target(out, replace=args.overwrite)  # before the work: exists, a directory, unwritable
    opts = _simulation_options(args)
    progress = _progress(args)
    progress.stage("simulate", f"{opts.sample} sample, two beams, far field, photons and beamstop")
    shot = simulate_shot(opts, progress=progress.note)
    write_shot(out, shot, replace=args.overwrite)
    g = shot.geometry
    times = None if shot.exposure_times_s is None else [float(t) for t in shot.exposure_times_s]
    hdr = "" if times is None else f", {shot.n_exposures} exposures {times} s"
    print(
        f"wrote {out} ({shot.frame_shape[0]}x{shot.frame_shape[1]} frame{hdr}, two {shot.pattern_size}px "
        "patterns, "
        f"view pixel {g.pixel_size_m * 1e9:.1f} nm, voxel depth {g.voxel_depth_m * 1e9:.1f} nm)"
    )
    return 0


def _simulate_run(args) -> int:
    """``xstereo simulate --shots N``: a run directory of shot files and its manifest."""
    changes = {
        k: getattr(args, k)
        for k in ("hit_rate", "corrupt_fraction", "position_jitter", "seed")
        if getattr(args, k) is not None
    }
    if args.sample is not None:
        changes["samples"] = (args.sample,)
    opts = RunSimulationOptions(shots=args.shots, **changes)
    progress = _progress(args)
    progress.stage(
        "simulate", f"a run of {opts.shots} shots ({', '.join(opts.samples)}; hit rate {opts.hit_rate:g})"
    )
    manifest = simulate_run(args.output, opts, overwrite=args.overwrite, progress=progress.note)
    counts = ", ".join(f"{v} {k}" for k, v in manifest.counts.items())
    print(
        f"wrote {pathlib.Path(args.output).resolve()}/: {opts.shots} shot files ({counts}) and manifest.json"
    )
    return 0


def cmd_batch(args) -> int:
    """``xstereo batch INPUT... -o RUN_DIR``: every shot of a run into a resumable run store.

    The shots run on an embedded Dask cluster sized to the machine (``--workers auto``, the
    default; :mod:`~xstereo_gpu.batch.clusters`), N workers, this process (``--workers 0``) or an
    existing cluster (``--scheduler``). Progress goes to stderr, the final table to stdout
    (:mod:`~xstereo_gpu.batch.display`). Exit status 0 when every selected shot the store holds is
    ok or blank, 3 when some failed (their reasons are in the store and on stderr), 2 for bad input
    (nothing usable).
    """
    parse_workers(args.workers, args.scheduler)  # a bad --workers before anything is read or made
    out = pathlib.Path(args.output)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "chunks").is_dir())):
        raise InputError(
            str(out),
            "an existing file" if not out.is_dir() else "a non-empty directory that is not a run store",
            "a new directory, or the run store of an earlier `xstereo batch` of the same inputs (to resume)",
        )
    check(
        args.shots_per_launch is None or args.shots_per_launch >= 1,
        "--shots-per-launch",
        repr(args.shots_per_launch),
        "an integer >= 1",
    )
    given = _geometry_flags(args)
    source = open_source(
        args.inputs,
        start=args.start,
        stop=args.stop,
        step=args.step,
        source=args.source,
        key=args.key,
        allow_external_data=args.allow_external_data,
        **{k: v for k, v in given.items() if v is not None},
    )
    done_before = RunStore(out).done(retry_failed=args.retry_failed)
    todo = [i for i in source.indices if i not in done_before]
    say = _progress(args)
    say.stage(
        "batch",
        f"{len(source)} shots ({len(todo)} to do) into {out}: hit veto >= {args.min_photons:g} photons",
    )
    local, picklable, candidates = _batch_options(args)
    max_memory = _max_memory(args)
    with contextlib.ExitStack() as stack:  # the cluster closes on exit, errors and Ctrl-C
        client = start_client(
            args.workers,
            args.scheduler,
            stack=stack,
            backend=args.backend,
            say=say.note,
            shots=len(todo),
            shot_bytes=lambda: shot_bytes(source, candidates, indices=todo[:3], max_memory=max_memory),
        )
        bar = stack.enter_context(BatchProgress(len(todo), enabled=not args.quiet))
        t0 = time.perf_counter()
        records = process_run(
            source,
            local if client is None else picklable,
            store=out,
            veto=VetoOptions(min_photons=args.min_photons),
            chunk_size=args.chunk_size,
            retry_failed=args.retry_failed,
            backend=args.backend,
            max_memory=max_memory,
            client=client,
            shots_per_launch=args.shots_per_launch,
        )
        stack.callback(records.close)  # store what finished before the bar and the cluster go
        for rec in records:  # exhausting the records finalizes the store
            bar.update(rec)
            getattr(args, "check_terminated", lambda: None)()  # a SIGTERM Python dropped (_terminate_cleanly)
        wall = time.perf_counter() - t0
    report = run_report(out, source.indices, counts=bar.counts, wall_s=wall)
    print_report(report)
    return 3 if report.stored["failed"] else 0


def _batch_options(args):
    """The options of ``xstereo batch``: ``(in this process, picklable for workers, all candidates)``.

    With ``--recipe`` or ``--config`` one set of options serves every shot. Otherwise each hit's sample
    name chooses its recipe: in this process through a cache (one warning per unknown name), on
    workers as an :class:`~xstereo_gpu.batch.cluster.OptionsBySample`. The candidates are every
    options a shot may get (for the memory estimate of ``--workers auto``).
    """
    if args.recipe or args.config:  # one recipe for every shot
        options = _options(args)
        return options, options, [options]
    sample_from = "the shots' /entry_1/sample_1/name"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the shots that use the default warn when they do
        default = _options(args, sample="", sample_from=sample_from)
    recipes = tuple((name, _options(args, sample=name)) for name in SAMPLE_NAMES)
    profile = args.profile or ("cpu" if select_backend(args.backend) is np else "paper")
    picklable = OptionsBySample(recipes, default, sample_from, profile)
    per_sample = functools.lru_cache(maxsize=None)(
        lambda name: _options(args, sample=name, sample_from=sample_from)
    )
    return (lambda shot: per_sample(shot.sample)), picklable, [o for _, o in recipes] + [default]


# -- online: xstereo stream, xstereo serve-run (xstereo_gpu/stream, docs/stream.md) -------------------


def _geometry_flags(args) -> dict:
    """The EuXFEL geometry flags given (``--wavelength`` ... ``--pattern-size``), as keywords."""
    given = {
        "wavelength_m": args.wavelength,
        "distance_m": args.distance,
        "detector_pixel_m": args.detector_pixel,
        "angles_deg": None if args.angles is None else tuple(args.angles),
        "centres_px": None if args.centres is None else np.reshape(args.centres, (2, 2)),
        "pattern_size": args.pattern_size,
    }
    return {k: v for k, v in given.items() if v is not None}


def _add_geometry_flags(g) -> None:
    g.add_argument("--wavelength", type=float, metavar="M", help="wavelength [m]")
    g.add_argument("--distance", type=float, metavar="M", help="sample-detector distance [m]")
    g.add_argument("--detector-pixel", type=float, metavar="M", help="detector pixel [m]")
    g.add_argument("--angles", nargs=2, type=float, metavar=("T1", "T2"), help="beam angle magnitudes [deg]")
    g.add_argument(
        "--centres",
        nargs=4,
        type=float,
        metavar=("R1", "C1", "R2", "C2"),
        help="zero-frequency pixels (row, col) of the left and right patterns on the frame",
    )
    g.add_argument("--pattern-size", type=int, metavar="N", help="crop side N of each pattern [px]")


def _stream_geometry(args) -> dict:
    """The stream's geometry: ``--geometry FILE`` (TOML: the keywords of ``xfel_geometry``), flags over it."""
    given: dict = {}
    if args.geometry:
        path = pathlib.Path(args.geometry)
        try:
            given = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise InputError(str(path), f"{type(exc).__name__}: {exc}", "a geometry TOML file") from None
    given.update(_geometry_flags(args))
    big = 2**31 - 1  # the frames' shape is checked train by train (the centres must lie inside)
    return xfel_geometry(args.geometry or "--geometry", given, (big, big))


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event, say):
    """SIGINT and SIGTERM set ``stop`` (a clean end, exit 0); a second SIGINT interrupts at once."""

    def handler(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        say(f"signal {signum}: stopping after the shots in flight")
        stop.set()

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def cmd_stream(args) -> int:
    """``xstereo stream --source tcp://HOST:PORT --det-source NAME --key KEY``: online reconstruction.

    Runs until SIGINT/SIGTERM (exit 0 once the shots in flight are done and the store is written),
    ``--max-shots`` or ``--idle-exit``; see :func:`~xstereo_gpu.stream.engine.run_stream`.
    """
    require_stream("xstereo stream")
    if args.output is not None:
        out = pathlib.Path(args.output)
        check(
            not out.exists() or (out.is_dir() and (not any(out.iterdir()) or (out / "chunks").is_dir())),
            str(out),
            "an existing file or a non-empty directory that is not a run store",
            "a new directory, or a run store to continue",
        )
    opts = StreamOptions(
        source=args.source,
        det_source=args.det_source,
        key=args.key,
        sock=args.sock,
        queue_size=args.queue_size,
        policy=args.policy,
        shots_per_launch=args.shots_per_launch,
        chunk_size=args.chunk_size,
        stats_interval_s=args.stats_interval,
        silence_s=args.reconnect_after,
        max_message_bytes=int(args.max_message_mb * 2**20),
        max_shots=args.max_shots,
        idle_exit_s=args.idle_exit,
    )
    geometry = _stream_geometry(args)
    options = _options(args)
    say = (lambda line: None) if args.quiet else (lambda line: print(f"[stream] {line}", file=sys.stderr))
    stop = threading.Event()
    publisher = Publisher(args.publish) if args.publish else None
    try:
        with _stop_on_signals(stop, say):
            final = run_stream(
                opts,
                geometry,
                options,
                publisher=publisher,
                store=args.output,
                veto=VetoOptions(min_photons=args.min_photons),
                backend=args.backend,
                max_memory=_max_memory(args),
                stop=stop,
                log=lambda line: print(f"[stream] {line}", file=sys.stderr, flush=True),
            )
    finally:
        if publisher is not None:
            publisher.close()
    print(json.dumps(final, indent=1))
    return 0


def cmd_serve_run(args) -> int:
    """``xstereo serve-run RUN_DIR --port P``: replay a EuXFEL run over the Karabo bridge protocol."""
    require_stream("xstereo serve-run")
    endpoint = args.bind or f"tcp://{args.host}:{args.port if args.port else '*'}"
    stop = threading.Event()
    with _stop_on_signals(stop, lambda line: print(line, file=sys.stderr)):
        serve_run(
            args.run,
            endpoint,
            source=args.source,
            key=args.key,
            sock=args.sock,
            stop=stop,
            log=lambda line: print(line, flush=True),
        )
    return 0


def _add_stream_parsers(sub) -> None:
    p = sub.add_parser("stream", help="reconstruct shots from a Karabo bridge online; publish the results")
    p.add_argument("--source", required=True, metavar="ENDPOINT", help="the bridge, tcp://HOST:PORT")
    p.add_argument("--det-source", required=True, metavar="NAME", help="the detector's source name")
    p.add_argument("--key", required=True, metavar="KEY", help="its key holding the frames (image.data)")
    p.add_argument(
        "--sock",
        choices=SOCKETS,
        default="REQ",
        help="this client's socket: REQ for a REP bridge (default), SUB for PUB, PULL for PUSH",
    )
    p.add_argument("--publish", metavar="ENDPOINT", help="bind a PUB socket for results, tcp://*:5556")
    p.add_argument("-o", "--output", help="also store every shot in this run store (as xstereo batch)")
    p.add_argument("--queue-size", type=int, default=16, metavar="N", help="shots queued at most (16)")
    p.add_argument(
        "--policy",
        choices=POLICIES,
        default="drop-oldest",
        help="a full queue drops its oldest shot or waits",
    )
    p.add_argument("--shots-per-launch", type=int, default=4, metavar="S", help="shots phased at once (4)")
    p.add_argument("--chunk-size", type=int, default=16, help="shots per chunk file of the store (16)")
    p.add_argument("--stats-interval", type=float, default=2.0, metavar="S", help="seconds between stats")
    p.add_argument(
        "--reconnect-after", type=float, default=10.0, metavar="S", help="reconnect after S s of silence"
    )
    p.add_argument("--max-message-mb", type=float, default=1024.0, metavar="MB", help="largest message")
    p.add_argument("--max-shots", type=int, metavar="N", help="stop after N shots")
    p.add_argument("--idle-exit", type=float, metavar="S", help="stop after S s without a message")
    p.add_argument(
        "--min-photons",
        type=float,
        default=VetoOptions().min_photons,
        metavar="N",
        help="hit veto: photons each pattern window needs (default %(default)g)",
    )
    g = p.add_argument_group("geometry (a bridge sends none)")
    g.add_argument("--geometry", metavar="FILE", help="TOML with wavelength_m, ..., pattern_size; flags win")
    _add_geometry_flags(g)
    _add_common(p, overwrite=False)
    _add_pipeline_options(p)
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("serve-run", help="replay a stored EuXFEL run over the Karabo bridge protocol")
    p.add_argument("run", help="EuXFEL run directory")
    p.add_argument("--port", type=int, default=0, help="TCP port (default: a free one, printed)")
    p.add_argument("--host", default="*", help="interface to bind (default: all)")
    p.add_argument("--bind", metavar="ENDPOINT", help="ZeroMQ endpoint instead of --host/--port")
    p.add_argument("--source", metavar="NAME", help="only this source (glob; default all)")
    p.add_argument("--key", metavar="KEY", help="only this key (glob; default all)")
    p.add_argument("--sock", choices=SERVER_TYPES, default="REP", help="socket type (default REP)")
    p.set_defaults(func=cmd_serve_run)


def _staged_output(args, *inputs):
    """The command's output directory, checked, claimed and probed for writability before any work.

    Yields the temporary directory to fill; it replaces ``args.output`` when the body succeeds and is
    removed when it fails (:func:`~xstereo_gpu.io.staging.output_directory`). ``inputs`` (with the
    ``--config`` and ``--points`` files) must not lie in the output directory.
    """
    inputs = (*inputs, getattr(args, "config", None), getattr(args, "points", None))
    return output_directory(args.output, overwrite=args.overwrite, inputs=[p for p in inputs if p])


def _run_shot(shot, args, tmp, extra=None) -> tuple:
    """Reconstruct ``shot`` and write its files into the staged directory ``tmp``; returns the summary."""
    progress = _progress(args)
    from_file = shot.dataset != ""
    opts = _options(
        args,
        sample=shot.sample,
        sample_from=f"{shot.source}:/entry_1/sample_1/name" if from_file else shot.source,
    )
    with Pipeline(opts, backend=args.backend, progress=progress, max_memory=_max_memory(args)) as pipe:
        try:
            res = pipe.run(shot)
        except InputError as exc:
            raise with_source(exc, shot.source, shot.dataset, views=VIEW_NAMES) from None
        return _write(pipe, res, shot, args, tmp, extra)


def _write(pipe, res, shot, args, tmp, extra) -> tuple[dict, Any]:
    """Write the run's files into ``tmp``; returns the summary and the check to run once they are in place."""
    summary = pipe.write(
        res, tmp, shot=shot, figures=not args.no_figures, extra_summary=extra, label=args.output
    )
    return summary, functools.partial(
        check_matches,
        res.stereo.disparity_left,
        res.stereo.disparity_right,
        pipe.options,
        "stereo",
        kept=args.output,
    )


def _finished(args, written) -> int:
    """After the output directory is in place: print the accuracy and where the outputs are.

    Disparity maps without any valid pixel end the command with exit status 2 only now, after the
    outputs are in place (the phased views in ``views.cxi`` are worth keeping: match them again with
    ``xstereo stereo``); summary.json records the valid fractions.
    """
    summary, check = written
    _print_accuracy(summary.get("accuracy"))
    _print_outputs(args.output, summary)
    check()
    return 0


def cmd_run(args) -> int:
    with _staged_output(args, args.shot) as tmp:
        centres = None if args.centres is None else [args.centres[:2], args.centres[2:]]
        shot = read_shot(
            args.shot,
            frame=args.frame,
            angles_deg=args.angles,
            centres_px=centres,
            pattern_size=args.pattern_size,
            wavelength_m=args.wavelength,
            distance_m=args.distance,
            detector_pixel_m=args.detector_pixel,
            allow_external_data=args.allow_external_data,
        )
        written = _run_shot(shot, args, tmp)
    return _finished(args, written)


def cmd_demo(args) -> int:
    with _staged_output(args) as tmp:
        written = _demo(args, tmp)
    return _finished(args, written)


def _demo(args, tmp) -> tuple:
    t0 = time.perf_counter()
    opts = _simulation_options(args)
    start = args.start or ("views" if opts.sample == "pyramid" else "pattern")
    # the memory plan first: refuse what cannot fit before simulating
    with Pipeline(
        _options(args, sample=opts.sample), backend=args.backend, max_memory=_max_memory(args)
    ) as pipe:
        pipe.plan_memory(opts.pattern_size, phasing=start == "pattern")
    progress = _progress(args)
    progress.stage(
        "simulate",
        f"the built-in {opts.sample} sample, beams at {opts.angles_deg[0]:g} + {opts.angles_deg[1]:g} deg",
    )
    shot = simulate_shot(opts, progress=progress.note)
    shot.source = f"built-in simulated {opts.sample} (xstereo demo --sample {opts.sample})"
    t_sim = time.perf_counter() - t0
    if start == "pattern":
        return _run_shot(shot, args, tmp, extra={"simulation_s": round(t_sim, 3)})
    return _run_provided_views(shot, args, tmp, t_sim)


#: How the pyramid demo's views are made when they are provided rather than phased (paper, Fig. 4).
PROVIDED_VIEWS = {"resolution_m": 42e-9, "noise": 0.03}


def _run_provided_views(shot, args, tmp, t_sim: float) -> tuple:
    """The paper's route for the pyramid: 2D reconstructions provided (here: the true views at the paper's
    42 nm resolution, with noise), then stereo, cloud and scoring; phasing is not run."""
    progress = _progress(args)
    progress.stage(
        "views",
        f"provided views: the true projections at {PROVIDED_VIEWS['resolution_m'] * 1e9:g} nm "
        f"(10-90 %) resolution with {PROVIDED_VIEWS['noise']:.0%} noise (paper, Fig. 4); no phasing",
    )
    views = provided_views(shot.truth, seed=shot.extra.get("seed", 0), **PROVIDED_VIEWS)
    opts = _options(args, sample=shot.sample)
    extra = {
        "simulation_s": round(t_sim, 3),
        "phasing": {
            "skipped": "views provided, as in the paper's pyramid experiment (its 2D CDI reconstructions "
            "came from another data set)",
            "provided_views": {
                "resolution_nm": PROVIDED_VIEWS["resolution_m"] * 1e9,
                "noise_fraction": PROVIDED_VIEWS["noise"],
            },
        },
    }
    with Pipeline(opts, backend=args.backend, progress=progress, max_memory=_max_memory(args)) as pipe:
        res = pipe.run_views(views, shot.geometry, truth=shot.truth, sample=shot.sample, source=shot.source)
        return _write(pipe, res, shot, args, tmp, extra)


#: ``xstereo phase`` (one measured pattern) extends the schedule up to this many times ``--iterations``
#: while the R-factor still drops, unless ``--max-iterations`` or ``--config`` says otherwise.
PHASE_MAX_ITERATIONS_FACTOR = 4


def cmd_phase(args) -> int:
    with _staged_output(args, args.pattern) as tmp:
        max_memory = _max_memory(args)
        opts = _options(args)
        if getattr(args, "max_iterations", None) is None and not getattr(args, "config", None):
            opts = opts.replace(phasing__max_iterations=PHASE_MAX_ITERATIONS_FACTOR * opts.phasing.iterations)
        pipe = Pipeline(opts, backend=args.backend, progress=_progress(args), max_memory=max_memory)
        o = pipe.options.phasing
        ext = args.allow_external_data
        support = read_support(args.support, allow_external_data=ext) if args.support else None
        size = args.size
        if support is not None:  # the support's side is the crop's
            check(
                size in (None, support.shape[0]),
                "--size",
                f"{size} but the support {args.support} is {support.shape[0]} x {support.shape[1]}",
                "the support's side (or no --size)",
            )
            size = support.shape[0]
        if size is not None:  # refuse a crop that cannot be phased before reading anything
            b = memory_budget(pipe.xp, max_memory)
            where = "--size" if args.size is not None else f"--support {args.support}"
            plan_phasing(1, o.runs, size, b["budget_bytes"], limit=b["limit_bytes"], where=where)
        pat = read_pattern(
            args.pattern,
            frame=args.frame,
            dataset=args.dataset,
            mask=args.mask,
            mask_convention=args.mask_convention,
            allow_external_data=ext,
        )
        here = f"{pat.source}:{pat.dataset}" if pat.dataset else pat.source
        centre = tuple(args.centre) if args.centre else pat.centre
        try:
            intensities, valid = single_pattern(
                pipe.xp.asarray(pat.data), pipe.xp.asarray(pat.mask), centre=centre, size=size
            )
        except InputError as exc:
            raise with_source(exc, pat.source, pat.dataset) from None
        n = int(intensities.shape[-1])
        wl = args.wavelength or pat.wavelength_m
        dist = args.distance or pat.distance_m
        pix = args.detector_pixel or pat.pixel_size_m
        check_plausible(
            wavelength_m=wl,
            distance_m=dist,
            detector_pixel_m=pix,
            where={
                "wavelength_m": "--wavelength" if args.wavelength else f"{here} (wavelength)",
                "distance_m": "--distance" if args.distance else f"{here} (distance)",
                "detector_pixel_m": "--detector-pixel" if args.detector_pixel else f"{here} (detector pixel)",
            },
        )
        pixel = real_space_pixel(wl, dist, pix, n) if None not in (wl, dist, pix) else math.nan
        try:
            phased = pipe.phase(
                intensities, valid, support=None if support is None else pipe.xp.asarray(support[None])
            )
        except InputError as exc:
            crop = f"the {n}x{n} crop" + (f" at {tuple(centre)}" if centre else "") + " phased"
            raise with_source(exc, pat.source, pat.dataset, note=crop) from None
        history = {k: v for k, v in phased.history.items() if k != "memory"}
        views = ViewsResult(
            views=phased.views,
            supports=phased.supports,
            best_eps=phased.best_eps,
            names=("view",),
            history=history,
        ).to_host()
        files = write_views_files(
            tmp,
            views,
            parameters={
                "phasing": pipe.options.to_dict()["phasing"],
                "source": str(args.pattern),
                "input": {
                    "dataset": pat.dataset,
                    "mask": str(args.mask) if args.mask else None,
                    "mask_convention": args.mask_convention,
                    "support": str(args.support) if args.support else None,
                    "centre_px": list(centre) if centre else None,
                    "notes": list(pat.notes),
                },
            },
            pixel_size_m=pixel,
            figures=not args.no_figures,
            filename="view.cxi",
            titles=("phased view",),
        )
        summary = _phase_summary(pipe, phased, intensities, valid, pixel, here, n, files)
        write_json(tmp / "summary.json", summary)
    sel = summary["phasing"]["selection"]["views"][0]
    unit = f"{pixel * 1e9:.1f} nm pixels" if math.isfinite(pixel) else "pixel size unknown (no geometry)"
    read = f" ({'; '.join(pat.notes)})" if pat.notes else ""
    print(f"read {here}{read}")
    print(
        f"phased {args.pattern} ({n}x{n}, {unit}); R-factor on measured pixels: best run "
        f"{min(sel['r_factor']):.3g}, {len(sel['runs_kept'])} of {len(sel['r_factor'])} runs averaged "
        f"(median R {sel['r_factor_kept_median']:.3g})"
    )
    print(f"outputs in {pathlib.Path(args.output).resolve()}/: " + ", ".join(files + ["summary.json"]))
    return 0


def _phase_summary(pipe, phased, intensities, valid, pixel: float, source: str, n: int, files) -> dict:
    """``summary.json`` of ``xstereo phase``: provenance, the selection of the runs by R-factor (runs
    kept and why the others were left out), the R-factor of the averaged view and its PRTF (over
    the kept runs), timings (docs/format.md)."""
    o = pipe.options.phasing
    xp = pipe.xp
    amp, v = fourier_constraint(intensities, valid)
    r_view = float(to_host(r_factor(xp.asarray(phased.views)[:, None], amp, v))[0, 0])
    known = math.isfinite(pixel)
    q, curve = prtf(phased.views, intensities, valid, pixel_m=pixel if known else None)
    q, curve = to_host(q), to_host(curve)[0]
    res = float(prtf_resolution(q, curve))
    scale = 1e-9 if known else 1.0  # [1/m] -> [1/nm]
    h = phased.history
    return {
        **run_record(pipe.options),
        "input": source,
        "device": device_info(xp),
        "pattern_size": n,
        "pixel_size_nm": pixel * 1e9 if known else None,
        "timings_s": {k: round(t, 4) for k, t in pipe.timings.items()},
        "phasing": {
            "algorithm": o.algorithm,
            "runs": o.runs,
            "iterations": o.iterations,
            "final_er": o.final_er,
            "max_iterations": o.max_iterations,
            "iterations_run": int(phased.iterations),
            "record_every": o.check_every,
            "selection": phasing_summary(h, o),
            "r_factor_view": r_view,
            "best_eps_median": float(np.median(to_host(phased.best_eps))),
        },
        "quality": {  # PRTF of the average over the kept runs; q per nm, or per pixel without geometry
            ("prtf_q_per_nm" if known else "prtf_q_per_pixel"): (q * scale).round(8).tolist(),
            "prtf": np.round(curve.astype(float), 5).tolist(),
            ("prtf_resolution_nm" if known else "prtf_resolution_pixels"): res / scale,
        },
        "options": pipe.options.to_dict(),
        "outputs": sorted(list(files) + ["summary.json"]),
    }


def cmd_stereo(args) -> int:
    with _staged_output(args, args.left, args.right) as tmp:
        summary, files = _stereo(args, tmp)
    st = summary["stereo"]
    print(
        f"disparity maps: {st['valid_fraction_left'] * 100:.1f} % / {st['valid_fraction_right'] * 100:.1f} % "
        f"of pixels valid" + (f"; {summary['cloud']['points']} cloud points" if "cloud" in summary else "")
    )
    print(f"outputs in {pathlib.Path(args.output).resolve()}/: " + ", ".join(files + ["summary.json"]))
    return 0


def _stereo(args, tmp) -> tuple[dict, list]:
    """Match two views and write the maps (and depth and cloud, with geometry) into ``tmp``."""
    if (args.angles is None) != (args.pixel_size is None):
        raise InputError(
            "--angles/--pixel-size", "only one of them given", "both (for depth and the cloud) or neither"
        )
    ext = args.allow_external_data
    left = read_image(args.left, allow_external_data=ext)
    same = pathlib.Path(args.right).resolve() == pathlib.Path(args.left).resolve()
    right = read_image(args.right, index=1 if same else 0, allow_external_data=ext)
    if left.shape != right.shape:
        raise InputError(f"{args.right}", f"shape {right.shape}", f"the left view's shape {left.shape}")
    geometry = StereoGeometry(args.pixel_size, tuple(args.angles)) if args.angles else None
    if geometry is not None:
        check_plausible(
            pixel_size_m=args.pixel_size,
            angles_deg=tuple(args.angles),
            where={"pixel_size_m": "--pixel-size", "angles_deg": "--angles"},
        )
    inputs = {"left": str(args.left), "right": str(args.right)}
    with Pipeline(
        _options(args), backend=args.backend, progress=_progress(args), max_memory=_max_memory(args)
    ) as pipe:
        views = ViewsResult(
            views=pipe.xp.asarray(np.stack([left, right])), supports=None, best_eps=None, geometry=geometry
        )
        try:
            stereo = pipe.stereo(views)
        except InputError as exc:
            raise with_source(exc, f"{args.left}, {args.right}") from None
        host = stereo.to_host()
        check_matches(
            host.disparity_left, host.disparity_right, pipe.options, f"{args.left}, {args.right}: stereo"
        )
        files = write_stereo_files(tmp, host, geometry, metadata=inputs)
        summary = {
            **run_record(pipe.options),
            "input": inputs,
            "device": device_info(pipe.xp),
            "stereo": stereo_summary(host, pipe.options),
        }
        if geometry is not None:
            cloud = pipe.cloud(stereo, geometry).to_host()
            files += write_cloud_files(tmp, cloud, geometry, host.upsample, metadata=inputs)
            summary.update(geometry=geometry.report(), cloud=cloud_summary(cloud, pipe.options))
    summary.update(options=pipe.options.to_dict(), outputs=sorted(files + ["summary.json"]))
    write_json(tmp / "summary.json", summary)
    return summary, files


# -- parser --------------------------------------------------------------------------------------------


def _add_common(p, *, overwrite=True):
    p.add_argument(
        "--backend", choices=BACKENDS, default=None, help="array backend (default: XSTEREO_BACKEND or auto)"
    )
    if overwrite:
        p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")


def _add_input_safety(p):
    p.add_argument(
        "--allow-external-data",
        action="store_true",
        help="follow HDF5 external links, external raw storage and virtual-dataset sources outside "
        "the input file's directory (refused by default)",
    )


def _add_pipeline_options(p, *, phasing=True, stereo=True):
    """--profile, --config, --max-memory, --recipe (stereo) and the stages' flags (cli_options.py)."""
    over = "--profile, --config and the recipe" if stereo else "--profile and --config"
    g = p.add_argument_group(
        "pipeline options",
        f"a flag under a [section] heading below sets that option of a --config file, over {over}",
    )
    g.add_argument(
        "--profile",
        choices=tuple(PROFILES),
        default=None,
        help="preset: 'paper' (45 runs; GPU default) or 'cpu' (fewer runs; NumPy default)",
    )
    g.add_argument("--config", help="options TOML file (write one with `xstereo config`)")
    g.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="memory a stage may use, e.g. 4G, 512M (default: 80%% of the free RAM or device memory); "
        "phasing runs in batches and SGM in strips to fit, or the command stops before computing",
    )
    if stereo:
        g.add_argument(
            "--recipe",
            choices=RECIPE_NAMES,
            help="the paper's processing recipe for this kind of sample, or 'natural' for camera "
            "stereo pairs (default: from the shot's sample name)",
        )
    groups = {}
    for flag in PIPELINE_FLAGS:
        if phasing if flag.group == "phasing" else stereo:
            if flag.stage not in groups:
                groups[flag.stage] = p.add_argument_group(f"[{flag.stage}]")
            groups[flag.stage].add_argument(flag.flag, **flag.argparse)


def _add_sim_options(p):
    p.add_argument(
        "--sample",
        choices=SAMPLE_NAMES,
        default=None,
        help="simulated sample: the paper's amplitude cross (Figs. 2-3a,b; the default), phase cross "
        "(Figs. 3c,d) or nanoparticle pyramid (Fig. 4), or nanoparticles in general 3D arrangements (not "
        "in the paper): random clusters, along a 3D curve, on a tilted rough surface; with --shots (the "
        "paper's samples only), the only sample of the run",
    )
    p.add_argument("--seed", type=int, help="random seed of the photon noise")
    p.add_argument("--binning", type=int, help="detector binning (demo 4, paper 1)")
    p.add_argument("--pattern-size", type=int, help="crop side N of each pattern [binned px]")
    p.add_argument("--photons", type=float, help="photons per pattern")
    p.add_argument("--lid-tilt-deg", type=float, help="tilt of the cross lid out of the membrane plane [deg]")
    p.add_argument(
        "--paper-size", action="store_true", help="the paper's full 2048x2048 CCD, 1024 px crops (cross)"
    )
    p.add_argument(
        "--hdr",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="record two exposures, 30 s and 240 s, with saturation (HDR; the cross's default, as in the "
        "paper) or one frame (--no-hdr)",
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="xstereo",
        description="Computed stereo lensless X-ray imaging: "
        "two coherent diffraction patterns in, a 3D point cloud out.",
    )
    ap.add_argument("--version", action="version", version=f"xstereo-gpu {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="simulate the paper's cross sample and reconstruct it end to end")
    p.add_argument("-o", "--output", default="xstereo_demo", help="output directory (default: xstereo_demo)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    _add_common(p)
    _add_pipeline_options(p)
    _add_sim_options(p)
    p.add_argument(
        "--start",
        choices=DEMO_STARTS,
        default=None,
        help="phase the simulated patterns (default) or start from provided views (the paper's route "
        "for the pyramid, whose 2D reconstructions were provided; default for --sample pyramid)",
    )
    p.set_defaults(func=cmd_demo, angles=None)

    p = sub.add_parser("simulate", help="write a simulated stereo shot (CXI) with ground truth, or a run")
    p.add_argument(
        "-o", "--output", required=True, help="output shot file (.cxi); with --shots a run directory"
    )
    p.add_argument("--angles", nargs=2, type=float, metavar=("T1", "T2"), help="beam angle magnitudes [deg]")
    p.add_argument(
        "--shots",
        type=int,
        metavar="N",
        help="write a run of N small shot files instead (hits of random samples, blanks, corrupt files) "
        "and manifest.json",
    )
    p.add_argument("--hit-rate", type=float, metavar="R", help="with --shots: fraction of hits (default 0.3)")
    p.add_argument(
        "--corrupt-fraction",
        type=float,
        metavar="F",
        help="with --shots: fraction of corrupt files (default 0.04)",
    )
    p.add_argument(
        "--position-jitter",
        type=float,
        metavar="J",
        help="with --shots: spread of the hits' random lateral positions, a fraction of the free view "
        "field (default 0.5; 0 = every sample centred)",
    )
    _add_common(p)
    _add_sim_options(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("run", help="reconstruct a stereo shot file: views, disparity, depth, cloud")
    p.add_argument("shot", help="shot file (CXI, docs/format.md)")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--frame", type=int, help="frame index when the detector data is a stack")
    p.add_argument(
        "--angles",
        nargs=2,
        type=float,
        metavar=("T1", "T2"),
        help="beam angle magnitudes [deg] (override or supply the file's)",
    )
    p.add_argument(
        "--centres",
        nargs=4,
        type=float,
        metavar=("R1", "C1", "R2", "C2"),
        help="zero-frequency pixels (row, col) of the left and right patterns on the frame",
    )
    p.add_argument("--pattern-size", type=int, help="crop side N of each pattern [px]")
    p.add_argument("--wavelength", type=float, metavar="M", help="wavelength [m]")
    p.add_argument("--distance", type=float, metavar="M", help="sample-detector distance [m]")
    p.add_argument("--detector-pixel", type=float, metavar="M", help="detector pixel [m]")
    _add_common(p)
    _add_input_safety(p)
    _add_pipeline_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("phase", help="phase a single diffraction pattern (plain CDI)")
    p.add_argument("pattern", help="pattern file: CXI/HDF5, libspimage HDF5, TIFF or NPY")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--frame", type=int, help="frame index for 3D stacks")
    p.add_argument(
        "--dataset", metavar="NAME", help="HDF5 dataset holding the pattern (default: see docs/format.md)"
    )
    p.add_argument(
        "--mask",
        metavar="FILE",
        help="pixel mask file (TIFF, NPY, PNG or HDF5 /mask), merged with the pattern file's own mask",
    )
    p.add_argument(
        "--mask-convention",
        choices=MASK_CONVENTIONS,
        default="cxi",
        help="what --mask values mean: cxi = 0 is a good pixel, non-zero excluded (default); "
        "valid = non-zero is a measured pixel, 0 excluded (libspimage, Hawk)",
    )
    p.add_argument(
        "--support",
        metavar="FILE",
        help="initial real-space support (N x N, non-zero inside, object centred; TIFF, NPY, PNG or "
        "HDF5 /support); its side N is the crop phased",
    )
    p.add_argument(
        "--size", type=int, help="crop side N [px] (default: largest even square around the centre)"
    )
    p.add_argument("--centre", nargs=2, type=float, metavar=("ROW", "COL"), help="zero-frequency pixel")
    p.add_argument("--wavelength", type=float, help="wavelength [m] (else from the file)")
    p.add_argument("--distance", type=float, help="sample-detector distance [m] (else from the file)")
    p.add_argument("--detector-pixel", type=float, help="detector pixel [m] (else from the file)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figure")
    _add_common(p)
    _add_input_safety(p)
    _add_pipeline_options(p, stereo=False)
    p.set_defaults(func=cmd_phase)

    p = sub.add_parser("stereo", help="disparity maps (and depth and cloud) from two views")
    p.add_argument(
        "left", help="left view: PNG, JPEG, TIFF, NPY or CXI (views.cxi image_1); colour is read as luminance"
    )
    p.add_argument(
        "right", help="right view: same formats (views.cxi: image_2 when it is the same file as the left)"
    )
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--angles", nargs=2, type=float, metavar=("T1", "T2"), help="beam angle magnitudes [deg]")
    p.add_argument("--pixel-size", type=float, metavar="M", help="view pixel [m]")
    _add_common(p)
    _add_input_safety(p)
    _add_pipeline_options(p, phasing=False)
    p.set_defaults(func=cmd_stereo)

    p = sub.add_parser("batch", help="reconstruct every shot of a run into a resumable run store")
    p.add_argument(
        "inputs",
        nargs="+",
        help="a CXI/HDF5 stack of shots (N, H, W), shot files / glob patterns, or a European XFEL run "
        "directory (with --source, --key and the geometry flags)",
    )
    p.add_argument(
        "-o", "--output", required=True, help="run store directory (rerun the same command to resume)"
    )
    p.add_argument("--start", type=int, default=0, help="first shot index of the selection")
    p.add_argument("--stop", type=int, help="stop before this shot index")
    p.add_argument("--step", type=int, default=1, help="stride of the selection")
    p.add_argument(
        "--min-photons",
        type=float,
        default=VetoOptions().min_photons,
        metavar="N",
        help="hit veto: photons each pattern window needs (default %(default)g); fewer: blank, not phased",
    )
    p.add_argument(
        "--chunk-size", type=int, default=16, help="shots per chunk file (a kill loses at most one)"
    )
    p.add_argument("--retry-failed", action="store_true", help="also redo the shots stored as failed")
    p.add_argument(
        "--workers",
        default=None,
        metavar="auto|N",
        help="where the shots run: 'auto' (default) an embedded Dask cluster sized to this machine (one "
        "worker per GPU with CuPy, else one single-threaded worker process per core that the memory "
        "holds; this process when that is one); N worker processes; 0 this process, no Dask "
        "(docs/cluster.md)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="shots on the workers of an existing Dask cluster (tcp://host:8786: dask-jobqueue, "
        "`dask scheduler` + `dask worker`, docs/cluster.md); this process writes the store",
    )
    p.add_argument(
        "--shots-per-launch",
        type=int,
        metavar="S",
        help="hits phased in one stacked launch at most (default: as many as the free device memory or "
        "RAM holds, at most 16; 1: each alone); on Dask, also the shots per task",
    )
    xfel = p.add_argument_group("European XFEL runs (EXtra-data) and shots without geometry")
    xfel.add_argument(
        "--source",
        metavar="NAME",
        help="EXtra-data source of the detector frames: a camera output such as "
        "SA1_XTD9_HIREX/CAM/BEAMVIEW:daqOutput, or one detector module such as "
        "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf; leave out to list the run's image sources",
    )
    xfel.add_argument(
        "--key", metavar="KEY", help="the source's key holding the frames (data.image.pixels, image.data)"
    )
    _add_geometry_flags(xfel)
    _add_common(p, overwrite=False)  # a run store is resumed, never replaced
    _add_input_safety(p)
    _add_pipeline_options(p)
    p.set_defaults(func=cmd_batch)
    _add_stream_parsers(sub)

    p = sub.add_parser("geometry", help="real-space pixel, voxel size and resolution report")
    p.add_argument("--pixel-size", type=float, metavar="M", help="view pixel [m]")
    p.add_argument(
        "--angles",
        nargs=2,
        type=float,
        metavar=("T1", "T2"),
        required=True,
        help="beam angle magnitudes [deg]",
    )
    p.add_argument("--resolution", type=float, metavar="M", help="in-plane resolution of the views [m]")
    p.add_argument(
        "--wavelength",
        type=float,
        metavar="M",
        help="wavelength [m] (with --distance, --detector-pixel, --size)",
    )
    p.add_argument("--distance", type=float, metavar="M", help="sample-detector distance [m]")
    p.add_argument("--detector-pixel", type=float, metavar="M", help="detector pixel [m]")
    p.add_argument("--size", type=int, help="crop side N of a pattern [px]")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_geometry)

    p = sub.add_parser("bench", help="time the hot paths and the pipeline on the current device")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument(
        "--quick",
        action="store_true",
        help="small problems, few repeats (with --shots: 2 runs x 10 iterations, not for figures)",
    )
    p.add_argument("--no-pipeline", action="store_true", help="skip the whole-pipeline row")
    p.add_argument(
        "--shots",
        type=int,
        metavar="N",
        help="instead: the many-shot bench on a simulated run of N shots (plain Pipeline.run loop, "
        "process_run in process and on Dask workers, blank shots against a raw h5py read)",
    )
    p.add_argument("--hit-rate", type=float, metavar="R", help="with --shots: fraction of hits (default 0.3)")
    p.add_argument(
        "--workers",
        type=_worker_counts,
        metavar="K,...",
        help="with --shots: Dask LocalCluster sizes to time process_run on (default 1,2,4; 0 = none)",
    )
    p.add_argument(
        "--size",
        type=int,
        metavar="N",
        help="with --shots: crop side of each pattern [px], 128, 256, 512 or 1024 (default 256)",
    )
    p.add_argument(
        "--blank-shots",
        type=int,
        metavar="N",
        help="with --shots: shots of the all-blank run (default: N of --shots; 0 = none)",
    )
    p.add_argument(
        "--shots-per-launch",
        type=int,
        metavar="K",
        help="with --shots: process_run's shots_per_launch (where it has that keyword)",
    )
    p.add_argument(
        "--work-dir",
        metavar="DIR",
        help="with --shots: folder of the temporary run (default: the system's; removed afterwards)",
    )
    p.add_argument("--backend", choices=BACKENDS, default=None)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("config", help="print the options of a profile as TOML (for --config)")
    p.add_argument("--profile", choices=tuple(PROFILES), default="paper")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("info", help="backend, versions and GPU facts")
    p.add_argument("--backend", choices=BACKENDS, default=None)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)
    return ap


class _Terminated(BaseException):
    """Raised in the main thread on SIGTERM or SIGHUP, so that staged outputs are removed on the way out."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _terminate_cleanly():
    """Turn SIGTERM and SIGHUP into :class:`_Terminated` while the command runs (main thread only).

    Yields ``check()``, which raises :class:`_Terminated` if a signal came: Python drops an exception
    raised while a finalizer or weakref callback runs, so a signal that lands there is raised again at
    the command's next ``check()`` (``xstereo batch`` checks after every shot) and, at the latest, when
    the command returns.
    """
    received: list[int] = []

    def check() -> None:
        if received:
            raise _Terminated(received[0])

    if threading.current_thread() is not threading.main_thread():
        yield check
        return

    def raise_terminated(signum, frame):
        received.append(signum)
        raise _Terminated(signum)

    signums = [
        s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None
    ]
    hook = sys.unraisablehook

    def quiet_when_dropped(unraisable) -> None:  # a dropped _Terminated is raised again by check()
        if not isinstance(unraisable.exc_value, _Terminated):
            hook(unraisable)

    previous = {s: signal.signal(s, raise_terminated) for s in signums}
    sys.unraisablehook = quiet_when_dropped
    try:
        yield check
        check()
    finally:
        sys.unraisablehook = hook
        for s, handler in previous.items():
            signal.signal(s, handler)


def _os_error(exc: OSError, args) -> InputError:
    """An OS error (unreadable input, read-only or full output, ...) as the exit-2 message.

    Errors that name no file (a short write, say) are put on the command's output, with the free space
    left on its file system.
    """
    output = getattr(args, "output", None)
    where = exc.filename if exc.filename is not None else output or "a file of this command"
    code = _errno.errorcode.get(exc.errno, "") if exc.errno is not None else ""
    found = f"{exc.strerror or exc}" + (f" ({code})" if code else "")
    if output is not None:
        parent = pathlib.Path(os.path.abspath(output)).parent
        with contextlib.suppress(OSError):
            found += f"; {shutil.disk_usage(parent).free / 1e6:.1f} MB free on the output's file system"
    return InputError(
        str(where),
        found,
        "inputs that can be read and an output location that can be written, "
        "with free space; nothing partial was kept",
    )


def _kept(args) -> str:
    """What an interrupted command leaves: a run store keeps its finished shots, the rest nothing."""
    if args.command == "batch":
        return "the shots finished are kept in the run store (rerun the same command to resume)"
    if args.command == "stream":
        return "the shots processed are kept in the run store, if one was given (-o)"
    return "no partial outputs were kept"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xstereo`` console script; returns the exit status.

    0 on success; 2 for bad input, unreadable or unwritable files (a message on stderr names the file
    or field); 130 on Ctrl-C and 128 + N on signal N (SIGTERM, SIGHUP). However it ends, no partial
    output is left that looks finished, and temporaries are removed.
    """
    args = build_parser().parse_args(argv)
    try:
        with _terminate_cleanly() as check:
            args.check_terminated = check
            return int(run_with_warnings(args.func, args, args.command) or 0)
    except InputError as exc:
        print(f"xstereo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"xstereo {args.command}: error: {_os_error(exc, args)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(
            f"xstereo {args.command}: error: out of memory; expected a problem that fits in the free memory "
            f"(fewer --runs, a smaller --pattern-size); {_kept(args)}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"xstereo {args.command}: interrupted; {_kept(args)}", file=sys.stderr)
        return 130
    except _Terminated as exc:
        print(
            f"xstereo {args.command}: terminated by signal {exc.signum}; {_kept(args)}",
            file=sys.stderr,
        )
        return 128 + exc.signum


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
