"""The detector model (xstereo_gpu.simulate.detector): far field, Poisson counts, beamstop, HDR exposures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _helpers import TIMES, cross_rate

from xstereo_gpu.errors import InputError
from xstereo_gpu.simulate.detector import (
    MASK_SATURATED,
    MASK_SHADOWED,
    add_patterns,
    apply_beamstop,
    expose,
    far_field,
    photon_counts,
    saturation_level,
)


def test_expose_saturates_the_long_exposure_centre_only():
    rate = cross_rate()
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
    rate = cross_rate(32)
    rng = np.random.default_rng(0)
    for bad in ((30.0, -240.0), (0.0,), (), (30.0, float("nan"))):
        with pytest.raises(InputError, match="times_s") as exc:
            expose(rate, bad, rng=rng)
        assert "positive" in exc.value.expected
    with pytest.raises(InputError, match="full_well"):
        expose(rate, rng=rng, full_well=-1.0)
    with pytest.raises(InputError, match="rate"):
        expose(rate[0], rng=rng)


def test_far_field_convention():
    n = 32
    w = np.zeros((n, n), dtype=np.complex64)
    w[3, 5] = 1.0
    w[10, 20] = 0.5j
    i = far_field(w)
    assert i.dtype == np.float32 and i.shape == (n, n)
    np.testing.assert_allclose(i, np.abs(np.fft.fftshift(np.fft.fft2(w))) ** 2, rtol=1e-5, atol=1e-6)
    flat = far_field(np.ones((2, n, n), dtype=np.complex64))
    assert np.argmax(flat[1]) == np.ravel_multi_index((n // 2, n // 2), (n, n))


def test_frame_is_poisson_counts_of_both_patterns(demo):
    opts, shot = demo
    frame, mask = shot.frame, shot.mask
    assert frame.shape == (512, 512) and frame.dtype == np.float32 and mask.dtype == np.uint32
    assert frame.min() >= 0 and np.array_equal(frame, np.round(frame))
    # the frame is reproducible from the truth views: same far field, same noise stream
    rng = np.random.default_rng(opts.seed)
    inten = far_field(shot.truth.views)
    pats = np.stack([photon_counts(inten[k], photons=opts.photons, rng=rng) for k in range(2)])
    for k in range(2):  # ~1e7 photons per pattern, Poisson: within 5 sigma
        assert abs(pats[k].sum(dtype=np.float64) - 1e7) < 5 * math.sqrt(1e7)
    rebuilt = add_patterns(pats, shot.centres_px, frame.shape)
    good = mask == 0
    np.testing.assert_array_equal(frame[good], rebuilt[good])
    assert frame.sum(dtype=np.float64) + rebuilt[~good].sum(dtype=np.float64) == pytest.approx(
        pats.sum(dtype=np.float64)
    )


def test_beamstop_pixels_zero_and_flagged(demo):
    opts, shot = demo
    rows, cols = np.indices(shot.frame.shape)
    inside = np.zeros(shot.frame.shape, dtype=bool)
    for cr, cc in shot.centres_px:
        inside |= (rows - cr) ** 2 + (cols - cc) ** 2 <= opts.beamstop_radius_px**2
    assert inside.sum() == 2 * 29  # two discs of radius 3
    assert np.all(shot.frame[inside] == 0)
    assert np.all(shot.mask[inside] == MASK_SHADOWED)
    assert np.all(shot.mask[~inside] == 0)
