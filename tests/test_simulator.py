"""The simulator (xstereo_gpu.simulate.simulator) on its three samples: the truth it records, the views' grey
levels,
the frame, determinism; the demo cross, the phase cross and the nanoparticle pyramid."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xstereo_gpu.errors import InputError
from xstereo_gpu.shot import GroundTruth, Shot
from xstereo_gpu.simulate import (
    CrossLid,
    SimulationOptions,
    far_field,
    illumination,
    misalignment_matrix,
    path_length,
    photon_counts,
    simulate_shot,
    stack_delta_beta,
)
from xstereo_gpu.simulate.phantoms import inside_cross


@pytest.fixture(scope="module")
def phase_cross():
    opts = SimulationOptions.for_sample("phase-cross")
    return opts, simulate_shot(opts)


# -- the demo cross --------------------------------------------------------------------------------
def test_truth_shapes_and_dtypes(demo):
    opts, shot = demo
    tr = shot.truth
    n = opts.pattern_size
    assert isinstance(shot, Shot) and isinstance(tr, GroundTruth)
    assert tr.views.shape == (2, n, n) and tr.views.dtype == np.complex64
    assert tr.pixel_size_m == pytest.approx(shot.pixel_size_m) == pytest.approx(opts.pixel_size_m)
    assert (
        tr.edge_points_m.ndim == 2 and tr.edge_points_m.shape[1] == 3 and tr.edge_points_m.dtype == np.float64
    )
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
    np.testing.assert_allclose(
        ratio[:, :10, :10], math.exp(-229 / math.cos(math.radians(9.5)) / 40), rtol=1e-3
    )
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
        crop = s.frame[r - n // 2 : r - n // 2 + n, c - n // 2 : c - n // 2 + n]
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
    for key in (
        "edge_hidden",
        "edge_hidden_by_view",
        "right_rotation_deg",
        "right_shift_px",
        "right_view_transform",
        "planes",
    ):
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
    assert crop[good].sum(dtype=np.float64) > 5e7  # > 5e7 photons scattered outside the beamstop


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
    assert np.all(np.abs(np.angle(vals)) < math.pi - 0.5)  # no phase wrap
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
    assert (
        abs(v[3, 3] - t_mem) < 1e-4 and abs(v[opts.pattern_size // 2, opts.pattern_size // 2] - t_lid) < 0.03
    )


def test_edge_hidden_consistent_with_projection(phase_cross):
    opts, shot = phase_cross
    tr = shot.truth
    hidden, by_view = tr.extra["edge_hidden"], tr.extra["edge_hidden_by_view"]
    pts, lab = tr.edge_points_m, tr.edge_labels
    assert hidden.any() and np.array_equal(hidden, by_view.any(axis=1))
    assert np.all(lab[hidden] == 1)  # only lid edges hide behind the membrane
    assert by_view[:, 0].sum() > 50 and by_view[:, 1].sum() > 50
    assert not np.any(by_view[:, 0] & by_view[:, 1])  # each is hidden in one view, seen in the other
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
    np.testing.assert_allclose(
        m, misalignment_matrix(opts.pattern_size, rotation_deg=1.0, shift_px=(2.0, 0.0))
    )
    assert m[1, 2] != 0 and np.allclose(
        m[:2, :2],
        [
            [math.cos(math.radians(1)), -math.sin(math.radians(1))],
            [math.sin(math.radians(1)), math.cos(math.radians(1))],
        ],
    )

    background = shot.truth.views[1, 3, 3]

    def centroid(view):  # centroid (col, row) of the sample's departure from the plain membrane
        w = np.abs(view - background).astype(np.float64)
        r, c = np.indices(w.shape)
        return np.array([(c * w).sum() / w.sum(), (r * w).sum() / w.sum(), 1.0]), w.sum()

    p_al, n_al = centroid(aligned.truth.views[1])
    p_mis, n_mis = centroid(shot.truth.views[1])
    assert abs(n_mis / n_al - 1) < 0.02
    np.testing.assert_allclose(p_mis[:2], (m @ p_al)[:2], atol=0.25)
    assert abs(p_mis[1] - p_al[1]) > 1.0  # the shift is visible


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
    np.testing.assert_allclose(sides, 2.5e-6, rtol=1e-12)  # in order around the base
    np.testing.assert_allclose(corners.mean(axis=0), 0.0, atol=1e-18)
    assert "750 eV" in tr.description and "xraydb" in tr.description
    # high signal: > 1e7 scattered photons per pattern outside the beamstop
    assert shot.frame.sum(dtype=np.float64) > 2e7


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
        notch = np.abs(v[view, n // 2 - h : n // 2 + h, n // 2 - h : n // 2 + h])
        assert 0.1 < np.mean(notch < 0.8 * abs(flat)) < 0.7
    assert np.abs(v[0] - v[1]).max() > 0.2  # the views differ (stereo)


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
    sup[n // 2 - h : n // 2 + h, n // 2 - h - 8 : n // 2 + h + 8] = True
    assert np.abs(obj[~sup]).max() < 1e-5  # compact
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
    for cand in (x, np.roll(np.conj(x[::-1, ::-1]), 1, axis=(0, 1))):  # the twin is as good a solution
        cc = np.abs(np.fft.ifft2(np.fft.fft2(np.abs(cand)) * np.conj(np.fft.fft2(np.abs(obj)))))
        sh = np.unravel_index(np.argmax(cc), cc.shape)
        best = max(best, corr(np.roll(cand, (-sh[0], -sh[1]), axis=(0, 1)), obj))
    assert best > 0.8
    assert corr(shot.truth.views[0], obj) < 0  # |view| is not what phasing gives


# ----------------------------------------------------------------------------------------------------
# the sample's lateral position (sample_offset_px)


@pytest.mark.parametrize("sample", ["cross", "phase-cross", "pyramid"])
def test_an_offset_moves_the_object_and_its_truth_by_whole_pixels(sample):
    """Under flat illumination and no misalignment, the views at an offset are the centred views rolled
    by it exactly, and every truth position (edge points, pyramid apex, corners, feet; the lid plane)
    moves by ``offset x Dr`` with them."""
    from xstereo_gpu.simulate.run import SMALL_SHOT_OPTIONS

    kw = dict(SMALL_SHOT_OPTIONS[sample], beam_fwhm_um=None)
    if sample == "phase-cross":
        kw.update(right_rotation_deg=0.0, right_shift_px=(0.0, 0.0))
    centred = simulate_shot(SimulationOptions.for_sample(sample, **kw))
    opts = SimulationOptions.for_sample(sample, **kw, sample_offset_px=(5, -7))
    moved = simulate_shot(opts)
    assert opts.sample_offset_m == pytest.approx((-7 * opts.pixel_size_m, 5 * opts.pixel_size_m))
    np.testing.assert_array_equal(moved.truth.views, np.roll(centred.truth.views, (5, -7), axis=(-2, -1)))
    shift = np.array([*opts.sample_offset_m, 0.0])
    np.testing.assert_allclose(moved.truth.edge_points_m, centred.truth.edge_points_m + shift, atol=1e-15)
    a, b = centred.truth.extra, moved.truth.extra
    np.testing.assert_array_equal(b["sample_offset_m"], shift[:2])
    for key in ("apex_m", "base_corners_m", "surface_points_m"):
        if key in a:
            np.testing.assert_allclose(b[key], np.asarray(a[key]) + shift, atol=1e-15)
    if "planes" in a:  # each moved edge point of the lid lies on the moved lid plane
        lid = moved.truth.edge_points_m[moved.truth.edge_labels == 1]
        plane = np.asarray(b["planes"])[1]
        assert np.abs(lid @ plane[:3] + plane[3]).max() < 1e-12
        np.testing.assert_array_equal(b["edge_hidden"], a["edge_hidden"])
    assert "sample_offset_m" not in a  # a centred sample's truth is as before


def test_offsets_are_checked_against_the_free_field():
    opts = SimulationOptions()
    rows, cols = opts.max_sample_offset_px
    assert rows > 0 and cols > 0
    SimulationOptions(sample_offset_px=(rows, -cols))  # at the limit
    for bad, expected in (
        ((rows + 1, 0), "offsets of at most"),
        ((0, 1.5), "two whole numbers"),
        ((1,), "two whole numbers"),
        ((True, 0), "two whole numbers"),
    ):
        with pytest.raises(InputError) as info:
            SimulationOptions(sample_offset_px=bad)
        assert info.value.where == "simulate.sample_offset_px" and expected in info.value.expected
