"""Stereo stage: pre-processing, block matching, left-right consistency, depth and points."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from xstereo_gpu.backend import to_host
from xstereo_gpu.config import MatchOptions, PreprocessOptions
from xstereo_gpu.errors import InputError
from xstereo_gpu.geometry import StereoGeometry
from xstereo_gpu.stereo import (background_mask, block_match, depth_map, lr_consistency, matching_coordinate,
                                points_from_disparity, preprocess, texture_map, upsample_mask, view_coordinate)


def _h(a):
    return np.asarray(to_host(a))


# --------------------------------------------------------------------------------------------- #
# block matching


def _reference_match(L, R, o: MatchOptions, right: bool):
    """Brute-force oracle: the whole (D, H, W) cost volume, argmin, parabola, second best."""
    H, W = L.shape
    b, h = o.block, o.block // 2
    ds = np.arange(o.dmin, o.dmax + 1)
    A, B = (R, L) if right else (L, R)
    Ap, Bp = np.pad(A, h, mode="edge").astype(np.float64), np.pad(B, h, mode="edge").astype(np.float64)
    dn = max(abs(o.dmin), abs(o.dmax))
    vol = np.full((len(ds), H, W), np.inf)
    for i, d in enumerate(ds):
        s = -d if not right else d  # partner column = x + s
        ad = np.zeros((H, W))
        for dy in range(b):
            for dx in range(b):
                a = Ap[dy:dy + H, dx:dx + W]
                cols = np.clip(np.arange(W) + s + dx, 0, W + 2 * h - 1)
                ad += np.abs(a - Bp[dy:dy + H][:, cols])
        cost = ad / (b * b) + o.proximity_weight * abs(d) / dn
        inside = (np.arange(W) + s >= 0) & (np.arange(W) + s < W)
        vol[i][:, inside] = cost[:, inside]
    ib = vol.argmin(axis=0)
    disp = np.full((H, W), np.nan)
    conf = np.zeros((H, W))
    for y in range(H):
        for x in range(W):
            i = ib[y, x]
            if i == 0 or i == len(ds) - 1 or not (np.isfinite(vol[i - 1, y, x]) and np.isfinite(vol[i + 1, y, x])):
                continue
            cp, c, cn = vol[i - 1, y, x], vol[i, y, x], vol[i + 1, y, x]
            den = cp - 2 * c + cn
            disp[y, x] = ds[i] + (np.clip(0.5 * (cp - cn) / den, -0.5, 0.5) if den > 0 else 0.0)
            rest = np.concatenate([vol[:i - 1, y, x], vol[i + 2:, y, x]])
            sec = rest.min() if rest.size else np.inf
            conf[y, x] = np.clip(1 - c / sec, 0, 1) if sec > 0 else 0.0
    return disp, conf


@pytest.mark.parametrize("block, dmin, dmax, weight", [(1, -6, 7, 0.0), (3, -5, 7, 0.05), (5, -4, 7, 0.1),
                                                       (9, 2, 9, 0.05)])
def test_block_match_equals_cost_volume_oracle(xp, block, dmin, dmax, weight):
    rng = np.random.default_rng(1)
    H, W = 9, 23
    L = rng.random((H, W)).astype(np.float32)
    R = (np.roll(L, -3, axis=1) + 0.1 * rng.random((H, W))).astype(np.float32)
    o = MatchOptions(block=block, dmin=dmin, dmax=dmax, proximity_weight=weight, texture_threshold=0)
    res = block_match(xp.asarray(L), xp.asarray(R), o)
    for right, disp, conf in ((False, res.disparity_left, res.confidence_left),
                              (True, res.disparity_right, res.confidence_right)):
        d0, c0 = _reference_match(L, R, o, right)
        disp, conf = _h(disp), _h(conf)
        assert disp.dtype == np.float32 and disp.shape == (H, W)
        np.testing.assert_array_equal(np.isnan(disp), np.isnan(d0))
        assert np.isfinite(d0).sum() > 0.5 * H * W
        np.testing.assert_allclose(disp[np.isfinite(d0)], d0[np.isfinite(d0)], atol=1e-4)
        np.testing.assert_allclose(conf, c0, atol=1e-4)


def _band_pair(seed=3, H=256, W=256):
    """Smooth binary blobs; right image = left sampled at x + d, d constant in horizontal bands."""
    rng = np.random.default_rng(seed)
    blob = (ndi.gaussian_filter(rng.standard_normal((H, W)), 10) > 0).astype(np.float32)
    L = ndi.gaussian_filter(blob, 2.0).astype(np.float32)
    bands = np.array([7, -12.5, 3.25, 20.75, -4.5, 0.0, 15.0, -9.75], np.float32)
    dtrue = np.repeat(bands, H // len(bands))[:, None] * np.ones((1, W), np.float32)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    R = ndi.map_coordinates(L, [yy, xx + dtrue], order=3, mode="nearest").astype(np.float32)
    inner = np.zeros((H, W), bool)
    inner[:, 32:-32] = True
    for k in range(1, len(bands)):  # rows whose blocks straddle two bands
        inner[k * H // len(bands) - 2:k * H // len(bands) + 2] = False
    return L, R, dtrue, inner


def test_block_match_recovers_known_disparity(xp):
    L, R, dtrue, inner = _band_pair()
    o = MatchOptions(dmin=-30, dmax=30)
    res = block_match(xp.asarray(L), xp.asarray(R), o)
    for disp, ref in ((res.disparity_left, L), (res.disparity_right, R)):
        disp = _h(disp)
        textured = (_h(texture_map(xp.asarray(ref))) >= o.texture_threshold) & inner
        valid = np.isfinite(disp) & inner
        assert textured.sum() > 0.1 * inner.sum()
        assert valid.sum() >= 0.95 * textured.sum()
        err = np.abs(disp - dtrue)[valid]
        assert np.mean(err < 0.3) >= 0.9
        assert np.median(err) < 0.15
    conf = _h(res.confidence_left)[np.isfinite(_h(res.disparity_left))]
    assert conf.min() >= 0 and conf.max() <= 1 and np.median(conf) > 0.3
    cost = _h(res.cost_left)
    np.testing.assert_array_equal(np.isnan(cost), np.isnan(_h(res.disparity_left)))


def test_proximity_term_breaks_ties_towards_small_disparity(xp):
    H, W, period, shift = 24, 160, 16, 3
    x = np.arange(W, dtype=np.float64)
    L = np.tile(0.5 + 0.5 * np.sin(2 * np.pi * x / period), (H, 1)).astype(np.float32)
    R = np.tile(0.5 + 0.5 * np.sin(2 * np.pi * (x + shift) / period), (H, 1)).astype(np.float32)
    interior = np.s_[:, 40:-40]  # every alias 3 + 16 k in [-30, 30] lies inside the image here
    near = _h(block_match(xp.asarray(L), xp.asarray(R), MatchOptions(dmin=-30, dmax=30))
              .disparity_left)[interior]
    assert np.isfinite(near).mean() > 0.7  # blocks on the crests of the sine are too flat
    near = near[np.isfinite(near)]
    assert np.all(np.abs(near - shift) < 0.2)  # parabola through a V-shaped SAD: small bias
    flat = _h(block_match(xp.asarray(L), xp.asarray(R), MatchOptions(dmin=-30, dmax=30, proximity_weight=0))
              .disparity_left)[interior]
    flat = flat[np.isfinite(flat)]
    assert flat.size > 0.7 * near.size
    # without the proximity term all aliases tie and the scan keeps the first one, d = -29
    assert np.all(np.rint(flat) == shift - 2 * period)


def test_texture_rule_invalidates_horizontal_edges_and_uniform_areas(xp):
    H, W = 48, 96
    horiz = np.zeros((H, W), np.float32)
    horiz[24:] = 1
    res = block_match(xp.asarray(horiz), xp.asarray(horiz), MatchOptions(dmin=-10, dmax=10))
    assert np.isnan(_h(res.disparity_left)).all() and np.isnan(_h(res.disparity_right)).all()
    assert (_h(res.confidence_left) == 0).all()

    L = np.zeros((H, W), np.float32)
    R = np.zeros((H, W), np.float32)
    L[:, 40:] = 1
    R[:, 35:] = 1  # the vertical edge moves by d = 5
    res = block_match(xp.asarray(L), xp.asarray(R), MatchOptions(dmin=-10, dmax=10))
    dl, dr = _h(res.disparity_left), _h(res.disparity_right)
    valid_cols = np.flatnonzero(np.isfinite(dl).any(axis=0))
    np.testing.assert_array_equal(valid_cols, [39, 40])  # only blocks that contain the edge
    assert np.isfinite(dl[:, 39:41]).all()
    np.testing.assert_allclose(dl[:, 39:41], 5, atol=0.01)
    np.testing.assert_array_equal(np.flatnonzero(np.isfinite(dr).any(axis=0)), [34, 35])
    np.testing.assert_allclose(dr[:, 34:36], 5, atol=0.01)
    tex = _h(texture_map(xp.asarray(L)))
    np.testing.assert_allclose(tex[:, 39:41], 0.5, atol=1e-6)
    assert (tex[:, :39] == 0).all() and (tex[:, 41:] == 0).all()


def test_minimum_at_range_end_is_invalid(xp):
    H, W = 12, 120
    ramp = np.tile(np.arange(W, dtype=np.float32) / W, (H, 1))  # SAD grows with |d - d_true|
    o = MatchOptions(dmin=-8, dmax=8, texture_threshold=0, proximity_weight=0)
    for d_true, inside in ((12, False), (-12, False), (5, True)):
        right = np.tile((np.arange(W, dtype=np.float32) + d_true) / W, (H, 1))
        d = _h(block_match(xp.asarray(ramp), xp.asarray(right), o).disparity_left)[:, 20:-20]
        if inside:
            np.testing.assert_allclose(d, d_true, atol=1e-3)
        else:
            assert np.isnan(d).all()


def test_block_match_rejects_bad_input(xp):
    with pytest.raises(InputError, match="shape"):
        block_match(xp.zeros((8, 8), np.float32), xp.zeros((8, 9), np.float32))
    with pytest.raises(InputError, match="2-D"):
        block_match(xp.zeros((2, 8, 8), np.float32), xp.zeros((2, 8, 8), np.float32))
    bad = np.zeros((8, 8), np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        block_match(xp.asarray(bad), xp.zeros((8, 8), np.float32))


# --------------------------------------------------------------------------------------------- #
# left-right consistency


def test_lr_consistency_invalidates_occluded_strip(xp):
    H, W = 10, 80
    dl = np.full((H, W), 4, np.float32)
    dr = np.full((H, W), 4, np.float32)
    dl[:, 40:50] = 9  # left pixels seen in a strip the right view does not show: wrong matches
    dr[:, 70:72] = np.nan
    kl, kr = lr_consistency(xp.asarray(dl), xp.asarray(dr), tolerance=1.0)
    kl, kr = _h(kl), _h(kr)
    bad_l = np.zeros(W, bool)
    bad_l[:4] = True          # partner x - 4 outside the image
    bad_l[40:50] = True       # disagreement 9 vs 4
    bad_l[74:76] = True       # partner (x - 4 in 70..71) is NaN
    np.testing.assert_array_equal(np.isnan(kl), np.broadcast_to(bad_l, (H, W)))
    bad_r = np.zeros(W, bool)
    bad_r[76:] = True         # partner x + 4 outside the image
    bad_r[36:46] = True       # partner in the strip holds 9
    bad_r[70:72] = True       # NaN stays NaN
    np.testing.assert_array_equal(np.isnan(kr), np.broadcast_to(bad_r, (H, W)))
    np.testing.assert_array_equal(kl[~np.isnan(kl)], 4)
    # a disagreement within the tolerance is kept
    dr2 = dr + np.float32(0.8)
    kl2, _ = lr_consistency(xp.asarray(dl), xp.asarray(dr2), tolerance=1.0)
    assert np.isfinite(_h(kl2)[:, 10:30]).all()


def test_lr_consistency_on_matched_occlusion(xp):
    """A foreground bar (d = 14) over a textured background (d = 4): the background that the bar
    hides in the right view is dropped from the left map, the rest survives."""
    rng = np.random.default_rng(7)
    H, W = 40, 160
    bg = ndi.gaussian_filter(rng.random((H, W + 40)), 1.2)
    fg = ndi.gaussian_filter(rng.random((H, W + 40)), 1.2)
    bg = (bg - bg.min()) / (bg.max() - bg.min())
    fg = (fg - fg.min()) / (fg.max() - fg.min())
    x = np.arange(W)
    bar = (x >= 80) & (x < 110)                     # bar columns in the left view
    L = np.where(bar, fg[:, x], bg[:, x]).astype(np.float32)
    xr = x  # right pixel x' shows left content at x' + d
    bar_r = (xr + 14 >= 80) & (xr + 14 < 110)
    R = np.where(bar_r, fg[:, xr + 14], bg[:, xr + 4]).astype(np.float32)
    res = block_match(xp.asarray(L), xp.asarray(R), MatchOptions(dmin=-20, dmax=20, texture_threshold=0))
    kl, _ = lr_consistency(res.disparity_left, res.disparity_right, tolerance=1.0)
    kl = _h(kl)
    # background left columns 70..79 map to right 66..75, which the bar (right 66..95) covers
    occluded = kl[2:-2, 71:79]
    visible = kl[2:-2, 30:60]
    assert np.isnan(occluded).mean() > 0.8
    assert np.isfinite(visible).mean() > 0.9
    np.testing.assert_allclose(visible[np.isfinite(visible)], 4, atol=0.3)
    np.testing.assert_allclose(np.nanmedian(kl[2:-2, 85:105]), 14, atol=0.3)


# --------------------------------------------------------------------------------------------- #
# pre-processing


def _square_views():
    H = W = 64
    left = np.zeros((H, W), np.float32)
    right = np.zeros((H, W), np.float32)
    left[30:56, 20:50] = 1.0
    right[30:56, 18:48] = 1.0      # big square, seen 2 view pixels (8 grid pixels) to the left
    left[6:10, 10:14] = 1.0         # small blob A, in both views: kept
    right[6:10, 8:12] = 1.0
    left[6:10, 40:44] = 1.0         # small blob B, left only: removed
    right[40:44, 30:34] = 0.0       # small hole, right only: filled
    return np.stack([left, right])


def test_preprocess_binary_output_and_small_region_removal(xp):
    views = _square_views()
    opts = PreprocessOptions()
    res = preprocess(xp.asarray(views), opts, search_range=(-65, 65))
    img = _h(res.images)
    assert res.upsample == 4
    assert img.shape == (2, 256, 256) and img.dtype == np.float32
    assert set(np.unique(img)) == {0.0, 1.0}
    assert res.removed == (1, 1)
    u = 4
    c = lambda v: int(matching_coordinate(v, u))  # noqa: E731 - grid pixel of a view pixel
    assert img[0, c(8), c(12)] == 1 and img[1, c(8), c(10)] == 1        # blob A kept in both
    assert img[0, c(8), c(42)] == 0                                     # blob B removed
    assert img[1, c(42), c(32)] == 1                                    # hole filled
    assert img[0, c(42), c(32)] == 1 and img[0, c(20), c(32)] == 0      # the rest untouched
    norm = _h(res.normalised)
    assert norm.shape == (2, 64, 64) and norm.max() == 1.0 and norm.min() == 0.0

    # with a search range that cannot reach blob A's counterpart, A goes too
    res2 = preprocess(xp.asarray(views), opts, search_range=(-30, -20))
    img2 = _h(res2.images)
    assert img2[0, c(8), c(12)] == 0 and img2[1, c(8), c(10)] == 0
    # and nothing is removed when min_region is 0
    res3 = preprocess(xp.asarray(views), PreprocessOptions(min_region=0))
    assert res3.removed == (0, 0) and _h(res3.images)[0, c(8), c(42)] == 1


def test_preprocess_pixel_centre_alignment(xp):
    views = np.zeros((2, 48, 48), np.float32)
    views[0, 20, 23] = 1.0
    views[1, 5, 40] = 2.0
    res = preprocess(xp.asarray(views), PreprocessOptions(mode="none"))
    img = _h(res.images)
    assert img.shape == (2, 192, 192) and img.min() >= 0 and img.max() <= 1
    for v, (r, c) in enumerate([(20, 23), (5, 40)]):
        rm, cm = matching_coordinate(r, 4), matching_coordinate(c, 4)   # 81.5, 93.5 for the left
        win = img[v, int(rm) - 6:int(rm) + 8, int(cm) - 6:int(cm) + 8]
        yy, xx = np.mgrid[int(rm) - 6:int(rm) + 8, int(cm) - 6:int(cm) + 8]
        assert abs((win * yy).sum() / win.sum() - rm) < 1e-3
        assert abs((win * xx).sum() / win.sum() - cm) < 1e-3
        assert img[v, int(rm), int(cm)] == pytest.approx(img[v, int(rm) + 1, int(cm) + 1], abs=1e-5)
    assert view_coordinate(matching_coordinate(7.25, 4), 4) == pytest.approx(7.25)
    assert view_coordinate(1.5, 4) == pytest.approx(0.0)


def test_preprocess_normalises_per_view_and_validates(xp):
    rng = np.random.default_rng(2)
    views = rng.random((2, 32, 32)).astype(np.float32) * np.array([3.0, 50.0], np.float32)[:, None, None]
    res = preprocess(xp.asarray(views), PreprocessOptions(mode="none", upsample=1, normalise_percentile=100))
    np.testing.assert_allclose(_h(res.images), views / views.reshape(2, -1).max(axis=1)[:, None, None], rtol=1e-6)
    with pytest.raises(InputError, match="views"):
        preprocess(xp.zeros((3, 8, 8), np.float32))
    with pytest.raises(InputError, match="real"):
        preprocess(xp.zeros((2, 8, 8), np.complex64))
    with pytest.raises(InputError, match="search_range"):
        preprocess(xp.zeros((2, 8, 8), np.float32), search_range=(5, -5))


def test_preprocess_gradient_mode_marks_vertical_edges_with_their_sign(xp):
    H = W = 40
    views = np.zeros((2, H, W), np.float32)
    views[:, :, 15:25] = 1.0         # a bright vertical bar: rising edge at 14.5, falling at 24.5
    views[1, 30:, :] += 0.5          # right view: plus a horizontal edge, which carries no x-gradient
    res = preprocess(xp.asarray(views), PreprocessOptions(mode="gradient"))
    img = _h(res.images)
    assert img.shape == (2, 160, 160) and img.dtype == np.float32
    assert img.min() >= 0 and img.max() <= 1 and res.thresholds is None and res.mask is None
    for v in (0, 1):
        prof = img[v, 40]
        rise, fall = int(np.argmax(prof)), int(np.argmin(prof))
        assert prof[rise] == 1.0 and prof[fall] == 0.0          # strongest edges saturate at the percentile
        assert abs(rise - matching_coordinate(14.5, 4)) <= 1   # at the edge, within a grid pixel
        assert abs(fall - matching_coordinate(24.5, 4)) <= 1
        np.testing.assert_allclose(img[v, :, :30], 0.5, atol=1e-3)       # uniform: no gradient (spline
        np.testing.assert_allclose(img[v, :, :10], 0.5, atol=1e-6)       # ringing of the bar decays)
    # the horizontal edge of the right view leaves no trace away from the bar
    np.testing.assert_allclose(img[1, :, 130:], 0.5, atol=1e-3)
    assert np.abs(img[1, 100:140, 130:] - 0.5).max() < 1e-3
    np.testing.assert_array_equal(_h(res.normalised)[0], views[0])


def _thin_feature_pair(seed, H=64, W=64, d=2.5):
    """Thin bars of two grey tones; the right view is shifted by d, dimmer, offset and noisy."""
    rng = np.random.default_rng(seed)
    img = np.zeros((H, W))
    for _ in range(8):
        x0, y0 = rng.integers(5, W - 10), rng.integers(0, H - 20)
        img[y0:y0 + rng.integers(10, 30), x0:x0 + rng.integers(1, 3)] += rng.choice([0.5, 1.0])
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
            dl = _h(dl)
            ok = np.isfinite(dl)
            assert ok.sum() > 2000
            store.append(np.mean(np.abs(dl[ok] - d) < 1))
    assert min(signed) > 0.88                 # measured 0.96, 0.91, 0.98
    assert np.mean(signed) > np.mean(absolute) + 0.15   # measured |Gx|: 0.69, 0.66, 0.76


def test_preprocess_none_mode_on_signed_phase_views(xp):
    rng = np.random.default_rng(8)
    views = rng.normal(0, 0.01, (2, 48, 48)).astype(np.float32)
    views[:, 10:20, 10:20] -= 1.2        # phase features of either sign on a zero background
    views[:, 30:40, 25:35] += 0.6
    res = preprocess(xp.asarray(views), PreprocessOptions(mode="none", upsample=1))
    img = _h(res.images)
    assert abs(np.median(img) - 0.5) < 1e-6                      # background at 0.5
    assert img[:, 12:18, 12:18].max() < 0.02                     # negative feature dark
    assert img[:, 32:38, 27:33].min() > 0.7                      # positive feature bright
    # a global phase offset (the phase retrieval's arbitrary constant) changes nothing
    res2 = preprocess(xp.asarray(views + np.float32(0.3)), PreprocessOptions(mode="none", upsample=1))
    np.testing.assert_allclose(_h(res2.images), img, atol=1e-5)
    # upsampled too, still 0..1
    up = _h(preprocess(xp.asarray(views), PreprocessOptions(mode="none")).images)
    assert up.shape == (2, 192, 192) and up.min() >= 0 and up.max() <= 1


def _particle_views(seed=11, N=96):
    """Gold-particle-like dots filling a square region (a hole in it), on a noisy background."""
    rng = np.random.default_rng(seed)
    img = np.zeros((N, N))
    yy, xx = np.mgrid[0:N, 0:N]
    region = (yy >= 20) & (yy < 70) & (xx >= 25) & (xx < 75) & ~((yy >= 40) & (yy < 46) & (xx >= 45) & (xx < 51))
    ys, xs = np.nonzero(region)
    pick = rng.choice(len(ys), 120, replace=False)
    img[ys[pick], xs[pick]] = 1.0
    img = ndi.gaussian_filter(img, 1.2)
    img /= img.max()
    views = np.stack([img, np.roll(img, -3, axis=1)]) + rng.normal(0, 0.01, (2, N, N))
    return np.abs(views).astype(np.float32), region


def test_background_mask_covers_the_populated_region(xp):
    views, region = _particle_views()
    mask = _h(background_mask(xp.asarray(views)))
    assert mask.shape == (2, 96, 96) and mask.dtype == bool
    hole = np.zeros_like(region)
    hole[40:46, 45:51] = True
    inside = ndi.binary_erosion(region, iterations=4) | hole
    assert mask[0][inside].mean() > 0.97                          # the region, its small hole filled
    far = ~ndi.binary_dilation(region, iterations=8)
    assert mask[0][far].mean() < 0.01                             # not the background
    assert mask[1][np.roll(inside, -3, axis=1)].mean() > 0.97
    with pytest.raises(InputError, match="fraction"):
        background_mask(xp.asarray(views), fraction=1.5)


def test_preprocess_with_mask_zeroes_background_and_upsamples_mask(xp):
    views, _ = _particle_views()
    mask = background_mask(xp.asarray(views))
    res = preprocess(xp.asarray(views), PreprocessOptions(mode="none"), mask=mask)
    um = _h(res.mask)
    assert um.shape == (2, 384, 384) and um.dtype == bool
    np.testing.assert_array_equal(um, np.repeat(np.repeat(_h(mask), 4, axis=1), 4, axis=2))
    np.testing.assert_array_equal(_h(upsample_mask(mask, 4)), um)
    img = _h(res.images)
    deep = ~ndi.binary_dilation(um[0], iterations=8)             # away from the mask edge
    assert img[0][deep].max() < 0.01                            # only the cubic spline's ringing
    assert np.array_equal(_h(res.normalised)[0][~_h(mask)[0]], np.zeros((~_h(mask)[0]).sum(), np.float32))
    # binary mode: a mask that keeps everything changes no pixel
    full = xp.ones(views.shape, dtype=bool)
    a = preprocess(xp.asarray(views), PreprocessOptions(), search_range=(-30, 30))
    b = preprocess(xp.asarray(views), PreprocessOptions(), search_range=(-30, 30), mask=full)
    np.testing.assert_array_equal(_h(a.images), _h(b.images))
    assert a.removed == b.removed and a.mask is None and _h(b.mask).all()
    with pytest.raises(InputError, match="mask"):
        preprocess(xp.asarray(views), mask=xp.ones((2, 10, 10), dtype=bool))


# --------------------------------------------------------------------------------------------- #
# depth and points


GEOM = StereoGeometry(pixel_size_m=20e-9, angles_deg=(12.0, 5.0))


def test_points_from_a_plane_at_known_depth(xp):
    u, N = 4, 32
    z0 = 300.0  # nm
    d = GEOM.disparity(z0 * 1e-9) * u  # matching-grid pixels
    dl = np.full((u * N, u * N), np.nan, np.float32)
    dl[10:20, 30:90] = d
    pts = points_from_disparity(xp.asarray(dl), None, GEOM, upsample=u, view_shape=(N, N))
    p = _h(pts.points_nm)
    assert p.shape == (600, 3) and p.dtype == np.float64
    np.testing.assert_allclose(p[:, 2], z0, atol=1e-4)
    r, c = _h(pts.pixel).T
    dr_nm = 20.0
    x_view = ((c + 0.5) / u - 0.5 - N // 2) * dr_nm
    np.testing.assert_allclose(p[:, 0], x_view - z0 * math.tan(math.radians(12.0)), atol=1e-4)
    np.testing.assert_allclose(p[:, 1], ((r + 0.5) / u - 0.5 - N // 2) * dr_nm, rtol=1e-6)
    assert (_h(pts.view) == 0).all() and (_h(pts.confidence) == 1).all()
    # eq. (1) round trip
    np.testing.assert_allclose(GEOM.disparity(p[:, 2] * 1e-9) * u, d, rtol=1e-5)
    dm = _h(depth_map(xp.asarray(dl), GEOM, upsample=u))
    np.testing.assert_allclose(dm[10:20, 30:90], z0, rtol=1e-5)
    assert np.isnan(dm[:10]).all() and dm.dtype == np.float32


def test_left_and_right_maps_give_the_same_object_point(xp):
    u, N = 4, 32
    shape = (u * N, u * N)
    dl = np.full(shape, np.nan, np.float32)
    dr = np.full(shape, np.nan, np.float32)
    conf_l = np.full(shape, 0.25, np.float32)
    # the same object point seen at left column 70 and right column 70 - d, for three depths
    for row, d in ((20, 12.0), (40, -7.0), (60, 3.5)):
        dl[row, 70] = d
        col_r = 70 - d
        if col_r == int(col_r):
            dr[row, int(col_r)] = d
    pts = points_from_disparity(xp.asarray(dl), xp.asarray(dr), GEOM, upsample=u, view_shape=(N, N),
                                confidence_left=xp.asarray(conf_l))
    p, view, conf = _h(pts.points_nm), _h(pts.view), _h(pts.confidence)
    assert len(pts) == 5 and list(view) == [0, 0, 0, 1, 1]
    np.testing.assert_allclose(conf, [0.25, 0.25, 0.25, 1, 1])
    np.testing.assert_allclose(p[3], p[0], atol=1e-9)   # d = 12 row
    np.testing.assert_allclose(p[4], p[1], atol=1e-9)   # d = -7 row
    # the 3D point projects back to the left view column 70 (coordinate correction inverted)
    x_left = GEOM.view_x(p[:, 0], p[:, 2], 0)
    np.testing.assert_allclose(x_left[:3], ((70 + 0.5) / u - 0.5 - N // 2) * 20.0, atol=1e-9)


def test_points_from_disparity_validates_shapes(xp):
    with pytest.raises(InputError, match="upsample"):
        points_from_disparity(xp.zeros((64, 64), np.float32), None, GEOM, upsample=4, view_shape=(32, 32))
    with pytest.raises(InputError, match="no disparity"):
        points_from_disparity(None, None, GEOM, upsample=4, view_shape=(32, 32))
