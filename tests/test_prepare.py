"""Pattern preparation (xstereo_gpu.phasing.prepare): crops and centres, masks, the overlap of the two
patterns, HDR frames."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import TIMES, diffraction_pattern, shapes_object

from xstereo_gpu.backend import to_host
from xstereo_gpu.errors import InputError
from xstereo_gpu.phasing.hdr import merge_exposures
from xstereo_gpu.phasing.prepare import single_pattern, split_patterns
from xstereo_gpu.simulate.detector import MASK_SATURATED, apply_beamstop, expose


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
    assert not bigvalid[0, 64 + 56 :].any()  # frame rows >= 96
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
    truth = shapes_object(64).astype(np.complex64)
    pattern = diffraction_pattern(truth).astype(np.float32)  # zero frequency at (32, 32)
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


def _radial(shape, centre, amplitude, r0=3.0, power=4.0):
    """A smooth pattern falling off as (distance / r0)**-power from its centre."""
    yy, xx = np.indices(shape)
    d2 = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2
    return amplitude / (1.0 + d2 / r0**2) ** (power / 2)


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
        bound = (1.5 if k == 0 else 1 / 1.5) * ratio**-4 * 1.1  # brightness ratio x ratio**-power, +10 %
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
    inten, valid, hdr = split_patterns(
        xp.asarray(frames),
        xp.asarray(masks),
        centres,
        n,
        overlap_ratio=1.6,
        exposure_times_s=TIMES,
        return_hdr=True,
    )
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
    direct = merge_exposures(
        np.stack([per[0][0], per[1][0]], axis=1), np.stack([per[0][1], per[1][1]], axis=1), TIMES
    )
    np.testing.assert_allclose(direct.intensity, inten, rtol=1e-6)


def test_split_patterns_single_frame_unchanged_and_stack_of_one():
    own, centres, n = _overlapping_frame()
    frame = np.random.default_rng(0).poisson(own.sum(axis=0) / 100).astype(np.float32)
    mask = np.zeros(frame.shape, np.uint32)
    mask[50, 50] = 0x10
    a, va = split_patterns(frame, mask, centres, n, overlap_ratio=1.6)
    b, vb, hdr = split_patterns(
        frame[None], mask[None], centres, n, overlap_ratio=1.6, exposure_times_s=[240.0], return_hdr=True
    )
    c, vc, none = split_patterns(frame, mask, centres, n, overlap_ratio=1.6, return_hdr=True)
    assert none is None and hdr is not None
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(va, vb)
    np.testing.assert_array_equal(a, c)
    with pytest.raises(InputError, match="exposure_times_s"):
        split_patterns(np.stack([frame, frame]), None, centres, n)
    with pytest.raises(InputError, match="exposure_times_s"):
        split_patterns(np.stack([frame, frame]), None, centres, n, exposure_times_s=[30.0])
