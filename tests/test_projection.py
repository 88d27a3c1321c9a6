"""Projection (xstereo_gpu.simulate.projection): path lengths and eq. (1), transmission, the right view's
misalignment."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xstereo_gpu.backend import to_host
from xstereo_gpu.errors import InputError
from xstereo_gpu.geometry import StereoGeometry
from xstereo_gpu.simulate import (
    misalign,
    misalignment_matrix,
    path_length,
    project,
    transmission,
)


@pytest.mark.parametrize("z0_nm", [400.0, -260.0])
def test_projection_shift_gives_disparity_of_eq1(xp, z0_nm):
    """A small block at height z0 appears at x + z0 tan a_k in view k; the shift is eq. (1)."""
    dr, dz = 45e-9, 20e-9
    t1, t2 = 9.5, 6.0
    z = (np.arange(61) - 30) * dz
    occ = np.zeros((61, 21, 64), dtype=np.float32)
    j0 = int(round(z0_nm * 1e-9 / dz)) + 30
    x0 = 30.0  # block columns 29..31, centroid 30
    occ[j0, 8:13, 29:32] = 1.0
    occ_d = xp.asarray(occ)
    geom = StereoGeometry(dr, (t1, t2))
    cents = []
    for k, a in enumerate(geom.signed_angles_rad):
        L = path_length(occ_d, z_m=z, pixel_m=dr, angle_rad=a)
        assert type(L) is type(occ_d) and L.dtype == xp.float32 and L.shape == (21, 64)
        Lh = to_host(L).astype(np.float64)
        # the path through one voxel slab is dz / cos a, summed over the 15 voxels of the block
        assert Lh.sum() == pytest.approx(15 * dz / math.cos(a), rel=1e-5)
        assert np.all(Lh[:8] == 0) and np.all(Lh[13:] == 0)
        c = (Lh.sum(axis=0) * np.arange(64)).sum() / Lh.sum()
        expected = geom.view_x(x0 * dr, z[j0], k) / dr
        assert c == pytest.approx(expected, abs=0.02)
        cents.append(c)
    expected_shift = z[j0] * (math.tan(math.radians(t1)) + math.tan(math.radians(t2))) / dr
    assert abs((cents[0] - cents[1]) - expected_shift) < 0.1
    assert geom.depth(cents[0] - cents[1]) == pytest.approx(z[j0], abs=0.1 * geom.voxel_depth_m)


def test_projection_transmission_and_edges(xp):
    """Uniform slab: L = t / cos a everywhere (edges replicated), T = exp(-L / 2l) exp(-i k delta L)."""
    dr, dz, lam, att = 45e-9, 20e-9, 24e-9, 20e-9
    z = (np.arange(12) - 5.5) * dz
    occ = xp.ones((12, 5, 16), dtype=xp.float32)
    a = math.radians(-9.5)
    L = to_host(path_length(occ, z_m=z, pixel_m=dr, angle_rad=a))
    np.testing.assert_allclose(L, 12 * dz / math.cos(a), rtol=1e-5)
    beta = lam / (4 * math.pi * att)
    T = project(occ, z_m=z, pixel_m=dr, angle_rad=a, wavelength_m=lam, delta=0.0, beta=beta)
    assert T.dtype == xp.complex64
    np.testing.assert_allclose(np.abs(to_host(T)) ** 2, math.exp(-12 * dz / math.cos(a) / att), rtol=1e-4)
    Tp = to_host(transmission(xp.asarray(L), wavelength_m=lam, delta=1e-3, beta=0.0))
    np.testing.assert_allclose(np.angle(Tp), -2 * math.pi / lam * 1e-3 * L, atol=1e-5)
    with pytest.raises(InputError):
        path_length(occ, z_m=z[:5], pixel_m=dr, angle_rad=a)
    with pytest.raises(InputError):
        path_length(occ, z_m=z[::-1], pixel_m=dr, angle_rad=a)


def test_misalign_moves_a_point_as_the_matrix_says(xp):
    n = 64
    img = np.zeros((n, n), dtype=np.complex64)
    img[20, 40] = 1 + 1j  # (col 40, row 20)
    out = to_host(misalign(xp.asarray(img), rotation_deg=90.0, shift_px=(3.0, -2.0)))
    assert out.dtype == np.complex64
    m = misalignment_matrix(n, rotation_deg=90.0, shift_px=(3.0, -2.0))
    col, row, _ = m @ np.array([40.0, 20.0, 1.0])
    # 90 deg about (32, 32): (x, y) = (8, -12) -> (12, 8); then rows + 3, cols - 2
    assert (col, row) == pytest.approx((32 + 12 - 2, 32 + 8 + 3))
    r, c = np.unravel_index(np.argmax(np.abs(out)), out.shape)
    assert (r, c) == (round(row), round(col)) and out[r, c] == pytest.approx(1 + 1j, abs=1e-5)
    with pytest.raises(InputError):
        misalign(xp.zeros((4, 5), dtype=xp.float32), rotation_deg=1.0, shift_px=(0, 0))
