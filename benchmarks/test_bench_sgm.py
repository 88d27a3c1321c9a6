"""Semi-global matching: path aggregation (kernel and twin) and the whole match, pytest-benchmark.

- GPU (``gpu`` marker, skipped without CuPy and a device): ``kernels/sgm.cu`` on a
  1024 x 1024 x 131 cost volume (4 and 8 paths), the twin's array code on CuPy at the same size for
  comparison, and ``semi_global_match`` on a 1024 x 1024 pair with the kernel. GPU times come from
  CUDA events (``cupyx.profiler.benchmark``, warm-up excluded) and go into ``extra_info``.
- CPU: the NumPy twin at a reduced size (256 x 256 x 131) and the whole match at that size.

``extra_info`` holds the device facts, the shape, the bytes the aggregation must move
(``4 H W D (3 P - 1)``: per path read C, write S, and read S except for the first path), the
device-to-device copy bandwidth measured in the same session, the time floor those bytes imply
and the fraction of it reached.

Run: ``pytest benchmarks/test_bench_sgm.py --benchmark-json out.json`` (timings), or with
``--benchmark-disable`` (each case once, with checked results).
"""

from __future__ import annotations

import numpy as np
import pytest

from xstereo_gpu import bench
from xstereo_gpu.backend import cupy_available, device_info, synchronize, to_host
from xstereo_gpu.config import MatchOptions

_GPU = [pytest.mark.gpu, pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA device")]
_SHIFT = 5  # right = left rolled by +5 columns: d = -5
_RANGE = (-65, 65)
_FACTS = (
    "backend",
    "device",
    "driver",
    "sm_clock_mhz",
    "sm_clock_max_mhz",
    "mem_clock_mhz",
    "cupy",
    "cuda_runtime",
    "cpu_threads",
)
_STATE: dict = {}


def _context(backend: str) -> dict:
    """Per backend, once: images, cost volume, measured copy bandwidth, device facts."""
    if backend not in _STATE:
        if backend == "numpy":
            xp, n = np, 256
        else:
            import cupy as xp

            n = 1024
        from xstereo_gpu.stereo.sgm import sgm_cost_volume

        rng = np.random.default_rng(2)
        left = xp.asarray(rng.random((n, n), dtype=np.float32))
        right = xp.roll(left, _SHIFT, axis=1)
        opts = MatchOptions(block=3, dmin=_RANGE[0], dmax=_RANGE[1], method="sgm")
        cost = sgm_cost_volume(left, right, opts)
        synchronize(xp)
        limits = bench.measure_limits(
            xp,
            copy_bytes=(64 if xp is np else 256) << 20,
            fft_shape=(1, 1, 64, 64),
            repeat=3 if xp is np else 20,
        )
        info = device_info(xp)
        facts = {k: info[k] for k in _FACTS if k in info}
        facts["copy_bandwidth_gb_per_s"] = limits["bandwidth_bytes_per_s"] / 1e9
        _STATE[backend] = dict(
            xp=xp, left=left, right=right, opts=opts, cost=cost, limits=limits, facts=facts
        )
    return _STATE[backend]


def _timed(benchmark, xp, fn, rounds: int) -> tuple[object, float]:
    """Run ``fn`` under pytest-benchmark; return its last result and its time [s] (GPU: events)."""
    out = {}

    def run():
        out["r"] = fn()
        synchronize(xp)

    if getattr(benchmark, "disabled", False):
        benchmark(run)
        return out["r"], bench.time_fn(xp, fn, repeat=1, warmup=0)
    benchmark.pedantic(run, rounds=rounds, warmup_rounds=1, iterations=1)
    seconds = bench.time_fn(xp, fn, repeat=rounds) if xp is not np else benchmark.stats.stats.median
    return out["r"], seconds


def _check_sum(S, paths: int) -> None:
    """The aggregated volume picks d = -5 away from the left border."""
    S = to_host(S)
    win = np.argmin(S[:, 70:-70], axis=2) + _RANGE[0]
    assert (win == -_SHIFT).mean() > 0.99
    assert np.isfinite(S).all() and S.min() >= 0


_AGG = [
    pytest.param("numpy", "twin", 4, id="numpy-twin-4"),
    pytest.param("numpy", "twin", 8, id="numpy-twin-8"),
] + [
    pytest.param("cupy", kind, p, id=f"cupy-{kind}-{p}", marks=_GPU)
    for kind in ("kernel", "twin")
    for p in (4, 8)
]


@pytest.mark.parametrize("backend, kind, paths", _AGG)
def test_aggregate(benchmark, backend, kind, paths):
    ctx = _context(backend)
    xp, cost, o = ctx["xp"], ctx["cost"], ctx["opts"]
    if kind == "kernel":
        from xstereo_gpu.stereo._sgm_kernel import aggregate_costs_kernel

        def fn():
            return aggregate_costs_kernel(cost, p1=o.sgm_p1, p2=o.sgm_p2, paths=paths)
    else:
        from xstereo_gpu.stereo.sgm import aggregate_costs

        def fn():
            return aggregate_costs(cost, p1=o.sgm_p1, p2=o.sgm_p2, paths=paths)

    S, seconds = _timed(benchmark, xp, fn, rounds=3 if xp is np or kind == "twin" else 10)
    _check_sum(S, paths)
    H, W, D = cost.shape
    nbytes = 4.0 * H * W * D * (3 * paths - 1)
    floor = nbytes / ctx["limits"]["bandwidth_bytes_per_s"]
    benchmark.extra_info.update(ctx["facts"])
    benchmark.extra_info.update(
        shape=[H, W, D],
        paths=paths,
        kind=kind,
        time_ms=seconds * 1e3,
        bytes=nbytes,
        achieved_gb_per_s=nbytes / seconds / 1e9,
        floor_ms=floor * 1e3,
        fraction_of_floor=floor / seconds,
        timer="cuda events" if xp is not np else "wall clock",
    )
    assert seconds > 0


@pytest.mark.parametrize("backend", ["numpy", pytest.param("cupy", marks=_GPU)])
def test_semi_global_match(benchmark, backend):
    ctx = _context(backend)
    xp = ctx["xp"]
    from xstereo_gpu.stereo.sgm import semi_global_match

    res, seconds = _timed(
        benchmark,
        xp,
        lambda: semi_global_match(ctx["left"], ctx["right"], ctx["opts"]),
        rounds=2 if xp is np else 5,
    )
    d = to_host(res.disparity_left)[:, 70:-70]
    ok = np.isfinite(d)
    assert ok.mean() > 0.9 and abs(np.median(d[ok]) + _SHIFT) < 0.05
    H, W = d.shape[0], to_host(res.disparity_left).shape[1]
    benchmark.extra_info.update(ctx["facts"])
    benchmark.extra_info.update(
        shape=[H, W, _RANGE[1] - _RANGE[0] + 1],
        paths=ctx["opts"].sgm_paths,
        maps=2,
        time_ms=seconds * 1e3,
        timer="cuda events" if xp is not np else "wall clock",
    )
