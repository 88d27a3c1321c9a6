"""Semi-global matching (xstereo_gpu/stereo/sgm.py): aggregation against a direct reference,
cost volume against the block-matching cost, known disparity fields against block matching,
4 vs 8 paths, output contract, argument checks. The CUDA kernel is tested in test_sgm_kernel.py."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import FIELDS
from scipy import ndimage

from xstereo_gpu.backend import to_host
from xstereo_gpu.config import MatchOptions
from xstereo_gpu.errors import InputError
from xstereo_gpu.stereo.depth import lr_consistency
from xstereo_gpu.stereo.disparity import block_match
from xstereo_gpu.stereo.sgm import (
    INVALID_COST,
    aggregate_costs,
    path_directions,
    semi_global_match,
    sgm_cost_volume,
)

# ------------------------------------------------------------------------------ reference


def reference_aggregation(cost, p1, p2, paths):
    """Direct (slow) SGM aggregation: pixel by pixel, disparity by disparity, float32 scalars,
    the recursion written exactly as in Hirschmueller (2008) with the edge convention of sgm.py."""
    H, W, D = cost.shape
    f1, f2 = np.float32(p1), np.float32(p2)
    S = np.zeros_like(cost)
    for dy, dx in path_directions(paths):
        L = np.zeros_like(cost)
        ys = range(H) if dy >= 0 else range(H - 1, -1, -1)
        xs = range(W) if dx >= 0 else range(W - 1, -1, -1)
        for y in ys:
            for x in xs:
                py, px = y - dy, x - dx
                inside = 0 <= py < H and 0 <= px < W
                prev = L[py, px] if inside else np.full(D, INVALID_COST, np.float32)
                m = prev.min()
                for d in range(D):
                    t = min(prev[d], np.float32(m + f2))
                    if d > 0:
                        t = min(t, np.float32(prev[d - 1] + f1))
                    if d < D - 1:
                        t = min(t, np.float32(prev[d + 1] + f1))
                    L[y, x, d] = cost[y, x, d] + np.float32(t - m)
        S = S + L
    return S


def _texture(rng, H, W, sigma, pad=40):
    """A smooth random texture on 0..1 that can be sampled at any (y, x)."""
    t = ndimage.gaussian_filter(rng.standard_normal((H, W + 2 * pad)), sigma)
    t = (t - t.min()) / (t.max() - t.min())
    return lambda yy, xx: ndimage.map_coordinates(t, [yy, xx + pad], order=3, mode="nearest")


def _pair(rng, H, W, g, *, sigma, contrast, noise):
    """Views of a textured scene whose disparity at right pixel (y, xr) is g(y, xr): the point at
    right column xr is at left column xr + g. Returns left, right, truth_left, truth_right."""
    T = _texture(rng, H, W, sigma)
    yy, xx = np.mgrid[0:H, 0:W].astype(float)
    left = 0.5 + contrast * (T(yy, xx) - 0.5) + noise * rng.standard_normal((H, W))
    right = 0.5 + contrast * (T(yy, xx + g(yy, xx)) - 0.5) + noise * rng.standard_normal((H, W))
    xr = xx.copy()
    for _ in range(60):  # left pixel x <- right pixel xr with xr + g(xr) = x (|dg/dx| < 1)
        xr = xx - g(yy, xr)
    return left.astype(np.float32), right.astype(np.float32), g(yy, xr), g(yy, xx)


def _score(d, truth, m=8):
    """Fraction of finite pixels, median |error| and fraction of errors > 1 px, inside a margin."""
    d, truth = to_host(d)[m:-m, m:-m], truth[m:-m, m:-m]
    ok = np.isfinite(d)
    err = np.abs(d - truth)[ok]
    return ok.mean(), float(np.median(err)), float((err > 1).mean())


# ------------------------------------------------------------------------------ aggregation


@pytest.mark.parametrize("paths", [4, 8])
def test_aggregation_matches_direct_reference_exactly(xp, paths):
    rng = np.random.default_rng(10 + paths)
    left = rng.random((7, 10), dtype=np.float32)
    right = rng.random((7, 10), dtype=np.float32)
    # dmin > 0: columns 0..1 have no valid disparity at all (all-invalid pixels inside the paths)
    cost = sgm_cost_volume(left, right, MatchOptions(block=3, dmin=2, dmax=6))
    assert (cost[:, :2] == INVALID_COST).all() and (cost[:, 6:] < 2).all()
    want = reference_aggregation(cost, 0.03, 0.25, paths)
    got = aggregate_costs(xp.asarray(cost), p1=0.03, p2=0.25, paths=paths)
    assert got.dtype == np.float32 and got.shape == cost.shape
    np.testing.assert_array_equal(to_host(got), want)
    # invalid entries stay exactly paths * INVALID_COST (1e30 absorbs the penalties)
    np.testing.assert_allclose(want[cost == INVALID_COST], paths * float(INVALID_COST), rtol=1e-6)


def test_aggregation_independent_of_threads():
    rng = np.random.default_rng(3)
    cost = rng.random((130, 140, 9), dtype=np.float32)
    one = aggregate_costs(cost, p1=0.02, p2=0.2, paths=8, workers=1)
    two = aggregate_costs(cost, p1=0.02, p2=0.2, paths=8, workers=2)
    np.testing.assert_array_equal(one, two)


def test_zero_penalties_sum_the_cost_per_path():
    """P1 = P2 = 0: L_r = C + (min_k L_r(prev) - m) = C, so S = paths * C (exact for 4 paths:
    C + C = 2C, 2C + C = 3C, 3C + C = 4C are exact only to rounding: compare with tolerance)."""
    rng = np.random.default_rng(4)
    cost = rng.random((6, 8, 5), dtype=np.float32)
    for paths in (4, 8):
        S = aggregate_costs(cost, p1=0.0, p2=0.0, paths=paths)
        np.testing.assert_allclose(S, paths * cost, rtol=1e-6)


@pytest.mark.parametrize("paths", [4, 8])
def test_evidence_travels_along_the_paths(paths):
    """One pixel with a clear minimum at d = 3 in a cost-free image: with 4 paths it decides its row
    and column, with 8 paths also its diagonals; elsewhere the sum stays flat."""
    cost = np.zeros((9, 9, 5), np.float32)
    cost[4, 4] = 1.0
    cost[4, 4, 3] = 0.0
    S = aggregate_costs(cost, p1=0.05, p2=0.2, paths=paths)
    win = np.argmin(S, axis=2)
    flat = np.ptp(S, axis=2) == 0
    line = np.zeros((9, 9), bool)
    line[4, :] = line[:, 4] = True
    diag = np.eye(9, dtype=bool) | np.eye(9, dtype=bool)[::-1]
    reach = line | diag if paths == 8 else line
    assert (win[reach] == 3).all() and not flat[reach].any()
    assert flat[~reach].all()
    if paths == 4:
        assert flat[diag & ~line].all()


def test_path_directions():
    four, eight = path_directions(4), path_directions(8)
    assert set(four) == {(0, 1), (0, -1), (1, 0), (-1, 0)}
    assert eight[:4] == four and set(eight[4:]) == {(1, 1), (1, -1), (-1, 1), (-1, -1)}
    with pytest.raises(InputError) as err:
        path_directions(6)
    assert err.value.where == "match.sgm_paths"


# ------------------------------------------------------------------------------ cost volume


@pytest.mark.parametrize("block, dmin, dmax", [(3, -5, 4), (5, 2, 7), (1, -6, -1), (9, -3, 3)])
def test_cost_volume_is_the_block_matching_cost(xp, block, dmin, dmax):
    rng = np.random.default_rng(block + 10 * abs(dmax))
    left = rng.random((11, 15), dtype=np.float32)
    right = rng.random((11, 15), dtype=np.float32)
    opts = MatchOptions(block=block, dmin=dmin, dmax=dmax, proximity_weight=0.05, texture_threshold=0.0)
    vol = to_host(sgm_cost_volume(xp.asarray(left), xp.asarray(right), opts))
    assert vol.dtype == np.float32 and vol.shape == (11, 15, dmax - dmin + 1)
    h = block // 2
    Lp, Rp = np.pad(left, h, mode="edge"), np.pad(right, h, mode="edge")
    for y in range(11):
        for x in range(15):
            for i, d in enumerate(range(dmin, dmax + 1)):
                if 0 <= x - d < 15:
                    want = np.abs(
                        Lp[y : y + block, x : x + block] - Rp[y : y + block, x - d : x - d + block]
                    ).mean() + 0.05 * abs(d) / max(abs(dmin), abs(dmax))
                    assert vol[y, x, i] == pytest.approx(want, abs=3e-7)
                else:
                    assert vol[y, x, i] == INVALID_COST
    # block matching reports the same number at its winner
    bm = block_match(left, right, opts)
    ok = np.isfinite(bm.disparity_left)
    at_min = np.take_along_axis(vol, np.argmin(vol, axis=2)[..., None], 2)[..., 0]
    np.testing.assert_array_equal(bm.cost_left[ok], at_min[ok])


# ------------------------------------------------------------------------------ matching


def test_smooth_field_recovered_at_least_as_well_as_block_matching():
    rng = np.random.default_rng(5)

    def g(y, x):
        return 1.5 + 2.5 * np.sin(2 * np.pi * y / 80) * np.cos(2 * np.pi * x / 120)

    left, right, tl, tr = _pair(rng, 64, 96, g, sigma=1.0, contrast=1.0, noise=0.03)
    opts = MatchOptions(block=3, dmin=-8, dmax=8, texture_threshold=0.0, method="sgm")
    bm = block_match(left, right, opts)
    sgm = semi_global_match(left, right, opts)
    for side, truth in (("left", tl), ("right", tr)):
        f_bm, med_bm, out_bm = _score(getattr(bm, "disparity_" + side), truth)
        f_sg, med_sg, out_sg = _score(getattr(sgm, "disparity_" + side), truth)
        assert f_sg >= f_bm > 0.95
        assert med_sg <= med_bm and med_sg < 0.15  # subpixel accuracy on a smooth surface
        assert out_sg <= out_bm and out_sg < 0.005  # (block matching: ~2 % gross errors here)


def test_piecewise_constant_weak_texture_fills_more():
    """Two fronto-parallel planes (d = 3 and d = -2), weak texture (std ~0.08) plus noise: after the
    left-right check SGM keeps more pixels, with a smaller median error and fewer gross errors."""
    rng = np.random.default_rng(7)

    def g(y, x):
        return np.where(x < 48, 3.0, -2.0) + 0 * y

    left, right, tl, tr = _pair(rng, 64, 96, g, sigma=1.5, contrast=0.6, noise=0.02)
    assert left.std() < 0.1
    opts = MatchOptions(block=3, dmin=-8, dmax=8, texture_threshold=0.02)
    scores = {}
    for name, fn in (("bm", block_match), ("sgm", semi_global_match)):
        res = fn(left, right, opts)
        dl, _ = lr_consistency(res.disparity_left, res.disparity_right, tolerance=1.0)
        scores[name] = _score(dl, tl)
    (f_bm, med_bm, out_bm), (f_sg, med_sg, out_sg) = scores["bm"], scores["sgm"]
    assert f_sg >= f_bm + 0.05
    assert med_sg <= med_bm
    assert out_sg <= out_bm


def test_eight_paths_versus_four():
    rng = np.random.default_rng(5)

    def g(y, x):
        return 1.5 + 2.5 * np.sin(2 * np.pi * y / 80) * np.cos(2 * np.pi * x / 120)

    left, right, tl, _ = _pair(rng, 64, 96, g, sigma=1.0, contrast=1.0, noise=0.03)
    res = {
        p: semi_global_match(
            left, right, MatchOptions(block=3, dmin=-8, dmax=8, texture_threshold=0.0, sgm_paths=p)
        )
        for p in (4, 8)
    }
    assert not np.array_equal(res[4].confidence_left, res[8].confidence_left)  # the diagonals count
    f4, med4, out4 = _score(res[4].disparity_left, tl)
    f8, med8, out8 = _score(res[8].disparity_left, tl)
    assert f8 >= f4 - 0.01 and med8 <= 1.1 * med4 and out8 <= out4 + 0.002


def test_output_contract_and_known_shift(xp):
    rng = np.random.default_rng(11)
    base = ndimage.gaussian_filter(rng.random((40, 80)), 0.8).astype(np.float32)
    base = (base - base.min()) / (base.max() - base.min())
    left = base[:, 10:70].copy()
    right = base[:, 14:74].copy()  # right(x) = left(x + 4): d = x_left - x_right = 4
    left[5:15, 20:35] = 0.5  # a textureless patch in both views
    right[5:15, 20:35] = 0.5
    opts = MatchOptions(block=3, dmin=-10, dmax=10, sgm_p1=0.02, sgm_p2=0.2)
    res = semi_global_match(xp.asarray(left), xp.asarray(right), opts, kernels=False)
    for f in FIELDS:
        a = getattr(res, f)
        assert a.dtype == np.float32 and a.shape == left.shape and type(a) is type(xp.asarray(left))
    host = {f: to_host(getattr(res, f)) for f in FIELDS}
    for side in ("left", "right"):
        d, c, q = host["disparity_" + side], host["cost_" + side], host["confidence_" + side]
        np.testing.assert_array_equal(np.isnan(d), np.isnan(c))
        assert (q[np.isnan(d)] == 0).all() and (q >= 0).all() and (q <= 1).all()
        assert np.isnan(d[7:13, 23:32]).all()  # texture rule
        x = np.arange(left.shape[1])
        u = x - d if side == "left" else x + d  # matched column in the other view
        assert (u[np.isfinite(d)] >= 0.5).all() and (u[np.isfinite(d)] <= left.shape[1] - 1.5).all()
        inner = d[:, 6:-6]
        ok = np.isfinite(inner)
        assert ok.mean() > 0.8
        assert np.median(np.abs(inner[ok] - 4)) < 0.05 and (np.abs(inner[ok] - 4) < 0.5).mean() > 0.97
        assert np.nanmedian(c[:, 6:-6]) == pytest.approx(0.02, abs=1e-6)  # exact match: the proximity term
    if xp is np:
        ref = semi_global_match(left, right, opts)
        for f in FIELDS:
            np.testing.assert_array_equal(host[f], getattr(ref, f))


def test_cupy_array_code_matches_numpy(xp):
    """The same array code on CuPy (kernels off) gives NumPy's maps (bit-identical sums)."""
    rng = np.random.default_rng(12)
    left = rng.random((24, 40), dtype=np.float32)
    right = np.roll(left, 2, axis=1) + 0.01 * rng.random((24, 40), dtype=np.float32)
    opts = MatchOptions(block=3, dmin=-6, dmax=6, sgm_paths=8)
    want = semi_global_match(left, right, opts)
    got = semi_global_match(xp.asarray(left), xp.asarray(right), opts, kernels=False)
    for f in FIELDS:
        np.testing.assert_allclose(to_host(getattr(got, f)), getattr(want, f), rtol=0, atol=1e-6, err_msg=f)


