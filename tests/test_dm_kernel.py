"""Difference-map CUDA kernels (kernels/difference_map.cu) against their NumPy twin.

CPU tests: the .cu source ships and names every entry point; the binding's argument validation
fails with InputError before touching CuPy. GPU tests (``gpu`` marker): :func:`dm_step_kernel`
against :func:`dm_step` over several steps, and :func:`track_best_kernel` against the best-iterate
selection of ``PhaseRetrieval.update``, on seeded random inputs covering every kernel branch
(per-run and broadcast supports, default and explicit gammas, negative beta, invalid Fourier
pixels, zero amplitudes, a vanishing spectrum, odd N, NaN and tied eps, selection disabled),
with outputs poisoned before the launch.

Wiring: ``PhaseRetrieval`` uses the kernels on CuPy (escape hatch ``kernels=False`` /
``XSTEREO_KERNELS=0``) and matches the twins' CuPy code there. The host reads of its loop (at most
``ceil(iterations / K) + 1``, with or without the kernels) are tested in test_runs.py.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from _helpers import cuda_code, phasing_problem, random_complex

from xstereo_gpu._kernels import kernel_source
from xstereo_gpu.errors import InputError
from xstereo_gpu.phasing._dm_kernel import (
    _BLOCK,
    _NAMES,
    dm_step_kernel,
    track_best_kernel,
)
from xstereo_gpu.phasing.algorithms import _TINY, Workspace, dm_step, fourier_constraint

V, R, N = 2, 3, 16


def _step_inputs(rng, v=V, r=R, n=N, *, per_run_support=True):
    """Iterates, amplitudes, valid mask (with a beamstop and dead pixels) and support, on the host."""
    x = random_complex(rng, (v, r, n, n))
    inten = np.abs(np.fft.fft2(random_complex(rng, (v, n, n)))) ** 2
    inten[:, : n // 4, : n // 4] = 0.0  # valid pixels with zero amplitude
    valid = rng.random((v, n, n)) > 0.15  # dead pixels
    yy, xx = np.mgrid[:n, :n]
    valid &= ((yy - n // 2) ** 2 + (xx - n // 2) ** 2 > 4)[None]  # beamstop
    amp, val = fourier_constraint(inten.astype(np.float32), valid)
    sup = rng.random((v, r if per_run_support else 1, n, n)) > 0.5
    return x, amp, val, sup


def _track_best_twin(best, best_eps, est, eps, support, enabled):
    """The best-iterate selection of ``PhaseRetrieval.update`` (runs.py), on NumPy."""
    better = eps < best_eps
    if not enabled:
        better &= False
    np.copyto(best, est, where=np.broadcast_to(better[..., None, None], est.shape) & support)
    np.copyto(best, 0, where=np.broadcast_to(better[..., None, None], est.shape) & ~support)
    return best, np.where(better, eps, best_eps)


def _assert_close(got, want, rtol=1e-4):
    want = np.asarray(want)
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


# ----------------------------------------------------------------------------- CPU: source, validation


def test_source_ships_and_defines_every_entry_point():
    code = cuda_code(kernel_source("difference_map.cu"))
    for name in _NAMES:
        assert re.search(rf'extern "C" __global__ void {name}\(', code), name
    assert sorted(re.findall(r'extern "C" __global__ void (\w+)\(', code)) == sorted(_NAMES)
    assert int(re.search(r"#define DM_BLOCK (\d+)", code).group(1)) == _BLOCK
    assert "#include" not in code  # self-contained: compiles with nvcc and NVRTC alike
    tiny = re.search(r"#define DM_TINY (\S+)", code).group(1)
    assert tiny == "1e-20f" and np.float32(tiny[:-1]) == _TINY  # the twin's _TINY, as a float literal


def _bad_step_cases():
    x, amp, val, sup = _step_inputs(np.random.default_rng(0))
    ok = dict(x=x, amplitudes=amp, valid=val, support=sup)
    return [
        ("x", dict(ok, x=x.astype(np.complex128))),
        ("x", dict(ok, x=x[0])),
        ("x", dict(ok, x=x[..., :-1])),
        ("x", dict(ok, x=[[1j]])),
        ("amplitudes", dict(ok, amplitudes=amp.astype(np.float64))),
        ("amplitudes", dict(ok, amplitudes=amp[:, 0])),
        ("valid", dict(ok, valid=val.astype(np.uint8))),
        ("valid", dict(ok, valid=np.broadcast_to(val, x.shape))),
        ("support", dict(ok, support=sup[:, :2])),
        ("support", dict(ok, support=sup.astype(np.float32))),
    ]


@pytest.mark.parametrize("field, kwargs", _bad_step_cases())
def test_dm_step_kernel_rejects_bad_arrays(field, kwargs):
    with pytest.raises(InputError, match=rf"dm_step_kernel\.{field}"):
        dm_step_kernel(kwargs["x"], kwargs["amplitudes"], kwargs["valid"], kwargs["support"])


@pytest.mark.parametrize(
    "options, field",
    [
        (dict(beta=0.0), "beta"),
        (dict(beta=float("nan")), "beta"),
        (dict(beta="fast"), "beta"),
        (dict(gammas=(1.0,)), "gammas"),
        (dict(gammas=(1.0, float("inf"))), r"gammas\[1\]"),
        (dict(gammas=("a", 1.0)), r"gammas\[0\]"),
    ],
)
def test_dm_step_kernel_rejects_bad_options(options, field):
    x, amp, val, sup = _step_inputs(np.random.default_rng(1))
    with pytest.raises(InputError, match=rf"dm_step_kernel\.{field}"):
        dm_step_kernel(x, amp, val, sup, **options)


def test_kernels_reject_numpy_arrays():
    x, amp, val, sup = _step_inputs(np.random.default_rng(2))
    with pytest.raises(InputError, match="CuPy arrays"):
        dm_step_kernel(x, amp, val, sup, beta=0.8)
    eps = np.ones((V, R), np.float32)
    with pytest.raises(InputError, match="CuPy arrays"):
        track_best_kernel(x.copy(), eps, x, eps, sup, True)


def test_track_best_kernel_rejects_bad_arrays():
    rng = np.random.default_rng(3)
    best = random_complex(rng, (V, R, N, N))
    eps = np.ones((V, R), np.float32)
    sup = np.ones((V, 1, N, N), bool)
    cases = [
        ("best", (best.astype(np.complex128), eps, best, eps, sup, True)),
        ("best_eps", (best, eps[:, :1], best, eps, sup, True)),
        ("estimate", (best, eps, best[:, :1], eps, sup, True)),
        ("eps", (best, eps, best, eps.astype(np.float64), sup, True)),
        ("support", (best, eps, best, eps, sup[..., :-1], True)),
        ("enabled", (best, eps, best, eps, sup, "yes")),
    ]
    for field, args in cases:
        with pytest.raises(InputError, match=rf"track_best_kernel\.{field}"):
            track_best_kernel(*args)


def test_track_best_twin_follows_runs_semantics():
    """The oracle itself: strict improvement only, zero outside the support, disabled = no-op."""
    rng = np.random.default_rng(4)
    best = np.full((1, 3, 4, 4), 7 + 7j, np.complex64)
    est = random_complex(rng, best.shape)
    sup = rng.random((1, 1, 4, 4)) > 0.5
    best_eps = np.array([[1.0, 1.0, 1.0]], np.float32)
    eps = np.array([[0.5, 1.0, np.nan]], np.float32)
    b, e = _track_best_twin(best.copy(), best_eps, est, eps, sup, True)
    np.testing.assert_array_equal(e, [[0.5, 1.0, 1.0]])
    np.testing.assert_array_equal(b[0, 0], np.where(sup[0, 0], est[0, 0], 0))
    np.testing.assert_array_equal(b[0, 1:], best[0, 1:])
    b, e = _track_best_twin(best.copy(), best_eps, est, eps, sup, False)
    np.testing.assert_array_equal(b, best)
    np.testing.assert_array_equal(e, best_eps)


# ----------------------------------------------------------------------------- GPU parity


@pytest.mark.gpu
@pytest.mark.parametrize("n", [16, 33])
@pytest.mark.parametrize("per_run_support", [True, False])
@pytest.mark.parametrize("beta, gammas", [(0.8, None), (-0.9, None), (1.0, (-1.0, 1.0)), (0.7, (0.3, -0.6))])
def test_dm_step_kernel_matches_twin(n, per_run_support, beta, gammas):
    import cupy

    from xstereo_gpu.phasing._dm_kernel import DMKernelWorkspace

    rng = np.random.default_rng(10 + n)
    x, amp, val, sup = _step_inputs(rng, n=n, per_run_support=per_run_support)
    x[1, 2] = 0  # a vanishing spectrum: the modulus floor (|X| -> 1e-20) branch
    xg = cupy.asarray(x)
    ampg, valg, supg = cupy.asarray(amp), cupy.asarray(val), cupy.asarray(sup)
    work = DMKernelWorkspace(xg)
    for a in (work.buf, work.fs, work.sum2, work.eps):  # poison every output and scratch buffer
        a.fill(np.nan)
    twin_work = Workspace(x, amp, val)
    for _ in range(4):
        x_host = cupy.asnumpy(xg)  # the twin starts each step from the kernel's iterate
        want_x, want_est, want_eps = dm_step(x_host, amp, val, sup, beta=beta, gammas=gammas, work=twin_work)
        got_x, got_est, got_eps = dm_step_kernel(xg, ampg, valg, supg, beta=beta, gammas=gammas, work=work)
        assert got_x is xg
        assert got_est.shape == x.shape and got_est.dtype == np.complex64
        assert got_eps.shape == (V, R) and got_eps.dtype == np.float32
        _assert_close(cupy.asnumpy(got_x), want_x)
        _assert_close(cupy.asnumpy(got_est), want_est)
        np.testing.assert_allclose(cupy.asnumpy(got_eps), want_eps, rtol=1e-4)
    assert np.all(np.isfinite(cupy.asnumpy(xg)))


@pytest.mark.gpu
def test_dm_step_kernel_leaves_free_pixels_and_builds_its_workspace():
    """Without a workspace; the estimate's spectrum has the measured modulus where valid."""
    import cupy

    rng = np.random.default_rng(20)
    x, amp, val, sup = _step_inputs(rng)
    want = dm_step(x.copy(), amp, val, sup, beta=0.8)
    got = dm_step_kernel(cupy.asarray(x), cupy.asarray(amp), cupy.asarray(val), cupy.asarray(sup), beta=0.8)
    for g, w in zip(got, want):
        _assert_close(cupy.asnumpy(g), w)
    spec = np.abs(np.fft.fft2(cupy.asnumpy(got[1])))
    v = np.broadcast_to(val, spec.shape)
    np.testing.assert_allclose(spec[v], np.broadcast_to(amp, spec.shape)[v], rtol=1e-3, atol=1e-3 * amp.max())


