"""Correspondences (xstereo_gpu.stereo.correspondence): the NCC surfaces against a direct correlation."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from xstereo_gpu.backend import to_host
from xstereo_gpu.stereo.correspondence import ncc_surfaces


def test_ncc_surfaces_match_direct_correlation(xp):
    rng = np.random.default_rng(3)
    L = ndi.gaussian_filter(rng.random((60, 70)), 1.5).astype(np.float32)
    R = np.roll(L, (1, -3), axis=(0, 1)) + rng.normal(0, 0.01, L.shape).astype(np.float32)
    pts = np.array([[30.0, 25.0], [40.0, 35.0], [20.0, 30.0]])
    S = to_host(ncc_surfaces(xp.asarray(L), xp.asarray(R), pts, patch=4, search=(-5, 6), vertical=2))
    assert S.shape == (3, 5, 12) and S.dtype == np.float32
    h = 4
    for k, (x, y) in enumerate(pts.astype(int)):
        a = L[y - h : y + h + 1, x - h : x + h + 1].ravel()
        a = (a - a.mean()) / np.linalg.norm(a - a.mean())
        for iy, dy in enumerate(range(-2, 3)):
            for idd, d in enumerate(range(-5, 7)):
                b = R[y + dy - h : y + dy + h + 1, x - d - h : x - d + h + 1].ravel().astype(np.float64)
                b = b - b.mean()
                np.testing.assert_allclose(S[k, iy, idd], a @ b / np.linalg.norm(b), atol=2e-4)
        # the true offset (row +1, disparity +3: R is L moved 3 px left) is the best
        iy, idd = np.unravel_index(np.argmax(S[k]), S[k].shape)
        assert (iy - 2, idd - 5) == (1, 3)
