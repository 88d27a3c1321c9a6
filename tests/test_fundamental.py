"""Fundamental matrix: the normalised eight-point algorithm, the affine and rigid fits, degenerate input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _helpers import rotation_deg

from xstereo_gpu.errors import InputError
from xstereo_gpu.stereo.fundamental import fundamental_matrix
from xstereo_gpu.stereo.homography import apply_homography, vertical_residual
from xstereo_gpu.stereo.rectify import rectifying_homographies


def _skew(t):
    return np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])


def _projective_scene(n=60, seed=1):
    rng = np.random.default_rng(seed)
    K = np.array([[800, 0, 320], [0, 820, 240], [0, 0, 1.0]])
    X = np.stack([rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), rng.uniform(4, 7, n)], axis=1)
    th = np.deg2rad(12.0)
    R = np.array([[np.cos(th), 0, -np.sin(th)], [0, 1, 0], [np.sin(th), 0, np.cos(th)]])
    t = np.array([1.0, 0.1, 0.2])
    xl = X @ K.T
    xr = (X @ R.T + t) @ K.T
    Kinv = np.linalg.inv(K)
    F = Kinv.T @ _skew(t) @ R @ Kinv  # x_r^T F x_l = 0
    F /= np.linalg.norm(F)
    return xl[:, :2] / xl[:, 2:], xr[:, :2] / xr[:, 2:], F


def _same_up_to_sign(a, b):
    return min(np.abs(a - b).max(), np.abs(a + b).max())


def _epipolar_distance(F, pl, pr):
    hl = np.concatenate([pl, np.ones((len(pl), 1))], axis=1)
    hr = np.concatenate([pr, np.ones((len(pr), 1))], axis=1)
    lr = hl @ F.T  # lines in the right view
    ll = hr @ F  # lines in the left view
    e = np.sum(hr * lr, axis=1)
    return np.abs(e) * 0.5 * (1 / np.hypot(lr[:, 0], lr[:, 1]) + 1 / np.hypot(ll[:, 0], ll[:, 1]))


def test_eight_point_recovers_known_F():
    pl, pr, F = _projective_scene()
    est = fundamental_matrix(pl, pr)
    assert abs(np.linalg.norm(est) - 1) < 1e-12
    assert _same_up_to_sign(est, F) < 1e-8
    assert np.linalg.svd(est, compute_uv=False)[2] < 1e-12  # rank 2
    # exactly 8 points suffice
    assert _same_up_to_sign(fundamental_matrix(pl[:8], pr[:8]), F) < 1e-6
    # noisy points (0.5 px): the true points stay within a pixel of the estimated epipolar lines
    rng = np.random.default_rng(2)
    est = fundamental_matrix(pl + rng.normal(0, 0.5, pl.shape), pr + rng.normal(0, 0.5, pr.shape))
    assert np.linalg.svd(est, compute_uv=False)[2] < 1e-12
    dist = _epipolar_distance(est, pl, pr)
    assert np.sqrt(np.mean(dist**2)) < 1.0
    assert abs(np.sum(est * F)) > 0.9  # cosine between the two unit-norm matrices
    # and the projective F is refused by the affine rectification
    with pytest.raises(InputError, match="projective"):
        rectifying_homographies(F, pl, pr, (480, 640))


def test_affine_fits_recover_affine_F():
    rng = np.random.default_rng(4)
    X = rng.uniform(-50, 50, (40, 3))
    Ml = np.array([[1.0, 0.0, np.tan(np.deg2rad(6))], [0, 1, 0]])
    Mr = np.array([[1.0, 0.0, -np.tan(np.deg2rad(6))], [0, 1, 0]])
    th = np.deg2rad(1.5)
    Mr = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]) @ Mr
    pl = X @ Ml.T + [64, 64]
    pr = X @ Mr.T + [60, 66]
    # (a, b, c, d): (a, b) Mr + (c, d) Ml = 0
    _, _, vt = np.linalg.svd(np.concatenate([Mr, Ml], axis=0).T)
    a, b, c, d = vt[-1]
    e = -(np.array([a, b]) @ [60, 66] + np.array([c, d]) @ [64, 64])
    F = np.array([[0, 0, a], [0, 0, b], [c, d, e]])
    F /= np.linalg.norm(F)
    for kw in ({"affine": True}, {}):
        est = fundamental_matrix(pl, pr, **kw)
        assert _same_up_to_sign(est, F) < 1e-8, kw
    est = fundamental_matrix(pl, pr, affine=True)
    assert np.all(est[:2, :2] == 0)
    Hl, Hr = rectifying_homographies(est, pl, pr, (128, 128))
    assert np.abs(vertical_residual(pl, pr, Hl, Hr)).max() < 1e-9


def test_degenerate_input_raises():
    pl, pr, _ = _projective_scene()
    with pytest.raises(InputError, match="at least 8"):
        fundamental_matrix(pl[:7], pr[:7])
    with pytest.raises(InputError, match="at least 4"):
        fundamental_matrix(pl[:3], pr[:3], affine=True)
    line = np.stack([np.arange(10.0), 2 * np.arange(10.0) + 1], axis=1)
    with pytest.raises(InputError, match="collinear"):
        fundamental_matrix(line, pr[:10])
    with pytest.raises(InputError, match="collinear"):
        fundamental_matrix(pl[:10], line, left_horizontal=True)
    with pytest.raises(InputError, match="10 points"):
        fundamental_matrix(pl[:12], pr[:10])
    with pytest.raises(InputError, match=r"\(M, 2\)"):
        fundamental_matrix(np.zeros((10, 3)), pr[:10])
    bad = pl[:10].copy()
    bad[2, 0] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        fundamental_matrix(bad, pr[:10])
    # a planar scene (points related by a homography) leaves F undetermined
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 100, (20, 2))
    Hm = np.array([[1.02, 0.05, 3], [-0.04, 0.98, 1], [1e-4, 2e-4, 1]])
    with pytest.raises(InputError, match="independent"):
        fundamental_matrix(p, apply_homography(Hm, p))


def test_rigid_fit_recovers_rotation_and_shift():
    rng = np.random.default_rng(1)
    pl = rng.uniform(20, 230, (40, 2))
    th = math.radians(1.3)
    A = np.array([[math.cos(th), -math.sin(th), 0.0], [math.sin(th), math.cos(th), 0.0], [0, 0, 1]])
    A[:2, 2] = [128, 128] - A[:2, :2] @ [128, 128] + [0.0, -2.5]
    d = rng.uniform(-10, 10, 40)  # arbitrary disparities
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
    assert abs(rotation_deg(Hr_rigid) + 1.3) < 0.1