@pytest.mark.gpu
def test_dm_step_kernel_rejects_foreign_workspace():
    import cupy

    from xstereo_gpu.phasing._dm_kernel import DMKernelWorkspace

    x, amp, val, sup = (cupy.asarray(a) for a in _step_inputs(np.random.default_rng(21)))
    other = DMKernelWorkspace(x[:, :2])
    with pytest.raises(InputError, match=r"dm_step_kernel\.work"):
        dm_step_kernel(x, amp, val, sup, work=other)
    with pytest.raises(InputError, match=r"dm_step_kernel\.x"):
        dm_step_kernel(x.transpose(0, 1, 3, 2), amp, val, sup)  # not C-contiguous


@pytest.mark.gpu
@pytest.mark.parametrize("per_run_support", [True, False])
def test_track_best_kernel_matches_twin(per_run_support):
    import cupy

    rng = np.random.default_rng(30)
    shape = (V, R, N, N)
    sup = rng.random((V, R if per_run_support else 1, N, N)) > 0.5
    best = np.full(shape, 7 + 7j, np.complex64)  # sentinel: every copied pixel must change
    best_eps = np.full((V, R), np.inf, np.float32)
    best_g, best_eps_g, sup_g = cupy.asarray(best), cupy.asarray(best_eps), cupy.asarray(sup)
    for it in range(6):
        est = random_complex(rng, shape)
        eps = rng.random((V, R)).astype(np.float32)
        if it == 2:
            eps[0, 0] = np.nan  # never better
            eps[1, 1] = best_eps[1, 1]  # a tie is not an improvement
        enabled = it != 3
        best, best_eps = _track_best_twin(best, best_eps, est, eps, sup, enabled)
        out = track_best_kernel(best_g, best_eps_g, cupy.asarray(est), cupy.asarray(eps), sup_g, enabled)
        assert out[0] is best_g and out[1] is best_eps_g
        np.testing.assert_array_equal(cupy.asnumpy(best_eps_g), best_eps)
        np.testing.assert_array_equal(cupy.asnumpy(best_g), best)
    assert not np.any(best == 7 + 7j)  # every run improved at least once from inf


