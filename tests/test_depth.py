"""Left-right consistency, depth and points (xstereo_gpu.stereo.depth)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _helpers import host
from scipy import ndimage as ndi

from xstereo_gpu.config import MatchOptions
from xstereo_gpu.errors import InputError
from xstereo_gpu.geometry import StereoGeometry
from xstereo_gpu.stereo import (
    block_match,
    depth_map,
    lr_consistency,
    points_from_disparity,
)


def test_lr_consistency_invalidates_occluded_strip(xp):
    H, W = 10, 80
    dl = np.full((H, W), 4, np.float32)
    dr = np.full((H, W), 4, np.float32)
    dl[:, 40:50] = 9  # left pixels seen in a strip the right view does not show: wrong matches
    dr[:, 70:72] = np.nan
    kl, kr = lr_consistency(xp.asarray(dl), xp.asarray(dr), tolerance=1.0)
    kl, kr = host(kl), host(kr)
    bad_l = np.zeros(W, bool)
    bad_l[:4] = True  # partner x - 4 outside the image
    bad_l[40:50] = True  # disagreement 9 vs 4
    bad_l[74:76] = True  # partner (x - 4 in 70..71) is NaN
    np.testing.assert_array_equal(np.isnan(kl), np.broadcast_to(bad_l, (H, W)))
    bad_r = np.zeros(W, bool)
    bad_r[76:] = True  # partner x + 4 outside the image
    bad_r[36:46] = True  # partner in the strip holds 9
    bad_r[70:72] = True  # NaN stays NaN
    np.testing.assert_array_equal(np.isnan(kr), np.broadcast_to(bad_r, (H, W)))
    np.testing.assert_array_equal(kl[~np.isnan(kl)], 4)
    # a disagreement within the tolerance is kept
    dr2 = dr + np.float32(0.8)
    kl2, _ = lr_consistency(xp.asarray(dl), xp.asarray(dr2), tolerance=1.0)
    assert np.isfinite(host(kl2)[:, 10:30]).all()


def test_lr_consistency_on_matched_occlusion(xp):
    """A foreground bar (d = 14) over a textured background (d = 4): the background that the bar
    hides in the right view is dropped from the left map, the rest survives."""
    rng = np.random.default_rng(7)
    H, W = 40, 160
    bg = ndi.gaussian_filter(rng.random((H, W + 40)), 1.2)
    fg = ndi.gaussian_filter(rng.random((H, W + 40)), 1.2)
    bg = (bg - bg.min()) / (bg.max() - bg.min())
    fg = (fg - fg.min()) / (fg.max() - fg.min())
    x = np.arange(W)
    bar = (x >= 80) & (x < 110)  # bar columns in the left view
    L = np.where(bar, fg[:, x], bg[:, x]).astype(np.float32)
    xr = x  # right pixel x' shows left content at x' + d
    bar_r = (xr + 14 >= 80) & (xr + 14 < 110)
    R = np.where(bar_r, fg[:, xr + 14], bg[:, xr + 4]).astype(np.float32)
    res = block_match(xp.asarray(L), xp.asarray(R), MatchOptions(dmin=-20, dmax=20, texture_threshold=0))
    kl, _ = lr_consistency(res.disparity_left, res.disparity_right, tolerance=1.0)
    kl = host(kl)
    # background left columns 70..79 map to right 66..75, which the bar (right 66..95) covers
    occluded = kl[2:-2, 71:79]
    visible = kl[2:-2, 30:60]
    assert np.isnan(occluded).mean() > 0.8
    assert np.isfinite(visible).mean() > 0.9
    np.testing.assert_allclose(visible[np.isfinite(visible)], 4, atol=0.3)
    np.testing.assert_allclose(np.nanmedian(kl[2:-2, 85:105]), 14, atol=0.3)


GEOM = StereoGeometry(pixel_size_m=20e-9, angles_deg=(12.0, 5.0))


def test_points_from_a_plane_at_known_depth(xp):
    u, N = 4, 32
    z0 = 300.0  # nm
    d = GEOM.disparity(z0 * 1e-9) * u  # matching-grid pixels
    dl = np.full((u * N, u * N), np.nan, np.float32)
    dl[10:20, 30:90] = d
    pts = points_from_disparity(xp.asarray(dl), None, GEOM, upsample=u, view_shape=(N, N))
    p = host(pts.points_nm)
    assert p.shape == (600, 3) and p.dtype == np.float64
    np.testing.assert_allclose(p[:, 2], z0, atol=1e-4)
    r, c = host(pts.pixel).T
    dr_nm = 20.0
    x_view = ((c + 0.5) / u - 0.5 - N // 2) * dr_nm
    np.testing.assert_allclose(p[:, 0], x_view - z0 * math.tan(math.radians(12.0)), atol=1e-4)
    np.testing.assert_allclose(p[:, 1], ((r + 0.5) / u - 0.5 - N // 2) * dr_nm, rtol=1e-6)
    assert (host(pts.view) == 0).all() and (host(pts.confidence) == 1).all()
    # eq. (1) round trip
    np.testing.assert_allclose(GEOM.disparity(p[:, 2] * 1e-9) * u, d, rtol=1e-5)
    dm = host(depth_map(xp.asarray(dl), GEOM, upsample=u))
    np.testing.assert_allclose(dm[10:20, 30:90], z0, rtol=1e-5)
    assert np.isnan(dm[:10]).all() and dm.dtype == np.float32


def test_left_and_right_maps_give_the_same_object_point(xp):
    u, N = 4, 32
    shape = (u * N, u * N)
    dl = np.full(shape, np.nan, np.float32)
    dr = np.full(shape, np.nan, np.float32)
    conf_l = np.full(shape, 0.25, np.float32)
    # the same object point seen at left column 70 and right column 70 - d, for three depths
    for row, d in ((20, 12.0), (40, -7.0), (60, 3.5)):
        dl[row, 70] = d
        col_r = 70 - d
        if col_r == int(col_r):
            dr[row, int(col_r)] = d
    pts = points_from_disparity(
        xp.asarray(dl),
        xp.asarray(dr),
        GEOM,
        upsample=u,
        view_shape=(N, N),
        confidence_left=xp.asarray(conf_l),
    )
    p, view, conf = host(pts.points_nm), host(pts.view), host(pts.confidence)
    assert len(pts) == 5 and list(view) == [0, 0, 0, 1, 1]
    np.testing.assert_allclose(conf, [0.25, 0.25, 0.25, 1, 1])
    np.testing.assert_allclose(p[3], p[0], atol=1e-9)  # d = 12 row
    np.testing.assert_allclose(p[4], p[1], atol=1e-9)  # d = -7 row
    # the 3D point projects back to the left view column 70 (coordinate correction inverted)
    x_left = GEOM.view_x(p[:, 0], p[:, 2], 0)
    np.testing.assert_allclose(x_left[:3], ((70 + 0.5) / u - 0.5 - N // 2) * 20.0, atol=1e-9)


def test_points_from_disparity_validates_shapes(xp):
    with pytest.raises(InputError, match="upsample"):
        points_from_disparity(xp.zeros((64, 64), np.float32), None, GEOM, upsample=4, view_shape=(32, 32))
    with pytest.raises(InputError, match="no disparity"):
        points_from_disparity(None, None, GEOM, upsample=4, view_shape=(32, 32))
