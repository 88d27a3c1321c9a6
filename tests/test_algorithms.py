"""Phase retrieval: projections, steps, supports, registration, twin, prepare, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

from xstereo_gpu.backend import to_host
from xstereo_gpu.config import PhasingOptions
from xstereo_gpu.errors import InputError
from xstereo_gpu.phasing import (
    PhaseRetrieval,
    align_runs,
    align_views,
    autocorrelation_support,
    centre_shift,
    dm_step,
    er_step,
    fourier_constraint,
    fourier_shift,
    hio_step,
    modulus_projection,
    phase_retrieval,
    register_translation,
    shrink_wrap,
    single_pattern,
    split_patterns,
    support_projection,
    twin,
)


# ----------------------------------------------------------------------------- helpers


def _shapes(n: int = 128, dx: int = 0) -> np.ndarray:
    """Amplitude-only test object (~40 px): a rectangle, a disk and a wedge; ``dx`` moves two parts."""
    yy, xx = np.mgrid[:n, :n]
    c = n // 2
    o = np.zeros((n, n), np.float32)
    o[(abs(yy - c + 8) < 10) & (abs(xx - c + 6) < 14)] = 1.0
    o[(yy - c - 10) ** 2 + (xx - c - 8 - dx) ** 2 < 81] = 0.7
    o[(yy > c - 20) & (yy < c - 12) & (xx > c + 6 + dx) & (xx < c + 18 + dx - (yy - (c - 20)))] = 0.5
    return o


def _pattern(w: np.ndarray) -> np.ndarray:
    """Engine convention: I = |fftshift(fft2(w))|**2."""
    return np.abs(np.fft.fftshift(np.fft.fft2(w), axes=(-2, -1))) ** 2


def _beamstop(shape, radius: float) -> np.ndarray:
    n = shape[-1]
    yy, xx = np.mgrid[:n, :n]
    return np.broadcast_to((yy - n // 2) ** 2 + (xx - n // 2) ** 2 > radius**2, shape).copy()


def _ncc_allow_twin(view: np.ndarray, truth: np.ndarray) -> float:
    """Normalised cross-correlation of |view| with |truth| after registration, twin allowed."""
    a = np.abs(view).astype(np.complex64)
    b = np.abs(truth).astype(np.complex64)
    return max(float(register_translation(b, c, upsample=4)[1]) for c in (a, twin(a)))


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _random_complex(rng, shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


# ----------------------------------------------------------------------------- projections


def test_modulus_projection_idempotent_and_free_pixels(xp):
    rng = np.random.default_rng(0)
    v, r, n = 2, 3, 32
    x = _random_complex(rng, (v, r, n, n))
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
    np.testing.assert_allclose(np.abs(fy)[val_h], np.broadcast_to(amp_h, fx.shape)[val_h], rtol=1e-4, atol=1e-3)
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
    x = xp.asarray(_random_complex(rng, (2, 3, 16, 16)))
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
    truth = np.stack([_shapes(64), _shapes(64, dx=3)]).astype(np.complex64)
    valid = _beamstop(truth.shape, 1.5)
    amp, val = fourier_constraint(xp.asarray(_pattern(truth).astype(np.float32)), xp.asarray(valid))
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
    x = _random_complex(rng, (v, r, n, n))
    amp, val = fourier_constraint((rng.random((v, n, n)) * 10).astype(np.float32), rng.random((v, n, n)) > 0.1)
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


# ----------------------------------------------------------------------------- supports


def test_autocorrelation_support_with_beamstop():
    truth = _shapes(128)[None].astype(np.complex64)
    inten = _pattern(truth).astype(np.float32)
    full = autocorrelation_support(inten, np.ones(inten.shape, bool), threshold=0.04)
    assert full.shape == (1, 128, 128) and full.dtype == bool
    # Contains every pixel of the object's autocorrelation support, centred on (N//2, N//2).
    ac = np.fft.fftshift(np.abs(np.fft.ifft2(np.abs(np.fft.fft2(truth[0])) ** 2)))
    assert np.all(full[0][ac > 0.1 * ac.max()])
    assert not np.any(full[0][~ndi.binary_dilation(ac > 1e-3 * ac.max(), iterations=3)])
    assert full[0, 64, 64]
    # A beamstop (r = 2) must not inflate the support to most of the frame: the fill keeps it
    # close to the full-data support; without the fill it is several times larger.
    valid = _beamstop(inten.shape, 2)
    filled = autocorrelation_support(inten * valid, valid, threshold=0.04)
    plain = autocorrelation_support(inten * valid, valid, threshold=0.04, fill_iterations=0)
    assert filled.sum() < 1.2 * full.sum()
    assert (filled & full).sum() > 0.8 * full.sum()
    assert plain.sum() > 2 * full.sum()


def test_shrink_wrap_per_run(xp):
    n = 32
    x = np.zeros((1, 2, n, n), np.complex64)
    x[0, 0, 10:14, 10:14] = 1.0
    x[0, 1, 20:22, 5:9] = 100.0  # a different scale: the threshold is relative per run
    s = shrink_wrap(xp.asarray(x), sigma=0.5, threshold=0.3)
    s = to_host(s)
    assert s.shape == x.shape and s.dtype == bool
    assert s[0, 0, 10:14, 10:14].all() and s[0, 1, 20:22, 5:9].all()
    assert s[0, 0].sum() < 40 and s[0, 1].sum() < 30
    assert not s[0, 0, 20:22, 5:9].any()


# ----------------------------------------------------------------------------- registration


def test_register_translation_subpixel(xp):
    rng = np.random.default_rng(3)
    n = 64
    img = np.zeros((n, n), np.complex64)
    img[20:40, 18:44] = _random_complex(rng, (20, 26))
    img = np.fft.ifft2(np.fft.fft2(img) * np.exp(-0.002 * np.add.outer(np.fft.fftfreq(n) ** 2 * n**2,
                                                                         np.fft.fftfreq(n) ** 2 * n**2)))
    img = xp.asarray(img.astype(np.complex64))
    true = np.array([3.3, -7.6])
    moved = fourier_shift(img, -true)  # reference = moved shifted by +true
    shifts, peak = register_translation(img, moved, upsample=20)
    assert shifts.shape == (2,) and peak.shape == ()
    np.testing.assert_allclose(to_host(shifts), true, atol=0.05)
    assert float(peak) > 0.99

    # Batched over leading axes, with a global phase on each image.
    batch = np.array([[3.3, -7.6], [-12.25, 0.4], [0.0, 0.0], [5.55, 20.1]])
    moved = fourier_shift(xp.broadcast_to(img, (4, n, n)), -xp.asarray(batch))
    moved = moved * xp.asarray(np.exp(1j * np.array([0.0, 1.0, -2.0, 3.0])).astype(np.complex64))[:, None, None]
    shifts, peak = register_translation(img, moved.reshape(2, 2, n, n), upsample=20)
    assert shifts.shape == (2, 2, 2) and peak.shape == (2, 2)
    np.testing.assert_allclose(to_host(shifts).reshape(4, 2), batch, atol=0.05)
    assert float(peak.min()) > 0.99
    # Integer registration only.
    shifts, _ = register_translation(img, moved, upsample=1)
    np.testing.assert_allclose(to_host(shifts), np.round(batch), atol=1.0)


def test_fourier_shift_integer_is_roll(xp):
    rng = np.random.default_rng(4)
    x = _random_complex(rng, (2, 16, 16))
    y = fourier_shift(xp.asarray(x), np.array([[3.0, -5.0], [0.0, 7.0]]))
    np.testing.assert_allclose(to_host(y[0]), np.roll(x[0], (3, -5), axis=(0, 1)), atol=1e-5)
    np.testing.assert_allclose(to_host(y[1]), np.roll(x[1], (0, 7), axis=(0, 1)), atol=1e-5)
    real = fourier_shift(xp.asarray(x.real.copy()), np.array([1.0, 2.0]))
    assert real.dtype == np.float32
    np.testing.assert_allclose(to_host(real), np.roll(x.real, (1, 2), axis=(-2, -1)), atol=1e-5)


def test_twin(xp):
    rng = np.random.default_rng(5)
    x = xp.asarray(_random_complex(rng, (3, 16, 16)))
    t = twin(x)
    np.testing.assert_array_equal(to_host(twin(t)), to_host(x))
    np.testing.assert_allclose(np.abs(np.fft.fft2(to_host(t))), np.abs(np.fft.fft2(to_host(x))), rtol=1e-4, atol=1e-4)
    # Point inversion about pixel (N//2, N//2), conjugated.
    xh, th = to_host(x), to_host(t)
    assert th[0, 8, 8] == np.conj(xh[0, 8, 8])
    assert th[0, 8 + 3, 8 - 2] == np.conj(xh[0, 8 - 3, 8 + 2])


def test_centre_shift_handles_wrapped_objects():
    n = 32
    x = np.zeros((n, n), np.complex64)
    x[-2:, 4:8] = 1.0
    x[:3, 4:8] = 1.0  # object wrapped across the top/bottom edge, centred at row 0.0 / col 5.5
    d = centre_shift(x)
    assert abs(abs(d[0]) - 16.0) < 0.05  # +-16 rows: the same cyclic shift
    np.testing.assert_allclose(d[1], 16 - 5.5, atol=0.05)
    centred = fourier_shift(x, d)
    np.testing.assert_allclose(centre_shift(centred), [0.0, 0.0], atol=0.05)
    rows = (np.abs(centred) ** 2).sum(axis=1)
    assert rows[14:19].sum() > 0.99 * rows.sum()  # the object's rows now sit around row 16


def test_align_runs_recovers_twins_shifts_and_phases(xp):
    truth = _shapes(64).astype(np.complex64) * np.exp(1j * np.linspace(0, 1, 64))[None, :].astype(np.complex64)
    shifts = np.array([[0.0, 0.0], [4.3, -2.5], [-6.0, 9.75], [1.5, 1.5]])
    runs = fourier_shift(np.broadcast_to(truth, (4, 64, 64)), shifts)
    runs[2] = twin(runs[2])
    runs[3] = twin(runs[3])
    runs *= np.exp(1j * np.array([0.3, -1.0, 2.0, 0.5]))[:, None, None].astype(np.complex64)
    runs = np.stack([runs, runs[::-1]])  # two views; view 1 has a twinned reference
    aligned, info = align_runs(xp.asarray(runs), upsample=20, eps=xp.asarray([[0, 1, 2, 3], [3, 2, 1, 0.0]]))
    a = to_host(aligned)
    assert a.shape == runs.shape and a.dtype == np.complex64
    np.testing.assert_array_equal(to_host(info["reference"]), [0, 3])
    tw = to_host(info["twin"])
    np.testing.assert_array_equal(tw[0], [False, False, True, True])
    np.testing.assert_array_equal(tw[1], [True, True, False, False])  # reference: run 3 = untwinned
    for v in range(2):
        for r in range(4):
            assert _rel_err(a[v, r], a[v, 0]) < 0.01
    assert float(to_host(info["peak"]).min()) > 0.999
    avg = to_host(info["average"])
    np.testing.assert_allclose(avg, a.mean(axis=1), atol=1e-5)
    # The reference is centred on (N//2, N//2) with sum(ref) real positive.
    np.testing.assert_allclose(centre_shift(avg[0]), [0.0, 0.0], atol=0.05)
    assert abs(np.angle(avg[0].sum())) < 1e-3


def test_align_views_same_orientation(xp):
    left = _shapes(64).astype(np.complex64) * np.exp(1j * 0.4 * _shapes(64)).astype(np.complex64)
    left = fourier_shift(left, np.array([5.0, -3.0]))  # off centre
    right = twin(fourier_shift(left, np.array([-7.4, 11.2]))) * np.complex64(np.exp(0.7j))
    aligned, info = align_views(xp.asarray(np.stack([left, right])), upsample=20)
    a = to_host(aligned)
    assert a.shape == (2, 64, 64)
    assert info["right_twin"] is True
    assert _rel_err(a[1], a[0]) < 0.01
    assert info["peak"] > 0.999
    np.testing.assert_allclose(centre_shift(a[0]), [0.0, 0.0], atol=0.05)
    # Untwinned right view stays untwinned.
    aligned2, info2 = align_views(xp.asarray(np.stack([left, fourier_shift(left, np.array([0.0, 6.5]))])))
    assert info2["right_twin"] is False
    assert _rel_err(to_host(aligned2)[1], to_host(aligned2)[0]) < 0.01


# ----------------------------------------------------------------------------- prepare


def _two_pattern_frame():
    h, w, n = 96, 160, 64
    frame = np.zeros((h, w), np.float32)
    centres = np.array([[40.2, 45.0], [52.0, 112.6]])
    yy, xx = np.mgrid[:h, :w]
    for k, (cy, cx) in enumerate(np.round(centres)):
        frame += (k + 1) * 1000.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 50.0)
        frame[int(cy), int(cx)] = 1e6 * (k + 1)  # zero-frequency marker
    mask = np.zeros((h, w), np.uint32)
    mask[40, 49] = 0x10  # a beamstop pixel in the left pattern
    return frame, mask, centres, n


def test_split_patterns_centres_and_masks():
    frame, mask, centres, n = _two_pattern_frame()
    inten, valid = split_patterns(frame, mask, centres, n)
    assert inten.shape == (2, n, n) and inten.dtype == np.float32 and valid.dtype == bool
    # Zero frequency on crop pixel (N//2, N//2) of each view.
    assert inten[0, n // 2, n // 2] == 1e6 and inten[1, n // 2, n // 2] == 2e6
    assert np.argmax(inten[0]) == np.ravel_multi_index((n // 2, n // 2), (n, n))
    # CXI mask bit -> invalid and zeroed.
    assert not valid[0, n // 2, n // 2 + 4] and inten[0, n // 2, n // 2 + 4] == 0
    # Overlap: frame (52, 76) is 33.2 px from the left centre and 36.6 px from the right one.
    assert valid[0, n // 2 + 12, n // 2 + 31]
    assert not valid[1, 0, 1]  # frame (20, 82): 44.3 px from the right centre, 42.2 from the left
    # Every right-crop pixel nearer the left centre is invalid, every other one valid.
    fr = np.arange(n)[:, None] + 52 - n // 2
    fc = np.arange(n)[None, :] + 113 - n // 2
    nearer_left = (fr - 40.2) ** 2 + (fc - 45.0) ** 2 < (fr - 52.0) ** 2 + (fc - 112.6) ** 2
    assert nearer_left.any()
    assert not valid[1][nearer_left].any() and valid[1][~nearer_left].all()
    assert np.all(inten[~valid] == 0)

    big, bigvalid = split_patterns(frame, mask, centres, 128)
    # Left crop of 128 around (40, 45): rows -24..103 and cols -19..108; outside rows/cols invalid.
    assert not bigvalid[0, :24].any() and not bigvalid[0, :, :19].any()
    assert not bigvalid[0, 64 + 56:].any()  # frame rows >= 96
    # overlap_ratio < 1 masks less of the overlap than the bisector.
    _, v2 = split_patterns(frame, mask, centres, n, overlap_ratio=0.8)
    assert v2.sum() > valid.sum()


def test_split_patterns_validation():
    frame, mask, centres, n = _two_pattern_frame()
    with pytest.raises(InputError, match="centres"):
        split_patterns(frame, mask, np.array([[1.0, 2.0]]), n)
    with pytest.raises(InputError, match="centres"):
        split_patterns(frame, mask, np.array([[1.0, 2.0], [500.0, 2.0]]), n)
    with pytest.raises(InputError, match="mask"):
        split_patterns(frame, mask[:-1], centres, n)
    with pytest.raises(InputError, match="size"):
        split_patterns(frame, mask, centres, 0)


def test_single_pattern_finds_centre():
    truth = _shapes(64).astype(np.complex64)
    pattern = _pattern(truth).astype(np.float32)  # zero frequency at (32, 32)
    frame = np.zeros((100, 120), np.float32)
    frame[10:74, 30:94] = pattern  # zero frequency at frame (42, 62)
    mask = np.zeros(frame.shape, np.uint32)
    yy, xx = np.mgrid[:100, :120]
    mask[(yy - 42) ** 2 + (xx - 62) ** 2 <= 4] = 0x10  # beamstop
    inten, valid = single_pattern(frame, mask, size=64)
    assert inten.shape == (1, 64, 64) and valid.shape == (1, 64, 64)
    np.testing.assert_allclose(inten[0][valid[0]], np.where(valid[0], pattern, 0)[valid[0]])
    assert not valid[0, 32, 32]
    inten, valid = single_pattern(frame)  # default size: largest even square around the centre
    assert inten.shape == (1, 84, 84)
    assert inten[0, 42, 42] == pattern[32, 32]
    inten, _ = single_pattern(frame, centre=(42.0, 62.0), size=16)
    assert inten[0, 8, 8] == pattern[32, 32]


# ----------------------------------------------------------------------------- runs


def _stereo_problem(n=128, photons=1e8, beamstop=2.0):
    truth = np.stack([_shapes(n), _shapes(n, dx=4)]).astype(np.complex64)
    inten = _pattern(truth)
    inten = (inten / inten.sum(axis=(-2, -1), keepdims=True) * photons).astype(np.float32)
    valid = _beamstop(inten.shape, beamstop)
    return truth, np.where(valid, inten, 0).astype(np.float32), valid


@pytest.mark.slow
def test_phase_retrieval_recovers_both_views():
    truth, inten, valid = _stereo_problem()
    opts = PhasingOptions(runs=6, iterations=200, final_er=20, check_every=20)
    calls = []
    res = phase_retrieval(inten, valid, opts, progress=lambda d, t: calls.append((d, t)))
    assert res.views.shape == (2, 128, 128) and res.views.dtype == np.complex64
    assert res.best.shape == (2, 6, 128, 128) and res.best_eps.shape == (2, 6)
    assert res.supports.shape == (2, 128, 128) and res.supports.dtype == bool
    assert res.iterations == 220
    assert calls[-1] == (220, 220) and len(calls) == 11
    for v in range(2):
        assert _ncc_allow_twin(res.views[v], truth[v]) > 0.9
    # The supports enclose the reconstructed object and are far smaller than the frame.
    amp = np.abs(res.views)
    for v in range(2):
        inside = amp[v][res.supports[v]].sum() / amp[v].sum()
        assert inside > 0.9 and res.supports[v].sum() < 0.15 * 128 * 128
    # History: costs every check_every iterations, best eps never above any recorded eps.
    assert res.history["eps"].shape == (11, 2, 6)
    np.testing.assert_array_equal(res.history["iterations"], np.arange(20, 221, 20))
    assert np.all(res.best_eps <= res.history["eps"].min(axis=0) + 1e-7)
    assert float(res.best_eps.max()) < 0.05


def test_hio_recovers_a_single_view():
    # V = 1 (a single pattern); the ~40 px object in a 96 grid (oversampling > 2 per axis).
    big = np.zeros((1, 96, 96), np.complex64)
    big[:, 16:80, 16:80] = _shapes(64)
    valid = _beamstop(big.shape, 1.5)
    inten = (_pattern(big) * valid).astype(np.float32)
    res = phase_retrieval(inten, valid, PhasingOptions(algorithm="hio", runs=4, iterations=150, final_er=20))
    assert res.views.shape == (1, 96, 96)
    assert _ncc_allow_twin(res.views[0], big[0]) > 0.9


def test_phase_retrieval_state_reproducible_and_runs_differ():
    truth, inten, valid = _stereo_problem(n=48, beamstop=1.0)
    opts = PhasingOptions(runs=3, iterations=10, final_er=4, check_every=4, shrinkwrap_every=5)
    a = PhaseRetrieval(inten, valid, opts)
    b = PhaseRetrieval(inten, valid, opts)
    assert a.max_iter == 14 and a.iteration == 0 and not a.done()
    x0 = a.x.copy()
    assert a.support.shape == (2, 3, 48, 48)
    # Different random starts per run and per view.
    assert not np.allclose(x0[0, 0], x0[0, 1]) and not np.allclose(x0[0, 0], x0[1, 0])
    a.update(6).update(100)
    b.update(14)
    assert a.done() and a.iteration == 14
    np.testing.assert_array_equal(a.best, b.best)
    np.testing.assert_array_equal(a.best_eps, b.best_eps)
    assert a.cost_iterations == [4, 8, 12, 14] and len(a.costs) == 4 and a.costs[0].shape == (2, 3)
    c = PhaseRetrieval(inten, valid, PhasingOptions(runs=3, iterations=10, final_er=4, seed=1))
    assert not np.allclose(c.x, x0)
    # A user support (V, N, N) is used as given, then shrink-wrapped per run.
    sup = np.zeros((2, 48, 48), bool)
    sup[:, 10:38, 10:38] = True
    d = PhaseRetrieval(inten, valid, opts, support=sup)
    assert np.all(np.abs(d.x[:, :, ~sup[0]]) == 0)
    d.update(5)
    assert d.support.shape == (2, 3, 48, 48) and not np.array_equal(d.support[0, 0], sup[0])


def test_phase_retrieval_validation():
    truth, inten, valid = _stereo_problem(n=32, beamstop=1.0)
    with pytest.raises(InputError, match="intensities"):
        PhaseRetrieval(inten[0], valid[0])
    with pytest.raises(InputError, match="valid"):
        PhaseRetrieval(inten, valid[:1])
    with pytest.raises(InputError, match="valid"):
        PhaseRetrieval(inten, valid.astype(np.uint8))
    bad = inten.copy()
    bad[0, 3, 3] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        PhaseRetrieval(bad, valid)
    v = valid.copy()
    v[0, 3, 3] = False
    PhaseRetrieval(bad, v, PhasingOptions(runs=1))  # a NaN at an invalid pixel is fine
    with pytest.raises(InputError, match="support"):
        PhaseRetrieval(inten, valid, support=np.ones((2, 16, 16), bool))
    with pytest.raises(InputError, match="options"):
        PhaseRetrieval(inten, valid, {"runs": 2})


# ----------------------------------------------------------------------------- GPU parity


@pytest.mark.gpu
def test_gpu_parity_steps_and_registration():
    import cupy as cp

    rng = np.random.default_rng(7)
    v, r, n = 2, 3, 32
    x = _random_complex(rng, (v, r, n, n))
    amp, val = fourier_constraint((rng.random((v, n, n)) * 10).astype(np.float32), rng.random((v, n, n)) > 0.1)
    s = rng.random((v, r, n, n)) > 0.5
    for step in (dm_step, hio_step, er_step):
        xn, en, epn = step(x.copy(), amp, val, s)
        xc, ec, epc = step(cp.asarray(x), cp.asarray(amp), cp.asarray(val), cp.asarray(s))
        assert isinstance(xc, cp.ndarray) and xc.dtype == np.complex64
        np.testing.assert_allclose(xc.get(), xn, atol=1e-4)
        np.testing.assert_allclose(ec.get(), en, atol=1e-4)
        np.testing.assert_allclose(epc.get(), epn, rtol=1e-4)
    img = fourier_shift(_shapes(64).astype(np.complex64), np.array([1.3, -2.2]))
    moved = fourier_shift(np.stack([img, img]), np.array([[4.45, -7.6], [-10.1, 3.35]]))
    sh_n, pk_n = register_translation(img, moved, upsample=20)
    sh_c, pk_c = register_translation(cp.asarray(img), cp.asarray(moved), upsample=20)
    assert isinstance(sh_c, cp.ndarray)
    np.testing.assert_allclose(sh_c.get(), sh_n, atol=1e-6)
    np.testing.assert_allclose(pk_c.get(), pk_n, rtol=1e-4)
    aligned_n, _ = align_views(np.stack([img, twin(moved[0])]))
    aligned_c, _ = align_views(cp.asarray(np.stack([img, twin(moved[0])])))
    np.testing.assert_allclose(aligned_c.get(), aligned_n, atol=1e-4)
    inten = _pattern(np.stack([_shapes(64), _shapes(64, dx=3)])).astype(np.float32)
    valid = _beamstop(inten.shape, 2)
    sup_n = autocorrelation_support(inten * valid, valid)
    sup_c = autocorrelation_support(cp.asarray(inten * valid), cp.asarray(valid))
    assert int((sup_c.get() != sup_n).sum()) <= 4  # pixels at the threshold may flip
    sw_n = shrink_wrap(np.stack([img, moved[1]]), sigma=2.0, threshold=0.12)
    sw_c = shrink_wrap(cp.asarray(np.stack([img, moved[1]])), sigma=2.0, threshold=0.12)
    assert int((sw_c.get() != sw_n).sum()) <= 4


@pytest.mark.gpu
def test_gpu_phase_retrieval_end_to_end():
    import cupy as cp

    truth, inten, valid = _stereo_problem()
    res = phase_retrieval(cp.asarray(inten), cp.asarray(valid), PhasingOptions(runs=6, iterations=200, final_er=20))
    assert isinstance(res.views, cp.ndarray) and isinstance(res.best, cp.ndarray)
    for v in range(2):
        assert _ncc_allow_twin(res.views[v].get(), truth[v]) > 0.9
    aligned, info = align_views(res.views)
    assert isinstance(aligned, cp.ndarray) and aligned.shape == (2, 128, 128)
