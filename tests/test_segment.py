"""Plane fits (least squares, RANSAC), sequential planes and connected components of a cloud."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import host

from xstereo_gpu.cloud import (
    Plane,
    components,
    fit_plane,
    label_regions,
    ransac_plane,
    segment_planes,
)
from xstereo_gpu.errors import InputError


def _tilted_plane(rng, m, *, normal, offset, noise, extent=3000.0):
    """``m`` points [nm] on ``normal . p = offset`` over an ``extent`` square, with Gaussian noise."""
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    u = np.cross(n, [1.0, 0, 0] if abs(n[0]) < 0.9 else [0, 1.0, 0])
    u /= np.linalg.norm(u)
    w = np.cross(n, u)
    a, b = rng.uniform(-extent / 2, extent / 2, size=(2, m))
    return offset * n + a[:, None] * u + b[:, None] * w + rng.normal(scale=noise, size=(m, 1)) * n


def _angle_deg(n1, n2):
    return np.degrees(np.arccos(min(1.0, abs(float(np.dot(n1, n2))))))


def test_fit_plane_recovers_a_tilted_plane(xp):
    rng = np.random.default_rng(1)
    normal = np.array([0.2, -0.1, 1.0])
    normal /= np.linalg.norm(normal)
    pts = _tilted_plane(rng, 2000, normal=normal, offset=150.0, noise=5.0) + [4e4, -2e4, 0]  # off-centre
    shift = normal @ [4e4, -2e4, 0]
    plane = fit_plane(xp.asarray(pts))
    assert isinstance(plane, Plane)
    assert _angle_deg(plane.normal, normal) < 0.05
    assert plane.normal[2] > 0
    assert plane.offset == pytest.approx(150.0 + shift, abs=1.0)
    assert plane.rms == pytest.approx(5.0, rel=0.1)
    assert plane.tilt_deg == pytest.approx(np.degrees(np.arccos(normal[2])), abs=0.05)
    d = host(plane.distance(xp.asarray(pts)))
    assert np.sqrt((d**2).mean()) == pytest.approx(plane.rms, rel=1e-6)
    # z_at: the plane's height at the centroid's (x, y) is the centroid's z
    cx, cy, cz = plane.centroid
    assert plane.z_at(cx, cy) == pytest.approx(cz, abs=1e-6)


def test_fit_plane_sign_is_canonical():
    rng = np.random.default_rng(2)
    pts = _tilted_plane(rng, 300, normal=[0, 0.3, -1.0], offset=-80.0, noise=1.0)
    plane = fit_plane(pts)
    assert plane.normal[2] > 0
    np.testing.assert_allclose(plane.distance(pts).std(), plane.rms, rtol=1e-6)


def test_ransac_with_30_percent_outliers(xp):
    rng = np.random.default_rng(3)
    normal = np.array([0.1, 0.25, 1.0])
    normal /= np.linalg.norm(normal)
    inl = _tilted_plane(rng, 1400, normal=normal, offset=-300.0, noise=8.0)
    out = rng.uniform([-1500, -1500, -2000], [1500, 1500, 2000], size=(600, 3))
    out = out[np.abs(out @ normal + 300.0) > 100.0]  # true outliers, far from the plane
    pts = np.concatenate([inl, out])
    truth = np.zeros(len(pts), bool)
    truth[:1400] = True
    assert 0.25 < (~truth).mean() < 0.32
    # least squares is pulled away by the outliers; RANSAC is not
    assert _angle_deg(fit_plane(pts).normal, normal) > 5
    plane, inliers = ransac_plane(xp.asarray(pts), threshold_nm=30.0, iterations=300, seed=7)
    inliers = host(inliers)
    assert inliers.dtype == bool and inliers.shape == (len(pts),)
    assert _angle_deg(plane.normal, normal) < 0.3
    assert plane.offset == pytest.approx(-300.0, abs=3.0)
    assert plane.rms == pytest.approx(8.0, rel=0.15)
    assert inliers[:1400].mean() > 0.99
    assert not inliers[1400:].any()
    # reproducible: same seed, same answer; NumPy and CuPy draw the same candidates
    plane2, inl2 = ransac_plane(pts, threshold_nm=30.0, iterations=300, seed=7)
    np.testing.assert_array_equal(host(inl2), inliers)
    np.testing.assert_allclose(plane2.normal, plane.normal, atol=1e-9)
    # without the least-squares refit, the best candidate is still the plane
    plane3, inl3 = ransac_plane(pts, threshold_nm=30.0, iterations=300, seed=7, refine=False)
    assert _angle_deg(plane3.normal, normal) < 3
    assert abs(float(np.asarray(plane3.normal) @ inl[:, :].mean(0)) - plane3.offset) < 30


def test_ransac_survives_degenerate_draws():
    rng = np.random.default_rng(4)
    pts = _tilted_plane(rng, 60, normal=[0, 0, 1], offset=10.0, noise=0.5)
    pts = np.concatenate([pts, np.repeat(pts[:1], 200, axis=0)])  # most draws hit duplicates
    plane, inliers = ransac_plane(pts, threshold_nm=3.0, iterations=200, seed=0)
    assert _angle_deg(plane.normal, [0, 0, 1]) < 1
    assert inliers.all()


def test_segment_two_planes(xp):
    """The paper's phase cross: two planes (membrane and tilted lid), each giving an inlier cloud."""
    rng = np.random.default_rng(5)
    membrane = _tilted_plane(rng, 1500, normal=[0, 0, 1], offset=0.0, noise=10.0, extent=6000)
    lid_n = np.array([0.0, np.sin(np.radians(12)), np.cos(np.radians(12))])
    lid = _tilted_plane(rng, 900, normal=lid_n, offset=600.0, noise=10.0, extent=3000)
    noise = rng.uniform([-3000, -3000, -1500], [3000, 3000, 1500], size=(100, 3))
    pts = np.concatenate([membrane, lid, noise])
    planes, labels = segment_planes(xp.asarray(pts), 2, threshold_nm=40.0, iterations=400, seed=11)
    labels = host(labels)
    assert len(planes) == 2 and labels.dtype == np.int32 and labels.shape == (len(pts),)
    assert _angle_deg(planes[0].normal, [0, 0, 1]) < 0.5  # the more populated plane first
    assert _angle_deg(planes[1].normal, lid_n) < 0.5
    assert planes[1].offset == pytest.approx(600.0, abs=10)
    # most points land in their own plane (the two planes cross, so a few share both)
    assert (labels[:1500] == 0).mean() > 0.93
    assert (labels[1500:2400] == 1).mean() > 0.9
    # asking for more planes than there are: the third plane is built from leftovers or omitted
    planes3, labels3 = segment_planes(pts, 3, threshold_nm=40.0, iterations=400, seed=11, min_inliers=200)
    assert len(planes3) == 2
    np.testing.assert_array_equal(host(labels3), labels)


