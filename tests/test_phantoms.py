"""Phantoms (xstereo_gpu.simulate.phantoms): the cross lid's edges and voxels (checked against a ray trace),
the
pyramid's spheres, the stray spheres."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

from xstereo_gpu.simulate import (
    CrossLid,
    Pyramid,
    SimulationOptions,
    path_length,
    simulate_shot,
)
from xstereo_gpu.simulate.phantoms import inside_cross


# -- the cross lid ---------------------------------------------------------------------------------
def test_lid_edge_points_on_tilted_plane(demo):
    opts, shot = demo
    pts, lab = shot.truth.edge_points_m, shot.truth.edge_labels
    tilt, phi = math.radians(opts.lid_tilt_deg), math.radians(opts.in_plane_rotation_deg)
    assert set(np.unique(lab)) == {0, 1}
    assert np.all(pts[lab == 0, 2] == 0)
    lid = pts[lab == 1]
    # z spans +-(b - kerf) sin(tilt) ~ +-3.05 um sin(12 deg) = +-634 nm (603 nm at the lid's mid-plane edge)
    zmax = (3.05e-6 - 150e-9) * math.sin(tilt)
    assert lid[:, 2].max() == pytest.approx(zmax, rel=1e-9)
    assert lid[:, 2].min() == pytest.approx(-zmax, rel=1e-9)
    assert abs(lid[:, 2].max() - 3.05e-6 * math.sin(tilt)) < 0.1 * 3.05e-6 * math.sin(tilt)
    # on the plane z = v tan(tilt), v the coordinate across the tilt axis (sample rotated by phi)
    v = -lid[:, 0] * math.sin(phi) + lid[:, 1] * math.cos(phi)
    np.testing.assert_allclose(lid[:, 2], v * math.tan(tilt), atol=1e-12)
    # sampled every <= Dr/4 along closed outlines
    for part in (pts[lab == 0], lid):
        steps = np.linalg.norm(np.diff(np.vstack([part, part[:1]]), axis=0), axis=1)
        assert steps.max() <= shot.pixel_size_m / 4 + 1e-12
    # closed outlines; perimeter of a cross = 2 (X + Y): 26 um for the cut, 26 um - 8 kerf for the lid
    # (the lid's outline measured in its own tilted plane)
    cut_xy = np.vstack([pts[lab == 0, :2], pts[lab == 0][:1, :2]])
    assert np.linalg.norm(np.diff(cut_xy, axis=0), axis=1).sum() == pytest.approx(26e-6, rel=1e-9)
    lid_closed = np.vstack([lid, lid[:1]])
    assert np.linalg.norm(np.diff(lid_closed, axis=0), axis=1).sum() == pytest.approx(
        26e-6 - 8 * 150e-9, rel=1e-9
    )


def test_voxel_object_volumes_and_lid_plane():
    opts = SimulationOptions()
    ph = CrossLid.from_options(opts)
    dr, dz = opts.pixel_size_m, 20e-9
    vox = ph.voxelise(
        pixel_m=dr, grid_size=opts.pattern_size, dz_m=dz, max_tan=math.tan(math.radians(9.5)), supersample=4
    )
    occ = vox.occupancy
    nz, ny, nx = occ.shape
    assert occ.dtype == np.float32 and occ.min() >= 0 and occ.max() <= 1
    assert vox.z_m.shape == (nz,) and np.allclose(np.diff(vox.z_m), dz) and vox.z_m[nz // 2] == 0
    assert -vox.z_m[0] + dz / 2 >= ph.z_extent()
    t = opts.membrane_thickness_nm * 1e-9

    def cross_area(a, b, w):
        return 2 * a * 2 * w + 2 * b * 2 * w - 4 * w * w

    hole = cross_area(*ph.outer)
    lid_area = cross_area(*ph.inner)
    volume = occ.sum(dtype=np.float64) * dr * dr * dz
    expected = (ny * nx * dr * dr - hole) * t + lid_area * t
    assert volume == pytest.approx(expected, rel=2e-3)
    # border of the box is plain membrane: occupancy integrates to t along z
    np.testing.assert_allclose(occ[:, 0, :].sum(axis=0) * dz, t, rtol=1e-5)
    # inside the lid, the occupancy's centre of mass along z lies on the tilted plane z = v tan(tilt)
    tilt, phi = math.radians(opts.lid_tilt_deg), math.radians(opts.in_plane_rotation_deg)
    r0, c0 = vox.origin_px
    n = opts.pattern_size
    y = (np.arange(ny) + r0 - n // 2)[:, None] * dr
    x = (np.arange(nx) + c0 - n // 2)[None, :] * dr
    u = x * math.cos(phi) + y * math.sin(phi)
    v = -x * math.sin(phi) + y * math.cos(phi)
    a, b, w = ph.inner
    deep = ((np.abs(u) < a - 4 * dr) & (np.abs(v) < w - 4 * dr)) | (
        (np.abs(u) < w - 4 * dr) & (np.abs(v) < b - 4 * dr)
    )
    deep &= np.abs(v) > 3 * dr  # away from the membrane slab at v ~ 0
    assert deep.sum() > 1000
    col = occ[:, deep].sum(axis=0, dtype=np.float64)
    zc = (occ[:, deep] * vox.z_m[:, None]).sum(axis=0) / col
    np.testing.assert_allclose(zc, v[deep] * math.tan(tilt), atol=2e-9)
    np.testing.assert_allclose(col * dz, t / math.cos(tilt), rtol=2e-3)


def test_voxel_projection_matches_analytic_ray_trace():
    """Independent check of voxelisation + projection: trace rays x = x_k - z tan a_k through the
    continuous sample (membrane slab with the cross hole, tilted lid slab) and compare path lengths."""
    opts = SimulationOptions()
    ph = CrossLid.from_options(opts)
    dr, n, t = opts.pixel_size_m, opts.pattern_size, opts.membrane_thickness_nm * 1e-9
    tilt = math.radians(opts.lid_tilt_deg)
    vox = ph.voxelise(pixel_m=dr, grid_size=n, dz_m=20e-9, max_tan=math.tan(math.radians(9.5)))
    r0, c0 = vox.origin_px
    rng = np.random.default_rng(3)
    a_half, b_half, _ = ph.outer
    u = rng.uniform(-a_half - 0.2e-6, a_half + 0.2e-6, 600)
    v = rng.uniform(-b_half - 0.2e-6, b_half + 0.2e-6, 600)
    x, y = ph.sample_to_object(u, v)
    rows = np.round(y / dr).astype(int) + n // 2
    cols = np.round(x / dr).astype(int) + n // 2
    ny, nx = vox.occupancy.shape[1:]
    keep = (rows >= r0) & (rows < r0 + ny) & (cols >= c0) & (cols < c0 + nx)
    rows, cols = rows[keep], cols[keep]
    assert keep.sum() > 400
    off = ((np.arange(3) + 0.5) / 3 - 0.5) * dr  # 3 x 3 rays per pixel
    ys = ((rows - n // 2) * dr)[:, None, None] + off[None, :, None]
    xk = ((cols - n // 2) * dr)[:, None, None] + off[None, None, :]
    for a in (math.radians(9.5), -math.radians(9.5)):
        voxel_L = path_length(vox.occupancy, z_m=vox.z_m, pixel_m=dr, angle_rad=a)[rows - r0, cols - c0]
        hits = np.zeros(rows.shape)
        zs = np.arange(-760e-9, 760e-9, 2e-9) + 1e-9
        for z in zs:
            uu, vv = ph.object_to_sample(xk - z * math.tan(a), ys)
            membrane = (abs(z) <= t / 2) & ~inside_cross(uu, vv, *ph.outer)
            vp = vv * math.cos(tilt) + z * math.sin(tilt)
            wp = -vv * math.sin(tilt) + z * math.cos(tilt)
            lid = (np.abs(wp) <= t / 2) & inside_cross(uu, vp, *ph.inner)
            hits += (membrane | lid).mean(axis=(1, 2))
        ray_L = hits * 2e-9 / math.cos(a)
        err = np.abs(voxel_L - ray_L)
        assert (ray_L < 0.5 * t).mean() > 0.03  # the sample includes open pixels
        assert np.median(err) < 3e-9  # the 2 nm steps of the reference
        assert np.percentile(err, 95) < 20e-9
        assert err.max() < 0.3 * t


# -- the pyramid -----------------------------------------------------------------------------------


def test_pyramid_spheres_line_the_faces(pyramid):
    opts, shot = pyramid
    tr = shot.truth
    c, faces, feet = tr.edge_points_m, tr.edge_labels, tr.extra["surface_points_m"]
    ph = Pyramid.from_options(opts)
    r, t = ph.sphere_radius_m, ph.thickness_m
    target = opts.sphere_coverage * ph.face_area_m2() / (math.pi * r * r)
    assert abs(len(c) / target - 1) < 0.02  # the requested coverage
    assert np.all(np.bincount(faces, minlength=4) > 0.2 * len(c))  # every face well sampled
    d, _ = cKDTree(c).query(c, k=2)
    assert d[:, 1].min() >= 2 * r * (1 - 1e-9)  # no overlaps: not a solid sheet
    assert np.median(d[:, 1]) < 4 * r  # but dense
    # feet on the notch's mid-surface, centres t/2 + r away from it, on the upstream (inner) side
    np.testing.assert_allclose(feet[:, 2], ph.surface_z(feet[:, 0], feet[:, 1]), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(c - feet, axis=1), t / 2 + r, rtol=1e-9)
    assert np.all(c[:, 2] < feet[:, 2]) and c[:, 2].max() > 0.8 * ph.height_m
    # sphere depth follows the notch: z ~ H (1 - r_norm), r_norm the normalised distance from the axis
    rn = np.max(np.abs(feet[:, :2]), axis=1) / (ph.base_m / 2)
    np.testing.assert_allclose(feet[:, 2], ph.height_m * (1 - rn), atol=1e-12)
    # same seed, same spheres
    assert np.array_equal(Pyramid.from_options(opts).spheres()[0], c)


def test_pyramid_projection_places_each_sphere_at_x_plus_z_tan_a(pyramid):
    """Geometry of the projection: isolated spheres' absorption sits at x + z tan a_k in view k and
    integrates to volume / cos a."""
    opts, shot = pyramid
    ph = Pyramid.from_options(opts.replace(sphere_coverage=0.01))  # sparse: isolated spheres
    spheres = ph.spheres()
    dr, n = opts.pixel_size_m, opts.pattern_size
    t1, t2 = (math.radians(x) for x in opts.angles_deg)
    mem, sph = ph.voxelise_parts(
        pixel_m=dr, grid_size=n, dz_m=opts.voxel_depth_nm * 1e-9, max_tan=math.tan(t1), spheres=spheres
    )
    c = spheres[0]
    r = ph.sphere_radius_m
    vol = 4 / 3 * math.pi * r**3
    # spheres with no neighbour within 4 r in the view plane of both views (any depth)
    iso = cKDTree(c[:, :2]).query(c[:, :2], k=2)[0][:, 1] > 5 * r
    assert iso.sum() > 20
    r0, c0 = sph.origin_px
    w = 4
    for ang in (t1, -t2):
        L = path_length(sph.occupancy, z_m=sph.z_m, pixel_m=dr, angle_rad=ang)
        xk = c[iso, 0] + c[iso, 2] * math.tan(ang)
        for x, y in zip(xk, c[iso, 1]):
            rc, cc = int(round(y / dr)) + n // 2 - r0, int(round(x / dr)) + n // 2 - c0
            win = L[rc - w : rc + w + 1, cc - w : cc + w + 1].astype(np.float64)
            rr, kk = np.mgrid[-w : w + 1, -w : w + 1]
            s = win.sum()
            cy = (rc + (rr * win).sum() / s - n // 2 + r0) * dr
            cx = (cc + (kk * win).sum() / s - n // 2 + c0) * dr
            assert cx == pytest.approx(x, abs=0.05 * dr) and cy == pytest.approx(y, abs=0.05 * dr)
            assert s * dr * dr == pytest.approx(vol / math.cos(ang), rel=0.01)
    # the membrane: notch volume = t x (flat area + faces' area), flat t outside
    mem_vol = mem.occupancy.sum(dtype=np.float64) * dr * dr * mem.dz_m
    ny, nx = mem.occupancy.shape[1:]
    flat = ny * nx * dr * dr - ph.base_m**2
    assert mem_vol == pytest.approx(ph.thickness_m * (flat + ph.face_area_m2()), rel=5e-3)


def test_stray_spheres_lie_beside_the_rim_and_leave_the_notch_unchanged():
    base = SimulationOptions.for_sample("pyramid")
    assert base.stray_spheres == 0
    opts = base.replace(stray_spheres=8, stray_band_um=0.2)
    ph0, ph = Pyramid.from_options(base), Pyramid.from_options(opts)
    c0, f0, _ = ph0.spheres()
    c, f, feet = ph.spheres()
    assert len(c) == len(c0) + 8 and np.array_equal(c[: len(c0)], c0) and np.array_equal(f[: len(c0)], f0)
    stray = f == 4
    assert stray.sum() == 8 and not np.any(f0 == 4)
    r, t, half = ph.sphere_radius_m, ph.thickness_m, ph.base_m / 2
    m = np.max(np.abs(c[stray, :2]), axis=1)
    assert np.all(m >= half + 2 * r - 1e-15) and np.all(m <= half + 0.2e-6 + 1e-15)  # in the band
    np.testing.assert_allclose(c[stray, 2], -(t / 2 + r))  # on the flat membrane
    np.testing.assert_allclose(feet[stray, 2], 0.0)
    d, _ = cKDTree(c).query(c, k=2)
    assert d[:, 1].min() >= 2 * r * (1 - 1e-9)  # no overlaps
    # the support of the exit wave (view - background) is no longer centrosymmetric
    shot = simulate_shot(opts.replace(photons=1e8))
    obj = np.abs(np.asarray(shot.truth.phasable_views[0])) > 1e-4
    n = obj.shape[-1]
    flipped = np.roll(obj[::-1, ::-1], 1, axis=(0, 1))
    best = max(
        (obj & np.roll(flipped, (dy, dx), axis=(0, 1))).sum() for dy in range(-6, 7) for dx in range(-6, 7)
    )
    assert best < obj.sum() - 8 * 10  # the inverted support never covers the strays
    assert "8 stray spheres" in shot.truth.description and n == 384
