"""The four CUDA kernels run on the CPU emulator through their real bindings (issue 12, item 1).

* plain: in this process, against the NumPy twins (tests/emulation/harness.py);
* ThreadSanitizer and AddressSanitizer + UBSan: the same cases in a child Python with the runtime
  preloaded and the kernels compiled with ``-fsanitize=...`` (skipped, with the reason, when the
  compiler or the sanitizer runtime is missing);
* positive controls: a kernel with a ``__syncthreads()`` removed must be reported by
  ThreadSanitizer, one with an off-by-one bound by AddressSanitizer, one with an early exit
  before a barrier by the shim itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from . import harness

CASES = ("dm", "bm", "knn", "sgm")
KERNELS = Path(__file__).resolve().parents[2] / "kernels"


def _cxx():
    return os.environ.get("CXX") or "g++"


def _sanitizer_works(mode: str) -> str | None:
    """None when ``mode`` links and runs, else the reason to skip."""
    cxx = _cxx()
    if shutil.which(cxx) is None:
        return f"no C++ compiler ({cxx})"
    flag = {"thread": "-fsanitize=thread", "address": "-fsanitize=address,undefined"}[mode]
    if harness.sanitizer_runtime(mode) is None:
        return f"{cxx} has no {mode} sanitizer runtime to preload"
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        exe = os.path.join(d, "t")
        r = subprocess.run(
            [cxx, flag, "-x", "c++", "-", "-o", exe], input="int main(){}\n", capture_output=True, text=True
        )
        if r.returncode:
            return f"{cxx} {flag} does not link: {r.stderr[-300:]}"
        r = subprocess.run([exe], capture_output=True, text=True)
        if r.returncode:
            return f"a {flag} program does not run: {r.stderr[-300:]}"
    return None


@pytest.fixture(scope="session")
def emu_cache(tmp_path_factory):
    """One cache of compiled kernels per test session (XS_EMU_CACHE), shared with the subprocesses."""
    if shutil.which(_cxx()) is None:
        pytest.skip(f"no C++ compiler ({_cxx()}) for the CUDA emulator")
    d = tmp_path_factory.mktemp("xs_emu_cache")
    old = os.environ.get("XS_EMU_CACHE")
    os.environ["XS_EMU_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("XS_EMU_CACHE", None)
    else:
        os.environ["XS_EMU_CACHE"] = old


def _mutated(tmp_path, name: str, old: str, new: str) -> dict[str, str]:
    src = (KERNELS / name).read_text()
    assert src.count(old) == 1, f"positive control out of date: {old!r} not found exactly once in {name}"
    p = tmp_path / name
    p.write_text(src.replace(old, new))
    return {name: str(p)}


# ----------------------------------------------------------------------------------------- plain


@pytest.mark.parametrize("case", CASES)
def test_plain_matches_twin(case, emu_cache):
    (res,) = harness.run_cases([case])
    assert res["ok"], res.get("why", res)
    assert res["launches"] > 0


def test_plain_dm_kernel_on_a_stack_of_shots(emu_cache):
    """Three shots' views stacked (V = 6: a launch of the batch path, batch/launch.py): the DM step and
    the best-iterate tracking still follow their twins."""
    (res,) = harness.run_cases(["dm"], dm={"views": 6, "steps": 2})
    assert res["ok"], res.get("why", res)
    assert res["launches"] > 0


def test_plain_phasing_loop(emu_cache):
    """The phasing loop on the kernels: every host read is one PhaseRetrieval counts; costs follow NumPy's."""
    (res,) = harness.run_cases(["phasing"])
    assert res["ok"], res.get("why", res)


def test_host_read_counter_attributes_reads_to_stages(emu_cache):
    """timing.HostReadCounter (what ``xstereo bench`` prints) on the stand-in, through the real bindings:
    block matching makes no host read, kNN two (issue 12's budgets), reads outside a stage count in
    the total only."""
    import numpy as np

    from xstereo_gpu.cloud._knn_kernel import knn_mean_distance_kernel
    from xstereo_gpu.config import MatchOptions
    from xstereo_gpu.stereo.disparity import block_match
    from xstereo_gpu.timing import HostReadCounter, StageTimer

    rng = np.random.default_rng(1)
    with harness.fake_cupy() as cupy:
        left, right = (cupy.asarray(rng.random((12, 17), dtype=np.float32)) for _ in range(2))
        pts = cupy.asarray(rng.random((50, 3)))
        timings = {}
        with HostReadCounter(cupy) as reads:
            with StageTimer(cupy, timings, "stereo"):
                block_match(left, right, MatchOptions(block=3, dmin=-2, dmax=2), kernels=True)
            with StageTimer(cupy, timings, "cloud"):
                knn_mean_distance_kernel(pts, 5)
            left.get()
        assert reads.mechanism is not None
        assert reads.stages == {"stereo": 0, "cloud": 2}
        assert reads.total() == 3
        assert set(timings) == {"stereo", "cloud"}
        pts.get()  # after the block: not counted
        assert reads.total() == 3


