"""The hit veto (xstereo_gpu/batch/veto.py): photons per pattern window, the threshold."""

from __future__ import annotations

import numpy as np
import pytest
from batch_helpers import small_shot

from xstereo_gpu.batch import VetoOptions, is_hit, window_photons
from xstereo_gpu.batch.veto import DEFAULT_MIN_PHOTONS
from xstereo_gpu.errors import InputError
from xstereo_gpu.phasing.prepare import crop_pattern


@pytest.fixture(scope="module")
def shot():
    return small_shot(seed=3)


def test_window_photons_are_the_prepare_crops_sums(shot):
    p = window_photons(shot.frame, shot.mask, shot.centres_px, shot.pattern_size)
    assert p.shape == (2,) and p.dtype == np.float64
    for k in range(2):
        crop, valid, _, _ = crop_pattern(shot.frame, shot.mask, shot.centres_px[k], shot.pattern_size)
        assert p[k] == pytest.approx(float(crop[valid].sum(dtype=np.float64)), rel=1e-9)


def test_a_simulated_hit_passes_and_a_scaled_down_frame_is_blank(shot):
    p = window_photons(shot.frame, shot.mask, shot.centres_px, shot.pattern_size)
    assert p.min() > 30 * DEFAULT_MIN_PHOTONS  # ~1e7 photons per pattern
    assert is_hit(p)
    dim = window_photons(shot.frame * 1e-4, shot.mask, shot.centres_px, shot.pattern_size)
    assert dim.max() < DEFAULT_MIN_PHOTONS / 30
    assert not is_hit(dim)
    assert is_hit(dim, VetoOptions(min_photons=0))


def test_masked_and_non_finite_pixels_do_not_count(shot):
    frame = shot.frame.copy()
    mask = shot.mask.copy()
    r, c = (int(round(v)) for v in shot.centres_px[0])
    frame[r - 2 : r + 3, c - 2 : c + 3] = 1e9
    mask[r - 2 : r + 3, c - 2 : c + 3] = 0x10
    frame[r + 10, c + 10] = np.nan
    mask[r + 10, c + 10] = 0
    ref = window_photons(
        shot.frame, shot.mask | ((mask == 0x10) * 0x10).astype(np.uint32), shot.centres_px, 128
    )
    got = window_photons(frame, mask, shot.centres_px, 128)
    assert got[0] == pytest.approx(ref[0] - float(shot.frame[r + 10, c + 10]), rel=1e-9)
    assert np.all(np.isfinite(got))


def test_windows_off_the_frame_and_hdr_series():
    frame = np.ones((2, 64, 64), np.float32)
    frame[1] *= 3
    mask = np.zeros((64, 64), np.uint32)
    centres = np.array([[32.0, 16.0], [500.0, 500.0]])  # the right window lies off the frame
    p = window_photons(frame, mask, centres, 16)
    assert p.tolist() == [3.0 * 256, 0.0]  # brightest exposure; nothing off the frame
    assert not is_hit(p, VetoOptions(min_photons=1))
    assert not is_hit([np.nan, 1e9])


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), True, "1e5"])
def test_veto_options_refuse_bad_thresholds(bad):
    with pytest.raises(InputError, match="min_photons"):
        VetoOptions(min_photons=bad)
