"""Homographies: mapping points, warping views (inverse mapping), the grid of original coordinates."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import host, similarity
from scipy import ndimage as ndi

from xstereo_gpu.errors import InputError
from xstereo_gpu.stereo.homography import (
    apply_homography,
    original_coordinates,
    rectify,
)


def test_rectify_warp_and_inverse_mapping(xp):
    rng = np.random.default_rng(6)
    img = ndi.gaussian_filter(rng.random((64, 80)), 2).astype(np.float32)
    views = np.stack([img, img])
    shift = np.array([[1, 0, 3.0], [0, 1, -2.0], [0, 0, 1]])  # rectified = original + (3, -2)
    out = host(rectify(xp.asarray(views), np.eye(3), shift))
    np.testing.assert_allclose(out[0], img, atol=1e-6)
    np.testing.assert_allclose(out[1, :62, 3:], img[2:, :77], atol=1e-6)
    assert (out[1, :, :3] == 0).all() and (out[1, 62:] == 0).all()
    # a rotation: warp, then sample the rectified image at the rectified position of original pixels
    H = similarity(2.0, (0.5, -0.25), (40, 32))
    rot = host(rectify(xp.asarray(views), H, H))[0]
    yy, xx = np.mgrid[16:48, 20:60].astype(float)
    p = apply_homography(H, np.stack([xx.ravel(), yy.ravel()], axis=1))
    back = ndi.map_coordinates(rot, [p[:, 1], p[:, 0]], order=3).reshape(yy.shape)
    assert np.abs(back - img[16:48, 20:60]).max() < 0.02
    # original_coordinates is the inverse mapping of the grid; apply_homography round-trips
    oc = host(original_coordinates(H, (64, 80), like=xp.zeros(1)))
    assert oc.shape == (2, 64, 80) and oc.dtype == np.float32
    q = apply_homography(np.linalg.inv(H), np.array([[10.0, 20.0]]))
    np.testing.assert_allclose(oc[:, 20, 10], q[0, ::-1], atol=1e-4)
    pts = rng.uniform(0, 64, (5, 2))
    np.testing.assert_allclose(apply_homography(np.linalg.inv(H), apply_homography(H, pts)), pts, atol=1e-9)
    with pytest.raises(InputError, match="views"):
        rectify(xp.zeros((3, 8, 8), np.float32), np.eye(3), np.eye(3))
    with pytest.raises(InputError, match="real"):
        rectify(xp.zeros((2, 8, 8), np.complex64), np.eye(3), np.eye(3))
