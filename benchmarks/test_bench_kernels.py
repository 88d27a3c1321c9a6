"""The three hot paths (DM iteration, block matching, kNN statistics) as pytest-benchmark suites.

Cases and cost model come from :mod:`xstereo_gpu.bench` (the same as ``xstereo bench``):

- on CuPy (``gpu`` marker, skipped without CuPy and a device): the custom kernels and the twins'
  CuPy code at issue 3's sizes; the GPU time from CUDA events (``cupyx.profiler.benchmark``,
  warm-up excluded) goes into ``extra_info`` next to the wall time pytest-benchmark measures;
- on NumPy: the twins (the CPU path) at reduced sizes.

``extra_info`` of every benchmark holds the device, driver and clocks (pynvml), the limits
measured in the same session (device-to-device copy bandwidth, FFT pair of the DM batch), the
case's bytes and flops, achieved GB/s, the time floor and the fraction of it reached, and the
issue's target where one applies; ``benchmarks/roofline.py`` plots it from the benchmark JSON.

Run: ``pytest benchmarks/test_bench_kernels.py --benchmark-json out.json`` (timings), or with
``--benchmark-disable`` (each case once, as a smoke test with checked results; < 60 s on 2 CPU cores).
"""

from __future__ import annotations

import numpy as np
import pytest

from xstereo_gpu import bench
from xstereo_gpu.backend import cupy_available, device_info, synchronize

_GPU = [pytest.mark.gpu, pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA device")]
_KEYS = ("dm", "bm3", "bm23", "knn")
_PARAMS = [pytest.param("numpy", key, "twin", id=f"numpy-{key}-twin") for key in _KEYS] + [
    pytest.param("cupy", key, kind, id=f"cupy-{key}-{kind}", marks=_GPU)
    for key in _KEYS
    for kind in ("twin", "kernel")
]
_FACTS = (
    "backend",
    "device",
    "driver",
    "sm_clock_mhz",
    "sm_clock_max_mhz",
    "mem_clock_mhz",
    "cupy",
    "cuda_runtime",
    "nvml",
    "cpu_threads",
)

_STATE: dict = {}


def _context(backend: str) -> dict:
    """Per backend, once per session: cases (inputs on the device), measured limits, device facts."""
    if backend not in _STATE:
        if backend == "numpy":
            xp = np
        else:
            import cupy as xp
        cases = bench.hot_path_cases(xp, quick=xp is np)  # CPU: reduced sizes
        dm = next(c for c in cases if c.key == "dm")
        copy_bytes = (64 if xp is np else 256) << 20
        limits = bench.measure_limits(
            xp, copy_bytes=copy_bytes, fft_shape=dm.extra["fft_shape"], repeat=3 if xp is np else 20
        )
        info = device_info(xp)
        facts = {k: info[k] for k in _FACTS if k in info}
        facts.update(
            copy_bandwidth_gb_per_s=limits["bandwidth_bytes_per_s"] / 1e9,
            fft_pair_ms=limits["fft_pair_s"] * 1e3,
            fft_pair_shape=limits["fft_shape"],
        )
        _STATE[backend] = dict(xp=xp, cases=cases, limits=limits, facts=facts)
    return _STATE[backend]


def _check_result(xp, key: str, out) -> None:
    """The benchmarked call did its job (numbers, not just "it ran")."""
    from xstereo_gpu.backend import to_host

    if key == "dm":
        eps = to_host(out.best_eps)
        assert eps.shape[1] >= 4 and np.all(np.isfinite(eps)) and np.all(eps > 0)
    elif key.startswith("bm"):
        d = to_host(out.disparity_left)
        ok = np.isfinite(d)
        assert ok.mean() > 0.5
        assert abs(np.median(d[ok]) - (-5.0)) < 0.25  # right = left rolled by +5 columns: d = -5
    else:
        md = to_host(out)
        assert np.all(np.isfinite(md)) and np.all(md > 0)


@pytest.mark.parametrize("backend, key, kind", _PARAMS)
def test_hot_path(benchmark, backend, key, kind):
    ctx = _context(backend)
    xp = ctx["xp"]
    case = next(c for c in ctx["cases"] if c.key == key and c.name.endswith(f"({kind})"))
    result = {}

    def run():
        result["out"] = case.fn()
        synchronize(xp)

    if getattr(benchmark, "disabled", False):
        benchmark(run)  # once: a smoke test of the case
        seconds = None
    else:
        benchmark.pedantic(run, rounds=case.repeat, warmup_rounds=1, iterations=1)
        # the GPU time from CUDA events (warm-up excluded); on the CPU pytest-benchmark's median
        seconds = (
            bench.time_fn(xp, case.fn, repeat=case.repeat) if xp is not np else benchmark.stats.stats.median
        )
    _check_result(xp, key, result["out"])
    if seconds is None:
        seconds = bench.time_fn(xp, case.fn, repeat=1, warmup=0)
    row = bench.measure_case(xp, case, ctx["limits"], seconds=seconds)
    benchmark.extra_info.update(ctx["facts"])
    benchmark.extra_info.update(row, timer="cuda events" if xp is not np else "wall clock")
    assert row["time_ms"] > 0 and row["bytes"] > 0
    assert 0 < row["fraction_of_floor"] and row["floor_ms"] > 0
    if key == "dm":
        assert row["ratio_to_limit"] == pytest.approx(row["time_ms"] / (2e3 * ctx["limits"]["fft_pair_s"]))