# ----------------------------------------------------------------------------- wiring into the phasing loop


def test_kernels_keyword_is_ignored_on_numpy():
    """The NumPy path is the twin whatever the keyword says (same numbers, bit for bit)."""
    from xstereo_gpu.config import PhasingOptions
    from xstereo_gpu.phasing.runs import PhaseRetrieval

    o = PhasingOptions(runs=2, iterations=12, final_er=2, check_every=4, shrinkwrap_every=4, select_from=0.2)
    inten, valid = phasing_problem(np)
    a = PhaseRetrieval(inten, valid, o, kernels=True).update(14)
    b = PhaseRetrieval(inten, valid, o, kernels=False).update(14)
    assert not a.uses_kernels and not b.uses_kernels
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.best, b.best)
    np.testing.assert_array_equal(a.best_eps, b.best_eps)


@pytest.mark.gpu
@pytest.mark.parametrize("env", [None, "0"])
def test_phasing_loop_kernels_match_the_twins_array_code_on_cupy(monkeypatch, env):
    """Kernel path vs the twins' CuPy code (escape hatch), a few iterations before chaos sets in."""
    import cupy

    from xstereo_gpu.config import PhasingOptions
    from xstereo_gpu.phasing.runs import PhaseRetrieval

    if env is None:
        monkeypatch.delenv("XSTEREO_KERNELS", raising=False)
    else:
        monkeypatch.setenv("XSTEREO_KERNELS", env)
    o = PhasingOptions(runs=3, iterations=8, final_er=2, check_every=2, shrinkwrap_every=4, select_from=0.0)
    inten, valid = phasing_problem(cupy, seed=41)
    default = PhaseRetrieval(inten, valid, o)
    assert default.uses_kernels == (env is None)
    twin = PhaseRetrieval(inten, valid, o, kernels=False)
    kern = PhaseRetrieval(inten, valid, o, kernels=True)
    assert not twin.uses_kernels and kern.uses_kernels
    for _ in range(3):
        twin.update(1)
        kern.update(1)
        _assert_close(cupy.asnumpy(kern.x), cupy.asnumpy(twin.x), rtol=1e-3)
        _assert_close(cupy.asnumpy(kern.best), cupy.asnumpy(twin.best), rtol=1e-3)
        np.testing.assert_allclose(cupy.asnumpy(kern.best_eps), cupy.asnumpy(twin.best_eps), rtol=1e-3)
    kern.update(10)  # through the shrink-wrap and the final ER (twin step, kernel tracking)
    assert kern.done() and kern.host_reads == 5
    assert np.all(np.isfinite(cupy.asnumpy(kern.best_eps)))
