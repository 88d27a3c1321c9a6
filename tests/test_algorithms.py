"""Phase-retrieval steps (xstereo_gpu.phasing.algorithms): the modulus and support projections, the DM,
HIO and ER steps, and their GPU parity (with registration and supports)."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import beamstop_mask, diffraction_pattern, random_complex, shapes_object

from xstereo_gpu.backend import to_host
from xstereo_gpu.config import PhasingOptions
from xstereo_gpu.phasing import (
    align_views,
    autocorrelation_support,
    dm_step,
    er_step,
    fourier_constraint,
    fourier_shift,
    hio_step,
    modulus_projection,
    register_translation,
    shrink_wrap,
    support_projection,
    twin,
)

# ----------------------------------------------------------------------------- projections


def test_modulus_projection_idempotent_and_free_pixels(xp):
    rng = np.random.default_rng(0)
    v, r, n = 2, 3, 32
    x = random_complex(rng, (v, r, n, n))
    inten = (rng.random((v, n, n)) * 100).astype(np.float32)
    valid = rng.random((v, n, n)) > 0.2
    amp, val = fourier_constraint(xp.asarray(inten), xp.asarray(valid))
    assert amp.shape == (v, 1, n, n) and val.shape == (v, 1, n, n) and amp.dtype == np.float32

    y = modulus_projection(xp.asarray(x), amp, val)
    assert y.dtype == np.complex64 and y.shape == x.shape
    z = modulus_projection(y, amp, val)
    np.testing.assert_allclose(to_host(z), to_host(y), atol=2e-5 * float(np.abs(to_host(y)).max()))

    fx, fy = np.fft.fft2(x), np.fft.fft2(to_host(y))
    amp_h, val_h = to_host(amp), np.broadcast_to(to_host(val), fx.shape)
    # Valid pixels get the measured modulus; invalid pixels keep the iterate's spectrum exactly.
    np.testing.assert_allclose(
        np.abs(fy)[val_h], np.broadcast_to(amp_h, fx.shape)[val_h], rtol=1e-4, atol=1e-3
    )
    np.testing.assert_allclose(fy[~val_h], fx[~val_h], rtol=1e-4, atol=1e-3)
    # The phase is kept where the modulus was imposed.
    ph = np.angle(fy[val_h] * np.conj(fx[val_h]))
    assert np.abs(ph).max() < 1e-3

    # ``out=x`` works in place.
    xx = xp.asarray(x)
    out = modulus_projection(xx, amp, val, out=xx)
    assert out is xx
    np.testing.assert_allclose(to_host(out), to_host(y), atol=1e-5 * float(np.abs(to_host(y)).max()))


def test_fourier_constraint_layout():
    n = 16
    inten = np.zeros((1, n, n), np.float32)
    inten[0, n // 2, n // 2] = 9.0  # zero frequency in the engine's layout
    inten[0, 0, 0] = -4.0  # negative (background-subtracted) value: clipped
    valid = np.ones((1, n, n), bool)
    valid[0, n // 2 + 1, n // 2] = False
    amp, val = fourier_constraint(inten, valid)
    assert amp[0, 0, 0, 0] == 3.0  # FFT order: zero frequency at [0, 0]
    assert not val[0, 0, 1, 0]
    assert amp.min() == 0.0


def test_support_projection_idempotent(xp):
    rng = np.random.default_rng(1)
    x = xp.asarray(random_complex(rng, (2, 3, 16, 16)))
    s = xp.asarray(rng.random((2, 3, 16, 16)) > 0.5)
    y = support_projection(x, s)
    np.testing.assert_array_equal(to_host(support_projection(y, s)), to_host(y))
    assert float(xp.abs(y[~s]).max()) == 0.0
    np.testing.assert_array_equal(to_host(y[s]), to_host(x[s]))
    # A (V, 1, N, N) support broadcasts over the runs.
    s1 = s[:, :1]
    y1 = support_projection(x, s1)
    np.testing.assert_array_equal(to_host(y1[:, 2]), to_host(x[:, 2] * s1[:, 0]))


@pytest.mark.parametrize("step", [dm_step, hio_step, er_step])
def test_true_object_is_fixed_point(xp, step):
    """At the true object with its true support, every step stands still (eps ~ 0)."""
    truth = np.stack([shapes_object(64), shapes_object(64, dx=3)]).astype(np.complex64)
    valid = beamstop_mask(truth.shape, 1.5)
    amp, val = fourier_constraint(
        xp.asarray(diffraction_pattern(truth).astype(np.float32)), xp.asarray(valid)
    )
    support = xp.asarray(np.abs(truth)[:, None] > 0)
    x = xp.asarray(np.repeat(truth[:, None], 2, axis=1))
    x_new, est, eps = step(x.copy(), amp, val, support)
    scale = float(np.sqrt((np.abs(truth) ** 2).sum(axis=(-2, -1))).min())
    assert eps.shape == (2, 2)
    assert float(eps.max()) < 1e-5 * scale
    np.testing.assert_allclose(to_host(x_new), to_host(x), atol=1e-5)
    np.testing.assert_allclose(to_host(est), to_host(x), atol=1e-5)


def test_dm_step_matches_textbook_formula():
    """The in-place, buffered update equals x + beta [P_S f_M(x) - P_M f_S(x)] written out."""
    rng = np.random.default_rng(2)
    v, r, n = 1, 2, 24
    x = random_complex(rng, (v, r, n, n))
    amp, val = fourier_constraint(
        (rng.random((v, n, n)) * 10).astype(np.float32), rng.random((v, n, n)) > 0.1
    )
    s = rng.random((v, r, n, n)) > 0.6
    beta, (gs, gm) = 0.8, PhasingOptions(beta=0.8).gammas
    assert (gs, gm) == (-1 / 0.8, 1 / 0.8)

    def pm(z):
        return modulus_projection(z, amp, val)

    f_s = (1 + gs) * (x * s) - gs * x
    f_m = (1 + gm) * pm(x) - gm * x
    expected = x + beta * ((f_m * s) - pm(f_s))
    x_new, est, eps = dm_step(x.copy(), amp, val, s, beta=beta, gammas=(gs, gm))
    np.testing.assert_allclose(x_new, expected, atol=1e-4)
    np.testing.assert_allclose(est, pm(f_s), atol=1e-4)
    np.testing.assert_allclose(eps, np.sqrt((np.abs(expected - x) ** 2).sum(axis=(-2, -1))), rtol=1e-3)


# ----------------------------------------------------------------------------- GPU parity


@pytest.mark.gpu
def test_gpu_parity_steps_and_registration():
    import cupy as cp

    rng = np.random.default_rng(7)
    v, r, n = 2, 3, 32
    x = random_complex(rng, (v, r, n, n))
    amp, val = fourier_constraint(
        (rng.random((v, n, n)) * 10).astype(np.float32), rng.random((v, n, n)) > 0.1
    )
    s = rng.random((v, r, n, n)) > 0.5
    for step in (dm_step, hio_step, er_step):
        xn, en, epn = step(x.copy(), amp, val, s)
        xc, ec, epc = step(cp.asarray(x), cp.asarray(amp), cp.asarray(val), cp.asarray(s))
        assert isinstance(xc, cp.ndarray) and xc.dtype == np.complex64
        np.testing.assert_allclose(xc.get(), xn, atol=1e-4)
        np.testing.assert_allclose(ec.get(), en, atol=1e-4)
        np.testing.assert_allclose(epc.get(), epn, rtol=1e-4)
    img = fourier_shift(shapes_object(64).astype(np.complex64), np.array([1.3, -2.2]))
    moved = fourier_shift(np.stack([img, img]), np.array([[4.45, -7.6], [-10.1, 3.35]]))
    sh_n, pk_n = register_translation(img, moved, upsample=20)
    sh_c, pk_c = register_translation(cp.asarray(img), cp.asarray(moved), upsample=20)
    assert isinstance(sh_c, cp.ndarray)
    np.testing.assert_allclose(sh_c.get(), sh_n, atol=1e-6)
    np.testing.assert_allclose(pk_c.get(), pk_n, rtol=1e-4)
    aligned_n, _ = align_views(np.stack([img, twin(moved[0])]))
    aligned_c, _ = align_views(cp.asarray(np.stack([img, twin(moved[0])])))
    np.testing.assert_allclose(aligned_c.get(), aligned_n, atol=1e-4)
    inten = diffraction_pattern(np.stack([shapes_object(64), shapes_object(64, dx=3)])).astype(np.float32)
    valid = beamstop_mask(inten.shape, 2)
    sup_n = autocorrelation_support(inten * valid, valid)
    sup_c = autocorrelation_support(cp.asarray(inten * valid), cp.asarray(valid))
    assert int((sup_c.get() != sup_n).sum()) <= 4  # pixels at the threshold may flip
    sw_n = shrink_wrap(np.stack([img, moved[1]]), sigma=2.0, threshold=0.12)
    sw_c = shrink_wrap(cp.asarray(np.stack([img, moved[1]])), sigma=2.0, threshold=0.12)
    assert int((sw_c.get() != sw_n).sum()) <= 4
