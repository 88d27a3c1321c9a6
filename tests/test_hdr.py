"""The HDR merge of exposures (xstereo_gpu.phasing.hdr): Poisson-level recovery, the measured ratio, batches,
validation. The detector's exposures are tested in test_detector.py, HDR frames in prepare in
test_prepare.py, HDR
shot files in test_cxi.py."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import TIMES, cross_rate

from xstereo_gpu.backend import to_host
from xstereo_gpu.errors import InputError
from xstereo_gpu.phasing.hdr import merge_exposures
from xstereo_gpu.simulate.detector import MASK_SATURATED, expose, saturation_level


def _chi2(merged, lam, weights, ratio_short, sel):
    """Mean chi^2 per pixel of a two-exposure merge against the expected long-exposure counts."""
    var = weights[1] ** 2 * lam + weights[0] ** 2 * ratio_short * lam
    return float(((merged[sel] - lam[sel]) ** 2 / var[sel]).mean())


@pytest.mark.parametrize("seed", [0, 1])
def test_merge_recovers_the_pattern_within_poisson_noise(xp, seed):
    rate = cross_rate()
    frames, masks, _ = expose(rate, rng=np.random.default_rng(seed))
    res = merge_exposures(xp.asarray(frames), xp.asarray(masks), TIMES)
    merged, valid = to_host(res.intensity), to_host(res.valid)
    ratios, w = to_host(res.ratios), to_host(res.weights)
    assert merged.dtype == np.float32 and merged.shape == (128, 128) and valid.all()
    np.testing.assert_allclose(res.time_ratios, [8.0, 1.0])
    # ratio measured from the pixels unsaturated in both, within 1 % of the true 8
    assert ratios[1] == 1.0 and abs(ratios[0] / 8.0 - 1) < 0.01
    lam = rate * 240.0
    sel = valid & (lam > 1)
    chi2 = _chi2(merged, lam, w, ratios[0], sel)
    assert 0.9 < chi2 < 1.1, chi2
    # saturated pixels of the long exposure are never used: the short exposure takes them whole
    sat = (masks[1] & MASK_SATURATED) != 0
    assert sat.sum() >= 20
    assert np.all(w[1][sat] == 0) and np.all(w[0][sat] == 1)
    np.testing.assert_allclose(merged[sat], ratios[0] * frames[0][sat], rtol=1e-6)
    # the short exposure only serves the centre; the high frequencies are the long exposure's
    rows, cols = np.nonzero(w[0] > 0)
    assert np.all(np.hypot(rows - 64, cols - 64) < 30)
    np.testing.assert_array_equal(merged[w[0] == 0], frames[1][w[0] == 0])
    # weights sum to 1 and the seam is smooth: no step larger than the Gaussian's slope 1/(sigma sqrt(2 pi))
    np.testing.assert_allclose(w.sum(axis=0), 1.0, atol=1e-6)
    steps = max(np.abs(np.diff(w[0], axis=0)).max(), np.abs(np.diff(w[0], axis=1)).max())
    assert 0.05 < steps < 0.25, steps
    seam = (w[0] > 0.02) & (w[0] < 0.98)
    assert seam.sum() > 50
    assert 0.75 < _chi2(merged, lam, w, ratios[0], seam & sel) < 1.3


def test_merge_measures_the_ratio_instead_of_assuming_it():
    """A source 10 % weaker during the short exposure: the measured ratio follows, the merge stays "
    "unbiased."""
    rate = cross_rate()
    rng = np.random.default_rng(5)
    fw = saturation_level(rate, TIMES)
    short, ms, _ = expose(rate, (30.0,), rng=rng, rate_scale=0.9, full_well=fw)
    long_, ml, _ = expose(rate, (240.0,), rng=rng, full_well=fw)
    res = merge_exposures(np.concatenate([short, long_]), np.concatenate([ms, ml]) == 0, TIMES)
    assert abs(res.ratios[0] / (8.0 / 0.9) - 1) < 0.01
    lam = rate * 240.0
    assert 0.9 < _chi2(res.intensity, lam, res.weights, res.ratios[0], lam > 1) < 1.1


def test_merge_batches_views_and_orders_exposures_by_time():
    rate = cross_rate(64, 5e4)
    rng = np.random.default_rng(2)
    times = (240.0, 3.0, 30.0)  # any order
    fw = saturation_level(rate, (3.0, 30.0))  # saturates the 30 s and 240 s exposures
    views = [expose(rate * s, times, rng=rng, full_well=fw) for s in (1.0, 0.7)]
    pats = np.stack([v[0] for v in views])
    masks = np.stack([v[1] for v in views])
    res = merge_exposures(pats, masks, times)
    assert res.intensity.shape == (2, 64, 64) and res.weights.shape == (2, 3, 64, 64)
    np.testing.assert_allclose(res.time_ratios, [1.0, 80.0, 8.0])
    np.testing.assert_allclose(res.ratios, [[1.0, 80.0, 8.0]] * 2, rtol=0.03)
    for k in range(2):
        one = merge_exposures(pats[k], masks[k], times)
        np.testing.assert_array_equal(one.intensity, res.intensity[k])
        np.testing.assert_array_equal(one.ratios, res.ratios[k])
        assert np.all(res.weights[k][masks[k] != 0] == 0)  # no saturated pixel used, in any exposure
    np.testing.assert_allclose(res.weights.sum(axis=1), 1.0, atol=1e-6)
    lam = rate * 240.0 * np.array([1.0, 0.7])[:, None, None]
    w = res.weights
    var = w[:, 0] ** 2 * lam + w[:, 1] ** 2 * 80 * lam + w[:, 2] ** 2 * 8 * lam
    sel = lam > 1
    chi2 = float(((res.intensity[sel] - lam[sel]) ** 2 / var[sel]).mean())
    assert 0.85 < chi2 < 1.15


def test_merge_single_exposure_is_the_identity():
    rng = np.random.default_rng(0)
    p = rng.poisson(20.0, (1, 16, 16)).astype(np.float32)
    v = rng.random((1, 16, 16)) > 0.1
    res = merge_exposures(p, v, [30.0])
    np.testing.assert_array_equal(res.intensity, np.where(v[0], p[0], 0))
    np.testing.assert_array_equal(res.valid, v[0])


def test_merge_validation():
    p = np.ones((2, 8, 8), np.float32)
    v = np.ones((2, 8, 8), bool)
    with pytest.raises(InputError, match="times_s") as exc:
        merge_exposures(p, v, [30.0])
    assert "1 times" in exc.value.found and "2 integration times" in exc.value.expected
    with pytest.raises(InputError, match="times_s"):
        merge_exposures(p, v, [30.0, 0.0])
    with pytest.raises(InputError, match="valid"):
        merge_exposures(p, v[:, :4], [30.0, 240.0])
    with pytest.raises(InputError, match="valid"):
        merge_exposures(p, v.astype(np.float32), [30.0, 240.0])
    with pytest.raises(InputError, match="patterns"):
        merge_exposures(p[0], v[0], [30.0])
    with pytest.raises(InputError, match="sigma"):
        merge_exposures(p, v, [30.0, 240.0], sigma=0.0)
