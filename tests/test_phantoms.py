"""Tests of the simulator: options, phantom geometry, projection geometry, far field and detector."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xstereo_gpu.backend import to_host
from xstereo_gpu.errors import InputError
from xstereo_gpu.geometry import StereoGeometry
from xstereo_gpu.shot import GroundTruth, Shot
from xstereo_gpu.simulate import (MASK_SHADOWED, CrossLid, SimulationOptions, add_patterns, far_field,
                                  illumination, path_length, photon_counts, project, simulate_shot,
                                  transmission)
from xstereo_gpu.simulate.phantoms import inside_cross


@pytest.fixture(scope="module")
def demo():
    return SimulationOptions(), simulate_shot(SimulationOptions())


# -- options ---------------------------------------------------------------------------------------
def test_options_derived_geometry():
    demo, paper = SimulationOptions(), SimulationOptions.paper()
    assert (demo.frame_side, demo.pattern_size, demo.binning) == (512, 256, 4)
    assert (paper.frame_side, paper.pattern_size, paper.binning, paper.beamstop_radius_px) == (2048, 1024, 1, 12)
    # Dr = lambda D / (N p) = 45.1 nm in both sizes
    for o in (demo, paper):
        assert o.pixel_size_m == pytest.approx(24e-9 * 26e-3 / (o.pattern_size * 13.5e-6 * o.binning))
        assert o.pixel_size_m * 1e9 == pytest.approx(45.14, abs=0.01)
    # centres: D tan(9.5 deg) / p = 80.56 binned pixels -> 81; 322.2 unbinned -> 322
    assert demo.centres_px == ((256.0, 175.0), (256.0, 337.0))
    assert paper.centres_px == ((1024.0, 702.0), (1024.0, 1346.0))
    asym = SimulationOptions(angles_deg=(9.5, 3.5))
    assert asym.centres_px[1][1] == 256 + round(26e-3 * math.tan(math.radians(3.5)) / 54e-6)


@pytest.mark.parametrize("changes, where", [
    (dict(angles_deg=(0.0, 9.5)), "simulate.angles_deg[0]"),
    (dict(angles_deg=(9.5, 60.0)), "simulate.angles_deg[1]"),
    (dict(angles_deg=(9.5, -3.0)), "simulate.angles_deg[1]"),
    (dict(angles_deg=(9.5,)), "simulate.angles_deg"),
    (dict(sample="sphere"), "simulate.sample"),
    (dict(pattern_size=512), "simulate.pattern_size"),        # crop does not fit the 512 frame
    (dict(distance_m=13e-3), "simulate.pattern_size"),        # view field 5.8 um < sample
    (dict(binning=0), "simulate.binning"),
    (dict(pattern_size=100.5), "simulate.pattern_size"),
    (dict(photons=-1.0), "simulate.photons"),
    (dict(photons=float("nan")), "simulate.photons"),
    (dict(kerf_nm=1500.0), "simulate.kerf_nm"),
    (dict(arm_width_um=7.0), "simulate.arm_width_um"),
    (dict(lid_tilt_deg=75.0), "simulate.lid_tilt_deg"),
    (dict(beam_fwhm_um=(10.0, -1.0)), "simulate.beam_fwhm_um"),
    (dict(supersample=0), "simulate.supersample"),
    (dict(beamstop_radius_px=-2), "simulate.beamstop_radius_px"),
])
def test_options_validation(changes, where):
    with pytest.raises(InputError) as err:
        SimulationOptions(**changes)
    assert err.value.where == where


def test_options_are_frozen_and_keyword_only():
    o = SimulationOptions(angles_deg=[8, 7])
    assert o.angles_deg == (8.0, 7.0)
    with pytest.raises(Exception):
        o.seed = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        SimulationOptions("cross")  # type: ignore[misc]
    with pytest.raises(InputError):
        simulate_shot("cross")  # type: ignore[arg-type]


# -- projection geometry (synthetic occupancy) -----------------------------------------------------
@pytest.mark.parametrize("z0_nm", [400.0, -260.0])
def test_projection_shift_gives_disparity_of_eq1(xp, z0_nm):
    """A small block at height z0 appears at x + z0 tan a_k in view k; the shift is eq. (1)."""
    dr, dz = 45e-9, 20e-9
    t1, t2 = 9.5, 6.0
    z = (np.arange(61) - 30) * dz
    occ = np.zeros((61, 21, 64), dtype=np.float32)
    j0 = int(round(z0_nm * 1e-9 / dz)) + 30
    x0 = 30.0                                   # block columns 29..31, centroid 30
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


# -- phantom geometry ------------------------------------------------------------------------------
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
    assert np.linalg.norm(np.diff(lid_closed, axis=0), axis=1).sum() == pytest.approx(26e-6 - 8 * 150e-9, rel=1e-9)


def test_voxel_object_volumes_and_lid_plane():
    opts = SimulationOptions()
    ph = CrossLid.from_options(opts)
    dr, dz = opts.pixel_size_m, 20e-9
    vox = ph.voxelise(pixel_m=dr, grid_size=opts.pattern_size, dz_m=dz,
                      max_tan=math.tan(math.radians(9.5)), supersample=4)
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
    deep = ((np.abs(u) < a - 4 * dr) & (np.abs(v) < w - 4 * dr)) | ((np.abs(u) < w - 4 * dr) & (np.abs(v) < b - 4 * dr))
    deep &= np.abs(v) > 3 * dr                     # away from the membrane slab at v ~ 0
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
    off = ((np.arange(3) + 0.5) / 3 - 0.5) * dr                  # 3 x 3 rays per pixel
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
        assert (ray_L < 0.5 * t).mean() > 0.03                   # the sample includes open pixels
        assert np.median(err) < 3e-9                              # the 2 nm steps of the reference
        assert np.percentile(err, 95) < 20e-9
        assert err.max() < 0.3 * t


# -- views ---------------------------------------------------------------------------------------
def test_truth_shapes_and_dtypes(demo):
    opts, shot = demo
    tr = shot.truth
    n = opts.pattern_size
    assert isinstance(shot, Shot) and isinstance(tr, GroundTruth)
    assert tr.views.shape == (2, n, n) and tr.views.dtype == np.complex64
    assert tr.pixel_size_m == pytest.approx(shot.pixel_size_m) == pytest.approx(opts.pixel_size_m)
    assert tr.edge_points_m.ndim == 2 and tr.edge_points_m.shape[1] == 3 and tr.edge_points_m.dtype == np.float64
    assert tr.edge_labels.shape == (tr.edge_points_m.shape[0],) and tr.edge_labels.dtype == np.int8
    assert "cross" in tr.description and "incoherent" in tr.description
    assert shot.sample == "cross" and shot.pattern_size == n
    assert shot.detector_pixel_m == pytest.approx(54e-6)
    assert shot.extra == {"photons": 1e7, "seed": 0, "binning": 4}
    assert shot.centres_px.shape == (2, 2) and shot.centres_px.dtype == np.float64
    shot.validate()


def test_views_dark_on_membrane_bright_in_kerf(demo):
    opts, shot = demo
    n, dr = opts.pattern_size, opts.pixel_size_m
    ill = illumination(n, dr, (opts.beam_fwhm_um[0] * 1e-6, opts.beam_fwhm_um[1] * 1e-6))
    ratio = np.abs(shot.truth.views) / ill
    # plain membrane: amplitude exp(-t / cos a / (2 l)) = exp(-229 / cos(9.5) / 40) = 0.0030
    np.testing.assert_allclose(ratio[:, :10, :10], math.exp(-229 / math.cos(math.radians(9.5)) / 40), rtol=1e-3)
    ph = CrossLid.from_options(opts)
    a, b, _ = ph.outer
    k = ph.kerf_m
    # mid-kerf at the tips of both arms: open (|view| = illumination) in both views
    for u, v in ((a - k / 2, 0.0), (-a + k / 2, 0.0), (0.0, b - k / 2), (0.0, -b + k / 2)):
        x, y = ph.sample_to_object(u, v)
        r, c = int(round(n // 2 + y / dr)), int(round(n // 2 + x / dr))
        assert np.all(ratio[:, r, c] > 0.99), (u, v, ratio[:, r, c])
    # the lid itself is opaque
    assert np.all(ratio[:, n // 2, n // 2] < 0.01)
    # where the tilted lid rises beside its vertical arm, the views differ (stereo information)
    assert np.abs(ratio[0] - ratio[1]).max() > 0.3


# -- detector --------------------------------------------------------------------------------------
def test_frame_is_poisson_counts_of_both_patterns(demo):
    opts, shot = demo
    frame, mask = shot.frame, shot.mask
    assert frame.shape == (512, 512) and frame.dtype == np.float32 and mask.dtype == np.uint32
    assert frame.min() >= 0 and np.array_equal(frame, np.round(frame))
    # the frame is reproducible from the truth views: same far field, same noise stream
    rng = np.random.default_rng(opts.seed)
    inten = far_field(shot.truth.views)
    pats = np.stack([photon_counts(inten[k], photons=opts.photons, rng=rng) for k in range(2)])
    for k in range(2):   # ~1e7 photons per pattern, Poisson: within 5 sigma
        assert abs(pats[k].sum(dtype=np.float64) - 1e7) < 5 * math.sqrt(1e7)
    rebuilt = add_patterns(pats, shot.centres_px, frame.shape)
    good = mask == 0
    np.testing.assert_array_equal(frame[good], rebuilt[good])
    assert frame.sum(dtype=np.float64) + rebuilt[~good].sum(dtype=np.float64) == pytest.approx(
        pats.sum(dtype=np.float64))


def test_far_field_convention():
    n = 32
    w = np.zeros((n, n), dtype=np.complex64)
    w[3, 5] = 1.0
    w[10, 20] = 0.5j
    i = far_field(w)
    assert i.dtype == np.float32 and i.shape == (n, n)
    np.testing.assert_allclose(i, np.abs(np.fft.fftshift(np.fft.fft2(w))) ** 2, rtol=1e-5, atol=1e-6)
    flat = far_field(np.ones((2, n, n), dtype=np.complex64))
    assert np.argmax(flat[1]) == np.ravel_multi_index((n // 2, n // 2), (n, n))


def test_beamstop_pixels_zero_and_flagged(demo):
    opts, shot = demo
    rows, cols = np.indices(shot.frame.shape)
    inside = np.zeros(shot.frame.shape, dtype=bool)
    for cr, cc in shot.centres_px:
        inside |= (rows - cr) ** 2 + (cols - cc) ** 2 <= opts.beamstop_radius_px ** 2
    assert inside.sum() == 2 * 29                       # two discs of radius 3
    assert np.all(shot.frame[inside] == 0)
    assert np.all(shot.mask[inside] == MASK_SHADOWED)
    assert np.all(shot.mask[~inside] == 0)


def test_centres_order_and_crops(demo):
    opts, shot = demo
    (rl, cl), (rr, cr) = shot.centres_px
    assert cl < cr and rl == rr == 256
    n = shot.pattern_size
    for r, c in shot.centres_px:
        assert r - n // 2 >= 0 and c - n // 2 >= 0 and r - n // 2 + n <= 512 and c - n // 2 + n <= 512
    # without a beamstop the brightest pixel of each crop is its zero frequency, at the centre
    o = opts.replace(beamstop_radius_px=0, photons=1e6)
    s = simulate_shot(o)
    assert not s.mask.any()
    for r, c in s.centres_px.astype(int):
        crop = s.frame[r - n // 2:r - n // 2 + n, c - n // 2:c - n // 2 + n]
        assert np.unravel_index(np.argmax(crop), crop.shape) == (n // 2, n // 2)


def test_determinism_and_progress():
    o = SimulationOptions(photons=1e6, seed=7)
    messages = []
    a = simulate_shot(o, progress=messages.append)
    b = simulate_shot(o)
    c = simulate_shot(o.replace(seed=8))
    assert np.array_equal(a.frame, b.frame) and np.array_equal(a.mask, b.mask)
    assert np.array_equal(a.truth.views, c.truth.views)
    assert not np.array_equal(a.frame, c.frame)
    assert a.extra["seed"] == 7 and c.extra["seed"] == 8
    assert len(messages) >= 4 and all(isinstance(m, str) for m in messages)


def test_paper_size():
    o = SimulationOptions.paper(photons=3e7)
    s = simulate_shot(o)
    assert s.frame.shape == (2048, 2048) and s.truth.views.shape == (2, 1024, 1024)
    assert s.centres_px.tolist() == [[1024.0, 702.0], [1024.0, 1346.0]]
    assert np.all(s.frame[s.mask != 0] == 0) and int((s.mask != 0).sum()) > 2 * 400
    assert s.frame.sum(dtype=np.float64) < 2 * 3e7
