"""HDR exposures end to end (detector, merge, prepare, shot files) and the overlap of the two patterns."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from xstereo_gpu.backend import to_host
from xstereo_gpu.errors import InputError
from xstereo_gpu.io import read_shot, write_shot
from xstereo_gpu.phasing.hdr import merge_exposures
from xstereo_gpu.phasing.prepare import split_patterns
from xstereo_gpu.shot import GroundTruth, Shot
from xstereo_gpu.simulate.detector import (MASK_SATURATED, MASK_SHADOWED, PAPER_EXPOSURES_S,
                                           apply_beamstop, expose, far_field, saturation_level)

TIMES = PAPER_EXPOSURES_S  # (30, 240) s


def _cross_rate(n: int = 128, photons_per_s: float = 2e5) -> np.ndarray:
    """Expected photons per second of the far field of a small cross, zero frequency at (n//2, n//2)."""
    yy, xx = np.mgrid[:n, :n] - n // 2
    obj = (((abs(yy) < 12) & (abs(xx) < 5)) | ((abs(xx) < 12) & (abs(yy) < 4))).astype(np.complex64)
    i = far_field(obj).astype(np.float64)
    return i * (photons_per_s / i.sum())


def _chi2(merged, lam, weights, ratio_short, sel):
    """Mean chi^2 per pixel of a two-exposure merge against the expected long-exposure counts."""
    var = weights[1] ** 2 * lam + weights[0] ** 2 * ratio_short * lam
    return float(((merged[sel] - lam[sel]) ** 2 / var[sel]).mean())


# ----------------------------------------------------------------------------------------------------
# detector


def test_expose_saturates_the_long_exposure_centre_only():
    rate = _cross_rate()
    rng = np.random.default_rng(3)
    base = np.zeros(rate.shape, np.uint32)
    apply_beamstop(np.zeros(rate.shape, np.float32), base, [[64, 64]], 1.5)
    frames, masks, fw = expose(rate, rng=rng, mask=base)
    assert frames.shape == masks.shape == (2, 128, 128)
    assert frames.dtype == np.float32 and masks.dtype == np.uint32
    # the level comes from the pixels the beamstop leaves: the brightest visible ones saturate
    assert fw == pytest.approx(saturation_level(np.where(base != 0, 0, rate), TIMES))
    assert fw < saturation_level(rate, TIMES)
    sat = (masks & MASK_SATURATED) != 0
    # the short exposure never saturates, the long one does, around the centre only
    assert not sat[0].any() and sat[1].sum() >= 20
    rows, cols = np.nonzero(sat[1])
    assert np.all(np.hypot(rows - 64, cols - 64) < 20)
    assert np.all(frames[1][sat[1]] == np.float32(fw)) and frames.max() <= fw
    # beamstop in every exposure, read as 0, never flagged as saturated
    shadow = (base & MASK_SHADOWED) != 0
    assert shadow.sum() == 9
    assert np.all(masks[:, shadow] == MASK_SHADOWED) and np.all(frames[:, shadow] == 0)
    # unsaturated pixels are Poisson counts of rate * t: the sums agree within noise
    ok = ~sat[1] & ~shadow & (rate * 240 > 0)
    for e, t in enumerate(TIMES):
        expected = (rate * t)[ok].sum()
        assert abs(frames[e][ok].sum() - expected) < 5 * np.sqrt(expected)
    # seeded: same draws again
    again = expose(rate, rng=np.random.default_rng(3), mask=base)
    np.testing.assert_array_equal(again[0], frames)


def test_expose_rejects_bad_times():
    rate = _cross_rate(32)
    rng = np.random.default_rng(0)
    for bad in ((30.0, -240.0), (0.0,), (), (30.0, float("nan"))):
        with pytest.raises(InputError, match="times_s") as exc:
            expose(rate, bad, rng=rng)
        assert "positive" in exc.value.expected
    with pytest.raises(InputError, match="full_well"):
        expose(rate, rng=rng, full_well=-1.0)
    with pytest.raises(InputError, match="rate"):
        expose(rate[0], rng=rng)


# ----------------------------------------------------------------------------------------------------
# merge


@pytest.mark.parametrize("seed", [0, 1])
def test_merge_recovers_the_pattern_within_poisson_noise(xp, seed):
    rate = _cross_rate()
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
    """A source 10 % weaker during the short exposure: the measured ratio follows, the merge stays unbiased."""
    rate = _cross_rate()
    rng = np.random.default_rng(5)
    fw = saturation_level(rate, TIMES)
    short, ms, _ = expose(rate, (30.0,), rng=rng, rate_scale=0.9, full_well=fw)
    long_, ml, _ = expose(rate, (240.0,), rng=rng, full_well=fw)
    res = merge_exposures(np.concatenate([short, long_]), np.concatenate([ms, ml]) == 0, TIMES)
    assert abs(res.ratios[0] / (8.0 / 0.9) - 1) < 0.01
    lam = rate * 240.0
    assert 0.9 < _chi2(res.intensity, lam, res.weights, res.ratios[0], lam > 1) < 1.1


def test_merge_batches_views_and_orders_exposures_by_time():
    rate = _cross_rate(64, 5e4)
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


# ----------------------------------------------------------------------------------------------------
# prepare: HDR frames and the overlap of the two patterns


def _radial(shape, centre, amplitude, r0=3.0, power=4.0):
    """A smooth pattern falling off as (distance / r0)**-power from its centre."""
    yy, xx = np.indices(shape)
    d2 = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2
    return amplitude / (1.0 + d2 / r0 ** 2) ** (power / 2)


def _overlapping_frame(h=96, w=150, n=96):
    """Two patterns 60 px apart on a frame, crops of 96 px: the crops overlap by 36 columns."""
    centres = np.array([[48.0, 45.0], [47.0, 105.0]])
    own = np.stack([_radial((h, w), centres[k], a) for k, a in enumerate((1e5, 1.5e5))])
    return own, centres, n


def test_split_patterns_masks_the_overlap_where_expected():
    own, centres, n = _overlapping_frame()
    frame = own.sum(axis=0).astype(np.float32)
    for ratio in (1.0, 1.6):
        inten, valid = split_patterns(frame, None, centres, n, overlap_ratio=ratio)
        for k in range(2):
            r0, c0 = np.round(centres[k]).astype(int) - n // 2
            fr = np.arange(n)[:, None] + r0
            fc = np.arange(n)[None, :] + c0
            d_own = np.hypot(fr - centres[k, 0], fc - centres[k, 1])
            d_other = np.hypot(fr - centres[1 - k, 0], fc - centres[1 - k, 1])
            inside = (fr >= 0) & (fr < frame.shape[0]) & (fc >= 0) & (fc < frame.shape[1])
            expected = inside & ~(d_other < ratio * d_own)
            # the mask is exactly the geometric rule (away from rounding at its boundary)
            clear = np.abs(d_other - ratio * d_own) > 1e-6
            np.testing.assert_array_equal(valid[k][clear], expected[clear])
            assert (~valid[k] & inside).sum() > 200  # the overlap region exists and is masked
            assert np.all(inten[k][~valid[k]] == 0)


def test_split_patterns_kept_pixels_are_not_contaminated():
    own, centres, n = _overlapping_frame()
    frame = own.sum(axis=0).astype(np.float32)
    ratio = 1.6
    inten, valid = split_patterns(frame, None, centres, n, overlap_ratio=ratio)
    none_masked, valid0 = split_patterns(frame, None, centres, n, overlap_ratio=1e-3)
    for k in range(2):
        mine, _ = split_patterns(own[k].astype(np.float32), None, centres, n, overlap_ratio=ratio)
        other, _ = split_patterns(own[1 - k].astype(np.float32), None, centres, n, overlap_ratio=ratio)
        v = valid[k]
        # what phasing gets on the kept pixels is this pattern's signal, the other one's share small
        share = other[k][v] / mine[k][v]
        bound = (1.5 if k == 0 else 1 / 1.5) * ratio ** -4 * 1.1  # brightness ratio x ratio**-power, +10 %
        assert share.max() < bound, (k, share.max(), bound)
        assert other[k][v].sum() / mine[k][v].sum() < 3e-3
        np.testing.assert_allclose(inten[k][v], mine[k][v] + other[k][v], rtol=1e-5)
        # without the overlap mask the other pattern dominates part of the crop
        nm = valid0[k]
        frame_other, _ = split_patterns(own[1 - k].astype(np.float32), None, centres, n, overlap_ratio=1e-3)
        frame_mine, _ = split_patterns(own[k].astype(np.float32), None, centres, n, overlap_ratio=1e-3)
        assert (frame_other[k][nm] / frame_mine[k][nm]).max() > 5


def test_split_patterns_hdr_frame(xp):
    own, centres, n = _overlapping_frame()
    rate = own.sum(axis=0) / 1e3  # photons per second
    rng = np.random.default_rng(4)
    mask = np.zeros(rate.shape, np.uint32)
    apply_beamstop(np.zeros(rate.shape, np.float32), mask, centres, 1.0)
    frames, masks, fw = expose(rate, rng=rng, mask=mask)
    assert ((masks[1] & MASK_SATURATED) != 0).sum() > 10 and not ((masks[0] & MASK_SATURATED) != 0).any()
    inten, valid, hdr = split_patterns(xp.asarray(frames), xp.asarray(masks), centres, n, overlap_ratio=1.6,
                                       exposure_times_s=TIMES, return_hdr=True)
    inten, valid = to_host(inten), to_host(valid)
    assert inten.shape == (2, n, n) and inten.dtype == np.float32 and valid.dtype == bool
    ratios = to_host(hdr.ratios)
    assert np.all(np.abs(ratios[:, 0] / 8.0 - 1) < 0.01) and np.all(ratios[:, 1] == 1)
    # the overlap and the beamstop stay masked, exactly as for a single frame
    _, valid_single = split_patterns(frames[1], masks[1] & ~MASK_SATURATED, centres, n, overlap_ratio=1.6)
    np.testing.assert_array_equal(valid, valid_single)
    # recovered: the expected long-exposure crops within Poisson noise, saturated centres included
    lam, _ = split_patterns((rate * 240).astype(np.float32), mask, centres, n, overlap_ratio=1.6)
    w = to_host(hdr.weights)
    var = w[:, 1] ** 2 * lam + w[:, 0] ** 2 * 8 * lam
    sel = valid & (lam > 1)
    chi2 = float(((inten[sel] - lam[sel]) ** 2 / var[sel]).mean())
    assert 0.9 < chi2 < 1.1
    # splitting each exposure then merging is what split_patterns does
    per = [split_patterns(frames[e], masks[e], centres, n, overlap_ratio=1.6) for e in range(2)]
    direct = merge_exposures(np.stack([per[0][0], per[1][0]], axis=1), np.stack([per[0][1], per[1][1]], axis=1),
                             TIMES)
    np.testing.assert_allclose(direct.intensity, inten, rtol=1e-6)


def test_split_patterns_single_frame_unchanged_and_stack_of_one():
    own, centres, n = _overlapping_frame()
    frame = np.random.default_rng(0).poisson(own.sum(axis=0) / 100).astype(np.float32)
    mask = np.zeros(frame.shape, np.uint32)
    mask[50, 50] = 0x10
    a, va = split_patterns(frame, mask, centres, n, overlap_ratio=1.6)
    b, vb, hdr = split_patterns(frame[None], mask[None], centres, n, overlap_ratio=1.6, exposure_times_s=[240.0],
                                return_hdr=True)
    c, vc, none = split_patterns(frame, mask, centres, n, overlap_ratio=1.6, return_hdr=True)
    assert none is None and hdr is not None
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(va, vb)
    np.testing.assert_array_equal(a, c)
    with pytest.raises(InputError, match="exposure_times_s"):
        split_patterns(np.stack([frame, frame]), None, centres, n)
    with pytest.raises(InputError, match="exposure_times_s"):
        split_patterns(np.stack([frame, frame]), None, centres, n, exposure_times_s=[30.0])


# ----------------------------------------------------------------------------------------------------
# data model and shot files


def _hdr_shot(rng, *, e=2) -> Shot:
    h, w, n = 40, 64, 16
    frames = rng.poisson(50.0, size=(e, h, w)).astype(np.float32)
    masks = np.zeros((e, h, w), np.uint32)
    masks[:, 20, 10:12] = MASK_SHADOWED
    masks[-1, 20, 20] = MASK_SATURATED
    views = (rng.standard_normal((2, n, n)) + 1j * rng.standard_normal((2, n, n))).astype(np.complex64)
    gt = GroundTruth(views=views, pixel_size_m=4.5e-8, edge_points_m=rng.standard_normal((12, 3)) * 1e-6,
                     edge_labels=rng.integers(0, 2, 12).astype(np.int8), description="pyramid",
                     extra={"pyramid_height_m": 1.8e-6, "n_spheres": 57, "closed": True, "name": "notch",
                            "surface_points_m": rng.standard_normal((300, 3)) * 1e-6,
                            "edge_hidden": rng.random(12) > 0.5, "big": rng.standard_normal(5000)})
    return Shot(frame=frames, mask=masks, wavelength_m=2.4e-8, distance_m=0.026, detector_pixel_m=5.4e-5,
                angles_deg=(9.5, 9.5), centres_px=np.array([[20.0, 16.0], [20.0, 48.0]]), pattern_size=n,
                sample="cross", truth=gt, extra={"seed": 3}, exposure_times_s=np.array([30.0, 240.0]))


def test_hdr_shot_round_trip(tmp_path):
    shot = _hdr_shot(np.random.default_rng(0))
    assert shot.validate().n_exposures == 2 and shot.frame_shape == (40, 64)
    path = write_shot(tmp_path / "hdr.cxi", shot)
    back = read_shot(path)
    np.testing.assert_array_equal(back.frame, shot.frame)
    np.testing.assert_array_equal(back.mask, shot.mask)
    assert back.frame.dtype == np.float32 and back.mask.dtype == np.uint32
    np.testing.assert_array_equal(back.exposure_times_s, [30.0, 240.0])
    assert back.extra == {"seed": 3}
    tx, bx = shot.truth.extra, back.truth.extra
    assert set(bx) == set(tx)
    assert bx["pyramid_height_m"] == 1.8e-6 and isinstance(bx["pyramid_height_m"], float)
    assert bx["n_spheres"] == 57 and bx["closed"] is True and bx["name"] == "notch"
    for key in ("surface_points_m", "edge_hidden", "big"):
        np.testing.assert_array_equal(bx[key], tx[key])
        assert bx[key].dtype == tx[key].dtype
    with h5py.File(path) as f:
        assert f["entry_1/data_1/data"].shape == (2, 40, 64)
        assert f["entry_1/stereo_1/exposure_times"].attrs["units"] == "s"
        np.testing.assert_array_equal(f["entry_1/instrument_1/detector_1/count_time"][()], [30.0, 240.0])
    # one exposure picked out of the series
    one = read_shot(path, frame=1)
    np.testing.assert_array_equal(one.frame, shot.frame[1])
    np.testing.assert_array_equal(one.mask, shot.mask[1])
    np.testing.assert_array_equal(one.exposure_times_s, [240.0])
    # the whole series goes through prepare
    inten, valid = split_patterns(back.frame, back.mask, back.centres_px, back.pattern_size,
                                  exposure_times_s=back.exposure_times_s)
    assert inten.shape == (2, 16, 16) and not valid[0, 8, 2:4].any() and valid[0, 8, 4]  # beamstop (20, 10:12)


def test_single_frame_shot_keeps_its_layout(tmp_path):
    shot = _hdr_shot(np.random.default_rng(1))
    single = Shot(frame=shot.frame[0], mask=shot.mask[0], wavelength_m=shot.wavelength_m,
                  distance_m=shot.distance_m, detector_pixel_m=shot.detector_pixel_m, angles_deg=shot.angles_deg,
                  centres_px=shot.centres_px, pattern_size=shot.pattern_size)
    path = write_shot(tmp_path / "one.cxi", single)
    back = read_shot(path)
    assert back.exposure_times_s is None and back.frame.shape == (40, 64) and back.n_exposures == 1
    with h5py.File(path) as f:
        assert "exposure_times" not in f["entry_1/stereo_1"]
        assert "count_time" not in f["entry_1/instrument_1/detector_1"]
    timed = Shot(**{**single.__dict__, "exposure_times_s": np.array([30.0])})
    back = read_shot(write_shot(tmp_path / "timed.cxi", timed))
    np.testing.assert_array_equal(back.exposure_times_s, [30.0])


def test_bad_exposure_times(tmp_path):
    rng = np.random.default_rng(2)
    for times, found in ((np.array([30.0, -240.0]), "-240"), (np.array([30.0]), "1 times"),
                         (np.array([30.0, 240.0, 10.0]), "3 times"), (None, "None")):
        shot = _hdr_shot(rng)
        shot.exposure_times_s = times
        with pytest.raises(InputError, match="exposure_times_s") as exc:
            shot.validate()
        assert found in exc.value.found
    shot = _hdr_shot(rng)
    shot.mask = shot.mask[0]
    with pytest.raises(InputError, match="mask"):
        shot.validate()
    # in a file: a time count that does not match the stack, and non-positive times
    path = write_shot(tmp_path / "hdr.cxi", _hdr_shot(rng))
    for name, value, found in (("three.cxi", [30.0, 240.0, 5.0], "3 times for a stack of 2 frames"),
                               ("zero.cxi", [30.0, 0.0], "0.0")):
        bad = tmp_path / name
        bad.write_bytes(path.read_bytes())
        with h5py.File(bad, "a") as f:
            del f["entry_1/stereo_1/exposure_times"]
            f["entry_1/stereo_1/exposure_times"] = np.array(value)
        with pytest.raises(InputError, match="exposure_times") as exc:
            read_shot(bad)
        assert name in exc.value.where and found in exc.value.found
    # truth.extra values that are not numbers
    shot = _hdr_shot(rng)
    shot.truth.extra["bad"] = {"a": 1}
    with pytest.raises(InputError, match="truth.extra"):
        write_shot(tmp_path / "x.cxi", shot)
