import math

import numpy as np
import pytest

from xstereo_gpu.errors import InputError
from xstereo_gpu.geometry import StereoGeometry, real_space_pixel


@pytest.mark.parametrize(
    "pixel, angles, resolution, dz, rz",
    [
        (49e-9, (9.5, 9.5), 127e-9, 146.0, 379.0),  # the cross experiment
        (15e-9, (3.5, 3.5), 42e-9, 122.6, 343.0),  # the pyramid (paper rounds 122.6 to 120)
    ],
)
def test_paper_voxel_and_resolution(pixel, angles, resolution, dz, rz):
    rep = StereoGeometry(pixel, angles).report(resolution)
    assert rep["voxel_depth_nm"] == pytest.approx(dz, abs=0.5)
    assert rep["resolution_z_nm"] == pytest.approx(rz, abs=0.6)
    assert rep["voxel_nm"][:2] == pytest.approx([pixel * 1e9] * 2)


def test_real_space_pixel_of_the_paper_ccd():
    # 24 nm, 26 mm, 13.5 um pixels: a 1024 crop gives 45.1 nm, a ~943 crop the paper's 49 nm
    assert real_space_pixel(24e-9, 26e-3, 13.5e-6, 1024) == pytest.approx(45.14e-9, rel=1e-3)
    assert real_space_pixel(24e-9, 26e-3, 13.5e-6, 943) == pytest.approx(49.0e-9, rel=2e-3)


def test_eq1_round_trip_and_coordinate_correction():
    g = StereoGeometry(45e-9, (9.5, 12.0))
    rng = np.random.default_rng(0)
    x, z = rng.normal(size=100) * 1e-6, rng.normal(size=100) * 5e-7
    xl, xr = g.view_x(x, z, 0), g.view_x(x, z, 1)
    d_px = (xl - xr) / g.pixel_size_m
    np.testing.assert_allclose(g.depth(d_px), z, rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(g.disparity(z), d_px, rtol=1e-12)
    np.testing.assert_allclose(g.object_x(xl, z, 0), x, atol=1e-18)
    np.testing.assert_allclose(g.object_x(xr, z, 1), x, atol=1e-18)
    # depth in pixels of another grid (the x4 matching grid)
    np.testing.assert_allclose(g.depth(d_px * 4, g.pixel_size_m / 4), z, rtol=1e-12, atol=1e-18)


@pytest.mark.parametrize("angles", [(0.0, 9.5), (9.5, 60.0), (-3, 3), (float("nan"), 1.0)])
def test_angles_outside_range_are_refused(angles):
    with pytest.raises(InputError, match=r"angles\[\d\].*\(0, 60\)"):
        StereoGeometry(45e-9, angles)


@pytest.mark.parametrize("pixel", [0.0, -1e-9, math.inf])
def test_bad_pixel_is_refused(pixel):
    with pytest.raises(InputError, match="pixel size"):
        StereoGeometry(pixel, (9.5, 9.5))