def test_plain_reports_exit_before_barrier(emu_cache, tmp_path):
    """The shim enforces CUDA's barrier rule: a thread that returns before a __syncthreads is an error."""
    src = _mutated(
        tmp_path,
        "block_matching.cu",
        "    BmTrack t[BM_RPT];\n",
        "    if (x >= W) return;\n    BmTrack t[BM_RPT];\n",
    )
    with pytest.raises(
        RuntimeError,
        match="(exited while .* wait at __syncthreads|__syncthreads .* after a thread of the block exited)",
    ):
        harness.run_cases(["bm"], src, bm={"blocks": (3,)})


def test_plain_reports_wrong_argument_type(emu_cache):
    """The launcher checks the arguments against the kernel's C++ signature (as a real launch cannot)."""
    with harness.fake_cupy() as cupy:
        import numpy as np

        from xstereo_gpu._kernels import load_module

        k = load_module("difference_map.cu").get_function("dm_eps")
        s, e = cupy.zeros(4, dtype=np.float32), cupy.zeros(4, dtype=np.float32)
        k((1,), (32,), (s, e, np.int32(4), np.float32(1.0)))
        with pytest.raises(RuntimeError, match="argument 3: the kernel takes a 4-byte scalar"):
            k((1,), (32,), (s, e, np.int32(4), 1.0))  # a Python float is a double, as in CuPy
        with pytest.raises(RuntimeError, match="argument 0: the kernel takes a pointer to 4-byte elements"):
            k((1,), (32,), (cupy.zeros(4), e, np.int32(4), np.float32(1.0)))


# ----------------------------------------------------------------------------------------- sanitizers
#
# The sanitized runs are child processes started together when this module starts (they overlap
# with the plain tests on a 2-core machine); each test waits for its own.

#: Positive controls: (sanitizer, case, kernel file, text, replacement, what must be reported).
CONTROLS = {
    # SGM without the barrier between reading prev[] and overwriting it: a data race
    "tsan_sgm_barrier": (
        "thread",
        "sgm",
        "sgm.cu",
        "        __syncthreads();  // every thread has read prev\n",
        "",
        "ThreadSanitizer: data race",
    ),
    # dm_update without the barrier before the first warp reads warp_sums: a data race
    "tsan_dm_barrier": (
        "thread",
        "dm",
        "difference_map.cu",
        "        __syncthreads();\n        if (warp == 0) {",
        "        if (warp == 0) {",
        "ThreadSanitizer: data race",
    ),
    # kNN's bound check off by one: reads past the end of the point arrays
    "asan_knn_bound": (
        "address",
        "knn",
        "knn_outliers.cu",
        "    if (i >= m) return;\n    const double px",
        "    if (i > m) return;\n    const double px",
        "AddressSanitizer: heap-buffer-overflow",
    ),
}

_WORKS: dict = {}


def _why_not(mode: str):
    if mode not in _WORKS:
        _WORKS[mode] = _sanitizer_works(mode)
    return _WORKS[mode]


class _Queue:
    """Runs the children one after the other in a background thread (one child at a time next to
    the plain tests in this process: the emulator's OS threads suffer from oversubscription)."""

    def __init__(self, jobs, logdir):
        import threading

        self.jobs, self.logdir = jobs, logdir
        self.done = {k: threading.Event() for k in jobs}
        self.results, self.current, self.stop = {}, None, False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for key, job in self.jobs.items():
            if self.stop:
                break
            if isinstance(job, str):
                self.results[key] = job
            else:
                try:
                    self.current = harness.Child(*job, logdir=self.logdir)
                    self.results[key] = self.current.result()
                except Exception as exc:  # reported by the test that waits for it
                    self.results[key] = (-1, None, f"could not run the child: {exc!r}")
            self.done[key].set()

    def get(self, key):
        self.done[key].wait()
        return self.results[key]

    def close(self):
        self.stop = True
        if self.current is not None:
            self.current.kill()


@pytest.fixture(scope="module", autouse=True)
def children(emu_cache, tmp_path_factory):
    """Start every sanitized run (both sanitizers, then the positive controls) in the background."""
    d = tmp_path_factory.mktemp("xs_emu_controls")
    jobs = {}
    for key, (mode, case, name, old, new, _) in CONTROLS.items():
        jobs[key] = _why_not(mode) or ([case], mode, _mutated(d, name, old, new))
    for mode in ("thread", "address"):
        jobs[mode] = _why_not(mode) or (CASES, mode)
    q = _Queue(jobs, str(d))
    yield q
    q.close()


def _result(children, key):
    r = children.get(key)
    if isinstance(r, str):
        pytest.skip(r)
    return r


@pytest.mark.parametrize("mode", ["thread", "address"])
def test_sanitized_matches_twin(mode, children):
    rc, results, log = _result(children, mode)
    assert rc == 0 and results is not None, f"{mode} sanitizer run failed (exit {rc}):\n{log}"
    bad = [r for r in results if not r["ok"]]
    assert not bad, bad
    assert [r["name"] for r in results] == list(CASES)


@pytest.mark.parametrize("key", sorted(CONTROLS))
def test_sanitizer_reports_broken_kernel(key, children):
    """Positive controls: the harness must fail on a kernel with a removed barrier or an off-by-one bound."""
    rc, _, log = _result(children, key)
    expected = CONTROLS[key][-1]
    assert rc != 0 and expected in log, f"{key}: {expected!r} not reported (exit {rc}):\n{log}"
