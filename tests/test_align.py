"""Registration and twins (xstereo_gpu.phasing.align): subpixel shifts, Fourier shifts, the twin, centring,
the alignment of runs and of views."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import random_complex, shapes_object

from xstereo_gpu.backend import to_host
from xstereo_gpu.phasing import (
    align_runs,
    align_views,
    centre_shift,
    fourier_shift,
    register_translation,
    twin,
)


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_register_translation_subpixel(xp):
    rng = np.random.default_rng(3)
    n = 64
    img = np.zeros((n, n), np.complex64)
    img[20:40, 18:44] = random_complex(rng, (20, 26))
    img = np.fft.ifft2(
        np.fft.fft2(img)
        * np.exp(-0.002 * np.add.outer(np.fft.fftfreq(n) ** 2 * n**2, np.fft.fftfreq(n) ** 2 * n**2))
    )
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
    moved = (
        moved * xp.asarray(np.exp(1j * np.array([0.0, 1.0, -2.0, 3.0])).astype(np.complex64))[:, None, None]
    )
    shifts, peak = register_translation(img, moved.reshape(2, 2, n, n), upsample=20)
    assert shifts.shape == (2, 2, 2) and peak.shape == (2, 2)
    np.testing.assert_allclose(to_host(shifts).reshape(4, 2), batch, atol=0.05)
    assert float(peak.min()) > 0.99
    # Integer registration only.
    shifts, _ = register_translation(img, moved, upsample=1)
    np.testing.assert_allclose(to_host(shifts), np.round(batch), atol=1.0)


def test_fourier_shift_integer_is_roll(xp):
    rng = np.random.default_rng(4)
    x = random_complex(rng, (2, 16, 16))
    y = fourier_shift(xp.asarray(x), np.array([[3.0, -5.0], [0.0, 7.0]]))
    np.testing.assert_allclose(to_host(y[0]), np.roll(x[0], (3, -5), axis=(0, 1)), atol=1e-5)
    np.testing.assert_allclose(to_host(y[1]), np.roll(x[1], (0, 7), axis=(0, 1)), atol=1e-5)
    real = fourier_shift(xp.asarray(x.real.copy()), np.array([1.0, 2.0]))
    assert real.dtype == np.float32
    np.testing.assert_allclose(to_host(real), np.roll(x.real, (1, 2), axis=(-2, -1)), atol=1e-5)


def test_twin(xp):
    rng = np.random.default_rng(5)
    x = xp.asarray(random_complex(rng, (3, 16, 16)))
    t = twin(x)
    np.testing.assert_array_equal(to_host(twin(t)), to_host(x))
    np.testing.assert_allclose(
        np.abs(np.fft.fft2(to_host(t))), np.abs(np.fft.fft2(to_host(x))), rtol=1e-4, atol=1e-4
    )
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
    truth = shapes_object(64).astype(np.complex64) * np.exp(1j * np.linspace(0, 1, 64))[None, :].astype(
        np.complex64
    )
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
    left = shapes_object(64).astype(np.complex64) * np.exp(1j * 0.4 * shapes_object(64)).astype(np.complex64)
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
    # rows registered by the profiles sum_x |view|: the ringing of the left view's subpixel centring
    # on these sharp edges biases them by 0.07 px (docstring of _row_profiles)
    assert _rel_err(to_host(aligned2)[1], to_host(aligned2)[0]) < 0.04


# -- stereo pairs with a known disparity field --------------------------------------------------------


def _stereo_views(n: int, points, t: float = 0.25, sigma: float = 1.0) -> np.ndarray:
    """Left and right views (2, n, n) complex64 of Gaussian particles at ``points`` (P, 3) ``x, y, z``
    [pixels from the grid centre]: the left view sees a particle at ``x + z t``, the right at ``x - z t``
    (disparity ``2 z t`` along x only), both at row ``y``; a phase proportional to the amplitude."""
    yy, xx = np.mgrid[0:n, 0:n] - n // 2
    out = []
    for s in (1, -1):
        img = np.zeros((n, n))
        for x, y, z in points:
            img += np.exp(-((xx - (x + s * z * t)) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
        out.append((img * np.exp(0.5j * img)).astype(np.complex64))
    return np.stack(out)


def _curve(rng, count: int = 60) -> np.ndarray:
    """Particles along a 3D curve spread over 32 pixels of depth (16 pixels of disparity)."""
    s = np.linspace(-1, 1, count)
    return np.stack(
        [30 * s + rng.normal(0, 0.3, count), 25 * np.sin(2.2 * s) + 5 * s**2, 16 * np.cos(2.5 * s)], 1
    )


def test_align_views_stereo_pair_twin_and_vertical_offset(xp):
    """A 3D object whose views differ by a depth-dependent x shift: the right reading is kept (or the
    twin undone) with a margin, and the vertical offset is found to subpixel accuracy."""
    rng = np.random.default_rng(0)
    cluster = rng.normal(0, [18, 15, 20], (50, 3))
    for points, min_margin in ((_curve(rng), 0.03), (cluster, 0.2)):
        v = _stereo_views(128, points)
        left = fourier_shift(v[0], np.array([-4.0, 2.0]))
        right = fourier_shift(v[1], np.array([3.3, -5.2]))
        for twinned in (False, True):
            pair = np.stack([left, twin(right) if twinned else right])
            aligned, info = align_views(xp.asarray(pair))
            choice = info["twin_choice"]
            assert info["right_twin"] is twinned
            assert choice["margin"] > min_margin and not choice["ambiguous"] and not choice["equivalent"]
            # rows correspond: the reading kept (the untwinned view) moved by (left's rows) - (its own)
            assert abs(info["right_shift"][0] - (-4.0 + info["left_shift"][0] - 3.3)) < 0.1
            rows = np.abs(to_host(aligned)).sum(axis=-1)
            assert np.corrcoef(rows[0], rows[1])[0, 1] > 0.999


def test_align_views_periodic_object_keeps_rows():
    """Rows of particles repeated along y (period 9 px), depths varying along x: the rows are
    registered, not shifted by a period or pulled off by the disparity."""
    rng = np.random.default_rng(2)
    xs_, zs = rng.uniform(-30, 30, 7), rng.uniform(-16, 16, 7)
    unit = [(x, 0.0, z) for x, z in zip(xs_, zs)] + [(x, 3.0, z) for x, z in zip(xs_[:3] + 2, -zs[:3])]
    points = np.array([(x, -22.5 + 9 * k + y, z) for k in range(6) for x, y, z in unit])
    v = _stereo_views(96, points)
    _, info = align_views(np.stack([v[0], fourier_shift(v[1], np.array([2.3, -4.0]))]))
    assert info["right_twin"] is False and not info["twin_choice"]["ambiguous"]
    assert abs(info["right_shift"][0] - (info["left_shift"][0] - 2.3)) < 0.1


def test_align_views_zero_disparity_at_the_best_superposing_plane():
    """Most particles on the plane z = 10 px, a few elsewhere: after alignment the plane's particles
    superpose (zero disparity there), i.e. the right view moved by the plane's disparity 2 z t = 5 px."""
    rng = np.random.default_rng(3)
    grid = [(x, y, 10.0) for x in np.linspace(-30, 30, 9) for y in np.linspace(-25, 25, 6)]
    stray = np.stack([rng.uniform(-30, 30, 8), rng.uniform(-25, 25, 8), rng.uniform(-20, 20, 8)], 1)
    points = np.concatenate([np.array(grid), stray])
    points[:, :2] += rng.normal(0, 1.5, (len(points), 2))
    _, info = align_views(_stereo_views(96, points))
    assert abs(info["right_shift"][1] - (info["left_shift"][1] + 2 * 10.0 * 0.25)) < 0.1
    assert abs(info["right_shift"][0] - info["left_shift"][0]) < 0.1


