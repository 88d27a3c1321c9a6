"""Point-cloud cleaning: k-nearest-neighbour distances and the statistical outlier filter."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import host

from xstereo_gpu.cloud import (
    knn_mean_distance,
    remove_outliers,
    statistical_outlier_filter,
)
from xstereo_gpu.config import CloudOptions
from xstereo_gpu.errors import InputError


def _brute(points: np.ndarray, k: int) -> np.ndarray:
    d = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, :k].mean(axis=1)


@pytest.mark.parametrize("k", [5, 80])
@pytest.mark.parametrize("method", ["auto", "brute"])
def test_knn_mean_distance_equals_brute_force(xp, k, method):
    rng = np.random.default_rng(11)
    pts = rng.normal(size=(400, 3)) * [300.0, 200.0, 50.0] + [1e4, -5e3, 2e3]  # nm, off-centre
    pts[7] = pts[3]  # a duplicate counts as a neighbour at distance 0
    got = knn_mean_distance(xp.asarray(pts), k, method=method)
    assert got.shape == (400,) and got.dtype == np.float64
    np.testing.assert_allclose(host(got), _brute(pts, k), rtol=1e-9, atol=1e-7)


def test_knn_brute_force_chunks_agree(monkeypatch):
    import xstereo_gpu.cloud.outliers as outliers

    rng = np.random.default_rng(12)
    pts = rng.random((257, 3))
    monkeypatch.setattr(outliers, "_CHUNK_BYTES", 8 * 257 * 10)  # 10 rows per chunk
    np.testing.assert_allclose(knn_mean_distance(pts, 6, method="brute"), _brute(pts, 6), rtol=1e-9)


def test_remove_outliers_drops_far_points_and_keeps_the_cluster(xp):
    rng = np.random.default_rng(13)
    # a jittered surface patch like a stereo cloud, 40 x 40 points 10 nm apart
    g = np.stack(np.meshgrid(np.arange(40.0), np.arange(40.0)), -1).reshape(-1, 2) * 10
    cluster = np.column_stack([g, 5 * np.sin(g[:, 0] / 80)]) + rng.normal(scale=0.5, size=(1600, 3))
    far = rng.normal(size=(12, 3))
    far = 2000 * far / np.linalg.norm(far, axis=1, keepdims=True) + [200, 200, 0]
    pts = np.concatenate([cluster, far])
    keep = host(remove_outliers(xp.asarray(pts), k=80, t=0.1))
    assert keep.dtype == bool and keep.shape == (1612,)
    assert not keep[1600:].any()
    assert keep[:1600].mean() > 0.97
    same = host(statistical_outlier_filter(xp.asarray(pts), CloudOptions(k=80, t=0.1)))
    np.testing.assert_array_equal(same, keep)
    # a stricter threshold removes more cluster points (the paper's t counts standard deviations)
    strict = host(remove_outliers(xp.asarray(pts), k=80, t=-1.0))
    assert strict.sum() < keep.sum()


def test_degenerate_clouds(xp):
    same = xp.asarray(np.tile([[1.0, 2.0, 3.0]], (50, 1)))
    np.testing.assert_array_equal(host(knn_mean_distance(same, 80)), 0)
    assert host(remove_outliers(same)).all()
    one = xp.asarray(np.array([[0.0, 0.0, 0.0]]))
    np.testing.assert_array_equal(host(knn_mean_distance(one, 5)), [0.0])
    np.testing.assert_array_equal(host(remove_outliers(one)), [True])
    empty = xp.zeros((0, 3))
    assert host(remove_outliers(empty)).shape == (0,)
    # k >= M: clamped to M - 1, i.e. the mean distance to all other points
    four = np.array([[0, 0, 0], [3, 0, 0], [0, 4, 0], [0, 0, 12]], float)
    d = np.sqrt(((four[:, None] - four[None]) ** 2).sum(-1))
    np.testing.assert_allclose(host(knn_mean_distance(xp.asarray(four), 10)), d.sum(1) / 3)
    np.testing.assert_allclose(host(knn_mean_distance(xp.asarray(four), 3)), d.sum(1) / 3)


def test_bad_input_is_rejected(xp):
    with pytest.raises(InputError, match=r"\(M, 3\)"):
        knn_mean_distance(xp.zeros((10, 2)), 3)
    with pytest.raises(InputError, match="k"):
        knn_mean_distance(xp.zeros((10, 3)), 0)
    bad = np.zeros((10, 3))
    bad[2, 1] = np.inf
    with pytest.raises(InputError, match="non-finite"):
        remove_outliers(xp.asarray(bad))
    with pytest.raises(InputError, match="method"):
        knn_mean_distance(xp.zeros((10, 3)), 3, method="octree")