def test_no_valid_disparity_columns_are_invalid():
    rng = np.random.default_rng(13)
    left = rng.random((12, 20), dtype=np.float32)
    right = rng.random((12, 20), dtype=np.float32)
    res = semi_global_match(left, right, MatchOptions(block=3, dmin=5, dmax=9, texture_threshold=0.0))
    assert np.isnan(res.disparity_left[:, :6]).all()  # x - d >= 1 needs x >= d_best + 1 >= 7
    assert np.isnan(res.disparity_right[:, 20 - 6 :]).all()
    assert np.isfinite(res.disparity_left[:, 12:]).mean() > 0.5


# ------------------------------------------------------------------------------ arguments


@pytest.mark.parametrize(
    "left, right, where",
    [
        (np.zeros((3, 4, 5), np.float32), np.zeros((3, 4), np.float32), "semi_global_match.left"),
        (np.zeros((4, 5), np.complex64), np.zeros((4, 5), np.float32), "semi_global_match.left"),
        (np.zeros((4, 5), np.float32), np.zeros((4, 6), np.float32), "semi_global_match.right"),
        (np.zeros((4, 5), np.float32), np.full((4, 5), np.nan, np.float32), "semi_global_match.right"),
    ],
)
def test_bad_images(left, right, where):
    with pytest.raises(InputError) as err:
        semi_global_match(left, right, MatchOptions(dmin=-2, dmax=2))
    assert err.value.where == where


