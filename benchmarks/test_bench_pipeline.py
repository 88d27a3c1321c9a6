"""Per-stage timings of the pipeline on the current backend (pytest-benchmark).

Run: ``pytest benchmarks/ --benchmark-only`` (CPU), or on a GPU machine with ``XSTEREO_BACKEND=cupy``.
Device work is synchronised before each timing returns; the first (warm-up) round is excluded. On
CuPy the stages use the CUDA kernels unless ``XSTEREO_KERNELS=0`` (recorded in ``extra_info``).
"""

import numpy as np
import pytest

import xstereo_gpu as xs
from xstereo_gpu.backend import device_info, select_backend, synchronize, use_kernels


@pytest.fixture(scope="module")
def setup():
    xp = select_backend()
    shot = xs.simulate_shot()
    opts = xs.PipelineOptions.for_profile("cpu" if xp is np else "paper")
    frame, mask = xp.asarray(shot.frame), xp.asarray(shot.mask)
    inten, valid = xs.split_patterns(frame, mask, shot.centres_px, shot.pattern_size)
    return xp, shot, opts, inten, valid


def _extra(benchmark, xp, **kw):
    info = device_info(xp)
    facts = (
        "backend",
        "device",
        "driver",
        "sm_clock_mhz",
        "sm_clock_max_mhz",
        "mem_clock_mhz",
        "cupy",
        "nvml",
    )
    benchmark.extra_info.update({k: info.get(k) for k in facts}, **kw)
    benchmark.extra_info["kernels"] = use_kernels(xp)


def test_phase_stage(benchmark, setup):
    xp, shot, opts, inten, valid = setup
    o = opts.phasing

    def run():
        res = xs.phase_retrieval(inten, valid, o)
        synchronize(xp)
        return res

    _extra(benchmark, xp, shape=list(inten.shape), runs=o.runs, iterations=o.iterations + o.final_er)
    benchmark.pedantic(run, rounds=2, warmup_rounds=1)


def test_stereo_and_cloud_stages(benchmark, setup):
    xp, shot, opts, *_ = setup
    views = xp.asarray(shot.truth.views)

    pipe = xs.Pipeline(opts, backend="cupy" if xp is not np else "numpy")

    def run():
        out = pipe.cloud(pipe.stereo(views), shot.geometry)
        synchronize(xp)
        return out

    _extra(
        benchmark,
        xp,
        view_shape=list(views.shape),
        block=opts.match.block,
        range=[opts.match.dmin, opts.match.dmax],
    )
    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
