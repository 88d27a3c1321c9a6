"""Many shots (issue 9): a plain ``Pipeline.run`` loop against ``process_run`` on the same small run.

One simulated run (:func:`~xstereo_gpu.simulate.simulate_run`: 8 shots, half of them hits of the cross
at random positions, the rest blanks; 2 x 256^2 patterns on CuPy, 2 x 128^2 on NumPy to keep the CPU
rounds short) is timed two ways with the ``cpu`` profile's options (the cross recipe): the loop of
:func:`xstereo_gpu.bench_shots.time_loop` (read, veto, ``Pipeline.run`` each hit, one reused Pipeline)
and ``process_run`` in this process into a fresh run store (:func:`xstereo_gpu.bench_shots.time_process_run`,
``shots_per_launch`` passed when ``process_run`` takes it and ``XSTEREO_SHOTS_PER_LAUNCH`` is set).
One hit is reconstructed before the rounds (imports, FFT plans, kernels excluded); records are host
data, so device work has finished when a round returns.

``extra_info``: the device facts, the run (shots, hits, pattern size), the options (profile, runs,
iterations), ``shots_per_launch`` and, after the rounds, ``shots_per_s`` and ``hit_shots_per_s`` at the
median round. Dask scaling and the blank-shot read speed are in ``xstereo bench --shots N``.

Run: ``pytest benchmarks/test_bench_batch.py --benchmark-only`` (CPU, a few minutes on 2 cores), or on
a GPU machine with ``XSTEREO_BACKEND=cupy``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from xstereo_gpu.backend import device_info, select_backend
from xstereo_gpu.bench_shots import (
    accepts_shots_per_launch,
    bench_pipeline_options,
    time_loop,
    time_process_run,
)
from xstereo_gpu.io import read_shot
from xstereo_gpu.pipeline import Pipeline
from xstereo_gpu.simulate import RunSimulationOptions, simulate_run
from xstereo_gpu.simulate.run import sized_shot_options

_FACTS = ("backend", "device", "driver", "sm_clock_mhz", "sm_clock_max_mhz", "mem_clock_mhz", "cupy", "nvml")
SHOTS, HIT_RATE = 8, 0.5


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    xp = select_backend()
    backend = "numpy" if xp is np else "cupy"
    size = 128 if xp is np else 256
    opts = RunSimulationOptions(
        shots=SHOTS,
        hit_rate=HIT_RATE,
        corrupt_fraction=0.0,
        samples="cross",
        seed=0,
        shot_options=sized_shot_options(size),
    )
    manifest = simulate_run(tmp_path_factory.mktemp("batch") / "run", opts)
    options = bench_pipeline_options(("cross",), "cpu")
    hit = read_shot(manifest.paths("hit")[0])
    Pipeline(options, backend=backend).run(hit)  # warm-up: imports, FFT plans, kernels
    spl = os.environ.get("XSTEREO_SHOTS_PER_LAUNCH")
    spl = int(spl) if spl and accepts_shots_per_launch()[0] else None
    return xp, backend, size, manifest, options, spl


def _extra(benchmark, run, row_of_round) -> None:
    xp, backend, size, manifest, options, spl = run
    info = device_info(xp)
    p = options.phasing
    benchmark.extra_info.update({k: info.get(k) for k in _FACTS})
    benchmark.extra_info.update(
        shots=len(manifest.shots),
        hits=manifest.counts["hit"],
        pattern_size=size,
        profile=options.profile,
        runs=p.runs,
        iterations=p.iterations + p.final_er,
        shots_per_launch=spl if spl is not None else accepts_shots_per_launch()[1],
        shots_per_launch_accepted=accepts_shots_per_launch()[0],
        last_round_counts={k: row_of_round[-1][k] for k in ("ok", "blank", "failed")},
    )
    stats = getattr(benchmark, "stats", None)
    median = getattr(getattr(stats, "stats", None), "median", None)
    if median:
        benchmark.extra_info["shots_per_s"] = len(manifest.shots) / median
        benchmark.extra_info["hit_shots_per_s"] = manifest.counts["hit"] / median


def test_loop_of_pipeline_run(benchmark, run):
    xp, backend, size, manifest, options, spl = run
    rows = []

    def once():
        rows.append(time_loop(manifest.paths(), options, backend=backend))

    benchmark.pedantic(once, rounds=2, warmup_rounds=0)
    assert rows[-1]["ok"] == manifest.counts["hit"] and rows[-1]["blank"] == manifest.counts["blank"]
    _extra(benchmark, run, rows)


def test_process_run_in_process(benchmark, run, tmp_path):
    xp, backend, size, manifest, options, spl = run
    rows = []

    def once():
        store = tmp_path / f"store-{len(rows)}"
        rows.append(
            time_process_run(manifest.paths(), options, store=store, backend=backend, shots_per_launch=spl)
        )

    benchmark.pedantic(once, rounds=2, warmup_rounds=0)
    assert rows[-1]["ok"] == manifest.counts["hit"] and rows[-1]["blank"] == manifest.counts["blank"]
    _extra(benchmark, run, rows)
