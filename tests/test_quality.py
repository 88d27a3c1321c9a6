"""Phasing quality: PRTF and its resolution, 10-90 % edge resolution, error against the true view."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi

from xstereo_gpu.backend import to_host
from xstereo_gpu.errors import InputError
from xstereo_gpu.phasing.align import fourier_shift, twin
from xstereo_gpu.phasing.quality import edge_resolution, prtf, prtf_resolution, view_error

N = 128


def _object(seed: int = 0, n: int = N) -> np.ndarray:
    """A complex exit wave: rectangle with a smooth random phase, on an n x n grid."""
    rng = np.random.default_rng(seed)
    c = np.arange(n) - n // 2
    yy, xx = np.meshgrid(c, c, indexing="ij")
    phase = 5.0 * ndi.gaussian_filter(rng.normal(size=(n, n)), 3)
    return (((np.abs(yy) < 20) & (np.abs(xx) < 25)) * np.exp(1j * phase)).astype(np.complex64)


def _intensity(w: np.ndarray) -> np.ndarray:
    return (np.abs(np.fft.fftshift(np.fft.fft2(w), axes=(-2, -1))) ** 2).astype(np.float32)


def _lowpass(w: np.ndarray, s: float) -> np.ndarray:
    """``w`` with its Fourier amplitudes multiplied by exp(-q**2 / (2 s**2)), q in cycles/pixel."""
    f = np.fft.fftfreq(w.shape[-1])
    h = np.exp(-(f[:, None] ** 2 + f[None, :] ** 2) / (2 * s * s))
    return np.fft.ifft2(np.fft.fft2(w) * h).astype(np.complex64)


# ------------------------------------------------------------------------------------------ PRTF
def test_prtf_of_exact_view_is_one_and_ignores_shift_and_twin(xp):
    w = _object()
    inten = _intensity(w)
    views = np.stack([fourier_shift(w, (3.4, -7.2)), twin(w)])  # same |F| as w
    q, p = prtf(xp.asarray(views), xp.asarray(np.stack([inten, inten])))
    assert type(p) is type(xp.asarray(views))
    q, p = to_host(q), to_host(p)
    assert q.shape == (N // 2,) and q.dtype == np.float64
    assert p.shape == (2, N // 2) and p.dtype == np.float32
    assert q[0] == 0.0 and np.all(np.diff(q) > 0) and q[-1] < 0.5
    np.testing.assert_allclose(p, 1.0, atol=1e-4)


def test_prtf_of_lowpassed_view_follows_transfer_and_resolution(xp):
    w = _object(1)
    s = 0.12  # cycles/pixel
    q, p = prtf(xp.asarray(_lowpass(w, s)), xp.asarray(_intensity(w)))
    q, p = to_host(q), to_host(p)
    np.testing.assert_allclose(p, np.exp(-(q**2) / (2 * s * s)), atol=2e-3)
    # 1/e at q = s sqrt(2): half-period 1 / (2 s sqrt 2) pixels
    res = prtf_resolution(q, p)
    assert isinstance(res, float)
    assert res == pytest.approx(1 / (2 * s * math.sqrt(2)), rel=0.01)
    # with a pixel size, q in 1/m and resolution in m
    pixel = 49e-9
    qm, pm = prtf(xp.asarray(_lowpass(w, s)), xp.asarray(_intensity(w)), pixel_m=pixel, n_shells=32)
    qm, pm = to_host(qm), to_host(pm)
    assert qm.shape == (32,) and pm.shape == (32,)
    assert prtf_resolution(qm, pm) == pytest.approx(pixel / (2 * s * math.sqrt(2)), rel=0.02)


def test_prtf_masked_shells_are_nan_and_skipped(xp):
    w = _object(2)
    inten = _intensity(w)
    c = np.arange(N) - N // 2
    r = np.hypot(c[:, None], c[None, :])
    valid = r >= 4.0  # beamstop: shells 0..3 have no valid pixel
    s = 0.1
    q, p = prtf(xp.asarray(_lowpass(w, s)), xp.asarray(inten), xp.asarray(valid))
    q, p = to_host(q), to_host(p)
    assert np.all(np.isnan(p[:4])) and np.all(np.isfinite(p[4:]))
    np.testing.assert_allclose(p[4:], np.exp(-(q[4:] ** 2) / (2 * s * s)), atol=2e-3)
    assert prtf_resolution(q, p) == pytest.approx(1 / (2 * s * math.sqrt(2)), rel=0.01)
    # zero intensities are left out, whatever the mask says
    inten0 = inten.copy()
    inten0[r >= 40] = 0.0
    _, p0 = prtf(xp.asarray(w), xp.asarray(inten0))
    p0 = to_host(p0)
    assert np.all(np.isnan(p0[41:])) and np.allclose(p0[:40], 1.0, atol=1e-4)


def test_prtf_resolution_edge_cases():
    q = np.linspace(0, 0.5, 11)
    assert prtf_resolution(q, np.ones(11)) == pytest.approx(1.0)  # never crosses: 1 / (2 q_max)
    p = np.array([1.0, 0.9, np.nan, 0.5, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    # crossing between q=0.15 (0.5) and q=0.2 (0.2), NaN shell skipped
    qc = 0.15 + (1 / math.e - 0.5) * 0.05 / (0.2 - 0.5)
    assert prtf_resolution(q, p) == pytest.approx(1 / (2 * qc))
    assert prtf_resolution(q, p, threshold=0.95) == pytest.approx(1 / (2 * (0.0 + 0.05 * 0.05 / 0.1)))
    batched = prtf_resolution(q, np.stack([np.ones(11), p]))
    assert (
        batched.shape == (2,)
        and batched[0] == pytest.approx(1.0)
        and batched[1] == pytest.approx(1 / (2 * qc))
    )
    assert math.isinf(prtf_resolution(q, np.full(11, 0.1)))
    assert math.isnan(prtf_resolution(q, np.full(11, np.nan)))


def test_prtf_rejects_bad_input():
    w = _object()
    with pytest.raises(InputError, match="prtf.intensity"):
        prtf(w, _intensity(w)[:-1])
    with pytest.raises(InputError, match="prtf.valid"):
        prtf(w, _intensity(w), np.ones((N, N), dtype=np.uint8))
    with pytest.raises(InputError, match="prtf.n_shells"):
        prtf(w, _intensity(w), n_shells=0)
    with pytest.raises(InputError, match="prtf_resolution.prtf"):
        prtf_resolution(np.arange(5.0), np.ones(4))


# ----------------------------------------------------------------------------- edge resolution
def _blurred_square(
    sigma: float, seed: int, angle_deg: float = 20.0, n: int = N, ring: float = 0.0
) -> np.ndarray:
    """Rotated 60 x 44 px rectangle (amplitude 1 on 0.2), area-sampled, Gaussian-blurred, noisy.

    ``ring > 0`` keeps only a frame ``ring`` pixels wide along its border (a slit, as in the
    cut membrane of the cross sample). Area sampling adds a 1-pixel box to the blur: the
    effective Gaussian sigma is ``sqrt(sigma**2 + 1/12)``.
    """
    sup = 4
    yy, xx = (np.mgrid[: n * sup, : n * sup] + 0.5) / sup - n / 2
    th = np.deg2rad(angle_deg)
    u = np.cos(th) * xx + np.sin(th) * yy
    v = -np.sin(th) * xx + np.cos(th) * yy
    inside = (np.abs(u) < 30) & (np.abs(v) < 22)
    if ring > 0:
        inside &= ~((np.abs(u) < 30 - ring) & (np.abs(v) < 22 - ring))
    img = inside.astype(float).reshape(n, sup, n, sup).mean(axis=(1, 3))
    rng = np.random.default_rng(seed)
    return (0.2 + 0.8 * ndi.gaussian_filter(img, sigma) + rng.normal(0, 0.01, (n, n))).astype(np.float32)


@pytest.mark.parametrize(("sigma", "ring"), [(1.0, 0.0), (2.0, 0.0), (3.0, 0.0), (1.0, 6.0)])
def test_edge_resolution_of_gaussian_blurred_step(xp, sigma, ring):
    pixel = 15e-9
    img = _blurred_square(sigma, seed=int(10 * sigma + ring), ring=ring)
    # a complex view with a smooth phase: the amplitude is measured
    c = np.arange(N) - N // 2
    view = img * np.exp(1j * 0.01 * (c[:, None] + c[None, :])).astype(np.complex64)
    r = edge_resolution(xp.asarray(view), pixel_m=pixel)
    expected = 2.563 * math.sqrt(sigma**2 + 1 / 12) * pixel  # 10-90 % width of a Gaussian-blurred step
    assert r["median_m"] == pytest.approx(expected, rel=0.05)
    assert r["n_edges"] >= 6 and r["n_edges"] <= r["n_candidates"] <= 24
    assert r["widths_m"].shape == (r["n_edges"],) and r["points_px"].shape == (r["n_edges"], 2)
    assert r["iqr_m"] < 0.1 * expected
    # the edges found lie on the rectangle's sides and their gradients are normal to them
    ang = np.rad2deg(np.arctan2(r["directions"][:, 0], r["directions"][:, 1])) % 90.0
    assert np.all(np.abs(ang - 20.0) < 6.0)
    np.testing.assert_allclose(np.linalg.norm(r["directions"], axis=1), 1.0, atol=1e-9)
    # the same figure from the intensity of a view whose amplitude is sqrt(img)
    ri = edge_resolution(xp.asarray(np.sqrt(img)), pixel_m=pixel, quantity="intensity")
    assert ri["median_m"] == pytest.approx(r["median_m"], rel=0.03)


def test_edge_resolution_of_real_signed_image(xp):
    # a real image (e.g. a phase image) is used as it is: an edge from -0.5 to +0.3 is not folded by abs()
    img = _blurred_square(1.5, seed=3) - 0.7
    r = edge_resolution(xp.asarray(img), pixel_m=1.0)
    assert r["median_m"] == pytest.approx(2.563 * math.sqrt(1.5**2 + 1 / 12), rel=0.05)
    assert r["n_edges"] >= 6


def test_edge_resolution_flat_image_and_bad_input():
    flat = np.full((64, 64), 0.5, dtype=np.float32)
    r = edge_resolution(flat, pixel_m=1e-8)
    assert r["n_edges"] == 0 and math.isnan(r["median_m"])
    with pytest.raises(InputError, match="edge_resolution.pixel_m"):
        edge_resolution(flat, pixel_m=0.0)
    with pytest.raises(InputError, match="edge_resolution.quantity"):
        edge_resolution(flat, pixel_m=1e-8, quantity="phase")
    with pytest.raises(InputError, match="edge_resolution.view"):
        edge_resolution(np.zeros((2, 64, 64)), pixel_m=1e-8)


# ----------------------------------------------------------------------------------- view error
def _smooth_object(seed: int) -> np.ndarray:
    w = _object(seed)
    return (ndi.gaussian_filter(w.real, 1.5) + 1j * ndi.gaussian_filter(w.imag, 1.5)).astype(np.complex64)


def test_view_error_recovers_twin_shift_phase_and_noise_level(xp):
    rng = np.random.default_rng(5)
    t = _smooth_object(3)
    s0 = (3.3, -5.7)
    c = 0.5 * np.exp(1.1j)
    sigma = 0.01
    noise = sigma * (rng.normal(size=(N, N)) + 1j * rng.normal(size=(N, N)))
    rec = (c * twin(fourier_shift(t, s0)) + noise).astype(np.complex64)
    r = view_error(xp.asarray(rec), xp.asarray(t))
    # twin(rec) = conj(c) shift(t, s0) + noise'; registering it onto t needs -s0; g = 1 / conj(c)
    assert r["twin"] is True
    np.testing.assert_allclose(r["shift_px"], [-s0[0], -s0[1]], atol=0.05)
    assert r["gain"] == pytest.approx(1 / abs(c), rel=0.01)
    assert r["phase_rad"] == pytest.approx(1.1, abs=0.01)
    expected = abs(1 / c) ** 2 * 2 * sigma**2 * N * N / float(np.sum(np.abs(t) ** 2))
    assert r["error"] == pytest.approx(expected, rel=0.1)
    assert r["rms_error"] == pytest.approx(math.sqrt(r["error"]))
    assert 0 < r["amplitude_error"] <= r["error"]


def test_view_error_batched_untwinned_and_exact(xp):
    t = np.stack([_smooth_object(4), _smooth_object(6)])
    rec = np.stack([np.exp(-0.7j) * fourier_shift(t[0], (-2.25, 1.5)), 3.0 * t[1]]).astype(np.complex64)
    r = view_error(xp.asarray(rec), xp.asarray(t), upsample=20)
    assert r["error"].shape == (2,) and r["shift_px"].shape == (2, 2) and r["twin"].dtype == bool
    assert not r["twin"].any()
    np.testing.assert_allclose(r["shift_px"], [[2.25, -1.5], [0.0, 0.0]], atol=0.05)
    np.testing.assert_allclose(r["gain"], [1.0, 1 / 3], rtol=1e-4)
    np.testing.assert_allclose(r["phase_rad"], [0.7, 0.0], atol=1e-3)
    assert np.all(r["error"] < 1e-6)
    # unrelated data (complex noise) explain almost nothing of the true view
    rng = np.random.default_rng(7)
    junk = (rng.normal(size=(N, N)) + 1j * rng.normal(size=(N, N))).astype(np.complex64)
    other = view_error(xp.asarray(junk), xp.asarray(t[0]))
    assert 0.9 < other["error"] <= 1.0


def test_view_error_rejects_mismatched_grids():
    with pytest.raises(InputError, match="view_error.recovered"):
        view_error(np.zeros((64, 64), np.complex64), np.zeros((32, 32), np.complex64))
    with pytest.raises(InputError, match="view_error.upsample"):
        view_error(np.zeros((8, 8), np.complex64), np.zeros((8, 8), np.complex64), upsample=0)