def test_components_of_separated_clusters(xp):
    rng = np.random.default_rng(6)
    a = rng.uniform(0, 300, size=(300, 3))  # ~45 nm between neighbours
    b = rng.uniform(0, 300, size=(120, 3)) + [2000, 0, 0]
    lone = np.array([[0.0, 5000.0, 0.0], [0.0, 5020.0, 0.0]])
    pts = np.concatenate([b, lone, a])  # the largest cluster last: labels still sorted by size
    labels = host(components(xp.asarray(pts), radius_nm=100.0))
    assert labels.dtype == np.int64
    assert set(labels[122:]) == {0} and set(labels[:120]) == {1} and set(labels[120:122]) == {2}
    labels_min = host(components(xp.asarray(pts), radius_nm=100.0, min_size=5))
    assert (labels_min[120:122] == -1).all() and (labels_min[122:] == 0).all()
    # a radius spanning the gaps joins everything
    assert len(set(host(components(pts, radius_nm=6000.0)))) == 1


def test_label_regions_sorted_by_size(xp):
    img = np.zeros((20, 30), bool)
    img[2:5, 2:5] = True  # 9 px, first in raster order
    img[10:18, 10:20] = True  # 80 px
    img[2:5, 20:23] = True  # 9 px
    img[0, 29] = True  # 1 px
    img[5, 5] = True  # touches the first square diagonally only
    labels, n = label_regions(xp.asarray(img))
    labels = host(labels)
    assert n == 5 and labels.dtype == np.int32
    assert (
        (labels[10:18, 10:20] == 1).all()
        and (labels[2:5, 2:5] == 2).all()
        and (labels[2:5, 20:23] == 3).all()
    )
    assert (labels[~img] == 0).all()
    l8, n8 = label_regions(xp.asarray(img), connectivity=2, min_size=5)
    l8 = host(l8)
    assert n8 == 3 and l8[5, 5] == 2 and l8[0, 29] == 0
    assert host(label_regions(xp.zeros((3, 3, 3), bool))[0]).max() == 0


def test_bad_inputs():
    with pytest.raises(InputError, match="fit_plane.points"):
        fit_plane(np.zeros((2, 3)))
    with pytest.raises(InputError, match="ransac_plane.points"):
        ransac_plane(np.zeros((10, 2)), threshold_nm=1.0)
    with pytest.raises(InputError, match="threshold_nm"):
        ransac_plane(np.zeros((10, 3)), threshold_nm=0.0)
    with pytest.raises(InputError, match="finite"):
        fit_plane(np.array([[0, 0, 0], [1, 0, 0], [0, np.nan, 0]], float))
    with pytest.raises(InputError, match="n_planes"):
        segment_planes(np.zeros((10, 3)), 0, threshold_nm=1.0)
    with pytest.raises(InputError, match="radius_nm"):
        components(np.zeros((10, 3)), radius_nm=-1)
    with pytest.raises(InputError, match="Plane.z_at"):
        Plane((1.0, 0.0, 0.0), 0.0, 0.0, (0.0, 0.0, 0.0)).z_at(0.0, 0.0)
    assert components(np.zeros((0, 3)), radius_nm=1.0).shape == (0,)
