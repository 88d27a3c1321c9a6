"""Experiment 3, the nanoparticle pyramid (issue 4): what the stereo stage reaches on correct views,
and the phasing limitation that the pyramid runs into (twin stagnation with a centrosymmetric support).

The pipeline does not yet phase the simulated pyramid (see the strict xfail below and the issue-4
report): its exit wave ``view - background`` fills the square base of the notch, whose support is
centrosymmetric, and difference-map runs stagnate in a superposition of the object and its twin
even with the exact support and noise-free data. The same texture inside a triangle is recovered.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from xstereo_gpu.accuracy import score
from xstereo_gpu.backend import to_host
from xstereo_gpu.config import PhasingOptions, PipelineOptions
from xstereo_gpu.errors import InputError
from xstereo_gpu.phasing.quality import view_error
from xstereo_gpu.phasing.runs import PhaseRetrieval, phase_retrieval
from xstereo_gpu.phasing.support import box_support
from xstereo_gpu.pipeline import Pipeline
from xstereo_gpu.simulate import Pyramid, SimulationOptions, simulate_shot

#: The pyramid recipe's stereo values this file relies on (config.SAMPLE_RECIPES["pyramid"]): a texture
#: threshold of 0.03 for 23 x 23 blocks (0.05 kept too few blocks of the "none"-mode views: completeness
#: 0.59 on the true views), and the Sobel-x maps, which fill what the intensity maps lose on the faces
#: whose grey level differs between the two views (faces 0 and 2, see
#: test_faces_inclined_along_x_differ_in_grey_level_between_the_views). Re-applying them is a no-op.
STEREO = dict(match__texture_threshold=0.03)
PROVIDED_STEREO = dict(stereo__gradient_maps=True)


@pytest.fixture(scope="module")
def pyramid_shot():
    return simulate_shot(SimulationOptions.for_sample("pyramid"))


def test_stereo_meets_the_targets_on_the_true_views(pyramid_shot, xp):
    """Given the views phasing should produce (``truth.phasable_views``), the pyramid recipe's
    stereo and cloud stages meet issue 4's targets: median depth error <= 1 voxel depth,
    completeness >= 0.8, pyramid height within 5 % of 1.8 um."""
    shot = pyramid_shot
    opts = PipelineOptions.for_sample("pyramid", "cpu").replace(**STEREO)
    pipe = Pipeline(opts, backend="numpy")
    geometry = pipe.geometry(shot)
    views = xp.asarray(np.asarray(shot.truth.phasable_views, dtype=np.complex64))
    points = to_host(pipe.cloud(pipe.stereo(views), geometry).cleaned_nm)
    acc = score(points, np.asarray(shot.truth.phasable_views), shot.truth, geometry)
    assert geometry.voxel_depth_m == pytest.approx(122.6e-9, abs=0.2e-9)
    assert acc["recovered_points"] > 50_000
    assert acc["depth_error_median_nm"] <= 0.5 * geometry.voxel_depth_m * 1e9      # measured 19 nm
    assert acc["completeness_2dz"] >= 0.85                                           # measured 0.94
    assert abs(acc["pyramid_height_error"]) <= 0.05                                  # measured -2.5 %
    assert acc["pyramid_height_true_nm"] == pytest.approx(1800.0)


def test_faces_inclined_along_x_differ_in_grey_level_between_the_views(pyramid_shot):
    """Why the intensity maps lose faces 0 and 2: a face inclined along x (the plane of the two beams)
    is crossed by the left and the right beam along different paths (t / cos(alpha -+ theta)), so its
    membrane shows a different grey level (and particle contrast) in the two views; faces 1 and 3
    (inclined along y) look the same in both. SAD on intensities then fails there, SAD on x-gradients
    (offset-free) does not."""
    from xstereo_gpu.cli import PROVIDED_VIEWS
    from xstereo_gpu.simulate import provided_views
    from xstereo_gpu.stereo.preprocess import background_mask, preprocess
    from xstereo_gpu.stereo.stage import view_images

    shot = pyramid_shot
    geometry = shot.geometry
    opts = PipelineOptions.for_sample("pyramid", "cpu")
    images = view_images(provided_views(shot.truth, seed=0, **PROVIDED_VIEWS), "amplitude")
    pre = preprocess(images, opts.preprocess, search_range=(opts.match.dmin, opts.match.dmax),
                     mask=background_mask(images))
    n = images.shape[-1]
    dr = geometry.pixel_size_m
    pts, lab = np.asarray(shot.truth.edge_points_m), np.asarray(shot.truth.edge_labels)
    surround = np.empty((2, 4))                                  # (view, face): grey level beside the spheres
    for k in range(2):
        x = (pts[:, 0] + pts[:, 2] * np.tan(geometry.signed_angles_rad[k])) / dr + n // 2
        r, c = np.rint(pts[:, 1] / dr + n // 2).astype(int), np.rint(x).astype(int)
        ring = np.stack([pre.normalised[k][r + a, c + b] for a in (-4, 4) for b in (-4, 0, 4)])
        for face in range(4):
            surround[k, face] = ring[:, lab == face].mean()
    diff = np.abs(surround[0] - surround[1])
    assert diff[1] < 0.03 and diff[3] < 0.03, surround           # measured 0.00, 0.00
    assert diff[0] > 0.1 and diff[2] > 0.1, surround             # measured 0.20, 0.19


def test_stereo_meets_the_targets_on_the_provided_views(pyramid_shot, xp):
    """The paper's route (views at 42 nm resolution with 3 % noise, no phasing): the pyramid recipe
    with the Sobel-x maps recovers every face (seed 0 measured: completeness 0.97, faces >= 0.95,
    median 20 nm = 0.16 voxel, height -3.2 %; without them 0.50, faces 0 and 2 at 0.04 and 0.11)."""
    from xstereo_gpu.cli import PROVIDED_VIEWS
    from xstereo_gpu.simulate import provided_views

    shot = pyramid_shot
    opts = PipelineOptions.for_sample("pyramid", "cpu").replace(**PROVIDED_STEREO)
    geometry = shot.geometry
    views = provided_views(shot.truth, seed=0, **PROVIDED_VIEWS)
    pipe = Pipeline(opts, backend="cupy" if xp.__name__ == "cupy" else "numpy")
    stereo = pipe.stereo(views)
    assert stereo.modes == ["none", "gradient"]
    points = to_host(pipe.cloud(stereo, geometry).cleaned_nm)
    acc = score(points, views, shot.truth, geometry)
    assert acc["depth_error_median_nm"] <= 0.5 * geometry.voxel_depth_m * 1e9
    assert acc["completeness_2dz"] >= 0.9
    assert min(acc["completeness_2dz_by_part"].values()) >= 0.85
    assert abs(acc["pyramid_height_error"]) <= 0.05


def _texture_phasing_error(shape: str, *, n: int = 192, side: int = 84, seed: int = 0) -> np.ndarray:
    """Per-run view error of DM with the exact support on noise-free data of a random complex
    texture on a uniform patch (like the notch: patch + particles) filling ``shape``."""
    rng = np.random.default_rng(seed)
    i, j = np.mgrid[:n, :n] - n // 2
    h = side // 2
    if shape == "square":
        support = (np.abs(i) < h) & (np.abs(j) < h)
    else:  # right triangle: same texture, no centre of symmetry
        support = (i >= -h) & (j >= -h) & (i + j <= h)
    texture = (0.3 + 0.7 * rng.random((n, n))) * np.exp(1j * rng.uniform(-1, 1, (n, n)))
    obj = np.where(support, 0.5 + texture, 0).astype(np.complex64)
    intensity = (np.abs(np.fft.fftshift(np.fft.fft2(obj))) ** 2).astype(np.float32)[None]
    opts = PhasingOptions(runs=4, iterations=300, shrinkwrap_every=0, seed=seed)
    res = phase_retrieval(intensity, np.ones(intensity.shape, bool), opts, support=support[None])
    return np.asarray(view_error(res.best[0], obj)["error"])


def test_non_centrosymmetric_support_phases_a_dense_texture():
    """The exact triangle support: every run recovers the texture (error < 1e-3)."""
    err = _texture_phasing_error("triangle")
    assert err.shape == (4,) and np.all(err < 1e-3), err


@pytest.mark.xfail(strict=True, reason="twin stagnation: with a centrosymmetric (square) support, difference-map "
                   "runs stall in an object + twin superposition (measured errors 0.10-0.13 for every run); "
                   "this is why the pyramid's notch (a square) does not phase (issue 4)")
def test_square_support_phases_a_dense_texture():
    err = _texture_phasing_error("square")
    assert np.min(err) < 0.01, err


# -- stray spheres: the sample option that breaks the support's centrosymmetry ---------------------
def test_stray_spheres_lie_beside_the_rim_and_leave_the_notch_unchanged():
    base = SimulationOptions.for_sample("pyramid")
    assert base.stray_spheres == 0
    opts = base.replace(stray_spheres=8, stray_band_um=0.2)
    ph0, ph = Pyramid.from_options(base), Pyramid.from_options(opts)
    c0, f0, _ = ph0.spheres()
    c, f, feet = ph.spheres()
    assert len(c) == len(c0) + 8 and np.array_equal(c[:len(c0)], c0) and np.array_equal(f[:len(c0)], f0)
    stray = f == 4
    assert stray.sum() == 8 and not np.any(f0 == 4)
    r, t, half = ph.sphere_radius_m, ph.thickness_m, ph.base_m / 2
    m = np.max(np.abs(c[stray, :2]), axis=1)
    assert np.all(m >= half + 2 * r - 1e-15) and np.all(m <= half + 0.2e-6 + 1e-15)    # in the band
    np.testing.assert_allclose(c[stray, 2], -(t / 2 + r))                              # on the flat membrane
    np.testing.assert_allclose(feet[stray, 2], 0.0)
    d, _ = cKDTree(c).query(c, k=2)
    assert d[:, 1].min() >= 2 * r * (1 - 1e-9)                                         # no overlaps
    # the support of the exit wave (view - background) is no longer centrosymmetric
    shot = simulate_shot(opts.replace(photons=1e8))
    obj = np.abs(np.asarray(shot.truth.phasable_views[0])) > 1e-4
    n = obj.shape[-1]
    flipped = np.roll(obj[::-1, ::-1], 1, axis=(0, 1))
    best = max((obj & np.roll(flipped, (dy, dx), axis=(0, 1))).sum() for dy in range(-6, 7) for dx in range(-6, 7))
    assert best < obj.sum() - 8 * 10                          # the inverted support never covers the strays
    assert "8 stray spheres" in shot.truth.description and n == 384


@pytest.mark.parametrize("changes, where", [
    (dict(stray_spheres=-1), "simulate.stray_spheres"),
    (dict(stray_spheres=2.5), "simulate.stray_spheres"),
    (dict(stray_spheres=4, stray_band_um=0.1), "simulate.stray_band_um"),
    (dict(stray_band_um=float("nan")), "simulate.stray_band_um"),
])
def test_bad_stray_options_name_the_option(changes, where):
    with pytest.raises(InputError) as err:
        SimulationOptions.for_sample("pyramid", **changes)
    assert err.value.where == where


# -- phasing options for objects whose autocorrelation is unreliable ---------------------------------
def test_box_support_is_the_centred_half_field(xp):
    inten = xp.ones((2, 64, 64), dtype=xp.float32)
    box = to_host(box_support(inten))
    assert box.shape == (2, 64, 64) and box.dtype == bool and box.sum() == 2 * 32 * 32
    rows, cols = np.where(box[0])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (16, 47, 16, 47)    # centred on (32, 32)
    assert to_host(box_support(inten, fraction=0.25))[1].sum() == 16 * 16
    with pytest.raises(InputError, match="box support"):
        box_support(inten, fraction=0.0)


def _small_object(n=64, seed=3):
    rng = np.random.default_rng(seed)
    obj = np.zeros((n, n), np.complex64)
    obj[22:38, 25:37] = 0.5 + rng.random((16, 12))           # a real, positive texture
    obj[20:23, 40:43] = 1.0                                    # a particle beside it: no centre of symmetry
    inten = (np.abs(np.fft.fftshift(np.fft.fft2(obj))) ** 2).astype(np.float32)[None]
    return obj, inten


def test_box_start_and_shrink_only_shrinkwrap(xp):
    """``initial_support="box"`` starts every run from the half-field box; with
    ``shrinkwrap_grow=False`` supports only shrink, so they stay inside it; the object is recovered."""
    obj, inten = _small_object()
    opts = PhasingOptions(runs=4, iterations=200, shrinkwrap_every=20, shrinkwrap_threshold=0.2, seed=1)
    pr = PhaseRetrieval(xp.asarray(inten), xp.ones(inten.shape, dtype=bool), opts, initial_support="box",
                        shrinkwrap_grow=False)
    box = to_host(box_support(inten))[:, None]
    assert np.array_equal(to_host(pr.support), np.broadcast_to(box, pr.support.shape))
    areas = [to_host(pr.support.sum(axis=(-2, -1)))]
    while not pr.done():
        pr.update(opts.shrinkwrap_every)
        areas.append(to_host(pr.support.sum(axis=(-2, -1))))
    areas = np.stack(areas)
    assert np.all(np.diff(areas, axis=0) <= 0)                     # never grows
    assert np.all(to_host(pr.support) <= box)                      # inside the box
    assert areas[-1].max() < 0.5 * areas[0].min()                  # and it did shrink
    res = phase_retrieval(xp.asarray(inten), xp.ones(inten.shape, dtype=bool), opts, initial_support="box",
                          shrinkwrap_grow=False)
    assert view_error(to_host(res.views[0]), obj)["error"] < 0.15       # 0.072, as from the default start


def test_phasing_defaults_are_unchanged(xp):
    """Without the keywords (and without the option fields) runs start from the autocorrelation
    support cut by random half-planes, and shrink-wrap may grow a support, as before."""
    _, inten = _small_object()
    opts = PhasingOptions(runs=3, iterations=40, seed=2)
    pr = PhaseRetrieval(xp.asarray(inten), xp.ones(inten.shape, dtype=bool), opts)
    ref = PhaseRetrieval(xp.asarray(inten), xp.ones(inten.shape, dtype=bool), opts, initial_support="autocorrelation",
                         shrinkwrap_grow=True)
    assert pr.shrinkwrap_grow is True
    np.testing.assert_array_equal(to_host(pr.support), to_host(ref.support))
    np.testing.assert_array_equal(to_host(pr.x), to_host(ref.x))
    s = to_host(pr.support)
    assert not np.array_equal(s[0, 0], s[0, 1])                    # half-planes differ between runs
    with pytest.raises(InputError, match="initial_support"):
        PhaseRetrieval(xp.asarray(inten), xp.ones(inten.shape, dtype=bool), opts, initial_support="disc")
