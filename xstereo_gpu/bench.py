"""``xstereo bench``: the three hot paths and the whole pipeline timed on the current device.

Every row reports the median time of several runs (warm-up excluded, device synchronised; on CuPy
the GPU time from CUDA events via ``cupyx.profiler.benchmark``), a throughput, and where it applies
its roofline: the bytes it must move and the flops it does, and the lower bound on its time set by
two limits measured in the same run, a device-to-device copy (memory bandwidth) and a forward +
inverse FFT pair of the phasing batch's shape. On NumPy the twins (the CPU path) are timed at
CPU-sized problems, named in the table; on CuPy the twins' CuPy code and the custom kernels, at the
sizes of issue 3 (DM (1, 45, 512, 512); block matching 1024 x 1024 with 3 x 3 blocks over 131
disparities and 23 x 23 over 61; kNN on 1,000,000 points with k = 80).

The pieces are public so that ``benchmarks/test_bench_kernels.py`` (pytest-benchmark) times the
same cases with the same cost model: :func:`time_fn`, :func:`measure_limits`, :func:`hot_path_cases`,
:func:`measure_case`.

Cost model (bytes that must cross DRAM at least once, per call)
----------------------------------------------------------------
- DM iteration, per pixel of each of the ``V R`` images: ``dm_modulus`` reads and writes two
  complex images (32 B), ``dm_update`` reads three and the support and writes two, ``x`` and the
  next step's ``f_S(x)`` (41 B), ``best_copy`` at most 17 B: 90 B (``dm_prepare``, 25 B, runs only
  on a step after a new support; table in ``kernels/difference_map.cu``); plus the FFT floor of two
  forward + inverse pairs of the batch (measured). Flops: ``5 N^2 log2(N^2)`` per
  transform, 4 transforms per image, plus about 40 per pixel.
- Block matching: reads both images and writes six maps: 32 B per pixel (compute-bound; its
  throughput is pixel-disparities per second, both maps counted).
- kNN: reads the points and writes the mean distances, 32 B per point (compute-bound).

Host reads
----------
Every row also gives the device-to-host reads (host synchronisations) of one call, and the
pipeline row those of each stage, counted by :class:`~xstereo_gpu.timing.HostReadCounter` (what it
counts: its docstring; ``None`` on NumPy). Issue 12's budgets: 0 per DM iteration between cost
checks, 0 per block-matching call, at most 2 per kNN call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backend import device_info, synchronize
from .cloud._knn_kernel import knn_mean_distance_kernel
from .cloud.outliers import knn_mean_distance
from .config import MatchOptions, PhasingOptions, PipelineOptions
from .phasing._fft import fft2, ifft2
from .phasing.runs import PhaseRetrieval
from .pipeline import run_pipeline
from .simulate import simulate_shot
from .stereo._bm_kernel import block_match_kernel
from .stereo.disparity import block_match
from .timing import HostReadCounter

__all__ = [
    "BenchCase",
    "run_bench",
    "format_table",
    "time_fn",
    "measure_limits",
    "hot_path_cases",
    "measure_case",
    "TARGETS_MS",
]

#: Issue 3's targets on one H100 / H200 [ms], by case key, for the issue's sizes only.
TARGETS_MS = {"dm": 0.9, "bm3": 1.0, "bm23": 2.0, "knn": 30.0}


def time_fn(xp, fn: Callable[[], Any], *, repeat: int, warmup: int = 1) -> float:
    """Median seconds of ``fn()`` over ``repeat`` runs after ``warmup`` runs.

    On CuPy the GPU time between CUDA events (``cupyx.profiler.benchmark``); on NumPy the wall time.
    """
    if xp is not np:
        from cupyx.profiler import benchmark

        res = benchmark(fn, n_repeat=int(repeat), n_warmup=int(warmup))
        return float(np.median(res.gpu_times[0]))
    for _ in range(int(warmup)):
        fn()
    times = []
    for _ in range(int(repeat)):
        t0 = time.perf_counter()
        fn()
        synchronize(xp)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure_limits(xp, *, copy_bytes: int, fft_shape: tuple[int, ...], repeat: int = 5) -> dict:
    """Measure the two limits every roofline ratio is taken against.

    Parameters
    ----------
    xp : module
        ``numpy`` or ``cupy``.
    copy_bytes : int
        Size of the copied buffer [bytes].
    fft_shape : tuple of int
        ``(V, R, N, N)``: shape of the complex64 batch whose forward + inverse FFT pair is timed.

    Returns
    -------
    dict
        ``copy_s`` [s], ``copy_bytes``, ``bandwidth_bytes_per_s`` (read + write: ``2 copy_bytes /
        copy_s``), ``fft_pair_s`` [s], ``fft_shape``.
    """
    a = xp.ones(int(copy_bytes) // 4, dtype=xp.float32)
    b = xp.empty_like(a)
    t_copy = time_fn(xp, lambda: xp.copyto(b, a), repeat=repeat)
    a = b = None  # free the copy buffers before the FFT
    rng = np.random.default_rng(1)
    x = xp.asarray(
        (rng.standard_normal(fft_shape) + 1j * rng.standard_normal(fft_shape)).astype(np.complex64)
    )
    t_fft = time_fn(xp, lambda: ifft2(fft2(x)), repeat=repeat)
    return {
        "copy_s": t_copy,
        "copy_bytes": int(copy_bytes),
        "bandwidth_bytes_per_s": 2 * int(copy_bytes) / t_copy,
        "fft_pair_s": t_fft,
        "fft_shape": list(fft_shape),
    }


@dataclass
class BenchCase:
    """One timed hot-path call and its cost model.

    Attributes
    ----------
    key : str
        ``"dm"``, ``"bm3"``, ``"bm23"`` or ``"knn"`` (the hot path and size class).
    name : str
        Row name, ending in ``(twin)`` or ``(kernel)``.
    shape : str
        Problem size in words.
    fn : callable
        The call to time (no arguments; device work is synchronised by :func:`time_fn`).
    work : float
        Work units per call (``unit`` per second is the throughput).
    unit : str
        E.g. ``"run-iterations/s"``.
    bytes : float
        Bytes that must cross memory per call (module docstring).
    flops : float or None
        Floating-point operations per call, where the count is meaningful.
    fft_pairs : int
        FFT pairs of the measured shape in the time floor (2 for a DM iteration, else 0).
    target_ms : float or None
        Issue 3's target for this case (GPU kernels at the issue's sizes only).
    repeat : int
        Timed repetitions.
    extra : dict
        Facts of the case (``fft_shape`` for the DM rows).
    """

    key: str
    name: str
    shape: str
    fn: Callable[[], Any]
    work: float
    unit: str
    bytes: float
    flops: float | None = None
    fft_pairs: int = 0
    target_ms: float | None = None
    repeat: int = 5
    extra: dict = field(default_factory=dict)


def _dm_cases(xp, v, r, n, *, gpu: bool, repeat: int, full_size: bool) -> list[BenchCase]:
    rng = np.random.default_rng(0)
    inten = xp.asarray(rng.random((v, n, n), dtype=np.float32))
    support = xp.zeros((v, n, n), dtype=bool)
    support[:, n // 4 : 3 * n // 4, n // 4 : 3 * n // 4] = True
    # the production loop's iteration: step, eps normalisation, best-iterate tracking; no
    # shrink-wrap and no cost record inside the timed calls
    opts = PhasingOptions(
        runs=r, iterations=10**9, final_er=0, shrinkwrap_every=0, check_every=10**9, select_from=0.0, seed=0
    )
    nn, n_img = n * n, v * r
    nbytes = n_img * nn * 90.0 + v * nn * 5.0
    flops = n_img * (4 * 5.0 * nn * math.log2(nn) + 40.0 * nn)
    shape = f"({v}, {r}, {n}, {n}) c64"
    cases = []
    for kernels in (False, True) if gpu else (False,):
        pr = PhaseRetrieval(inten, xp.ones((v, n, n), dtype=bool), opts, support=support, kernels=kernels)
        cases.append(
            BenchCase(
                "dm",
                f"DM iteration ({'kernel' if kernels else 'twin'})",
                shape,
                lambda pr=pr: pr.update(1),
                n_img,
                "run-iterations/s",
                nbytes,
                flops,
                fft_pairs=2,
                target_ms=TARGETS_MS["dm"] if (kernels and full_size) else None,
                repeat=repeat,
                extra={"fft_shape": (v, r, n, n)},
            )
        )
    return cases


def _bm_cases(xp, h, *, gpu: bool, repeat: int, full_size: bool) -> list[BenchCase]:
    rng = np.random.default_rng(2)
    left = xp.asarray(rng.random((h, h), dtype=np.float32))
    right = xp.roll(left, 5, axis=1)
    cases = []
    for block, (dmin, dmax) in ((3, (-65, 65)), (23, (-30, 30))):
        opt = MatchOptions(block=block, dmin=dmin, dmax=dmax)
        nd = dmax - dmin + 1
        key = f"bm{block}"
        shape = f"{h}x{h}, {nd} disparities, 2 maps"
        common = dict(
            work=2 * h * h * nd / 1e9,
            unit="G pixel-disparities/s",
            bytes=32.0 * h * h,
            flops=2.0 * h * h * nd * 6,
        )
        cases.append(
            BenchCase(
                key,
                f"block matching {block}x{block} (twin)",
                shape,
                lambda opt=opt: block_match(left, right, opt, kernels=False),
                repeat=max(1, repeat // 2),
                **common,
            )
        )
        if gpu:
            cases.append(
                BenchCase(
                    key,
                    f"block matching {block}x{block} (kernel)",
                    shape,
                    lambda opt=opt: block_match_kernel(left, right, opt),
                    repeat=repeat,
                    target_ms=TARGETS_MS[key] if full_size else None,
                    **common,
                )
            )
    return cases


def _knn_cases(xp, m_twin, m_kernel, *, gpu: bool, repeat: int, full_size: bool) -> list[BenchCase]:
    rng = np.random.default_rng(3)
    pts = xp.asarray(rng.random((max(m_twin, m_kernel), 3)) * 1000.0)
    twin_pts = pts[:m_twin]
    cases = [
        BenchCase(
            "knn",
            "kNN mean distance k=80 (twin)",
            f"{m_twin:,} points",
            lambda: knn_mean_distance(twin_pts, 80, kernels=False),
            m_twin / 1e6,
            "M points/s",
            32.0 * m_twin,
            repeat=max(1, min(3, repeat // 2)),
        )
    ]
    if gpu:
        kpts = pts[:m_kernel]
        cases.append(
            BenchCase(
                "knn",
                "kNN mean distance k=80 (kernel)",
                f"{m_kernel:,} points",
                lambda: knn_mean_distance_kernel(kpts, 80),
                m_kernel / 1e6,
                "M points/s",
                32.0 * m_kernel,
                target_ms=TARGETS_MS["knn"] if full_size else None,
                repeat=max(1, repeat // 2),
            )
        )
    return cases


def hot_path_cases(xp, *, quick: bool = False, only: tuple[str, ...] | None = None) -> list[BenchCase]:
    """The benchmark cases of the three hot paths on ``xp`` (twins, and on CuPy the kernels).

    Parameters
    ----------
    xp : module
        ``numpy`` (twins at CPU sizes) or ``cupy`` (twins' CuPy code and kernels at the issue's sizes).
    quick : bool
        Smaller problems and fewer repeats.
    only : tuple of str, optional
        Hot paths to build: any of ``"dm"``, ``"bm"``, ``"knn"`` (default all).

    Returns
    -------
    list of BenchCase
        Inputs are allocated on the device when the cases are built.
    """
    gpu = xp is not np
    only = ("dm", "bm", "knn") if only is None else tuple(only)
    repeat = 3 if quick else (20 if gpu else 5)
    full = gpu and not quick
    cases: list[BenchCase] = []
    if "dm" in only:
        v, r, n = (1, 45, 512) if full else (1, 8, 256) if not quick else (1, 4, 128)
        cases += _dm_cases(xp, v, r, n, gpu=gpu, repeat=repeat, full_size=full)
    if "bm" in only:
        h = 1024 if full else (256 if quick else 512)
        cases += _bm_cases(xp, h, gpu=gpu, repeat=repeat, full_size=full)
    if "knn" in only:
        # the twin on the GPU is brute force (O(M^2)): timed on fewer points
        m_kernel = 1_000_000 if full else 20_000
        m_twin = (50_000 if full else 20_000) if gpu else (20_000 if quick else 200_000)
        cases += _knn_cases(xp, m_twin, m_kernel, gpu=gpu, repeat=repeat, full_size=full)
    return cases


def measure_case(xp, case: BenchCase, limits: dict, *, seconds: float | None = None) -> dict:
    """Time ``case`` (unless ``seconds`` is given) and derive its table/roofline row.

    Returns
    -------
    dict
        ``name``, ``key``, ``shape``, ``time_ms``, ``throughput`` (text), ``work_per_s``, ``unit``,
        ``bytes``, ``flops``, ``achieved_gb_per_s``, ``bandwidth_fraction`` (achieved over the
        measured copy bandwidth), ``floor_ms`` (bytes at the copy bandwidth plus the FFT pairs),
        ``fraction_of_floor`` (``floor_ms / time_ms``: 1 is the measured limit), ``limit`` (text),
        ``ratio_to_limit`` (``time / (2 FFT pairs)`` for the DM rows, else ``None``), ``target_ms``,
        ``ratio_to_target`` and ``host_reads`` (device-to-host reads of one more, untimed call;
        ``None`` where not counted). A kernel that fails to compile or run gives a row with
        ``time_ms = None`` and the error as throughput: reported, not hidden.
    """
    row = dict(
        name=case.name,
        key=case.key,
        shape=case.shape,
        unit=case.unit,
        bytes=case.bytes,
        flops=case.flops,
        target_ms=case.target_ms,
        limit="2 FFT pairs" if case.fft_pairs else "",
        ratio_to_limit=None,
        host_reads=None,
    )
    try:
        t = time_fn(xp, case.fn, repeat=case.repeat) if seconds is None else float(seconds)
        reads = HostReadCounter(xp)
        if reads.mechanism is not None:  # one more call, untimed: its host reads
            with reads:
                case.fn()
        row["host_reads"] = reads.total()
    except Exception as exc:
        if not case.name.endswith("(kernel)"):
            raise
        row.update(
            time_ms=None,
            throughput=f"failed: {type(exc).__name__}: {exc}"[:160],
            work_per_s=None,
            achieved_gb_per_s=None,
            bandwidth_fraction=None,
            floor_ms=None,
            fraction_of_floor=None,
            ratio_to_target=None,
        )
        return row
    bw, t_fft = limits["bandwidth_bytes_per_s"], limits["fft_pair_s"]
    floor = case.bytes / bw + case.fft_pairs * t_fft
    row.update(
        time_ms=t * 1e3,
        work_per_s=case.work / t,
        throughput=f"{case.work / t:,.2f} {case.unit}",
        achieved_gb_per_s=case.bytes / t / 1e9,
        bandwidth_fraction=case.bytes / t / bw,
        floor_ms=floor * 1e3,
        fraction_of_floor=floor / t,
        ratio_to_limit=(t / (case.fft_pairs * t_fft)) if case.fft_pairs else None,
        ratio_to_target=(t * 1e3 / case.target_ms) if case.target_ms else None,
    )
    return row


def run_bench(
    xp, *, quick: bool = False, pipeline: bool = True, progress: Callable[[str], None] | None = None
) -> dict:
    """Time copy, FFT pair, DM iteration, block matching, kNN statistics and (optionally) the pipeline.

    Parameters
    ----------
    xp : module
        ``numpy`` or ``cupy``.
    quick : bool
        Smaller problems and fewer repeats (for tests and a first look).
    pipeline : bool
        Also time the whole demo pipeline (about half a minute on two CPU cores).

    Returns
    -------
    dict
        ``device`` (facts from :func:`~xstereo_gpu.backend.device_info`: device, driver, clocks),
        ``limits`` (:func:`measure_limits`), ``bandwidth_bytes_per_s``, ``fft_pair_s`` and ``rows``
        (list of dicts, :func:`measure_case`; the first two rows are the limits themselves).
    """
    say = progress or (lambda s: None)
    gpu = xp is not np
    repeat = 3 if quick else (20 if gpu else 5)
    say("building the cases")
    cases = hot_path_cases(xp, quick=quick)
    dm = next(c for c in cases if c.key == "dm")
    dm_shape, fft_shape = dm.shape, dm.extra["fft_shape"]
    say("copy and FFT pair")
    copy_bytes = (64 if (quick or not gpu) else 256) << 20
    limits = measure_limits(xp, copy_bytes=copy_bytes, fft_shape=fft_shape, repeat=repeat)
    bw, t_fft = limits["bandwidth_bytes_per_s"], limits["fft_pair_s"]
    v, r = fft_shape[0], fft_shape[1]
    rows: list[dict] = [
        dict(
            name="device copy",
            key="copy",
            shape=f"{copy_bytes >> 20} MiB",
            time_ms=limits["copy_s"] * 1e3,
            throughput=f"{bw / 1e9:.1f} GB/s (read + write)",
            limit="",
            ratio_to_limit=None,
            bytes=2.0 * copy_bytes,
            achieved_gb_per_s=bw / 1e9,
            bandwidth_fraction=1.0,
        ),
        dict(
            name="FFT pair (fwd + inv)",
            key="fft",
            shape=dm_shape,
            time_ms=t_fft * 1e3,
            throughput=f"{v * r / t_fft:.0f} images/s",
            limit="",
            ratio_to_limit=None,
        ),
    ]
    for case in cases:
        say(case.name)
        rows.append(measure_case(xp, case, limits))
    del cases

    if pipeline:
        say("pipeline")
        shot = simulate_shot()
        opts = PipelineOptions.for_profile("paper" if gpu else "cpu")
        with HostReadCounter(xp) as reads:
            res = run_pipeline(shot, opts, backend="cupy" if gpu else "numpy")
        stages = ", ".join(f"{k} {v:.2f}" for k, v in res.timings.items() if k != "total")
        rows.append(
            dict(
                name=f"pipeline, demo shot, profile {opts.profile}",
                key="pipeline",
                shape=f"2 x {shot.pattern_size}^2, {opts.phasing.runs} runs",
                time_ms=res.timings["total"] * 1e3,
                throughput=f"stages [s]: {stages}",
                limit="",
                ratio_to_limit=None,
                host_reads=reads.total(),
                host_reads_by_stage=dict(reads.stages),
                host_reads_counted=reads.mechanism,
            )
        )
    return {
        "device": device_info(xp),
        "limits": limits,
        "rows": rows,
        "bandwidth_bytes_per_s": bw,
        "fft_pair_s": t_fft,
    }


def format_table(result: dict) -> str:
    """Plain-text table of :func:`run_bench` output, with the device line first."""
    d = result["device"]
    head = f"device: {d.get('device')}  backend: {d.get('backend')}"
    if d.get("driver"):
        head += f"  driver {d['driver']}  SM clock {d.get('sm_clock_mhz')}/{d.get('sm_clock_max_mhz')} MHz"
    lines = [
        head,
        f"{'what':38s} {'shape':34s} {'time [ms]':>10s}  {'ratio':>6s}  {'of floor':>8s}  throughput",
    ]
    for r in result["rows"]:
        t = "-" if r["time_ms"] is None else f"{r['time_ms']:10.3f}"
        ratio = "" if r["ratio_to_limit"] is None else f"{r['ratio_to_limit']:.2f}x"
        frac = "" if r.get("fraction_of_floor") is None else f"{100 * r['fraction_of_floor']:.1f}%"
        extra = f" (limit: {r['limit']})" if r["limit"] else ""
        if r.get("target_ms"):
            extra += f" [target {r['target_ms']:g} ms" + (
                f", {r['ratio_to_target']:.2f}x]" if r.get("ratio_to_target") is not None else "]"
            )
        if r.get("host_reads") is not None:
            extra += f"; host reads {r['host_reads']}"
            if r.get("host_reads_by_stage"):
                extra += " (" + ", ".join(f"{k} {v}" for k, v in r["host_reads_by_stage"].items()) + ")"
        lines.append(
            f"{r['name']:38s} {r['shape']:34s} {t:>10s}  {ratio:>6s}  {frac:>8s}  {r['throughput']}{extra}"
        )
    lines.append(
        "ratio: time over 2 cuFFT/FFT pairs of the same shape; of floor: the time floor (bytes at the "
        "measured copy bandwidth + FFT pairs) over the time"
    )
    pipe = next((r for r in result["rows"] if r.get("key") == "pipeline"), None)
    if pipe is not None:
        lines.append(
            "host reads (device-to-host, per call; pipeline: per stage): "
            + (pipe.get("host_reads_counted") or "not counted on this backend")
        )
    return "\n".join(lines)
