"""Tests of the simulator's samples: materials (xraydb), the phase cross and the nanoparticle pyramid."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

from xstereo_gpu.backend import to_host
from xstereo_gpu.errors import InputError
from xstereo_gpu.geometry import StereoGeometry
from xstereo_gpu.shot import GroundTruth, Shot
from xstereo_gpu.simulate import (SAMPLES, CrossLid, Layer, Pyramid, SimulationOptions, delta_beta,
                                  energy_from_wavelength, far_field, misalign, misalignment_matrix, path_length,
                                  photon_counts, simulate_shot, stack_delta_beta, stack_transmission,
                                  wavelength_from_energy)
from xstereo_gpu.simulate.phantoms import inside_cross

xraydb = pytest.importorskip("xraydb")

E24 = 1.239841984e-6 / 24e-9          # photon energy at 24 nm [eV]


@pytest.fixture(scope="module")
def phase_cross():
    opts = SimulationOptions.for_sample("phase-cross")
    return opts, simulate_shot(opts)


@pytest.fixture(scope="module")
def pyramid():
    opts = SimulationOptions.for_sample("pyramid")
    return opts, simulate_shot(opts)


# -- materials -------------------------------------------------------------------------------------
@pytest.mark.parametrize("formula, density, energy", [("Si3N4", 3.17, E24), ("Au", 19.3, E24), ("Cr", 7.15, E24),
                                                      ("Si3N4", 3.17, 750.0), ("Au", 19.3, 750.0)])
def test_delta_beta_agree_with_xraydb(formula, density, energy):
    d, b = delta_beta(formula, energy)                     # density from xraydb's tables
    rd, rb, _ = xraydb.xray_delta_beta(formula, density, energy)
    assert d == pytest.approx(rd, rel=1e-12) and b == pytest.approx(rb, rel=1e-12)
    assert d > 0 and b > 0
    d2, b2 = delta_beta(formula, energy, density_g_cm3=2 * density)   # linear in density
    assert d2 == pytest.approx(2 * d, rel=1e-9) and b2 == pytest.approx(2 * b, rel=1e-9)


def test_stack_transmission_is_product_of_layers():
    layers = [("Si3N4", 75e-9), ("Au", 150e-9), Layer("Cr", 4e-9)]
    a = math.radians(9.5)
    k = 2 * math.pi / wavelength_from_energy(E24)
    expected = 1.0 + 0j
    for f, t, rho in (("Si3N4", 75e-9, 3.17), ("Au", 150e-9, 19.3), ("Cr", 4e-9, 7.15)):
        d, b, _ = xraydb.xray_delta_beta(f, rho, E24)
        expected *= np.exp(-1j * k * (d - 1j * b) * t / math.cos(a))
    got = stack_transmission(layers, energy_eV=E24, angle_rad=a)
    assert got == pytest.approx(expected, rel=1e-9)
    # the paper's membrane is nearly opaque at 24 nm: |T| ~ 0.02
    assert 0.005 < abs(got) < 0.05
    d, b, t = stack_delta_beta(layers, E24)
    assert t == pytest.approx(229e-9)
    assert np.exp(-1j * k * (d - 1j * b) * t / math.cos(a)) == pytest.approx(expected, rel=1e-9)


def test_energy_wavelength_and_bad_materials():
    assert energy_from_wavelength(24e-9) == pytest.approx(51.66, abs=0.01)
    assert wavelength_from_energy(750.0) == pytest.approx(1.6531e-9, rel=1e-4)
    assert energy_from_wavelength(wavelength_from_energy(123.0)) == pytest.approx(123.0, rel=1e-12)
    with pytest.raises(InputError, match="material"):
        delta_beta("Unobtainium", 750.0)
    with pytest.raises(InputError, match="photon energy"):
        delta_beta("Au", -1.0)
    with pytest.raises(InputError, match="thickness"):
        Layer("Au", -5e-9)


# -- options ---------------------------------------------------------------------------------------
def test_sample_defaults_and_geometry():
    assert SAMPLES == ("cross", "phase-cross", "pyramid")
    assert SimulationOptions.for_sample("cross") == SimulationOptions(exposures_s=(30.0, 240.0))  # HDR, as the paper
    pc = SimulationOptions.for_sample("phase-cross")
    assert pc.sample == "phase-cross" and sum(pc.angles_deg) == pytest.approx(12.0)
    assert pc.energy_eV == pytest.approx(51.66, abs=0.01)
    assert pc.membrane_layers == (("Si3N4", 60.0),) and pc.membrane_thickness_nm == 60.0
    assert pc.right_rotation_deg == 1.0 and pc.right_shift_px == (2.0, 0.0)
    # 12 deg at 24 nm and 45 nm pixels: the physical separation (102 px) would put each pattern's centre
    # inside the other's crop; the phase cross records them side by side, crops disjoint
    assert SimulationOptions.for_sample("phase-cross", pattern_separation_px=None).centres_px[1][1] - \
        SimulationOptions.for_sample("phase-cross", pattern_separation_px=None).centres_px[0][1] == 102
    (_, cl), (_, cr) = pc.centres_px
    assert cr - cl == pc.pattern_size and cl - pc.pattern_size // 2 >= 0
    assert cr + pc.pattern_size - pc.pattern_size // 2 <= pc.frame_side
    py = SimulationOptions.for_sample("pyramid")
    assert py.energy_eV == pytest.approx(750.0, rel=1e-12)
    assert py.pixel_size_m == pytest.approx(15e-9, rel=1e-12)
    assert py.angles_deg == (3.5, 3.5) and py.pattern_size <= 512
    assert (py.pyramid_base_um, py.pyramid_height_um, py.sphere_diameter_nm, py.membrane_thickness_nm) == (
        2.5, 1.8, 50.0, 100.0)
    # both crops fit the frame without overlapping
    (_, cl), (_, cr) = py.centres_px
    n = py.pattern_size
    assert cl - n // 2 >= 0 and cr + n - n // 2 <= py.frame_side and cr - cl >= n
    # the paper's voxel for 7 deg and 15 nm: ~120 nm deep
    g = StereoGeometry(py.pixel_size_m, py.angles_deg)
    assert g.voxel_depth_m == pytest.approx(122.6e-9, abs=0.2e-9)
    # changes apply on top of the sample's defaults
    assert SimulationOptions.for_sample("pyramid", seed=4, sphere_coverage=0.1).sphere_coverage == 0.1
    assert SimulationOptions.for_sample("pyramid").replace(seed=2).pixel_size_m == pytest.approx(15e-9)


@pytest.mark.parametrize("sample, changes, where", [
    ("pyramid", dict(sample="sphere"), "simulate.sample"),
    ("phase-cross", dict(membrane_layers=()), "simulate.membrane_layers"),
    ("phase-cross", dict(membrane_layers=(("Si3N4", -5.0),)), "simulate.membrane_layers"),
    ("phase-cross", dict(lid_layers=(("Au",),)), "simulate.lid_layers"),
    ("pyramid", dict(lid_layers=(("Au", 5.0),)), "simulate.lid_layers"),
    ("cross", dict(membrane_layers=(("Au", 5.0),)), "simulate.membrane_layers"),
    ("phase-cross", dict(right_rotation_deg=90.0), "simulate.right_rotation_deg"),
    ("phase-cross", dict(right_shift_px=(1.0,)), "simulate.right_shift_px"),
    ("phase-cross", dict(right_shift_px=(float("nan"), 0.0)), "simulate.right_shift_px"),
    ("pyramid", dict(sphere_coverage=0.8), "simulate.sphere_coverage"),
    ("phase-cross", dict(pattern_separation_px=-3.0), "simulate.pattern_separation_px"),
    ("phase-cross", dict(pattern_separation_px=400.0), "simulate.pattern_size"),      # crops leave the frame
    ("pyramid", dict(pyramid_base_um=-1.0), "simulate.pyramid_base_um"),
    ("pyramid", dict(pyramid_height_um=float("inf")), "simulate.pyramid_height_um"),
    ("pyramid", dict(sphere_diameter_nm=1000.0), "simulate.sphere_diameter_nm"),
    ("pyramid", dict(sphere_material=""), "simulate.sphere_material"),
    ("pyramid", dict(distance_m=40e-3), "simulate.pattern_size"),      # 2.4 um field < the notch
])
def test_bad_sample_options_name_the_option(sample, changes, where):
    with pytest.raises(InputError) as err:
        SimulationOptions.for_sample(sample, **changes)
    assert err.value.where == where


def test_sample_without_its_defaults_is_refused():
    with pytest.raises(InputError) as err:
        SimulationOptions(sample="pyramid")
    assert err.value.where == "simulate.membrane_layers" and "for_sample" in err.value.expected
    with pytest.raises(InputError, match="simulate.sample"):
        SimulationOptions.for_sample("sphere")


# -- phase cross -----------------------------------------------------------------------------------
def _constants(layers, energy):
    d, b, t = stack_delta_beta([(f, x * 1e-9) for f, x in layers], energy)
    return d, b, t


def test_phase_cross_shot_and_truth(phase_cross):
    opts, shot = phase_cross
    assert isinstance(shot, Shot) and isinstance(shot.truth, GroundTruth)
    shot.validate()
    tr = shot.truth
    n = opts.pattern_size
    assert shot.sample == "phase-cross" and tr.views.shape == (2, n, n) and tr.views.dtype == np.complex64
    assert tr.edge_points_m.shape[1] == 3 and set(np.unique(tr.edge_labels)) == {0, 1}
    for key in ("edge_hidden", "edge_hidden_by_view", "right_rotation_deg", "right_shift_px",
                "right_view_transform", "planes"):
        assert key in tr.extra, key
    assert tr.extra["edge_hidden"].shape == (len(tr.edge_labels),) and tr.extra["edge_hidden"].dtype == bool
    assert tr.extra["right_rotation_deg"] == 1.0
    np.testing.assert_array_equal(tr.extra["right_shift_px"], [2.0, 0.0])
    assert "xraydb" in tr.description and "Au" in tr.description and "side by side" in tr.description
    np.testing.assert_array_equal(shot.centres_px, [[256.0, 128.0], [256.0, 384.0]])
    # the frame's left half is the left pattern alone (Poisson counts of the left view's far field)
    rng = np.random.default_rng(opts.seed)
    left = photon_counts(far_field(tr.views[:1])[0], photons=opts.photons, rng=rng)
    crop, cmask = shot.frame[128:384, :256], shot.mask[128:384, :256]
    good = cmask == 0
    np.testing.assert_array_equal(crop[good], left[good])
    assert shot.frame[:, :256].sum(dtype=np.float64) == pytest.approx(crop.sum(dtype=np.float64))
    assert crop[good].sum(dtype=np.float64) > 5e7              # > 5e7 photons scattered outside the beamstop


def test_phase_cross_grey_levels(phase_cross):
    """Left view: empty, membrane, lid and lid-behind-membrane hold the transmissions the materials give."""
    opts, shot = phase_cross
    v = shot.truth.views[0]
    a = math.radians(opts.angles_deg[0])
    k = 2 * math.pi / opts.wavelength_m
    dm, bm, tm = _constants(opts.membrane_layers, opts.energy_eV)
    dl, bl, tl = _constants(opts.lid_layers, opts.energy_eV)
    # the lid slab is planar: its path along the left beam (-sin a, 0, cos a) is t_l / |n . d|
    nrm = shot.truth.extra["planes"][1, :3]
    path_l = tl / abs(nrm @ np.array([-math.sin(a), 0.0, math.cos(a)]))
    t_mem = np.exp(-1j * k * (dm - 1j * bm) * tm / math.cos(a))
    t_lid = np.exp(-1j * k * (dl - 1j * bl) * path_l)
    levels = {"empty": 1.0 + 0j, "membrane": t_mem, "lid": t_lid, "overlap": t_mem * t_lid}
    # distinct grey levels, in phase and in amplitude
    vals = list(levels.values())
    for i in range(4):
        for j in range(i + 1, 4):
            assert abs(np.angle(vals[i]) - np.angle(vals[j])) > 0.3
    assert np.all(np.abs(np.angle(vals)) < math.pi - 0.5)           # no phase wrap
    # each level covers a good part of the view (plateaus), the rest are edge pixels (the 45 deg lid crosses
    # two 20 nm slices per pixel: its path varies by ~1 % from the voxel discretisation)
    counts = {name: int((np.abs(v - val) < 5e-3).sum()) for name, val in levels.items()}
    assert counts["membrane"] > 20000 and counts["lid"] > 4000 and counts["empty"] > 500
    # the lid seen behind the membrane: slivers up to ~3 pixels wide (the views' shift z tan 6 deg minus the
    # kerf), darker in phase than the membrane alone
    assert counts["overlap"] >= 5, counts
    darker = np.angle(v) < np.angle(t_mem) - 0.3
    assert darker.sum() > 50 and darker.sum() < 0.01 * v.size
    assert sum(counts.values()) > 0.95 * v.size
    assert shot.truth.extra["background_transmission"][0] == pytest.approx(t_mem, rel=1e-12)
    assert abs(v[3, 3] - t_mem) < 1e-4 and abs(v[opts.pattern_size // 2, opts.pattern_size // 2] - t_lid) < 0.03


def test_edge_hidden_consistent_with_projection(phase_cross):
    opts, shot = phase_cross
    tr = shot.truth
    hidden, by_view = tr.extra["edge_hidden"], tr.extra["edge_hidden_by_view"]
    pts, lab = tr.edge_points_m, tr.edge_labels
    assert hidden.any() and np.array_equal(hidden, by_view.any(axis=1))
    assert np.all(lab[hidden] == 1)                        # only lid edges hide behind the membrane
    assert by_view[:, 0].sum() > 50 and by_view[:, 1].sum() > 50
    assert not np.any(by_view[:, 0] & by_view[:, 1])        # each is hidden in one view, seen in the other
    ph = CrossLid.from_options(opts)
    dr, n = opts.pixel_size_m, opts.pattern_size
    t1, t2 = (math.radians(x) for x in opts.angles_deg)
    mem, _ = ph.voxelise_parts(pixel_m=dr, grid_size=n, dz_m=opts.voxel_depth_nm * 1e-9, max_tan=math.tan(t1))
    r0, c0 = mem.origin_px
    a_, b_, w_ = ph.outer
    for view, ang in enumerate((t1, -t2)):
        L = path_length(mem.occupancy, z_m=mem.z_m, pixel_m=dr, angle_rad=ang)
        xk = pts[:, 0] + pts[:, 2] * math.tan(ang)
        rows = np.round(pts[:, 1] / dr).astype(int) + n // 2 - r0
        cols = np.round(xk / dr).astype(int) + n // 2 - c0
        full = ph.thickness_m / math.cos(ang)
        on = L[rows, cols]
        # hidden in this view: membrane in front of / behind the point along the beam
        assert np.median(on[by_view[:, view]]) > 0.9 * full
        assert np.mean(on[by_view[:, view]] > 0.5 * full) > 0.9
        # lid points seen through the hole, 1.5 pixels clear of the cut: no membrane on the ray
        u, vv = ph.object_to_sample(xk, pts[:, 1])
        m = 1.5 * dr
        clear = (lab == 1) & inside_cross(u, vv, a_ - m, b_ - m, w_ - m)
        assert clear.sum() > 1000
        assert np.all(on[clear] < 0.05 * full)


def test_right_view_misalignment(phase_cross):
    """The right view is the aligned projection moved by the recorded transform; the left is untouched."""
    opts, shot = phase_cross
    aligned = simulate_shot(opts.replace(right_rotation_deg=0.0, right_shift_px=(0.0, 0.0), photons=1e6))
    np.testing.assert_array_equal(aligned.truth.views[0], shot.truth.views[0])
    m = shot.truth.extra["right_view_transform"]
    np.testing.assert_allclose(m, misalignment_matrix(opts.pattern_size, rotation_deg=1.0, shift_px=(2.0, 0.0)))
    assert m[1, 2] != 0 and np.allclose(m[:2, :2], [[math.cos(math.radians(1)), -math.sin(math.radians(1))],
                                                  [math.sin(math.radians(1)), math.cos(math.radians(1))]])

    background = shot.truth.views[1, 3, 3]

    def centroid(view):          # centroid (col, row) of the sample's departure from the plain membrane
        w = np.abs(view - background).astype(np.float64)
        r, c = np.indices(w.shape)
        return np.array([(c * w).sum() / w.sum(), (r * w).sum() / w.sum(), 1.0]), w.sum()

    p_al, n_al = centroid(aligned.truth.views[1])
    p_mis, n_mis = centroid(shot.truth.views[1])
    assert abs(n_mis / n_al - 1) < 0.02
    np.testing.assert_allclose(p_mis[:2], (m @ p_al)[:2], atol=0.25)
    assert abs(p_mis[1] - p_al[1]) > 1.0                     # the shift is visible


def test_misalign_moves_a_point_as_the_matrix_says(xp):
    n = 64
    img = np.zeros((n, n), dtype=np.complex64)
    img[20, 40] = 1 + 1j                                        # (col 40, row 20)
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


# -- pyramid ---------------------------------------------------------------------------------------
def test_pyramid_shot_and_truth(pyramid):
    opts, shot = pyramid
    shot.validate()
    tr = shot.truth
    assert shot.sample == "pyramid" and shot.pixel_size_m == pytest.approx(15e-9, rel=1e-12)
    assert tr.views.shape == (2, 384, 384) and shot.frame.shape == (1024, 1024)
    ex = tr.extra
    assert ex["pyramid_height_m"] == 1.8e-6
    np.testing.assert_allclose(ex["apex_m"], [0.0, 0.0, 1.8e-6])
    corners = ex["base_corners_m"]
    assert corners.shape == (4, 3) and np.all(corners[:, 2] == 0)
    sides = np.linalg.norm(np.roll(corners, -1, axis=0) - corners, axis=1)
    np.testing.assert_allclose(sides, 2.5e-6, rtol=1e-12)               # in order around the base
    np.testing.assert_allclose(corners.mean(axis=0), 0.0, atol=1e-18)
    assert "750 eV" in tr.description and "xraydb" in tr.description
    # high signal: > 1e7 scattered photons per pattern outside the beamstop
    assert shot.frame.sum(dtype=np.float64) > 2e7


def test_pyramid_spheres_line_the_faces(pyramid):
    opts, shot = pyramid
    tr = shot.truth
    c, faces, feet = tr.edge_points_m, tr.edge_labels, tr.extra["surface_points_m"]
    ph = Pyramid.from_options(opts)
    r, t = ph.sphere_radius_m, ph.thickness_m
    target = opts.sphere_coverage * ph.face_area_m2() / (math.pi * r * r)
    assert abs(len(c) / target - 1) < 0.02                                # the requested coverage
    assert np.all(np.bincount(faces, minlength=4) > 0.2 * len(c))         # every face well sampled
    d, _ = cKDTree(c).query(c, k=2)
    assert d[:, 1].min() >= 2 * r * (1 - 1e-9)                           # no overlaps: not a solid sheet
    assert np.median(d[:, 1]) < 4 * r                                    # but dense
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
    ph = Pyramid.from_options(opts.replace(sphere_coverage=0.01))      # sparse: isolated spheres
    spheres = ph.spheres()
    dr, n = opts.pixel_size_m, opts.pattern_size
    t1, t2 = (math.radians(x) for x in opts.angles_deg)
    mem, sph = ph.voxelise_parts(pixel_m=dr, grid_size=n, dz_m=opts.voxel_depth_nm * 1e-9, max_tan=math.tan(t1),
                                 spheres=spheres)
    c = spheres[0]
    r = ph.sphere_radius_m
    vol = 4 / 3 * math.pi * r ** 3
    # spheres with no neighbour within 4 r in the view plane of both views (any depth)
    iso = cKDTree(c[:, :2]).query(c[:, :2], k=2)[0][:, 1] > 5 * r
    assert iso.sum() > 20
    r0, c0 = sph.origin_px
    w = 4
    for ang in (t1, -t2):
        L = path_length(sph.occupancy, z_m=sph.z_m, pixel_m=dr, angle_rad=ang)
        xk = c[iso, 0] + c[iso, 2] * math.tan(ang)
        for (x, y) in zip(xk, c[iso, 1]):
            rc, cc = int(round(y / dr)) + n // 2 - r0, int(round(x / dr)) + n // 2 - c0
            win = L[rc - w:rc + w + 1, cc - w:cc + w + 1].astype(np.float64)
            rr, kk = np.mgrid[-w:w + 1, -w:w + 1]
            s = win.sum()
            cy = (rc + (rr * win).sum() / s - n // 2 + r0) * dr
            cx = (cc + (kk * win).sum() / s - n // 2 + c0) * dr
            assert cx == pytest.approx(x, abs=0.05 * dr) and cy == pytest.approx(y, abs=0.05 * dr)
            assert s * dr * dr == pytest.approx(vol / math.cos(ang), rel=0.01)
    # the membrane: notch volume = t x (flat area + faces' area), flat t outside
    mem_vol = mem.occupancy.sum(dtype=np.float64) * dr * dr * mem.dz_m
    ny, nx = mem.occupancy.shape[1:]
    flat = ny * nx * dr * dr - ph.base_m ** 2
    assert mem_vol == pytest.approx(ph.thickness_m * (flat + ph.face_area_m2()), rel=5e-3)


def test_pyramid_view_levels(pyramid):
    opts, shot = pyramid
    v = shot.truth.views
    k = 2 * math.pi / opts.wavelength_m
    dm, bm, tm = _constants(opts.membrane_layers, opts.energy_eV)
    for view, ang in enumerate((math.radians(opts.angles_deg[0]), -math.radians(opts.angles_deg[1]))):
        flat = np.exp(-1j * k * (dm - 1j * bm) * tm / math.cos(ang))
        assert shot.truth.extra["background_transmission"][view] == pytest.approx(flat, rel=1e-12)
        assert abs(v[view, 5, 5] - flat) < 1e-5 and abs(v[view, -5, 40] - flat) < 1e-5
        # spheres darken the notch: a good fraction of its pixels well below the face's own transmission
        n = opts.pattern_size
        h = int(1.1e-6 / opts.pixel_size_m)
        notch = np.abs(v[view, n // 2 - h:n // 2 + h, n // 2 - h:n // 2 + h])
        assert 0.1 < np.mean(notch < 0.8 * abs(flat)) < 0.7
    assert np.abs(v[0] - v[1]).max() > 0.2                               # the views differ (stereo)


def test_pyramid_pattern_is_phaseable(pyramid):
    """The membrane fills the field, but with flat illumination only ``view - background`` scatters
    outside the beamstop, and it is compact: a plain HIO/ER with a loose box support recovers it."""
    opts, shot = pyramid
    n = opts.pattern_size
    r, c = shot.centres_px[0].astype(int)
    sl = (slice(r - n // 2, r - n // 2 + n), slice(c - n // 2, c - n // 2 + n))
    amp, good = np.sqrt(shot.frame[sl].astype(np.float64)), shot.mask[sl] == 0
    obj = shot.truth.views[0] - shot.truth.extra["background_transmission"][0]
    h = int(1.35e-6 / opts.pixel_size_m)
    sup = np.zeros((n, n), bool)
    sup[n // 2 - h:n // 2 + h, n // 2 - h - 8:n // 2 + h + 8] = True
    assert np.abs(obj[~sup]).max() < 1e-5                                # compact
    rng = np.random.default_rng(0)
    x = sup * rng.random((n, n)) * np.exp(2j * np.pi * rng.random((n, n)))

    def modulus(x):
        f = np.fft.fftshift(np.fft.fft2(x))
        return np.fft.ifft2(np.fft.ifftshift(np.where(good, amp * np.exp(1j * np.angle(f)), f)))

    for it in range(400):
        y = modulus(x)
        x = np.where(sup, y, x - 0.9 * y) if it % 100 < 80 else np.where(sup, y, 0)
    x = np.where(sup, modulus(x), 0)

    def corr(a, b):
        a, b = np.abs(a) - np.abs(a).mean(), np.abs(b) - np.abs(b).mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    best = 0.0
    for cand in (x, np.roll(np.conj(x[::-1, ::-1]), 1, axis=(0, 1))):     # the twin is as good a solution
        cc = np.abs(np.fft.ifft2(np.fft.fft2(np.abs(cand)) * np.conj(np.fft.fft2(np.abs(obj)))))
        sh = np.unravel_index(np.argmax(cc), cc.shape)
        best = max(best, corr(np.roll(cand, (-sh[0], -sh[1]), axis=(0, 1)), obj))
    assert best > 0.8
    assert corr(shot.truth.views[0], obj) < 0                            # |view| is not what phasing gives
