"""Census and ZNCC matching costs (xstereo_gpu/stereo/costs.py), the clean-up filters
(stereo/postfilter.py) and their options: census bits and Hamming distances against direct counts,
a known shift recovered on random texture, invariance to an exposure change between the views,
strips equal to the whole volume, speckles and holes on synthetic maps."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from xstereo_gpu.config import MatchOptions, PreprocessOptions, StereoOptions
from xstereo_gpu.errors import InputError
from xstereo_gpu.stereo.costs import _popcount_swar, census_transform, hamming_distance
from xstereo_gpu.stereo.postfilter import fill_holes, remove_speckles
from xstereo_gpu.stereo.sgm import semi_global_match, sgm_cost_volume
from xstereo_gpu.stereo.stage import match_views

SHIFT = 5  # right = left moved 5 px to the left: d = x_left - x_right = +5


def _pair(seed=0, shape=(40, 64), shift=SHIFT):
    """Smooth random texture quantised to 8-bit grey levels, and its copy shifted by ``shift``."""
    rng = np.random.default_rng(seed)
    t = ndimage.gaussian_filter(rng.standard_normal((shape[0], shape[1] + shift)), 1.2)
    t = np.round(255 * (t - t.min()) / (t.max() - t.min())) / 255
    return t[:, :-shift].astype(np.float32), t[:, shift:].astype(np.float32)


def _opts(**kw):
    base = dict(dmin=-8, dmax=12, texture_threshold=0.0, proximity_weight=0.0, method="sgm")
    return MatchOptions(**{**base, **kw})


def test_census_bits_and_hamming_against_direct_counts():
    rng = np.random.default_rng(1)
    img = rng.random((6, 7)).astype(np.float32)
    code = census_transform(img, (3, 5))
    # pixel (2, 3): its 14 neighbours in row-major order, the first one in the highest bit
    nb = [img[2 + dy, 3 + dx] < img[2, 3] for dy in (-1, 0, 1) for dx in range(-2, 3) if (dy, dx) != (0, 0)]
    assert int(code[2, 3]) == int("".join("1" if b else "0" for b in nb), 2)
    assert int(code.max()) < 2**14
    a = rng.integers(0, 2**63, (50,), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, (50,), dtype=np.uint64)
    direct = [bin(int(x) ^ int(y)).count("1") for x, y in zip(a, b)]
    assert hamming_distance(a, b).tolist() == direct
    assert _popcount_swar(a ^ b).tolist() == direct  # the path of array modules without bitwise_count


@pytest.mark.parametrize("cost, block", [("census", 3), ("zncc", 5)])
@pytest.mark.parametrize("aggregate", [True, False])
def test_known_shift_on_random_texture(cost, block, aggregate):
    left, right = _pair()
    res = semi_global_match(left, right, _opts(cost=cost, block=block), aggregate=aggregate)
    d = res.disparity_left[:, 12:-4]  # columns whose match lies inside the right view
    need = 0.97 if aggregate else 0.9  # winner takes all per block: a few blocks of little texture fail
    assert (np.abs(d - SHIFT) < 0.25).mean() > need
    dr = res.disparity_right[:, 4:-12]
    assert (np.abs(dr - SHIFT) < 0.25).mean() > need


def test_costs_are_invariant_to_an_exposure_change():
    left, right = _pair(seed=2)
    darker = (0.5 * right + np.float32(20 / 255)).astype(np.float32)  # 0.5 R + 20 on 0..255
    census = _opts(cost="census")
    np.testing.assert_array_equal(sgm_cost_volume(left, right, census), sgm_cost_volume(left, darker, census))
    zncc = _opts(cost="zncc", block=5)
    np.testing.assert_allclose(
        sgm_cost_volume(left, right, zncc), sgm_cost_volume(left, darker, zncc), atol=2e-4
    )
    # the paper's SAD is not invariant: its best cost moves by the exposure change
    sad = _opts(cost="sad")
    assert np.nanmean(semi_global_match(left, darker, sad).cost_left) > 0.05
    for opts in (census, zncc):
        d = semi_global_match(left, darker, opts).disparity_left[:, 12:-4]
        assert (np.abs(d - SHIFT) < 0.25).mean() > 0.97


@pytest.mark.parametrize("cost", ["census", "zncc"])
def test_strips_give_the_whole_images_maps(cost):
    left, right = _pair(seed=3, shape=(23, 40))
    opts = _opts(cost=cost, block=3, sgm_paths=8)
    whole = semi_global_match(left, right, opts, max_memory=1 << 30)
    strips = semi_global_match(left, right, opts, strip_rows=6)
    for name in ("disparity_left", "disparity_right", "cost_left", "confidence_right"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(strips, name), err_msg=name)


def test_match_views_census_block_matching_uniqueness_and_speckles():
    left, right = _pair(seed=4)
    pre = PreprocessOptions(mode="none", upsample=1, normalise_percentile=100.0)
    plain = _opts(cost="census", method="bm")
    res = match_views(np.stack([left, right]), StereoOptions(), preprocess_options=pre, match_options=plain)
    valid = np.isfinite(res.disparity_left)
    assert valid.mean() > 0.8 and np.allclose(res.disparity_left[valid], SHIFT, atol=0.5)
    strict = _opts(cost="census", method="bm", uniqueness=0.9, speckle_size=5000)
    res = match_views(np.stack([left, right]), StereoOptions(), preprocess_options=pre, match_options=strict)
    assert np.isnan(res.disparity_left).all()  # no pixel that unique, no region that large
    filled = _opts(cost="census", method="bm", fill_holes=True)
    res = match_views(np.stack([left, right]), StereoOptions(), preprocess_options=pre, match_options=filled)
    assert np.isfinite(res.disparity_left).all()
    np.testing.assert_allclose(res.disparity_left[~valid], SHIFT, atol=0.5)  # holes of a constant field


def test_remove_speckles_and_fill_holes():
    d = np.full((12, 20), 10.0, np.float32)
    d[:, :8] += np.linspace(0, 3, 8, dtype=np.float32)  # a smooth ramp: steps of 0.43 px, one region
    d[3:5, 12:14] = 30.0  # a 4-pixel speckle
    d[8, 2] = np.nan
    out = remove_speckles(d, 5, 1.0)
    assert np.isnan(out[3:5, 12:14]).all()
    assert np.isfinite(out).sum() == d.size - 4 - 1
    np.testing.assert_array_equal(remove_speckles(d, 4, 1.0)[3:5, 12:14], 30.0)  # large enough
    m = np.full((6, 12), 5.0, np.float32)
    m[:, :5] = 9.0  # foreground left, background right
    m[:, 5:7] = np.nan  # occlusion between them
    f = fill_holes(m)
    np.testing.assert_array_equal(f[:, 5:7], 5.0)  # the farther (smaller) neighbour
    np.testing.assert_array_equal(f[:, :5], 9.0)
    row = np.full((3, 6), np.nan, np.float32)
    row[1, 0] = 7.0  # one valid pixel fills its row; rows without any stay empty
    f = fill_holes(row)
    np.testing.assert_array_equal(f[1], 7.0)
    assert np.isnan(f[[0, 2]]).all()


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(cost="ssd"), "match.cost"),
        (dict(census_window=(8, 9)), "match.census_window"),
        (dict(census_window=(9, 9)), "match.census_window"),
        (dict(uniqueness=1.0), "match.uniqueness"),
        (dict(speckle_size=-1), "match.speckle_size"),
    ],
)
def test_option_checks(kw, field):
    with pytest.raises(InputError, match=field.replace(".", r"\.")):
        MatchOptions(**kw)