def test_bad_options_and_volumes():
    img = np.zeros((4, 5), np.float32)
    with pytest.raises(InputError) as err:
        semi_global_match(img, img, {"sgm_paths": 4})
    assert err.value.where == "semi_global_match.options"
    with pytest.raises(InputError) as err:
        aggregate_costs(np.zeros((4, 5, 3), np.float64))
    assert "float64" in err.value.found
    with pytest.raises(InputError):
        aggregate_costs(np.zeros((4, 5), np.float32))
    with pytest.raises(InputError):
        aggregate_costs(np.zeros((4, 5, 3), np.float32), p1=0.3, p2=0.2)
    with pytest.raises(InputError):
        aggregate_costs(np.zeros((4, 5, 3), np.float32), paths=2)


@pytest.mark.parametrize("shift, dmin, dmax", [(5, 2, 12), (-5, -12, -2), (3, -4, 4)])
def test_known_shift_with_one_sided_ranges(shift, dmin, dmax):
    """right(x) = left(x + shift): d = shift in both maps, for ranges on either side of 0."""
    rng = np.random.default_rng(30 + shift)
    base = ndimage.gaussian_filter(rng.random((30, 90)), 0.7).astype(np.float32)
    base = (base - base.min()) / (base.max() - base.min())
    left, right = base[:, 20:70], base[:, 20 + shift : 70 + shift]
    res = semi_global_match(left, right, MatchOptions(block=3, dmin=dmin, dmax=dmax, texture_threshold=0.02))
    for d in (res.disparity_left[:, 14:-14], res.disparity_right[:, 14:-14]):
        ok = np.isfinite(d)
        assert ok.mean() > 0.8 and np.median(np.abs(d[ok] - shift)) < 0.05
