"""``xstereo bench``: the three hot paths and the whole pipeline timed on the current device.

Every row reports the median time of several runs (one warm-up excluded, device synchronised; on CuPy
the GPU time from CUDA events via ``cupyx.profiler.benchmark``), a throughput, and the ratio to a limit
measured in the same run: a device-to-device copy (memory bandwidth) and a forward + inverse FFT pair
of the same shape. On NumPy the twins (the CPU path) are timed at CPU-sized problems, named in the
table; on CuPy the twins' CuPy code and, where they load, the custom kernels.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from .backend import device_info, synchronize
from .config import MatchOptions, PhasingOptions, PipelineOptions

__all__ = ["run_bench", "format_table"]


def _time(xp, fn: Callable[[], Any], *, repeat: int) -> float:
    """Median seconds of ``fn()`` over ``repeat`` runs after one warm-up."""
    if xp is not np:
        from cupyx.profiler import benchmark

        res = benchmark(fn, n_repeat=repeat, n_warmup=1)
        return float(np.median(res.gpu_times[0]))
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        synchronize(xp)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run_bench(xp, *, quick: bool = False, pipeline: bool = True, progress: Callable[[str], None] | None = None) -> dict:
    """Time copy, FFT pair, DM step, block matching, kNN statistics and (optionally) the pipeline.

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
        ``device`` (facts from :func:`~xstereo_gpu.backend.device_info`) and ``rows`` (list of dicts:
        ``name``, ``shape``, ``time_ms``, ``throughput``, ``limit``, ``ratio_to_limit``).
    """
    from .cloud.outliers import knn_mean_distance
    from .phasing._fft import fft2, ifft2
    from .phasing.algorithms import Workspace, dm_step, fourier_constraint
    from .stereo.disparity import block_match

    say = progress or (lambda s: None)
    gpu = xp is not np
    rng = np.random.default_rng(0)
    repeat = 3 if quick else (20 if gpu else 5)
    rows: list[dict] = []

    # memory bandwidth: device-to-device copy of 256 MiB (64 MiB quick / CPU)
    nbytes = (64 if (quick or not gpu) else 256) << 20
    a = xp.ones(nbytes // 4, dtype=xp.float32)
    b = xp.empty_like(a)
    say("copy")
    t = _time(xp, lambda: xp.copyto(b, a), repeat=repeat)
    bandwidth = 2 * nbytes / t
    rows.append(dict(name="device copy", shape=f"{nbytes >> 20} MiB", time_ms=t * 1e3,
                     throughput=f"{bandwidth / 1e9:.1f} GB/s (read + write)", limit="", ratio_to_limit=None))
    del a, b

    # FFT pair and one DM step on the phasing batch
    v, r, n = (1, 45, 512) if gpu and not quick else (1, 8, 256) if not quick else (1, 4, 128)
    x = xp.asarray((rng.standard_normal((v, r, n, n)) + 1j * rng.standard_normal((v, r, n, n))).astype(np.complex64))
    say("fft")
    t_fft = _time(xp, lambda: ifft2(fft2(x)), repeat=repeat)
    rows.append(dict(name="FFT pair (fwd + inv)", shape=f"({v}, {r}, {n}, {n}) c64", time_ms=t_fft * 1e3,
                     throughput=f"{v * r / t_fft:.0f} images/s", limit="", ratio_to_limit=None))
    inten = xp.asarray(rng.random((v, n, n), dtype=np.float32))
    amp, valid = fourier_constraint(inten, xp.ones((v, n, n), dtype=bool))
    support = xp.zeros((v, 1, n, n), dtype=bool)
    support[..., n // 4:3 * n // 4, n // 4:3 * n // 4] = True
    work = Workspace(x, amp, valid)
    say("difference map")
    t = _time(xp, lambda: dm_step(x, amp, valid, support, beta=0.8, work=work), repeat=repeat)
    rows.append(dict(name="DM iteration (twin)", shape=f"({v}, {r}, {n}, {n}) c64", time_ms=t * 1e3,
                     throughput=f"{v * r / t:,.0f} run-iterations/s", limit="2 FFT pairs",
                     ratio_to_limit=t / (2 * t_fft)))
    if gpu:
        rows += _kernel_row("DM iteration (kernel)", f"({v}, {r}, {n}, {n}) c64", xp, repeat, t_fft,
                            lambda: _dm_kernel_fn(x, amp, valid, support), v * r, "run-iterations/s")
    del x, work

    # block matching, both maps
    h = 256 if quick else (1024 if gpu else 512)
    left = xp.asarray(rng.random((h, h), dtype=np.float32))
    right = xp.roll(left, 5, axis=1)
    for block, (dmin, dmax) in ((3, (-65, 65)), (23, (-30, 30))):
        opt = MatchOptions(block=block, dmin=dmin, dmax=dmax)
        nd = dmax - dmin + 1
        say(f"block matching {block}x{block}")
        t = _time(xp, lambda: block_match(left, right, opt), repeat=max(1, repeat // 2))
        rows.append(dict(name=f"block matching {block}x{block} (twin)", shape=f"{h}x{h}, {nd} disparities, 2 maps",
                         time_ms=t * 1e3, throughput=f"{2 * h * h * nd / t / 1e9:.2f} G pixel-disparities/s",
                         limit="", ratio_to_limit=None))
        if gpu:
            from .stereo._bm_kernel import block_match_kernel

            rows += _kernel_row(f"block matching {block}x{block} (kernel)", f"{h}x{h}, {nd} disparities, 2 maps",
                                xp, repeat, None, lambda: block_match_kernel(left, right, opt), 2 * h * h * nd / 1e9,
                                "G pixel-disparities/s")

    # kNN mean distance, k = 80
    m = 20_000 if quick else (1_000_000 if gpu else 200_000)
    pts = xp.asarray(rng.random((m, 3)) * 1000.0)
    say("kNN statistics")
    t = _time(xp, lambda: knn_mean_distance(pts, 80), repeat=max(1, repeat // 2))
    rows.append(dict(name="kNN mean distance k=80 (twin)", shape=f"{m:,} points", time_ms=t * 1e3,
                     throughput=f"{m / t / 1e6:.2f} M points/s", limit="", ratio_to_limit=None))
    if gpu:
        from .cloud._knn_kernel import knn_mean_distance_kernel

        rows += _kernel_row("kNN mean distance k=80 (kernel)", f"{m:,} points", xp, repeat, None,
                            lambda: knn_mean_distance_kernel(pts, 80), m / 1e6, "M points/s")

    if pipeline:
        from .pipeline import run_pipeline
        from .simulate import simulate_shot

        say("pipeline")
        shot = simulate_shot()
        opts = PipelineOptions.for_profile("paper" if gpu else "cpu")
        res = run_pipeline(shot, opts, backend="cupy" if gpu else "numpy")
        stages = ", ".join(f"{k} {v:.2f}" for k, v in res.timings.items() if k != "total")
        rows.append(dict(name=f"pipeline, demo shot, profile {opts.profile}", shape=f"2 x {shot.pattern_size}^2, "
                         f"{opts.phasing.runs} runs", time_ms=res.timings["total"] * 1e3,
                         throughput=f"stages [s]: {stages}", limit="", ratio_to_limit=None))
    return {"device": device_info(xp), "rows": rows, "bandwidth_bytes_per_s": bandwidth, "fft_pair_s": t_fft}


def _dm_kernel_fn(x, amp, valid, support):
    from .phasing._dm_kernel import dm_step_kernel

    return dm_step_kernel(x, amp, valid, support, beta=0.8)


def _kernel_row(name, shape, xp, repeat, t_fft, fn, work_units, unit) -> list[dict]:
    """Time a custom kernel; a kernel that fails to compile or run is reported, not hidden."""
    try:
        t = _time(xp, fn, repeat=repeat)
    except Exception as exc:  # reported in the table: the kernels have not yet run on every device
        return [dict(name=name, shape=shape, time_ms=None, throughput=f"failed: {type(exc).__name__}: {exc}"[:120],
                     limit="", ratio_to_limit=None)]
    return [dict(name=name, shape=shape, time_ms=t * 1e3, throughput=f"{work_units / t:,.2f} {unit}",
                 limit="2 FFT pairs" if t_fft else "", ratio_to_limit=(t / (2 * t_fft)) if t_fft else None)]


def format_table(result: dict) -> str:
    """Plain-text table of :func:`run_bench` output, with the device line first."""
    d = result["device"]
    head = f"device: {d.get('device')}  backend: {d.get('backend')}"
    if d.get("driver"):
        head += f"  driver {d['driver']}  SM clock {d.get('sm_clock_mhz')}/{d.get('sm_clock_max_mhz')} MHz"
    lines = [head, f"{'what':38s} {'shape':34s} {'time [ms]':>10s}  {'ratio':>6s}  throughput"]
    for r in result["rows"]:
        t = "-" if r["time_ms"] is None else f"{r['time_ms']:10.3f}"
        ratio = "" if r["ratio_to_limit"] is None else f"{r['ratio_to_limit']:.2f}x"
        lines.append(f"{r['name']:38s} {r['shape']:34s} {t:>10s}  {ratio:>6s}  {r['throughput']}"
                     + (f" (limit: {r['limit']})" if r["limit"] else ""))
    return "\n".join(lines)
