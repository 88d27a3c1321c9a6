"""Host-read budgets of the kernel bindings on a real GPU (issue 12, item 2).

The same budgets are asserted on the CPU through the emulation stand-in (tests/emulation); here
``timing.HostReadCounter`` counts the synchronisations CuPy declares (every ``ndarray.get``), so the
budgets are checked against the real library: 0 per DM step, best-iterate update and block-matching
call, at most 2 per kNN call. On NumPy the counter counts nothing (checked without a GPU).
"""

from __future__ import annotations

import numpy as np
import pytest

from xstereo_gpu.config import MatchOptions
from xstereo_gpu.timing import HostReadCounter, StageTimer


def test_counter_counts_nothing_on_numpy():
    timings = {}
    with HostReadCounter(np) as reads:
        with StageTimer(np, timings, "a"):
            np.ones(3).sum()
    assert reads.mechanism is None and reads.total() is None and reads.stages == {}
    assert set(timings) == {"a"}


def _counter(cupy):
    c = HostReadCounter(cupy)
    if c.mechanism is None:
        pytest.skip("this CuPy has no cupy._core.syncdetect._declare_synchronize to count with")
    return c


@pytest.mark.gpu
def test_counter_counts_gets_and_bools():
    import cupy

    a = cupy.arange(4)
    with _counter(cupy) as reads:
        a.get()
        bool(a.all())
        float(a.sum())
    assert reads.total() == 3


@pytest.mark.gpu
def test_kernel_bindings_stay_within_their_host_read_budgets():
    import cupy

    from xstereo_gpu.cloud._knn_kernel import knn_mean_distance_kernel
    from xstereo_gpu.phasing._dm_kernel import DMKernelWorkspace, dm_step_kernel, track_best_kernel
    from xstereo_gpu.stereo.disparity import block_match

    rng = np.random.default_rng(6)
    left = cupy.asarray(rng.random((64, 80), dtype=np.float32))
    right = cupy.roll(left, 3, axis=1)
    pts = cupy.asarray(rng.random((5000, 3)))
    v, r, n = 2, 3, 32
    x = cupy.asarray((rng.standard_normal((v, r, n, n)) + 1j).astype(np.complex64))
    amp = cupy.asarray(rng.random((v, 1, n, n), dtype=np.float32))
    valid = cupy.ones((v, 1, n, n), dtype=bool)
    support = cupy.asarray(rng.random((v, r, n, n)) > 0.5)
    best, best_eps = x.copy(), cupy.full((v, r), np.inf, dtype=np.float32)
    work = DMKernelWorkspace(x)
    # compile every kernel first (NVRTC's first use may touch the host)
    block_match(left, right, MatchOptions(block=3, dmin=-8, dmax=8))
    knn_mean_distance_kernel(pts, 80)
    dm_step_kernel(x, amp, valid, support, beta=0.8, work=work)
    cupy.cuda.get_current_stream().synchronize()

    counts = {}
    for name, call in (
        ("block_match", lambda: block_match(left, right, MatchOptions(block=3, dmin=-8, dmax=8))),
        ("knn", lambda: knn_mean_distance_kernel(pts, 80)),
        ("dm_step", lambda: dm_step_kernel(x, amp, valid, support, beta=0.8, work=work)),
        ("track_best", lambda: track_best_kernel(best, best_eps, work.buf[0], work.eps, support)),
    ):
        with _counter(cupy) as reads:
            call()
        counts[name] = reads.total()
    assert counts["block_match"] == 0, counts
    assert counts["knn"] <= 2, counts
    assert counts["dm_step"] == 0 and counts["track_best"] == 0, counts
