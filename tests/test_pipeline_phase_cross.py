"""Experiment 2, the phase-contrast cross: automatic rectification of views with few corners.

The phased views of the phase cross show a cross (few corners, long straight edges at 30 and 120
deg) and the right one is blurrier; the right view is rotated by 1 deg and shifted 2 px down by the
simulator. These tests use the simulator's true views (less the membrane, as phasing recovers them)
with the right view blurred and noisy, so that they run in seconds, and check the rectification
against the simulator's own misalignment.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _helpers import rotation_deg
from scipy import ndimage as ndi

import xstereo_gpu as xs
from xstereo_gpu.errors import InputError
from xstereo_gpu.stereo.correspondence import epipolar_matches
from xstereo_gpu.stereo.fundamental import fundamental_matrix
from xstereo_gpu.stereo.homography import apply_homography, vertical_residual
from xstereo_gpu.stereo.rectify import rectify_pair, rectifying_homographies


@pytest.fixture(scope="module")
def phase_cross():
    """(views (2, N, N) float32 amplitudes |t - t_membrane|, right blurred and noisy; true pairs)."""
    shot = xs.simulate_shot(xs.SimulationOptions.for_sample("phase-cross"))
    truth = shot.truth
    amp = np.abs(truth.phasable_views).astype(np.float32)
    rng = np.random.default_rng(7)
    left = ndi.gaussian_filter(amp[0], 0.7) + rng.normal(0, 0.01, amp[0].shape)
    right = ndi.gaussian_filter(amp[1], 1.6) + rng.normal(0, 0.02, amp[1].shape)
    views = np.stack([left, right]).astype(np.float32)
    # true correspondences: the edge points seen along each beam, the right one misaligned
    n = views.shape[-1]
    pix = truth.pixel_size_m
    t1, t2 = (math.radians(a) for a in shot.angles_deg)
    p = np.asarray(truth.edge_points_m)
    xl = (p[:, 0] + p[:, 2] * math.tan(t1)) / pix + n // 2
    xr = (p[:, 0] - p[:, 2] * math.tan(t2)) / pix + n // 2
    y = p[:, 1] / pix + n // 2
    M = np.asarray(truth.extra["right_view_transform"])
    pairs = (np.stack([xl, y], axis=1), apply_homography(M, np.stack([xr, y], axis=1)))
    return views, pairs, float(truth.extra["right_rotation_deg"])


def test_rectify_pair_on_phase_cross_views(phase_cross):
    views, (tl, tr), rot = phase_cross
    res = rectify_pair(views)
    assert len(res.points_left) >= 40
    assert np.allclose(res.H_left, np.eye(3))
    # the right view is rotated back by the simulator's angle, at unit scale
    assert abs(rotation_deg(res.H_right) + rot) < 0.35
    assert abs(np.linalg.det(res.H_right[:2, :2]) - 1) < 1e-9
    # every true edge point pair lands on one row (the quantity matching needs)
    r = vertical_residual(tl, tr, res.H_left, res.H_right)
    assert np.abs(r).max() < 0.5 and np.sqrt(np.mean(r**2)) < 0.3
    # without rectification the rows differ by up to ~4 px
    assert np.abs(tl[:, 1] - tr[:, 1]).max() > 2.5


def test_epipolar_matches_model_and_determinism(phase_cross):
    views, (tl, tr), rot = phase_cross
    a = epipolar_matches(views[0], views[1])
    b = epipolar_matches(views[0], views[1])
    np.testing.assert_array_equal(a["points_right"], b["points_right"])
    assert abs(a["rotation_deg"] + rot) < 0.35  # right view rotated by +rot: the model undoes it
    assert len(a["points_left"]) >= 0.4 * a["points_tried"]
    assert np.all(a["ncc"] >= 0.7)
    # the matches obey the true geometry: their rows agree under the true rectification
    Ft = fundamental_matrix(tl, tr, rigid=True)
    Hl, Hr = rectifying_homographies(Ft, tl, tr, views.shape[1:])
    assert abs(rotation_deg(Hr) + rot) < 1e-6  # the rigid fit of exact pairs is exact
    r = vertical_residual(a["points_left"], a["points_right"], Hl, Hr)
    assert np.median(np.abs(r)) < 0.7  # single matches scatter; the fit is what counts
    # a search that misses the disparities (|d| <= 12 px here) leaves few consistent matches
    with pytest.raises(InputError, match="feature matches"):
        rectify_pair(np.stack([views[0], np.roll(views[1], 60, axis=1)]), search=(-20, 20))
