"""Cloud to volume (xstereo_gpu.cloud.volume): frame points, height field, voxels, empty-space carving, mesh.
Their writers are tested in test_volume_file.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _helpers import host

from xstereo_gpu.cloud import (
    VolumeGrid,
    carve,
    empty_space,
    fit_plane,
    frame_points,
    height_field,
    surface_mesh,
    voxelise,
)
from xstereo_gpu.errors import InputError
from xstereo_gpu.geometry import StereoGeometry

DR = 49.0  # nm, the paper's cross
GEOM = StereoGeometry(DR * 1e-9, (9.5, 9.5))


def test_grid_for_views_follows_the_view_grid():
    g = VolumeGrid.for_views(GEOM, (64, 48), (-500.0, 700.0))
    dz = GEOM.voxel_depth_m * 1e9
    assert g.voxel_nm == pytest.approx((dz, DR, DR))
    assert g.origin_nm[1:] == (-32 * DR, -24 * DR)
    assert g.shape[1:] == (64, 48)
    z = g.axis(0)
    assert z[0] <= -500 and z[-1] >= 700 and z[1] - z[0] == pytest.approx(dz)
    assert np.min(np.abs(z)) < 1e-6  # z = 0 on a voxel centre
    with pytest.raises(InputError, match="z_range_nm"):
        VolumeGrid.for_views(GEOM, (8, 8), (5.0, 1.0))
    with pytest.raises(InputError, match="voxel_nm"):
        VolumeGrid((2, 2, 2), (1.0, 0.0, 1.0), (0.0, 0.0, 0.0))


def _plane_z(x, y):
    return 120.0 + 0.15 * x - 0.08 * y  # nm: a tilted membrane


def test_frame_points_lie_on_the_plane_around_the_cloud(xp):
    rng = np.random.default_rng(31)
    xy = rng.uniform(-800, 900, size=(300, 2))
    pts = np.column_stack([xy, _plane_z(xy[:, 0], xy[:, 1]) + rng.normal(scale=3, size=300)])
    plane = fit_plane(pts)
    frame = host(frame_points(xp.asarray(pts), plane, spacing_nm=DR, width=3, margin_nm=100.0))
    lo, hi = pts[:, :2].min(0) - 100, pts[:, :2].max(0) + 100
    n = np.ceil((hi - lo) / DR - 1e-9).astype(int) + 1
    assert frame.shape == (n[0] * n[1] - (n[0] - 6) * (n[1] - 6), 3)
    np.testing.assert_allclose(frame[:, :2].min(0), lo, atol=1e-9)
    assert (frame[:, :2].max(0) >= hi - 1e-9).all() and (frame[:, :2].max(0) < hi + DR).all()
    np.testing.assert_allclose(plane.distance(frame), 0, atol=1e-6)
    np.testing.assert_allclose(frame[:, 2], _plane_z(frame[:, 0], frame[:, 1]), atol=5)
    # three points thick: each frame point has at most 2 lattice steps to the outer border
    d_border = np.minimum(
        np.minimum(frame[:, 0] - lo[0], lo[0] + (n[0] - 1) * DR - frame[:, 0]),
        np.minimum(frame[:, 1] - lo[1], lo[1] + (n[1] - 1) * DR - frame[:, 1]),
    )
    assert d_border.max() == pytest.approx(2 * DR)


def test_height_field_of_a_plane_with_its_frame(xp):
    """Sparse edge points of a tilted plane + the frame: the Sibson height field is the plane."""
    rng = np.random.default_rng(32)
    n = 64
    idx = rng.choice(n * n, 250, replace=False)
    i, j = np.unravel_index(idx, (n, n))
    x, y = (j - n // 2) * DR, (i - n // 2) * DR
    pts = np.column_stack([x, y, _plane_z(x, y)])
    plane = fit_plane(pts)
    cloud = np.concatenate([pts, host(frame_points(pts, plane, spacing_nm=DR))])
    h = host(height_field(xp.asarray(cloud), shape=(n, n), pixel_nm=DR))
    gy, gx = (np.indices((n, n)) - n // 2) * DR
    truth = _plane_z(gx, gy)
    assert h.shape == (n, n) and np.isfinite(h).all()
    err = np.abs(h - truth)
    assert np.median(err) < 2.0 and err.max() < 0.6 * 0.17 * DR * 4  # slope 0.17 nm/nm: a few nm per pixel
    np.testing.assert_allclose(h[i, j], pts[:, 2], atol=1e-9)
    # only one corner populated and a radius limit: the far corner is undefined
    hl = host(
        height_field(xp.asarray(pts[(x < 0) & (y < 0)]), shape=(n, n), pixel_nm=DR, max_radius_nm=4 * DR)
    )
    assert np.isnan(hl[-5:, -5:]).all() and np.isfinite(hl[n // 4, n // 4])


def test_voxelise_height_field_and_cloud(xp):
    g = VolumeGrid((12, 10, 11), (146.0, DR, DR), (-5 * 146.0, -5 * DR, -5 * DR))
    gy, gx = np.meshgrid(g.axis(1), g.axis(2), indexing="ij")
    h = 0.3 * gx + 50.0
    h[0, 0] = np.nan
    occ = host(voxelise(xp.asarray(h), g))
    assert occ.shape == g.shape and occ.dtype == bool
    assert not occ[:, 0, 0].any()
    k = np.rint((h - g.origin_nm[0]) / g.voxel_nm[0])
    cols = np.isfinite(h)
    assert (occ.sum(0)[cols] == 1).all()
    np.testing.assert_array_equal(occ.argmax(0)[cols], k[cols])
    thick = host(voxelise(xp.asarray(h), g, thickness_nm=3 * 146.0))
    assert (thick.sum(0)[cols] == 3).all()
    # a cloud: the voxels holding points (duplicates, and a point off the grid, are fine)
    vox = np.array([[1, 2, 3], [4, 5, 6], [4, 5, 6], [11, 9, 10]])  # (k, i, j)
    pts = np.column_stack([g.axis(2)[vox[:, 2]], g.axis(1)[vox[:, 1]], g.axis(0)[vox[:, 0]]]) + 10.0
    pts = np.concatenate([pts, [[1e6, 0, 0]]])
    occ2 = host(voxelise(xp.asarray(pts), g))
    assert occ2.sum() == 3 and occ2[1, 2, 3] and occ2[4, 5, 6] and occ2[11, 9, 10]
    with pytest.raises(InputError, match="voxelise.data"):
        voxelise(np.zeros((3, 4)), g)


def _block_views(n, block, geom):
    """Empty masks of two views of an opaque box ``block = ((x0, x1), (y0, y1), (z0, z1))`` [nm]."""
    (x0, x1), (y0, y1), (z0, z1) = block
    cols = (np.arange(n) - n // 2) * DR
    rows = (np.arange(n) - n // 2) * DR
    masks, shadows = [], []
    for a in geom.signed_angles_rad:
        xs = [x + z * math.tan(a) for x in (x0, x1) for z in (z0, z1)]
        lo, hi = min(xs), max(xs)
        shadows.append((lo, hi))
        full = ((cols >= lo) & (cols <= hi))[None, :] & ((rows >= y0) & (rows <= y1))[:, None]
        masks.append(~full)
    return masks[0], masks[1], shadows


def test_empty_space_and_carving_of_a_known_block(xp):
    n = 40
    block = ((-300.0, 300.0), (-250.0, 250.0), (-400.0, 400.0))
    el, er, shadows = _block_views(n, block, GEOM)
    g = VolumeGrid.for_views(GEOM, (n, n), (-1500.0, 1500.0))
    empty = host(empty_space(g, xp.asarray(el), xp.asarray(er), GEOM))
    assert empty.shape == g.shape and empty.dtype == bool
    z, y, x = np.meshgrid(g.axis(0), g.axis(1), g.axis(2), indexing="ij")
    # independent truth: a voxel is empty when both projections miss the block's shadow (or its rows)
    margin = DR  # one pixel away from every shadow edge, so pixel rounding cannot matter
    in_any, out_both, in_both, out_any = (
        np.zeros(g.shape, bool),
        np.ones(g.shape, bool),
        np.ones(g.shape, bool),
        np.zeros(g.shape, bool),
    )
    rows_in = (y > -250 + margin) & (y < 250 - margin)
    rows_out = (y < -250 - margin) | (y > 250 + margin)
    in_view = np.ones(g.shape, bool)
    for (lo, hi), a in zip(shadows, GEOM.signed_angles_rad):
        xk = x + z * math.tan(a)
        inside = (xk > lo + margin) & (xk < hi - margin) & rows_in
        outside = (xk < lo - margin) | (xk > hi + margin) | rows_out
        in_any |= inside
        in_both &= inside
        out_both &= outside
        out_any |= outside
        in_view &= (xk > -(n // 2) * DR + margin) & (xk < (n // 2 - 1) * DR - margin)
    assert not empty[in_any].any()  # a voxel in front of the block in one view is not proven empty
    sure_empty = out_both & in_view
    assert sure_empty.sum() > 1000 and empty[sure_empty].all()
    # space carving ("either" view proves emptiness): everything outside the visual hull
    hull_empty = host(empty_space(g, xp.asarray(el), xp.asarray(er), GEOM, require="either"))
    assert not hull_empty[in_both].any() and hull_empty[out_any & in_view].all()
    assert hull_empty.sum() > empty.sum() and not (empty & ~hull_empty).any()
    # the block itself is inside the hull
    blk = (np.abs(x) < 300) & (np.abs(y) < 250) & (np.abs(z) < 400)
    assert not empty[blk].any()
    # outside the view field: unknown by default, empty on request
    out = ~in_view & (np.abs(y) > 400)
    far = (np.abs(x + z * math.tan(GEOM.signed_angles_rad[0])) > (n // 2 + 1) * DR) & (np.abs(y) > 400)
    assert far.any() and not empty[far].any()
    assert host(empty_space(g, xp.asarray(el), xp.asarray(er), GEOM, outside_empty=True))[out].all()
    # masks upsampled x2 (as on the matching grid) describe the same empty space
    up = [np.repeat(np.repeat(m, 2, 0), 2, 1) for m in (el, er)]
    empty2 = host(empty_space(g, xp.asarray(up[0]), xp.asarray(up[1]), GEOM, upsample=2))
    assert (empty2 == empty).mean() > 0.99

    # carving a full volume: what stays is farther than 0.2 um from every empty voxel
    full = np.ones(g.shape, bool)
    carved = host(carve(xp.asarray(full), xp.asarray(el), xp.asarray(er), GEOM, grid=g, distance_um=0.2))
    assert carved.dtype == bool and carved.shape == g.shape
    from scipy.spatial import cKDTree

    pos = np.stack([z, y, x], -1)
    d_nearest_empty = cKDTree(pos[empty]).query(pos.reshape(-1, 3))[0].reshape(g.shape)
    assert carved.sum() > 0
    np.testing.assert_array_equal(carved, d_nearest_empty > 200.0)
    # the core of the block survives, the block's rim within 0.2 um of the empty space does not
    assert carved[(np.abs(x) < 50) & (np.abs(y) < 50) & (np.abs(z) < 150)].all()
    # distance 0 removes exactly the empty voxels; float volumes keep their dtype
    vol = np.full(g.shape, 2.5, np.float32)
    c0 = host(carve(xp.asarray(vol), xp.asarray(el), xp.asarray(er), GEOM, grid=g, distance_um=0.0))
    assert c0.dtype == np.float32
    np.testing.assert_array_equal(c0 == 0, empty)
    # no empty pixel: nothing is carved
    none = np.zeros((n, n), bool)
    np.testing.assert_array_equal(
        host(carve(xp.asarray(full), xp.asarray(none), xp.asarray(none), GEOM, grid=g)), full
    )
    with pytest.raises(InputError, match="carve.volume"):
        carve(np.ones((2, 2, 2), bool), el, er, GEOM, grid=g)


def _area_and_volume(v, f):
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum()
    vol = (a * np.cross(b, c)).sum() / 6.0
    return area, vol


def test_mesh_of_a_sphere(xp):
    vox = (146.0, DR, DR)
    g = VolumeGrid((24, 56, 56), vox, (-12 * 146.0, -28 * DR, -28 * DR))
    r = 1000.0
    centre = np.array([100.0, -50.0, 30.0])  # x, y, z nm
    z, y, x = np.meshgrid(g.axis(0), g.axis(1), g.axis(2), indexing="ij")
    dist = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
    true_area, true_vol = 4 * np.pi * r**2, 4 / 3 * np.pi * r**3
    # binary occupancy, lightly smoothed: area within 5 %
    v, f = surface_mesh(xp.asarray(dist <= r), vox, origin_nm=g.origin_nm, smooth_sigma=1.0)
    assert v.shape[1] == 3 and f.shape[1] == 3 and f.dtype == np.int64
    area, vol = _area_and_volume(v, f)
    assert area == pytest.approx(true_area, rel=0.05)
    assert vol == pytest.approx(true_vol, rel=0.08)  # positive: normals point outward
    np.testing.assert_allclose((v.min(0) + v.max(0)) / 2, centre, atol=0.6 * 146)
    # a scalar field (signed distance) at level 0: within 1 %
    v2, f2 = surface_mesh(xp.asarray(r - dist), vox, origin_nm=g.origin_nm, level=0.0)
    area2, vol2 = _area_and_volume(v2, f2)
    assert area2 == pytest.approx(true_area, rel=0.01) and vol2 == pytest.approx(true_vol, rel=0.02)
    np.testing.assert_allclose(np.linalg.norm(v2 - centre, axis=1), r, atol=0.05 * r)
    # touching the border still gives a closed surface (padding); nothing inside: empty mesh
    vb, fb = surface_mesh(np.ones((4, 4, 4), bool), (1.0, 1.0, 1.0))
    assert _area_and_volume(vb, fb)[1] == pytest.approx(64.0, rel=0.1)  # the 4^3 cube, corners chamfered
    ve, fe = surface_mesh(np.zeros((4, 4, 4), bool), (1.0, 1.0, 1.0))
    assert ve.shape == (0, 3) and fe.shape == (0, 3)


def test_cloud_to_volume_membrane_with_a_hole(xp):
    """A tilted membrane (z = 0.1 x) with a square hole seen by both views: the frame + Sibson give the
    membrane everywhere, carving opens the hole (shrunk by 0.2 um) and keeps the membrane away from it."""
    from xstereo_gpu.cloud import cloud_to_volume

    rng = np.random.default_rng(34)
    n, slope, hole = 64, 0.1, 500.0  # hole: |x|, |y| < 500 nm
    gy, gx = (np.indices((n, n)) - n // 2) * DR
    # edge points of the hole + sparse membrane points far from it
    t = rng.uniform(-hole, hole, 400)
    edge = np.concatenate(
        [np.column_stack([t, np.full(400, s * hole)]) for s in (-1, 1)]
        + [np.column_stack([np.full(400, s * hole), t]) for s in (-1, 1)]
    )
    far = rng.uniform(-1400, 1400, size=(300, 2))
    far = far[np.max(np.abs(far), axis=1) > hole + 200]
    xy = np.concatenate([edge, far])
    pts = np.column_stack([xy, slope * xy[:, 0] + rng.normal(scale=5, size=len(xy))])
    masks = []
    for a in GEOM.signed_angles_rad:  # the ray of pixel x_k meets the membrane at x = x_k / (1 + slope tan a)
        x = gx / (1 + slope * math.tan(a))
        masks.append((np.abs(x) < hole) & (np.abs(gy) < hole))
    res = cloud_to_volume(
        xp.asarray(pts),
        GEOM,
        view_shape=(n, n),
        empty_left=xp.asarray(masks[0]),
        empty_right=xp.asarray(masks[1]),
        seed=3,
    )
    vol, g = host(res.volume), res.grid
    assert res.plane is not None and abs(res.plane.normal[0] / res.plane.normal[2] + slope) < 0.01
    assert res.n_frame > 0 and vol.shape == g.shape and g.shape[1:] == (n, n)
    h = host(res.height_nm)
    assert np.isfinite(h).all()
    inside_frame = np.max(np.abs(np.stack([gx, gy])), axis=0) < 1300
    assert np.median(np.abs(h - slope * gx)[inside_frame]) < 10.0  # nm, far below Dz = 146 nm
    cheb = np.max(np.abs(np.stack([gx, gy])), axis=0)
    # the hole and its 0.2 um neighbourhood are empty; the membrane well away from it has its voxel
    assert not vol[:, cheb < hole].any()
    ring = (cheb > hole + 200 + 2 * DR) & inside_frame
    assert (vol.sum(0)[ring] == 1).all()
    k = np.rint((slope * gx - g.origin_nm[0]) / g.voxel_nm[0]).astype(int)
    dk = vol.argmax(0)[ring] - k[ring]
    assert np.abs(dk).max() <= 1 and (dk == 0).mean() > 0.97  # off by one only where z is near a voxel edge
    # without masks nothing is carved: the hole is bridged by the interpolation
    plain = host(cloud_to_volume(xp.asarray(pts), GEOM, view_shape=(n, n)).volume)
    assert (plain.sum(0) >= 1).all()
    with pytest.raises(InputError, match="empty_right"):
        cloud_to_volume(pts, GEOM, view_shape=(n, n), empty_left=masks[0])
