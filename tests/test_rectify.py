"""Rectification of a pair (rectify_pair): automatic correspondences or user points, F, homographies, warp.

The pieces have their own tests: test_fundamental.py, test_homography.py, test_correspondence.py and, on
the phase cross's views, test_pipeline_phase_cross.py."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import host, similarity
from scipy import ndimage as ndi

from xstereo_gpu.errors import InputError
from xstereo_gpu.stereo.correspondence import epipolar_matches
from xstereo_gpu.stereo.homography import apply_homography, vertical_residual
from xstereo_gpu.stereo.rectify import rectify_pair

# --------------------------------------------------------------------------------------------- #
# synthetic pairs


def _disp(x, y):
    """A non-planar disparity field [view pixels] (a planar one makes F ambiguous)."""
    return (
        4.0
        + 3.0 * np.exp(-((x - 50) ** 2 + (y - 70) ** 2) / 400.0)
        - 2.0 * np.exp(-((x - 90) ** 2 + (y - 40) ** 2) / 300.0)
    )


def _textured_pair(N=128, seed=0, deg=1.0, shift=2.0):
    """Left: a smooth random texture. Right: the same scene seen with disparity ``_disp`` and then
    rotated by ``deg`` about the centre and shifted down by ``shift`` pixels (``A``).

    A right pixel ``p`` shows the scene point at ``q = A^-1 p`` (unperturbed right coordinates),
    which the left view shows at ``(q_x + d(q), q_y)``.
    """
    rng = np.random.default_rng(seed)
    T = ndi.gaussian_filter(rng.standard_normal((N + 40, N + 40)), 2.0)
    T = (T - T.min()) / (T.max() - T.min())
    yy, xx = np.mgrid[0:N, 0:N].astype(float)
    L = ndi.map_coordinates(T, [yy + 20, xx + 20], order=3)
    A = similarity(deg, (0.0, shift), (N // 2, N // 2))
    Ai = np.linalg.inv(A)
    qx = Ai[0, 0] * xx + Ai[0, 1] * yy + Ai[0, 2]
    qy = Ai[1, 0] * xx + Ai[1, 1] * yy + Ai[1, 2]
    R = ndi.map_coordinates(T, [qy + 20, qx + _disp(qx, qy) + 20], order=3)
    return np.stack([L, R]).astype(np.float32), A


def _true_pairs(A, lo=12, hi=116, step=8):
    g = np.arange(lo, hi, step, dtype=float)
    qx, qy = (a.ravel() for a in np.meshgrid(g, g))
    d = _disp(qx, qy)
    left = np.stack([qx + d, qy], axis=1)
    right = apply_homography(A, np.stack([qx, qy], axis=1))
    return left, right, d


# --------------------------------------------------------------------------------------------- #
# rectification of a rotated and shifted right view


def test_rectify_pair_aligns_rows_and_keeps_disparity(xp):
    views, A = _textured_pair()
    res = rectify_pair(xp.asarray(views), search=(-20, 20))
    assert len(res.points_left) >= 100
    # the matches are true correspondences (to a fraction of a pixel; what rectification needs, the
    # row, to a quarter pixel; along the row a few epipolar matches on ridges of the NCC are off more)
    q = apply_homography(np.linalg.inv(A), res.points_right)
    ex = q[:, 0] + _disp(q[:, 0], q[:, 1]) - res.points_left[:, 0]
    ey = q[:, 1] - res.points_left[:, 1]
    err = np.hypot(ex, ey)
    assert np.median(err) < 0.2 and np.percentile(err, 90) < 0.4
    assert np.abs(ey).max() < 0.4
    # matched points on the same row after rectification
    assert np.abs(res.residual).max() < 0.5
    assert np.sqrt(np.mean(res.residual**2)) < 0.2
    np.testing.assert_allclose(
        res.residual, vertical_residual(res.points_left, res.points_right, res.H_left, res.H_right)
    )
    # the left view is the reference; the right homography undoes A (rotation -1 deg, shift -2 px)
    np.testing.assert_allclose(res.H_left, np.eye(3), atol=1e-12)
    Ai = np.linalg.inv(A)
    np.testing.assert_allclose(res.H_right[:2, :2], Ai[:2, :2], atol=2e-3)
    assert abs(np.linalg.det(res.H_right[:2, :2]) - 1) < 2e-3  # no change of scale
    # ground truth: rows equal and disparity x_l* - x_r* unchanged (eq. 1 still holds)
    left, right, d = _true_pairs(A)
    lr, rr = apply_homography(res.H_left, left), apply_homography(res.H_right, right)
    assert np.abs(lr[:, 1] - rr[:, 1]).max() < 0.5
    assert np.abs((lr[:, 0] - rr[:, 0]) - d).max() < 0.3
    # the warped right view is the left view displaced by the disparity, row by row
    rv = host(res.views)
    assert rv.shape == (2, 128, 128) and rv.dtype == np.float32
    np.testing.assert_array_equal(rv[0], views[0])  # identity warp, order 3: exact
    yy, xx = np.mgrid[24:104, 24:104].astype(float)
    expect = ndi.map_coordinates(views[0], [yy, xx + _disp(xx, yy)], order=3)
    got = rv[1, 24:104, 24:104]
    assert np.mean(np.abs(got - expect)) < 0.01
    # without rectification the same comparison is much worse
    assert np.mean(np.abs(views[1, 24:104, 24:104] - expect)) > 5 * np.mean(np.abs(got - expect))


@pytest.mark.parametrize("affine", [True, False])
def test_full_fits_rectify_rows_with_user_points(affine):
    """16 user-picked pairs (as in the paper), 0.1 px noise; full affine or eight-point F, both
    views may be rotated: rows still agree and disparities keep their scale."""
    A = similarity(1.0, (0.0, 2.0), (64, 64))
    left, right, _ = _true_pairs(A, step=26)
    assert len(left) == 16
    rng = np.random.default_rng(5)
    pl = left + rng.normal(0, 0.1, left.shape)
    pr = right + rng.normal(0, 0.1, right.shape)
    res = rectify_pair(np.zeros((2, 128, 128), np.float32), (pl, pr), affine=affine, left_horizontal=False)
    assert np.abs(res.residual).max() < 0.5
    gl, gr, gd = _true_pairs(A, step=4)
    lr, rr = apply_homography(res.H_left, gl), apply_homography(res.H_right, gr)
    assert np.abs(lr[:, 1] - rr[:, 1]).max() < 0.5
    for H in (res.H_left, res.H_right):  # rotations / similarities of unit scale
        assert abs(np.linalg.det(H[:2, :2]) - 1) < 5e-3
        assert abs(H[0, 0] - H[1, 1]) < 1e-9 and abs(H[0, 1] + H[1, 0]) < 1e-9
    dd = (lr[:, 0] - rr[:, 0]) - gd
    assert np.ptp(dd) < 0.5  # the disparity offset is arbitrary, its scale is kept


def test_matches_respect_search_and_wrong_pairs_are_refused():
    views, A = _textured_pair(seed=3)
    m = epipolar_matches(views[0], views[1], search=(-20, 20))
    d = m["points_left"][:, 0] - m["points_right"][:, 0]
    assert len(d) >= 100 and d.min() >= -20.5 and d.max() <= 20.5
    # a search range that excludes the true disparities (2..7 px) finds nothing right, and is refused
    m = epipolar_matches(views[0], views[1], search=(-40, -15))
    pl, pr = m["points_left"], m["points_right"]
    d = pl[:, 0] - pr[:, 0]
    assert d.min() >= -40.5 and d.max() <= -14.5
    q = apply_homography(np.linalg.inv(A), pr)
    assert np.median(np.abs(q[:, 0] + _disp(q[:, 0], q[:, 1]) - pl[:, 0])) > 5
    with pytest.raises(InputError, match="correlate at"):
        rectify_pair(views, search=(-40, -15))
    with pytest.raises(InputError, match="feature matches"):  # two unrelated textures
        rectify_pair(np.stack([views[0], views[0][::-1, ::-1]]), search=(-20, 20))
