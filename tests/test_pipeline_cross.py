"""Experiment 1, the amplitude cross: the outlier filter's threshold in the cross recipe.

On the phased views of seeds 0-2 the left-right consistent cloud of the cross already lies entirely
within the scorer's 1.5 px of a true edge, and the paper's ``t = 0.1`` (keep points whose mean
distance to their 80 nearest neighbours is at most the mean + 0.1 standard deviation) then drops
20-27 % of it: whole stretches of single edges, which are sparser than the doubled edges of the kerf,
about 10 % of the true edge points. ``t = 0.3`` (the phase cross's value) keeps them and still
removes stray points. These tests use the simulator's true views so that they run in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

import xstereo_gpu as xs
from xstereo_gpu.accuracy import score
from xstereo_gpu.cloud.outliers import remove_outliers
from xstereo_gpu.config import PipelineOptions
from xstereo_gpu.pipeline import Pipeline

#: The proposed cross recipe: today's (SGM) with the outlier threshold of the phase cross.
PROPOSED_T = 0.3


@pytest.fixture(scope="module")
def cross_cloud():
    """(lr-consistent points (M, 3) [nm], views, truth, geometry) of the true cross views, seed 0."""
    shot = xs.simulate_shot(xs.SimulationOptions.for_sample("cross", seed=0))
    views = shot.truth.phasable_views.astype(np.complex64)
    opts = PipelineOptions.for_sample("cross", "cpu")
    pipe = Pipeline(opts, backend="numpy")
    cloud = pipe.cloud(pipe.stereo(views), shot.geometry)
    return np.asarray(cloud.points_nm), views, shot.truth, shot.geometry


def _score(points, cross_cloud):
    _, views, truth, geometry = cross_cloud
    return score(points, views, truth, geometry)


def test_consistent_cloud_has_no_outliers_yet_t01_drops_a_fifth(cross_cloud):
    pts = cross_cloud[0]
    assert len(pts) > 10000
    before = _score(pts, cross_cloud)
    assert before["points_near_edges"] >= 0.99  # nothing for an outlier filter to remove
    keep = remove_outliers(pts, k=80, t=0.1)
    assert 0.2 < 1 - keep.mean() < 0.4
    after = _score(pts[keep], cross_cloud)
    assert after["completeness_2dz"] < before["completeness_2dz"] - 0.05  # valid edges lost


def test_proposed_threshold_keeps_edges_at_the_same_depth_error(cross_cloud):
    pts = cross_cloud[0]
    old = _score(pts[remove_outliers(pts, k=80, t=0.1)], cross_cloud)
    new = _score(pts[remove_outliers(pts, k=80, t=PROPOSED_T)], cross_cloud)
    assert new["completeness_2dz"] >= old["completeness_2dz"] + 0.015
    assert new["completeness_2dz"] >= 0.85
    assert new["depth_error_median_voxels"] <= old["depth_error_median_voxels"] + 0.05
    assert new["depth_error_median_voxels"] <= 0.5


def test_proposed_threshold_still_removes_stray_points(cross_cloud):
    pts = cross_cloud[0]
    rng = np.random.default_rng(3)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    stray = rng.uniform(lo, hi, size=(60, 3))
    # keep only strays at least 300 nm from every cloud point (true outliers, not edge points)
    from scipy.spatial import cKDTree

    stray = stray[cKDTree(pts).query(stray)[0] > 300.0]
    assert len(stray) >= 20
    allp = np.concatenate([pts, stray])
    keep = remove_outliers(allp, k=80, t=PROPOSED_T)
    assert not keep[len(pts) :].any()
    assert keep[: len(pts)].mean() > 0.75
