"""Several shots phased in one stack (xstereo_gpu/batch/launch.py, phasing view_groups, issue 9): each
shot gets what it gets alone, bit for bit on NumPy; a bad shot fails alone; the stack is sized from
the memory budget; the read-ahead thread (batch/prefetch.py)."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
from batch_helpers import OPTIONS, small_shot

from xstereo_gpu import Pipeline
from xstereo_gpu.batch import process_run
from xstereo_gpu.batch.launch import run_launch
from xstereo_gpu.batch.prefetch import prefetch
from xstereo_gpu.errors import InputError
from xstereo_gpu.memory import MAX_SHOTS_PER_LAUNCH, phasing_bytes, plan_shots
from xstereo_gpu.phasing import phase_retrieval, split_phasing


@pytest.fixture(scope="module")
def shots():
    return [small_shot(seed=300 + k) for k in range(3)]


@pytest.fixture(scope="module")
def prepared(shots):
    pipe = Pipeline(OPTIONS, backend="numpy")
    return pipe.options.phasing, [pipe.prepare(s) for s in shots]


@pytest.mark.parametrize("runs_per_batch", [None, 1])
def test_a_stack_of_shots_phases_each_shot_as_alone(prepared, runs_per_batch):
    opts, prep = prepared
    alone = [phase_retrieval(i, v, opts, runs_per_batch=runs_per_batch) for i, v in prep]
    stack = phase_retrieval(
        np.concatenate([i for i, _ in prep]),
        np.concatenate([v for _, v in prep]),
        opts,
        runs_per_batch=runs_per_batch,
        view_groups=len(prep),
    )
    assert stack.views.shape[0] == 2 * len(prep)
    for a, b in zip(alone, split_phasing(stack, len(prep))):
        np.testing.assert_array_equal(b.views, a.views)
        np.testing.assert_array_equal(b.best, a.best)
        np.testing.assert_array_equal(b.best_eps, a.best_eps)
        np.testing.assert_array_equal(b.supports, a.supports)
        for key in ("eps", "reference", "twin", "shifts", "fourier_error", "averaged"):
            np.testing.assert_array_equal(b.history[key], a.history[key], err_msg=key)


def test_view_groups_must_divide_the_views(prepared):
    opts, prep = prepared
    i, v = prep[0]
    with pytest.raises(InputError, match="view_groups"):
        phase_retrieval(i, v, opts, view_groups=3)
    with pytest.raises(InputError, match="groups"):
        split_phasing(phase_retrieval(i, v, opts), 3)


def test_a_launch_gives_each_shot_what_pipeline_run_gives(shots):
    pipe = Pipeline(OPTIONS, backend="numpy")
    alone = [pipe.run(s) for s in shots]
    launched = run_launch(pipe, shots, max_shots=3)
    assert [n for _, n in launched] == [3, 3, 3]
    for a, (b, _) in zip(alone, launched):
        np.testing.assert_array_equal(b.views.views, a.views.views)
        np.testing.assert_array_equal(b.stereo.disparity_left, a.stereo.disparity_left)
        np.testing.assert_array_equal(b.cloud.cleaned_nm, a.cloud.cleaned_nm)
        assert b.accuracy["depth_error_median_nm"] == a.accuracy["depth_error_median_nm"]
        assert 0 < b.timings["phase"] < b.timings["total"]  # its share of the launch
        assert b.timings["prepare"] > 0 and b.timings["stereo"] > 0
    # two launches of at most two shots
    assert [n for _, n in run_launch(pipe, shots, max_shots=2)] == [2, 2, 1]


def test_a_shot_that_breaks_its_launch_fails_alone(shots, monkeypatch):
    """A launch that raises is retried shot by shot: only the bad shot fails."""
    bad = 100 * max(float(s.frame.max()) for s in shots)  # the bad shot's frame is 1000 x brighter
    real = Pipeline.phase

    def phase(pipe, intensities, valid, **kw):
        if float(intensities.max()) > bad:
            raise FloatingPointError("overflow in the difference map")
        return real(pipe, intensities, valid, **kw)

    monkeypatch.setattr(Pipeline, "phase", phase)
    broken = [shots[0], dataclasses.replace(shots[1], frame=shots[1].frame * np.float32(1e3)), shots[2]]
    out = run_launch(Pipeline(OPTIONS, backend="numpy"), broken, max_shots=3)
    assert isinstance(out[1][0], FloatingPointError) and out[1][1] == 0
    assert [n for _, n in (out[0], out[2])] == [1, 1]
    assert all(not isinstance(r, BaseException) for r, _ in (out[0], out[2]))


def test_the_stack_is_sized_from_the_memory_budget():
    one = phasing_bytes(2, 32, 256)
    assert plan_shots(2, 32, 256, one) == 1
    assert plan_shots(2, 32, 256, phasing_bytes(6, 32, 256)) == 3
    assert plan_shots(2, 32, 256, one // 2) == 1  # a shot that needs its runs in batches is alone
    assert plan_shots(2, 32, 256, 10**15) == MAX_SHOTS_PER_LAUNCH
    assert plan_shots(2, 32, 256, 10**15, cap=5) == 5
    pipe = Pipeline(OPTIONS, backend="numpy", max_memory=phasing_bytes(8, OPTIONS.phasing.runs, 128))
    assert pipe.shots_per_launch(128) == 4 and pipe.shots_per_launch(128, cap=2) == 2


def test_a_run_phases_its_hits_in_stacks_with_the_results_of_one_by_one(tmp_path):
    """process_run: the hits of the run share launches (shots_per_launch column); one by one
    (shots_per_launch=1) the clouds are the same."""
    from batch_helpers import OK, make_run

    files = make_run(tmp_path / "shots")
    stacked = list(process_run(files, OPTIONS, store=tmp_path / "a", backend="numpy"))
    alone = list(process_run(files, OPTIONS, store=tmp_path / "b", backend="numpy", shots_per_launch=1))
    assert [r.shots_per_launch for r in stacked if r.index in OK] == [len(OK)] * len(OK)
    assert {r.shots_per_launch for r in alone if r.index in OK} == {1}
    assert [r.status for r in stacked] == [r.status for r in alone]
    for a, b in zip(alone, stacked):
        if a.status == "ok":
            np.testing.assert_array_equal(b.results.cloud.cleaned_nm, a.results.cloud.cleaned_nm)
    with pytest.raises(InputError, match="shots_per_launch"):
        list(process_run(files, OPTIONS, shots_per_launch=0))


def _reader_threads() -> int:
    return sum(t.name == "xstereo-prefetch" for t in threading.enumerate())


def test_prefetch_yields_in_order_and_reraises_the_readers_error():
    assert list(prefetch(iter(range(50)), 3)) == list(range(50))

    def broken():
        yield 1
        raise OSError("disk gone")

    it = prefetch(broken(), 2)
    assert next(it) == 1
    with pytest.raises(OSError, match="disk gone"):
        next(it)
    assert _reader_threads() == 0


def test_prefetch_reads_ahead_and_stops_when_the_consumer_stops():
    read = []

    def items():
        for k in range(1000):
            read.append(k)
            yield k

    it = prefetch(items(), 4)
    assert next(it) == 0
    for _ in range(100):  # the reader fills the queue while the consumer holds item 0
        if len(read) >= 5:
            break
        threading.Event().wait(0.01)
    assert 5 <= len(read) <= 6  # item 0, four queued, at most one waiting to be queued
    it.close()
    assert _reader_threads() == 0 and len(read) <= 6
