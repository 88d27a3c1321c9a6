"""Pre-processing of the views (xstereo_gpu.stereo.preprocess): binary and gradient maps, small regions,
pixel-centre
alignment of the matching grid, the background mask."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import host
from scipy import ndimage as ndi

from xstereo_gpu.config import MatchOptions, PreprocessOptions
from xstereo_gpu.errors import InputError
from xstereo_gpu.stereo import (
    background_mask,
    block_match,
    lr_consistency,
    matching_coordinate,
    preprocess,
    upsample_mask,
    view_coordinate,
)


def _square_views():
    H = W = 64
    left = np.zeros((H, W), np.float32)
    right = np.zeros((H, W), np.float32)
    left[30:56, 20:50] = 1.0
    right[30:56, 18:48] = 1.0  # big square, seen 2 view pixels (8 grid pixels) to the left
    left[6:10, 10:14] = 1.0  # small blob A, in both views: kept
    right[6:10, 8:12] = 1.0
    left[6:10, 40:44] = 1.0  # small blob B, left only: removed
    right[40:44, 30:34] = 0.0  # small hole, right only: filled
    return np.stack([left, right])


def test_preprocess_binary_output_and_small_region_removal(xp):
    views = _square_views()
    opts = PreprocessOptions()
    res = preprocess(xp.asarray(views), opts, search_range=(-65, 65))
    img = host(res.images)
    assert res.upsample == 4
    assert img.shape == (2, 256, 256) and img.dtype == np.float32
    assert set(np.unique(img)) == {0.0, 1.0}
    assert res.removed == (1, 1)
    u = 4
    c = lambda v: int(matching_coordinate(v, u))  # noqa: E731 - grid pixel of a view pixel
    assert img[0, c(8), c(12)] == 1 and img[1, c(8), c(10)] == 1  # blob A kept in both
    assert img[0, c(8), c(42)] == 0  # blob B removed
    assert img[1, c(42), c(32)] == 1  # hole filled
    assert img[0, c(42), c(32)] == 1 and img[0, c(20), c(32)] == 0  # the rest untouched
    norm = host(res.normalised)
    assert norm.shape == (2, 64, 64) and norm.max() == 1.0 and norm.min() == 0.0

    # with a search range that cannot reach blob A's counterpart, A goes too
    res2 = preprocess(xp.asarray(views), opts, search_range=(-30, -20))
    img2 = host(res2.images)
    assert img2[0, c(8), c(12)] == 0 and img2[1, c(8), c(10)] == 0
    # and nothing is removed when min_region is 0
    res3 = preprocess(xp.asarray(views), PreprocessOptions(min_region=0))
    assert res3.removed == (0, 0) and host(res3.images)[0, c(8), c(42)] == 1


def test_preprocess_pixel_centre_alignment(xp):
    views = np.zeros((2, 48, 48), np.float32)
    views[0, 20, 23] = 1.0
    views[1, 5, 40] = 2.0
    res = preprocess(xp.asarray(views), PreprocessOptions(mode="none"))
    img = host(res.images)
    assert img.shape == (2, 192, 192) and img.min() >= 0 and img.max() <= 1
    for v, (r, c) in enumerate([(20, 23), (5, 40)]):
        rm, cm = matching_coordinate(r, 4), matching_coordinate(c, 4)  # 81.5, 93.5 for the left
        win = img[v, int(rm) - 6 : int(rm) + 8, int(cm) - 6 : int(cm) + 8]
        yy, xx = np.mgrid[int(rm) - 6 : int(rm) + 8, int(cm) - 6 : int(cm) + 8]
        assert abs((win * yy).sum() / win.sum() - rm) < 1e-3
        assert abs((win * xx).sum() / win.sum() - cm) < 1e-3
        assert img[v, int(rm), int(cm)] == pytest.approx(img[v, int(rm) + 1, int(cm) + 1], abs=1e-5)
    assert view_coordinate(matching_coordinate(7.25, 4), 4) == pytest.approx(7.25)
    assert view_coordinate(1.5, 4) == pytest.approx(0.0)


def test_preprocess_normalises_per_view_and_validates(xp):
    rng = np.random.default_rng(2)
    views = rng.random((2, 32, 32)).astype(np.float32) * np.array([3.0, 50.0], np.float32)[:, None, None]
    res = preprocess(xp.asarray(views), PreprocessOptions(mode="none", upsample=1, normalise_percentile=100))
    np.testing.assert_allclose(
        host(res.images), views / views.reshape(2, -1).max(axis=1)[:, None, None], rtol=1e-6
    )
    with pytest.raises(InputError, match="views"):
        preprocess(xp.zeros((3, 8, 8), np.float32))
    with pytest.raises(InputError, match="real"):
        preprocess(xp.zeros((2, 8, 8), np.complex64))
    with pytest.raises(InputError, match="search_range"):
        preprocess(xp.zeros((2, 8, 8), np.float32), search_range=(5, -5))


def test_preprocess_gradient_mode_marks_vertical_edges_with_their_sign(xp):
    H = W = 40
    views = np.zeros((2, H, W), np.float32)
    views[:, :, 15:25] = 1.0  # a bright vertical bar: rising edge at 14.5, falling at 24.5
    views[1, 30:, :] += 0.5  # right view: plus a horizontal edge, which carries no x-gradient
    res = preprocess(xp.asarray(views), PreprocessOptions(mode="gradient"))
    img = host(res.images)
    assert img.shape == (2, 160, 160) and img.dtype == np.float32
    assert img.min() >= 0 and img.max() <= 1 and res.thresholds is None and res.mask is None
    for v in (0, 1):
        prof = img[v, 40]
        rise, fall = int(np.argmax(prof)), int(np.argmin(prof))
        assert prof[rise] == 1.0 and prof[fall] == 0.0  # strongest edges saturate at the percentile
        assert abs(rise - matching_coordinate(14.5, 4)) <= 1  # at the edge, within a grid pixel
        assert abs(fall - matching_coordinate(24.5, 4)) <= 1
        np.testing.assert_allclose(img[v, :, :30], 0.5, atol=1e-3)  # uniform: no gradient (spline
        np.testing.assert_allclose(img[v, :, :10], 0.5, atol=1e-6)  # ringing of the bar decays)
    # the horizontal edge of the right view leaves no trace away from the bar
    np.testing.assert_allclose(img[1, :, 130:], 0.5, atol=1e-3)
    assert np.abs(img[1, 100:140, 130:] - 0.5).max() < 1e-3
    np.testing.assert_array_equal(host(res.normalised)[0], views[0])


def _thin_feature_pair(seed, H=64, W=64, d=2.5):
    """Thin bars of two grey tones; the right view is shifted by d, dimmer, offset and noisy."""
    rng = np.random.default_rng(seed)
    img = np.zeros((H, W))
    for _ in range(8):
        x0, y0 = rng.integers(5, W - 10), rng.integers(0, H - 20)
        img[y0 : y0 + rng.integers(10, 30), x0 : x0 + rng.integers(1, 3)] += rng.choice([0.5, 1.0])
    img = ndi.gaussian_filter(img, 0.7)
    yy, xx = np.mgrid[0:H, 0:W].astype(float)
    right = ndi.map_coordinates(img, [yy, xx + d], order=3, mode="nearest") * 0.8 + 0.05
    return (np.stack([img, right]) + rng.normal(0, 0.02, (2, H, W))).astype(np.float32), 4 * d


def test_gradient_mode_matches_thin_features_and_signed_beats_absolute(xp):
    """Why the sign of Gx is kept: |Gx| makes both sides of a thin bar look alike."""
    signed, absolute = [], []
    for seed in (0, 1, 2):
        views, d = _thin_feature_pair(seed)
        img = preprocess(xp.asarray(views), PreprocessOptions(mode="gradient")).images
        for store, pair in ((signed, img), (absolute, xp.abs(img - 0.5) * 2)):
            m = block_match(pair[0], pair[1], MatchOptions(dmin=-30, dmax=30))
            dl, _ = lr_consistency(m.disparity_left, m.disparity_right, tolerance=1.0)
            dl = host(dl)
            ok = np.isfinite(dl)
            assert ok.sum() > 2000
            store.append(np.mean(np.abs(dl[ok] - d) < 1))
    assert min(signed) > 0.88  # measured 0.96, 0.91, 0.98
    assert np.mean(signed) > np.mean(absolute) + 0.15  # measured |Gx|: 0.69, 0.66, 0.76


def test_preprocess_none_mode_on_signed_phase_views(xp):
    rng = np.random.default_rng(8)
    views = rng.normal(0, 0.01, (2, 48, 48)).astype(np.float32)
    views[:, 10:20, 10:20] -= 1.2  # phase features of either sign on a zero background
    views[:, 30:40, 25:35] += 0.6
    res = preprocess(xp.asarray(views), PreprocessOptions(mode="none", upsample=1))
    img = host(res.images)
    assert abs(np.median(img) - 0.5) < 1e-6  # background at 0.5
    assert img[:, 12:18, 12:18].max() < 0.02  # negative feature dark
    assert img[:, 32:38, 27:33].min() > 0.7  # positive feature bright
    # a global phase offset (the phase retrieval's arbitrary constant) changes nothing
    res2 = preprocess(xp.asarray(views + np.float32(0.3)), PreprocessOptions(mode="none", upsample=1))
    np.testing.assert_allclose(host(res2.images), img, atol=1e-5)
    # upsampled too, still 0..1
    up = host(preprocess(xp.asarray(views), PreprocessOptions(mode="none")).images)
    assert up.shape == (2, 192, 192) and up.min() >= 0 and up.max() <= 1


def _particle_views(seed=11, N=96):
    """Gold-particle-like dots filling a square region (a hole in it), on a noisy background."""
    rng = np.random.default_rng(seed)
    img = np.zeros((N, N))
    yy, xx = np.mgrid[0:N, 0:N]
    region = (
        (yy >= 20) & (yy < 70) & (xx >= 25) & (xx < 75) & ~((yy >= 40) & (yy < 46) & (xx >= 45) & (xx < 51))
    )
    ys, xs = np.nonzero(region)
    pick = rng.choice(len(ys), 120, replace=False)
    img[ys[pick], xs[pick]] = 1.0
    img = ndi.gaussian_filter(img, 1.2)
    img /= img.max()
    views = np.stack([img, np.roll(img, -3, axis=1)]) + rng.normal(0, 0.01, (2, N, N))
    return np.abs(views).astype(np.float32), region


def test_background_mask_covers_the_populated_region(xp):
    views, region = _particle_views()
    mask = host(background_mask(xp.asarray(views)))
    assert mask.shape == (2, 96, 96) and mask.dtype == bool
    hole = np.zeros_like(region)
    hole[40:46, 45:51] = True
    inside = ndi.binary_erosion(region, iterations=4) | hole
    assert mask[0][inside].mean() > 0.97  # the region, its small hole filled
    far = ~ndi.binary_dilation(region, iterations=8)
    assert mask[0][far].mean() < 0.01  # not the background
    assert mask[1][np.roll(inside, -3, axis=1)].mean() > 0.97
    with pytest.raises(InputError, match="fraction"):
        background_mask(xp.asarray(views), fraction=1.5)


def test_preprocess_with_mask_zeroes_background_and_upsamples_mask(xp):
    views, _ = _particle_views()
    mask = background_mask(xp.asarray(views))
    res = preprocess(xp.asarray(views), PreprocessOptions(mode="none"), mask=mask)
    um = host(res.mask)
    assert um.shape == (2, 384, 384) and um.dtype == bool
    np.testing.assert_array_equal(um, np.repeat(np.repeat(host(mask), 4, axis=1), 4, axis=2))
    np.testing.assert_array_equal(host(upsample_mask(mask, 4)), um)
    img = host(res.images)
    deep = ~ndi.binary_dilation(um[0], iterations=8)  # away from the mask edge
    assert img[0][deep].max() < 0.01  # only the cubic spline's ringing
    assert np.array_equal(
        host(res.normalised)[0][~host(mask)[0]], np.zeros((~host(mask)[0]).sum(), np.float32)
    )
    # binary mode: a mask that keeps everything changes no pixel
    full = xp.ones(views.shape, dtype=bool)
    a = preprocess(xp.asarray(views), PreprocessOptions(), search_range=(-30, 30))
    b = preprocess(xp.asarray(views), PreprocessOptions(), search_range=(-30, 30), mask=full)
    np.testing.assert_array_equal(host(a.images), host(b.images))
    assert a.removed == b.removed and a.mask is None and host(b.mask).all()
    with pytest.raises(InputError, match="mask"):
        preprocess(xp.asarray(views), mask=xp.ones((2, 10, 10), dtype=bool))
