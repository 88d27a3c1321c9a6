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
from scipy import ndimage as ndi

import xstereo_gpu as xs
from xstereo_gpu.backend import to_host
from xstereo_gpu.errors import InputError
from xstereo_gpu.stereo.correspondence import epipolar_matches, ncc_surfaces
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


def _rotation_deg(H):
    return math.degrees(math.atan2(H[1, 0], H[0, 0]))


def test_rectify_pair_on_phase_cross_views(phase_cross):
    views, (tl, tr), rot = phase_cross
    res = rectify_pair(views)
    assert len(res.points_left) >= 40
    assert np.allclose(res.H_left, np.eye(3))
    # the right view is rotated back by the simulator's angle, at unit scale
    assert abs(_rotation_deg(res.H_right) + rot) < 0.35
    assert abs(np.linalg.det(res.H_right[:2, :2]) - 1) < 1e-9
    # every true edge point pair lands on one row (the quantity matching needs)
    r = vertical_residual(tl, tr, res.H_left, res.H_right)
    assert np.abs(r).max() < 0.5 and np.sqrt(np.mean(r ** 2)) < 0.3
    # without rectification the rows differ by up to ~4 px
    assert np.abs(tl[:, 1] - tr[:, 1]).max() > 2.5


def test_epipolar_matches_model_and_determinism(phase_cross):
    views, (tl, tr), rot = phase_cross
    a = epipolar_matches(views[0], views[1])
    b = epipolar_matches(views[0], views[1])
    np.testing.assert_array_equal(a["points_right"], b["points_right"])
    assert abs(a["rotation_deg"] + rot) < 0.35           # right view rotated by +rot: the model undoes it
    assert len(a["points_left"]) >= 0.4 * a["points_tried"]
    assert np.all(a["ncc"] >= 0.7)
    # the matches obey the true geometry: their rows agree under the true rectification
    Ft = fundamental_matrix(tl, tr, rigid=True)
    Hl, Hr = rectifying_homographies(Ft, tl, tr, views.shape[1:])
    assert abs(_rotation_deg(Hr) + rot) < 1e-6               # the rigid fit of exact pairs is exact
    r = vertical_residual(a["points_left"], a["points_right"], Hl, Hr)
    assert np.median(np.abs(r)) < 0.7                 # single matches scatter; the fit is what counts
    # a search that misses the disparities (|d| <= 12 px here) leaves few consistent matches
    with pytest.raises(InputError, match="feature matches"):
        rectify_pair(np.stack([views[0], np.roll(views[1], 60, axis=1)]), search=(-20, 20))


def test_ncc_surfaces_match_direct_correlation(xp):
    rng = np.random.default_rng(3)
    L = ndi.gaussian_filter(rng.random((60, 70)), 1.5).astype(np.float32)
    R = np.roll(L, (1, -3), axis=(0, 1)) + rng.normal(0, 0.01, L.shape).astype(np.float32)
    pts = np.array([[30.0, 25.0], [40.0, 35.0], [20.0, 30.0]])
    S = to_host(ncc_surfaces(xp.asarray(L), xp.asarray(R), pts, patch=4, search=(-5, 6), vertical=2))
    assert S.shape == (3, 5, 12) and S.dtype == np.float32
    h = 4
    for k, (x, y) in enumerate(pts.astype(int)):
        a = L[y - h:y + h + 1, x - h:x + h + 1].ravel()
        a = (a - a.mean()) / np.linalg.norm(a - a.mean())
        for iy, dy in enumerate(range(-2, 3)):
            for idd, d in enumerate(range(-5, 7)):
                b = R[y + dy - h:y + dy + h + 1, x - d - h:x - d + h + 1].ravel().astype(np.float64)
                b = b - b.mean()
                np.testing.assert_allclose(S[k, iy, idd], a @ b / np.linalg.norm(b), atol=2e-4)
        # the true offset (row +1, disparity +3: R is L moved 3 px left) is the best
        iy, idd = np.unravel_index(np.argmax(S[k]), S[k].shape)
        assert (iy - 2, idd - 5) == (1, 3)


def test_rigid_fit_recovers_rotation_and_shift():
    rng = np.random.default_rng(1)
    pl = rng.uniform(20, 230, (40, 2))
    th = math.radians(1.3)
    A = np.array([[math.cos(th), -math.sin(th), 0.0], [math.sin(th), math.cos(th), 0.0], [0, 0, 1]])
    A[:2, 2] = [128, 128] - A[:2, :2] @ [128, 128] + [0.0, -2.5]
    d = rng.uniform(-10, 10, 40)                           # arbitrary disparities
    pr = apply_homography(A, pl - np.stack([d, np.zeros(40)], axis=1))
    F = fundamental_matrix(pl, pr, rigid=True)
    assert np.all(F[:2, :2] == 0)
    Hl, Hr = rectifying_homographies(F, pl, pr, (256, 256))
    np.testing.assert_allclose(Hl, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(Hr[:2, :2], np.linalg.inv(A)[:2, :2], atol=1e-9)
    assert np.abs(vertical_residual(pl, pr, Hl, Hr)).max() < 1e-9
    # noisy rows: a free-scale fit absorbs noise into the scale, the rigid one keeps it at 1
    prn = pr + np.stack([np.zeros(40), rng.normal(0, 0.3, 40)], axis=1)
    Hr_rigid = rectifying_homographies(fundamental_matrix(pl, prn, rigid=True), pl, prn, (256, 256))[1]
    assert abs(np.linalg.det(Hr_rigid[:2, :2]) - 1) < 1e-9
    assert abs(_rotation_deg(Hr_rigid) + 1.3) < 0.1
