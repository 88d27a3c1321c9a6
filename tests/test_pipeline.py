"""The stage interface of :class:`xstereo_gpu.Pipeline`: typed results, stages called one by one."""

from __future__ import annotations

import numpy as np
import pytest

import xstereo_gpu as xs
from xstereo_gpu.results import CloudResult, MapPair, Results, StereoResult, ViewsResult


@pytest.fixture(scope="module")
def small():
    """A small simulated shot and quick options (4 runs x 30 iterations)."""
    sim = xs.SimulationOptions(
        binning=8, pattern_size=128, cross_size_um=(3.0, 3.0), arm_width_um=1.0, supersample=1, seed=3
    )
    shot = xs.simulate_shot(sim)
    opts = xs.PipelineOptions.for_sample("cross", "cpu").replace(phasing__runs=4, phasing__iterations=30)
    return shot, opts


def _same(a, b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_run_is_the_stages_called_in_order(small):
    """Pipeline.run == prepare, phase, align, stereo, cloud, reconstruct called by hand (bit for bit)."""
    shot, opts = small
    with xs.Pipeline(opts, backend="numpy") as pipe:
        res = pipe.run(shot)
    assert isinstance(res, Results)
    assert isinstance(res.views, ViewsResult) and isinstance(res.stereo, StereoResult)
    assert isinstance(res.cloud, CloudResult) and all(isinstance(p, MapPair) for p in res.stereo.pairs)
    assert set(res.timings) >= {"prepare", "phase", "align", "stereo", "cloud", "reconstruct", "total"}

    with xs.Pipeline(opts, backend="numpy") as pipe:
        geometry = pipe.geometry(shot)
        views = pipe.align(pipe.phase(*pipe.prepare(shot)), geometry)
        stereo = pipe.stereo(views)
        cloud = pipe.cloud(stereo, geometry)
        rec = pipe.reconstruct(cloud, stereo, geometry)
    _same(res.views.views, views.views.astype(np.complex64))
    _same(res.views.supports, views.supports)
    for name in ("images", "disparity_left", "disparity_right", "matched_views", "amplitude"):
        _same(getattr(res.stereo, name), getattr(stereo, name))
    for name in ("depth", "points_nm", "confidence", "view_index", "pixel", "kept"):
        _same(getattr(res.cloud, name), getattr(cloud, name))
    assert res.stereo.modes == stereo.modes == ["binary"]
    assert len(res.cloud.cleaned_nm) == int(cloud.kept.sum()) > 100
    assert [p["tilt_deg"] for p in res.reconstruction.planes] == [p["tilt_deg"] for p in rec.planes]
    _same(res.reconstruction.volume, rec.volume)


def test_one_stage_can_be_swapped(small):
    """The cloud stage takes any StereoResult: maps shifted by one pixel move every point's depth by one "
    "step."""
    shot, opts = small
    views = shot.truth.views
    with xs.Pipeline(opts, backend="numpy") as pipe:
        stereo = pipe.stereo(views)
        shifted = StereoResult(
            **{
                **vars(stereo),
                "pairs": [
                    MapPair(
                        p.mode,
                        p.disparity_left + 1,
                        p.disparity_right + 1,
                        p.confidence_left,
                        p.confidence_right,
                    )
                    for p in stereo.pairs
                ],
            }
        )
        a = pipe.cloud(stereo, shot.geometry)
        b = pipe.cloud(shifted, shot.geometry)
    step_nm = shot.geometry.voxel_depth_m * 1e9 / stereo.upsample
    left = np.asarray(a.view_index) == 0
    dz = np.asarray(b.points_nm)[left, 2] - np.asarray(a.points_nm)[left, 2]
    assert np.allclose(np.abs(dz), step_nm, rtol=1e-6)


def test_stage_results_come_to_the_host(small):
    """to_host() copies every array field, also those of nested results (pairs, rectification)."""
    shot, opts = small
    with xs.Pipeline(opts.replace(stereo__rectify=True), backend="numpy") as pipe:
        stereo = pipe.stereo(shot.truth.views)
    host = stereo.to_host()
    assert host is not stereo and isinstance(host.pairs[0], MapPair)
    assert isinstance(host.disparity_left, np.ndarray) and isinstance(
        host.pairs[0].confidence_left, np.ndarray
    )
    assert host.rectification is not None and isinstance(host.rectification.views, np.ndarray)
    left, right = host.valid_fractions()
    assert 0 < left <= 1 and 0 < right <= 1
