"""Run the project's real kernel bindings on the CUDA emulator and compare with the NumPy twins.

Each case calls a binding (``dm_step_kernel`` + ``track_best_kernel``, ``block_match_kernel``,
``knn_mean_distance_kernel``, ``aggregate_costs_kernel``) with the NumPy-backed CuPy stand-in of
``fake/`` on small odd sizes, compares the result with the NumPy twin and returns a dict
(``ok``, the worst error, the host reads per binding call). The stand-in's ``cupy.empty`` poisons
new arrays (bytes 0x5a) so that elements a kernel forgets to write fail the comparison.

Sanitizers. A sanitizer runtime must be loaded before anything else, so the sanitized builds run in
a subprocess: ``python harness.py CASE... --sanitize thread|address`` with the runtime in
``LD_PRELOAD`` (see :func:`run_subprocess`); the kernels are then compiled with ``-fsanitize=...``
and any report aborts the process (``halt_on_error=1``, exit code 66), which the tests turn into a
failure with the report in the message.

``--source NAME=PATH`` replaces ``kernels/NAME`` by another file (the positive controls).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FAKE = HERE / "fake"
ROOT = HERE.parents[1]
POISON = 0x5A

_SUFFIX = {"thread": "tsan", "address": "asan"}


# --------------------------------------------------------------------------------------------- setup


def _clear_binding_caches():
    from xstereo_gpu import _kernels
    from xstereo_gpu.phasing import _dm_kernel

    _kernels._load.cache_clear()
    _dm_kernel._kernels.cache_clear()


@contextlib.contextmanager
def fake_cupy(sources: dict[str, str] | None = None):
    """Install the stand-in as ``cupy``/``cupyx`` (and optionally replaced kernel sources)."""
    saved = {k: v for k, v in sys.modules.items() if k == "cupy" or k.startswith(("cupy.", "cupyx"))}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, str(FAKE))
    from xstereo_gpu import _kernels

    orig_source = _kernels.kernel_source
    if sources:

        def kernel_source(name, _orig=orig_source):
            return Path(sources[name]).read_text() if name in sources else _orig(name)

        _kernels.kernel_source = kernel_source
    _clear_binding_caches()
    try:
        cupy = importlib.import_module("cupy")
        importlib.import_module("cupyx.scipy.fft")
        real_empty = np.empty

        def empty(shape, dtype=float, order="C"):
            a = real_empty(shape, dtype=dtype, order=order)
            a.view(np.uint8).fill(POISON) if a.size else None
            return cupy.ndarray._from(a)

        def empty_like(a, dtype=None, order="K", shape=None):
            return empty(a.shape if shape is None else shape, dtype=a.dtype if dtype is None else dtype)

        cupy.empty, cupy.empty_like = empty, empty_like
        yield cupy
    finally:
        _kernels.kernel_source = orig_source
        _clear_binding_caches()
        for k in [k for k in sys.modules if k == "cupy" or k.startswith(("cupy.", "cupyx"))]:
            del sys.modules[k]
        sys.modules.update(saved)
        sys.path.remove(str(FAKE))


def _reads(cupy, fn, *args, **kwargs):
    cupy.reset_host_reads()
    out = fn(*args, **kwargs)
    return out, dict(cupy.HOST_READS)


def _rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(float(np.abs(b).max()), 1e-30)
    return float(np.abs(a - b).max()) / scale


# --------------------------------------------------------------------------------------------- cases

#: Host-read budget per binding call (issue 12, item 2): key prefix of ``res["reads"]`` -> most reads.
#: The stand-in counts explicit reads (``.get()``, ``bool()``, ...) and the CuPy calls that
#: synchronise to size their output (see fake/cupy/__init__.py: ``SYNCING``).
READ_BUDGET = {
    "dm_step_kernel": 0,
    "track_best_kernel": 0,
    "block_match_kernel": 0,
    "block_match(": 0,
    "knn_mean_distance_kernel": 2,
    "aggregate_costs_kernel": 0,
}


def _check_budget(res: dict) -> dict:
    over = {
        call: n
        for call, r in res["reads"].items()
        for prefix, most in READ_BUDGET.items()
        if call.startswith(prefix) and (n := sum(r.values())) > most
    }
    if over and res["ok"]:
        res.update(ok=False, why=f"host reads over budget {READ_BUDGET}: {over}")
    return res


def case_dm(cupy, steps: int = 3, n: int = 23, views: int = 2, runs: int = 3) -> dict:
    from xstereo_gpu.phasing import _dm_kernel as dmk
    from xstereo_gpu.phasing import algorithms as alg

    rng = np.random.default_rng(12)
    res = {"name": "dm", "ok": True, "reads": {}, "max_rel_err": 0.0, "launches": 0}
    for s_runs in (runs, 1):
        amp = rng.uniform(0.0, 2.0, (views, 1, n, n)).astype(np.float32)
        amp[..., 0, 0] = 5.0
        valid = rng.random((views, 1, n, n)) > 0.1
        support = rng.random((views, s_runs, n, n)) > 0.6
        x0 = (
            rng.standard_normal((views, runs, n, n)) + 1j * rng.standard_normal((views, runs, n, n))
        ).astype(np.complex64)
        x0[0, 0, 0, :] = 0  # exercises |Y| = 0 via the floor nowhere in particular, but zero rows
        xd = cupy.asarray(x0)
        ad, vd, sd = cupy.asarray(amp), cupy.asarray(valid), cupy.asarray(support)
        work = dmk.DMKernelWorkspace(xd)
        xh = x0.copy()
        best_h = np.zeros_like(x0)
        best_eps_h = np.full((views, runs), np.inf, np.float32)
        best_d = cupy.asarray(np.full(x0.shape, np.nan + 0j, np.complex64))
        best_eps_d = cupy.asarray(best_eps_h)
        best_d[...] = 0
        prepares = []
        for it in range(steps):
            # two steps with one beta (the second reuses the f_S(x) that dm_update wrote), then
            # the other sign (g_S changes: dm_prepare runs again)
            beta = 0.8 if it % 4 < 2 else -0.7
            n0 = len(cupy._raw.LAUNCHES)
            (xd2, est_d, eps_d), r = _reads(cupy, dmk.dm_step_kernel, xd, ad, vd, sd, beta=beta, work=work)
            prepares.append(sum(name == "dm_prepare" for name, *_ in cupy._raw.LAUNCHES[n0:]))
            res["reads"][f"dm_step_kernel#{it}"] = r
            xh, est_h, eps_h = alg.dm_step(xh, amp, valid, support, beta=beta)
            est_h = est_h.copy()
            errs = (_rel_err(xd2.get(), xh), _rel_err(est_d.get(), est_h), _rel_err(eps_d.get(), eps_h))
            res["max_rel_err"] = max(res["max_rel_err"], *errs)
            # best-iterate tracking (twin: runs.PhaseRetrieval.update's selection)
            enabled = it >= 1
            _, r = _reads(cupy, dmk.track_best_kernel, best_d, best_eps_d, est_d, eps_d, sd, enabled)
            res["reads"][f"track_best_kernel#{it}"] = r
            if enabled:
                eps32 = eps_d.get()
                flag = eps32 < best_eps_h
                best_eps_h = np.where(flag, eps32, best_eps_h)
                sel = np.broadcast_to(support, x0.shape)
                new = np.where(sel, est_d.get(), 0).astype(np.complex64)
                best_h = np.where(flag[..., None, None], new, best_h)
            if not (np.array_equal(best_d.get(), best_h) and np.array_equal(best_eps_d.get(), best_eps_h)):
                res["ok"] = False
                res["why"] = f"track_best_kernel differs from the twin's selection at step {it}"
        want_prepares = [int(it == 0 or it % 2 == 0) for it in range(steps)]
        if prepares != want_prepares:
            res["ok"] = False
            res["why"] = f"dm_prepare launched at steps {prepares}, expected {want_prepares}"
    if res["max_rel_err"] > 2e-6:
        res["ok"] = False
        res["why"] = f"dm_step_kernel differs from dm_step: max relative error {res['max_rel_err']:.3g}"
    return _check_budget(res)


BM_RANGES = ((-5, 9, 0.02), (-40, 37, 0.0))  # one chunk of disparities with the texture rule; three chunks


def case_bm(cupy, blocks=(1, 3, 9), h: int = 37, w: int = 41, ranges=BM_RANGES) -> dict:
    from xstereo_gpu.config import MatchOptions
    from xstereo_gpu.stereo import _bm_kernel as bmk
    from xstereo_gpu.stereo.disparity import block_match

    rng = np.random.default_rng(7)
    base = rng.random((h, w + 12)).astype(np.float32)
    left = base[:, 6 : 6 + w].copy()
    right = np.roll(base, 3, axis=1)[:, 6 : 6 + w].copy() + 0.01 * rng.standard_normal((h, w)).astype(
        np.float32
    )
    left[5:9, :] = 0.5  # textureless rows: the texture rule
    res = {"name": "bm", "ok": True, "reads": {}, "mismatch": {}}
    fields = (
        "disparity_left",
        "disparity_right",
        "cost_left",
        "cost_right",
        "confidence_left",
        "confidence_right",
    )
    for b in blocks:
        for dmin, dmax, thr in ranges:
            opt = MatchOptions(block=b, dmin=dmin, dmax=dmax, texture_threshold=thr)
            got, r = _reads(cupy, bmk.block_match_kernel, cupy.asarray(left), cupy.asarray(right), opt)
            res["reads"][f"block_match_kernel(b={b},d={dmin}..{dmax})"] = r
            want = block_match(left, right, opt)
            for f in fields:
                g, t = getattr(got, f).get(), np.asarray(getattr(want, f))
                bad = int(np.sum(~((g == t) | (np.isnan(g) & np.isnan(t)))))
                if bad:
                    res["ok"] = False
                    res["mismatch"][f"b={b},d={dmin}..{dmax},{f}"] = bad
    # through block_match (the stage's entry point) the kernel path makes no host read either, and
    # a non-finite reference pixel invalidates the blocks that hold it (the binding's contract)
    b, (dmin, dmax, thr) = blocks[0], ranges[0]  # an instance compiled already
    opt = MatchOptions(block=b, dmin=dmin, dmax=dmax, texture_threshold=thr)
    bad_left = left.copy()
    bad_left[h // 2, w // 2] = np.nan
    got, r = _reads(cupy, block_match, cupy.asarray(bad_left), cupy.asarray(right), opt, kernels=True)
    res["reads"][f"block_match(b={b},d={dmin}..{dmax},NaN pixel)"] = r
    hb = b // 2
    around = got.disparity_left.get()[h // 2 - hb : h // 2 + hb + 1, w // 2 - hb : w // 2 + hb + 1]
    if not np.isnan(around).all():
        res["ok"] = False
        res["mismatch"]["NaN pixel: finite disparities around it"] = int(np.sum(~np.isnan(around)))
    if not res["ok"]:
        res["why"] = f"block_match_kernel differs from block_match: {res['mismatch']}"
    return _check_budget(res)


def case_knn(cupy, m: int = 301, degenerate: bool = True) -> dict:
    from xstereo_gpu.cloud import _knn_kernel as kk
    from xstereo_gpu.cloud.outliers import knn_mean_distance

    rng = np.random.default_rng(3)
    pts = np.concatenate(
        [rng.normal(0, 1, (m - 40, 3)), rng.normal(0, 0.05, (30, 3)) + 4.0, rng.uniform(-50, 50, (10, 3))]
    )
    pts[5] = pts[6]  # a duplicate: distance 0 counts
    res = {"name": "knn", "ok": True, "reads": {}, "mismatch": {}}
    for k, dtype in ((5, np.float64), (20, np.float64), (9, np.float32), (m + 5, np.float64)):
        p = pts.astype(dtype)
        kk_ = min(k, m - 1)
        if kk_ > kk.KNN_KERNEL_MAX_K:
            p = p[:100]
        got, r = _reads(cupy, kk.knn_mean_distance_kernel, cupy.asarray(p), k)
        res["reads"][f"knn_mean_distance_kernel(k={k},{np.dtype(dtype).name},M={len(p)})"] = r
        want = knn_mean_distance(p, k, method="kdtree")
        bad = int(np.sum(got.get() != want))
        if bad:
            res["ok"] = False
            res["mismatch"][f"k={k},{np.dtype(dtype).name}"] = bad
    # degenerate clouds: all points identical (one cell, one host read) and a line (the planner's
    # ladder of cell widths)
    s = rng.random(60)
    clouds = (("identical", np.full((40, 3), 1.5), 9), ("line", np.c_[s, 2 * s + 1, -s], 5))
    for name, p, k in clouds if degenerate else ():
        got, r = _reads(cupy, kk.knn_mean_distance_kernel, cupy.asarray(p), k)
        res["reads"][f"knn_mean_distance_kernel(k={k},{name},M={len(p)})"] = r
        bad = int(np.sum(got.get() != knn_mean_distance(p, k, method="kdtree")))
        if bad:
            res["ok"] = False
            res["mismatch"][name] = bad
    if not res["ok"]:
        res["why"] = f"knn_mean_distance_kernel differs from knn_mean_distance: {res['mismatch']}"
    return _check_budget(res)


SGM_SHAPES = ((11, 13, 37, 4), (11, 13, 37, 8), (3, 4, 1030, 4))  # (H, W, D, paths); D = 1030: DPT = 2


def case_sgm(cupy, shapes=SGM_SHAPES) -> dict:
    from xstereo_gpu.stereo import _sgm_kernel as sk
    from xstereo_gpu.stereo.sgm import INVALID_COST, aggregate_costs

    rng = np.random.default_rng(5)
    res = {"name": "sgm", "ok": True, "reads": {}, "mismatch": {}}
    for hh, ww, dd, paths in shapes:
        cost = rng.random((hh, ww, dd)).astype(np.float32)
        cost[rng.random(cost.shape) < 0.05] = INVALID_COST
        got, r = _reads(cupy, sk.aggregate_costs_kernel, cupy.asarray(cost), p1=0.05, p2=0.3, paths=paths)
        res["reads"][f"aggregate_costs_kernel({hh}x{ww}x{dd},paths={paths})"] = r
        want = aggregate_costs(cost, p1=0.05, p2=0.3, paths=paths)
        bad = int(np.sum(got.get() != want))
        if bad:
            res["ok"] = False
            res["mismatch"][f"{hh}x{ww}x{dd},paths={paths}"] = bad
    if not res["ok"]:
        res["why"] = f"aggregate_costs_kernel differs from aggregate_costs: {res['mismatch']}"
    return _check_budget(res)


def case_phasing(cupy, n: int = 24, k: int = 4) -> dict:
    """The whole phasing loop (PhaseRetrieval, DM + best tracking on the kernels) on the stand-in.

    Checks that every device-to-host read the stand-in sees during ``update`` is one the loop
    counts (``PhaseRetrieval.host_reads``) and that the cost history follows the NumPy loop's.
    """
    from xstereo_gpu.config import PhasingOptions
    from xstereo_gpu.phasing import runs

    rng = np.random.default_rng(40)
    obj = np.zeros((2, n, n), np.complex64)
    obj[:, n // 2 - 5 : n // 2 + 4, n // 2 - 3 : n // 2 + 6] = rng.random((2, 9, 9)) + 0.5
    inten = np.abs(np.fft.fftshift(np.fft.fft2(obj), axes=(-2, -1))).astype(np.float32) ** 2
    valid = np.ones(inten.shape, bool)
    valid[:, n // 2 - 1 : n // 2 + 2, n // 2 - 1 : n // 2 + 2] = False
    o = PhasingOptions(
        algorithm="dm",
        runs=3,
        iterations=18,
        final_er=2,
        check_every=k,
        shrinkwrap_every=k,
        select_from=0.25,
        seed=3,
    )
    res = {"name": "phasing", "ok": True, "reads": {}}
    pr, r = _reads(cupy, runs.PhaseRetrieval, cupy.asarray(inten), cupy.asarray(valid), o)
    res["reads"]["PhaseRetrieval.__init__"] = r
    res["uses_kernels"] = bool(pr.uses_kernels)
    loop_reads = 0
    while not pr.done():
        it = pr.iteration
        _, r = _reads(cupy, pr.update, k)
        res["reads"][f"update({k}) at {it}"] = r
        loop_reads += sum(r.values())
    res["loop_reads"], res["host_reads"] = loop_reads, pr.host_reads
    ref = runs.PhaseRetrieval(inten, valid, o)
    while not ref.done():
        ref.update(k)
    got, want = np.asarray(pr.costs, np.float64), np.asarray(ref.costs, np.float64)
    big = want > 1e-4  # costs near float32 round-off (~1e-7) differ by the FFT libraries' roundings
    res["max_rel_err"] = float(np.max(np.abs(got - want)[big] / want[big]))
    if not pr.uses_kernels:
        res.update(ok=False, why="the phasing loop did not use the kernels on the stand-in")
    elif loop_reads != pr.host_reads:
        res.update(
            ok=False,
            why=f"{loop_reads} device-to-host reads in update(), PhaseRetrieval counted {pr.host_reads}",
        )
    elif got.shape != want.shape or res["max_rel_err"] > 1e-3:
        res.update(ok=False, why=f"cost history differs from the NumPy loop: {res['max_rel_err']:.3g}")
    return res


CASES = {"dm": case_dm, "bm": case_bm, "knn": case_knn, "sgm": case_sgm, "phasing": case_phasing}

#: Smaller cases for the sanitized builds (ThreadSanitizer costs ~5x per synchronisation), still
#: covering every kernel, template instance class and branch of the plain cases: both support
#: layouts, dm_prepare and the f_S(x) written by dm_update (DM), B = 1 and 9 with several disparity
#: chunks and the texture rule (BM), all 8 SGM directions and DPT = 2; the degenerate kNN clouds
#: (plain runs only) add no kernel code path.
SANITIZER_PARAMS = {
    "dm": {"steps": 2, "n": 15},
    "knn": {"degenerate": False},
    "bm": {"blocks": (1, 9), "ranges": ((-20, 17, 0.02),)},
    "sgm": {"shapes": ((5, 7, 37, 8), (2, 3, 1030, 4))},
}


def run_cases(names, sources=None, **kwargs) -> list[dict]:
    out = []
    with fake_cupy(sources) as cupy:
        for n in names:
            cupy._raw.LAUNCHES.clear()
            r = CASES[n](cupy, **kwargs.get(n, {}))
            r["launches"] = len(cupy._raw.LAUNCHES)
            out.append(r)
    return out


# --------------------------------------------------------------------------------------------- sanitizers


def sanitizer_runtime(mode: str) -> str | None:
    """Path of the sanitizer runtime to preload (None when the compiler lacks it or it does not run)."""
    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None:
        return None
    lib = {"thread": "libtsan.so", "address": "libasan.so"}[mode]
    try:
        path = subprocess.run(
            [cxx, f"-print-file-name={lib}"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return path if os.path.isabs(path) and os.path.exists(path) else None


def sanitizer_env(mode: str) -> dict:
    env = dict(os.environ)
    env["XS_EMU_SANITIZE"] = mode
    env["LD_PRELOAD"] = sanitizer_runtime(mode) or ""
    import xstereo_gpu  # the child imports the same xstereo_gpu as this process (installed or checkout)

    top = str(Path(xstereo_gpu.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([top, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if mode == "thread":
        env["TSAN_OPTIONS"] = (
            "halt_on_error=1 exitcode=66 report_signal_unsafe=0 report_thread_leaks=0 "
            "second_deadlock_stack=1 history_size=4"
        )
    else:
        env["ASAN_OPTIONS"] = (
            "halt_on_error=1 exitcode=66 detect_leaks=0 abort_on_error=0 "
            "allocator_may_return_null=1 detect_odr_violation=0"
        )
        env["UBSAN_OPTIONS"] = "halt_on_error=1 exitcode=66 print_stacktrace=1"
    env.setdefault("XS_EMU_TIMEOUT", "300")
    return env


class Child:
    """A harness run in a child Python with a sanitizer runtime preloaded (output in files)."""

    def __init__(self, names, mode: str, sources: dict[str, str] | None = None, logdir: str | None = None):
        import tempfile

        cmd = [sys.executable, str(Path(__file__)), *names, "--sanitize", mode]
        for k, v in (sources or {}).items():
            cmd += ["--source", f"{k}={v}"]
        self.out = tempfile.TemporaryFile(mode="w+", dir=logdir)
        self.err = tempfile.TemporaryFile(mode="w+", dir=logdir)
        self.proc = subprocess.Popen(
            cmd, env=sanitizer_env(mode), stdout=self.out, stderr=self.err, text=True, cwd=str(ROOT)
        )

    def result(self, timeout: float = 900):
        """(returncode, results or None, the tail of stdout and stderr)."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.out.seek(0)
        self.err.seek(0)
        out, err = self.out.read(), self.err.read()
        results = None
        for line in out.splitlines():
            if line.startswith("XS_EMU_RESULTS "):
                results = json.loads(line[len("XS_EMU_RESULTS ") :])
        return rc, results, out[-4000:] + "\n" + err[-12000:]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_subprocess(names, mode: str, sources: dict[str, str] | None = None, timeout: float = 900):
    """Run cases in a child Python with the sanitizer runtime preloaded; returns (returncode, results, "
    "log)."""
    return Child(names, mode, sources).result(timeout)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="+", choices=sorted(CASES))
    ap.add_argument("--sanitize", default="", choices=["", "thread", "address"])
    ap.add_argument("--source", action="append", default=[], help="NAME=PATH: replace kernels/NAME")
    a = ap.parse_args(argv)
    os.environ["XS_EMU_SANITIZE"] = a.sanitize
    sources = dict(s.split("=", 1) for s in a.source)
    res = run_cases(a.cases, sources, **(SANITIZER_PARAMS if a.sanitize else {}))
    print("XS_EMU_RESULTS " + json.dumps(res), flush=True)
    return 0 if all(r["ok"] for r in res) else 1


if __name__ == "__main__":
    sys.exit(main())
