"""Block matching (xstereo_gpu.stereo.disparity): the cost-volume oracle, known disparities, the proximity
term and
the texture rule."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import host
from scipy import ndimage as ndi

from xstereo_gpu.config import MatchOptions
from xstereo_gpu.errors import InputError
from xstereo_gpu.stereo import block_match, texture_map


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
                a = Ap[dy : dy + H, dx : dx + W]
                cols = np.clip(np.arange(W) + s + dx, 0, W + 2 * h - 1)
                ad += np.abs(a - Bp[dy : dy + H][:, cols])
        cost = ad / (b * b) + o.proximity_weight * abs(d) / dn
        inside = (np.arange(W) + s >= 0) & (np.arange(W) + s < W)
        vol[i][:, inside] = cost[:, inside]
    ib = vol.argmin(axis=0)
    disp = np.full((H, W), np.nan)
    conf = np.zeros((H, W))
    for y in range(H):
        for x in range(W):
            i = ib[y, x]
            if (
                i == 0
                or i == len(ds) - 1
                or not (np.isfinite(vol[i - 1, y, x]) and np.isfinite(vol[i + 1, y, x]))
            ):
                continue
            cp, c, cn = vol[i - 1, y, x], vol[i, y, x], vol[i + 1, y, x]
            den = cp - 2 * c + cn
            disp[y, x] = ds[i] + (np.clip(0.5 * (cp - cn) / den, -0.5, 0.5) if den > 0 else 0.0)
            rest = np.concatenate([vol[: i - 1, y, x], vol[i + 2 :, y, x]])
            sec = rest.min() if rest.size else np.inf
            conf[y, x] = np.clip(1 - c / sec, 0, 1) if sec > 0 else 0.0
    return disp, conf


@pytest.mark.parametrize(
    "block, dmin, dmax, weight", [(1, -6, 7, 0.0), (3, -5, 7, 0.05), (5, -4, 7, 0.1), (9, 2, 9, 0.05)]
)
def test_block_match_equals_cost_volume_oracle(xp, block, dmin, dmax, weight):
    rng = np.random.default_rng(1)
    H, W = 9, 23
    L = rng.random((H, W)).astype(np.float32)
    R = (np.roll(L, -3, axis=1) + 0.1 * rng.random((H, W))).astype(np.float32)
    o = MatchOptions(block=block, dmin=dmin, dmax=dmax, proximity_weight=weight, texture_threshold=0)
    res = block_match(xp.asarray(L), xp.asarray(R), o)
    for right, disp, conf in (
        (False, res.disparity_left, res.confidence_left),
        (True, res.disparity_right, res.confidence_right),
    ):
        d0, c0 = _reference_match(L, R, o, right)
        disp, conf = host(disp), host(conf)
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
        inner[k * H // len(bands) - 2 : k * H // len(bands) + 2] = False
    return L, R, dtrue, inner


def test_block_match_recovers_known_disparity(xp):
    L, R, dtrue, inner = _band_pair()
    o = MatchOptions(dmin=-30, dmax=30)
    res = block_match(xp.asarray(L), xp.asarray(R), o)
    for disp, ref in ((res.disparity_left, L), (res.disparity_right, R)):
        disp = host(disp)
        textured = (host(texture_map(xp.asarray(ref))) >= o.texture_threshold) & inner
        valid = np.isfinite(disp) & inner
        assert textured.sum() > 0.1 * inner.sum()
        assert valid.sum() >= 0.95 * textured.sum()
        err = np.abs(disp - dtrue)[valid]
        assert np.mean(err < 0.3) >= 0.9
        assert np.median(err) < 0.15
    conf = host(res.confidence_left)[np.isfinite(host(res.disparity_left))]
    assert conf.min() >= 0 and conf.max() <= 1 and np.median(conf) > 0.3
    cost = host(res.cost_left)
    np.testing.assert_array_equal(np.isnan(cost), np.isnan(host(res.disparity_left)))


def test_proximity_term_breaks_ties_towards_small_disparity(xp):
    H, W, period, shift = 24, 160, 16, 3
    x = np.arange(W, dtype=np.float64)
    L = np.tile(0.5 + 0.5 * np.sin(2 * np.pi * x / period), (H, 1)).astype(np.float32)
    R = np.tile(0.5 + 0.5 * np.sin(2 * np.pi * (x + shift) / period), (H, 1)).astype(np.float32)
    interior = np.s_[:, 40:-40]  # every alias 3 + 16 k in [-30, 30] lies inside the image here
    near = host(block_match(xp.asarray(L), xp.asarray(R), MatchOptions(dmin=-30, dmax=30)).disparity_left)[
        interior
    ]
    assert np.isfinite(near).mean() > 0.7  # blocks on the crests of the sine are too flat
    near = near[np.isfinite(near)]
    assert np.all(np.abs(near - shift) < 0.2)  # parabola through a V-shaped SAD: small bias
    flat = host(
        block_match(
            xp.asarray(L), xp.asarray(R), MatchOptions(dmin=-30, dmax=30, proximity_weight=0)
        ).disparity_left
    )[interior]
    flat = flat[np.isfinite(flat)]
    assert flat.size > 0.7 * near.size
    # without the proximity term all aliases tie and the scan keeps the first one, d = -29
    assert np.all(np.rint(flat) == shift - 2 * period)


def test_texture_rule_invalidates_horizontal_edges_and_uniform_areas(xp):
    H, W = 48, 96
    horiz = np.zeros((H, W), np.float32)
    horiz[24:] = 1
    res = block_match(xp.asarray(horiz), xp.asarray(horiz), MatchOptions(dmin=-10, dmax=10))
    assert np.isnan(host(res.disparity_left)).all() and np.isnan(host(res.disparity_right)).all()
    assert (host(res.confidence_left) == 0).all()

    L = np.zeros((H, W), np.float32)
    R = np.zeros((H, W), np.float32)
    L[:, 40:] = 1
    R[:, 35:] = 1  # the vertical edge moves by d = 5
    res = block_match(xp.asarray(L), xp.asarray(R), MatchOptions(dmin=-10, dmax=10))
    dl, dr = host(res.disparity_left), host(res.disparity_right)
    valid_cols = np.flatnonzero(np.isfinite(dl).any(axis=0))
    np.testing.assert_array_equal(valid_cols, [39, 40])  # only blocks that contain the edge
    assert np.isfinite(dl[:, 39:41]).all()
    np.testing.assert_allclose(dl[:, 39:41], 5, atol=0.01)
    np.testing.assert_array_equal(np.flatnonzero(np.isfinite(dr).any(axis=0)), [34, 35])
    np.testing.assert_allclose(dr[:, 34:36], 5, atol=0.01)
    tex = host(texture_map(xp.asarray(L)))
    np.testing.assert_allclose(tex[:, 39:41], 0.5, atol=1e-6)
    assert (tex[:, :39] == 0).all() and (tex[:, 41:] == 0).all()


def test_minimum_at_range_end_is_invalid(xp):
    H, W = 12, 120
    ramp = np.tile(np.arange(W, dtype=np.float32) / W, (H, 1))  # SAD grows with |d - d_true|
    o = MatchOptions(dmin=-8, dmax=8, texture_threshold=0, proximity_weight=0)
    for d_true, inside in ((12, False), (-12, False), (5, True)):
        right = np.tile((np.arange(W, dtype=np.float32) + d_true) / W, (H, 1))
        d = host(block_match(xp.asarray(ramp), xp.asarray(right), o).disparity_left)[:, 20:-20]
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