def test_align_views_ambiguous_and_equivalent_readings():
    """Features laid out centrosymmetrically in (x, y) with symmetric depths: the twin of the right view
    is a consistent stereo pair of a flat object (both fit the patterns): flagged ambiguous. The same
    layout flat: both readings are the same view: equivalent, not ambiguous."""
    rng = np.random.default_rng(4)
    half = np.stack([rng.uniform(-30, 30, 20), rng.uniform(-25, 25, 20), rng.uniform(-16, 16, 20)], 1)
    _, info = align_views(_stereo_views(96, np.concatenate([half, half * [-1, -1, 1]])))
    c = info["twin_choice"]
    assert c["ambiguous"] and not c["equivalent"] and c["profile_margin"] < 0.01
    _, info = align_views(_stereo_views(96, np.concatenate([half * [1, 1, 0], half * [-1, -1, 0]])))
    c = info["twin_choice"]
    assert c["equivalent"] and not c["ambiguous"]


def test_pipeline_align_warns_when_ambiguous():
    """The align stage reports the choice (summary.json's ``align``) and warns when it is ambiguous."""
    from xstereo_gpu import Pipeline
    from xstereo_gpu.errors import InputWarning
    from xstereo_gpu.phasing.runs import PhasingResult

    rng = np.random.default_rng(4)
    half = np.stack([rng.uniform(-30, 30, 20), rng.uniform(-25, 25, 20), rng.uniform(-16, 16, 20)], 1)
    views = _stereo_views(96, np.concatenate([half, half * [-1, -1, 1]]))
    phased = PhasingResult(
        views=views, best=None, best_eps=np.zeros((2, 0), np.float32), supports=None, iterations=0
    )
    with Pipeline(backend="numpy") as pipe, pytest.warns(InputWarning, match="ambiguous"):
        result = pipe.align(phased)
    assert result.alignment["twin_choice"]["ambiguous"] is True
    assert set(result.alignment) >= {"left_shift_px", "right_shift_px", "right_twin", "twin_choice"}
