"""Supports (xstereo_gpu.phasing.support): from the autocorrelation with a beamstop, shrink-wrap per run,
the centred box."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from _helpers import beamstop_mask, diffraction_pattern, shapes_object

from xstereo_gpu.backend import to_host
from xstereo_gpu.errors import InputError
from xstereo_gpu.phasing import autocorrelation_support, shrink_wrap
from xstereo_gpu.phasing.support import box_support


def test_autocorrelation_support_with_beamstop():
    truth = shapes_object(128)[None].astype(np.complex64)
    inten = diffraction_pattern(truth).astype(np.float32)
    full = autocorrelation_support(inten, np.ones(inten.shape, bool), threshold=0.04)
    assert full.shape == (1, 128, 128) and full.dtype == bool
    # Contains every pixel of the object's autocorrelation support, centred on (N//2, N//2).
    ac = np.fft.fftshift(np.abs(np.fft.ifft2(np.abs(np.fft.fft2(truth[0])) ** 2)))
    assert np.all(full[0][ac > 0.1 * ac.max()])
    assert not np.any(full[0][~ndi.binary_dilation(ac > 1e-3 * ac.max(), iterations=3)])
    assert full[0, 64, 64]
    # A beamstop (r = 2) must not inflate the support to most of the frame: the fill keeps it
    # close to the full-data support; without the fill it is several times larger.
    valid = beamstop_mask(inten.shape, 2)
    filled = autocorrelation_support(inten * valid, valid, threshold=0.04)
    plain = autocorrelation_support(inten * valid, valid, threshold=0.04, fill_iterations=0)
    assert filled.sum() < 1.2 * full.sum()
    assert (filled & full).sum() > 0.8 * full.sum()
    assert plain.sum() > 2 * full.sum()


def test_shrink_wrap_per_run(xp):
    n = 32
    x = np.zeros((1, 2, n, n), np.complex64)
    x[0, 0, 10:14, 10:14] = 1.0
    x[0, 1, 20:22, 5:9] = 100.0  # a different scale: the threshold is relative per run
    s = shrink_wrap(xp.asarray(x), sigma=0.5, threshold=0.3)
    s = to_host(s)
    assert s.shape == x.shape and s.dtype == bool
    assert s[0, 0, 10:14, 10:14].all() and s[0, 1, 20:22, 5:9].all()
    assert s[0, 0].sum() < 40 and s[0, 1].sum() < 30
    assert not s[0, 0, 20:22, 5:9].any()


def test_box_support_is_the_centred_half_field(xp):
    inten = xp.ones((2, 64, 64), dtype=xp.float32)
    box = to_host(box_support(inten))
    assert box.shape == (2, 64, 64) and box.dtype == bool and box.sum() == 2 * 32 * 32
    rows, cols = np.where(box[0])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (16, 47, 16, 47)  # centred on (32, 32)
    assert to_host(box_support(inten, fraction=0.25))[1].sum() == 16 * 16
    with pytest.raises(InputError, match="box support"):
        box_support(inten, fraction=0.0)
