"""Discrete Sibson (natural-neighbour) interpolation, Park et al. (2006)."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import host
from scipy.interpolate import griddata
from scipy.ndimage import binary_erosion, distance_transform_edt

from xstereo_gpu.cloud import discrete_sibson, rasterise_samples, sibson_grid
from xstereo_gpu.errors import InputError


def _reference(vals, mask, spacing, max_radius=None, xp=np):
    """The definition, cell by cell: every cell p sends the value of its nearest site to all cells
    q with |q - p| <= r(p); a cell's value is the mean of what it received (sites keep theirs).
    The nearest-site map comes from the same backend's EDT (ties may be broken differently)."""
    shape = vals.shape
    if xp is np:
        _, ind = distance_transform_edt(~mask, sampling=spacing, return_indices=True)
    else:
        from xstereo_gpu.cloud.interpolate import _edt

        ind = host(_edt(xp, xp.asarray(mask), spacing)[1])
    cells = np.indices(shape).reshape(len(shape), -1).T
    pos = cells * np.asarray(spacing)
    near = ind.reshape(len(shape), -1).T
    r2 = ((pos - near * np.asarray(spacing)) ** 2).sum(1)
    v = vals[tuple(near.T)]
    tot = np.zeros(len(cells))
    cnt = np.zeros(len(cells))
    for p in range(len(cells)):
        if max_radius is not None and r2[p] > max_radius**2 * (1 + 1e-12):
            continue
        hit = ((pos - pos[p]) ** 2).sum(1) <= r2[p] * (1 + 1e-9) + 1e-9
        tot[hit] += v[p]
        cnt[hit] += 1
    out = np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan).reshape(shape)
    return np.where(mask, vals, out)


@pytest.mark.parametrize(
    "shape,spacing",
    [
        ((17, 23), (1.0, 1.0)),
        ((19, 16), (1.0, 0.61)),
        ((9, 11, 10), (1.0, 1.0, 1.0)),
        ((8, 10, 9), (1.9, 0.7, 1.0)),
    ],
)
def test_matches_the_definition(xp, shape, spacing):
    rng = np.random.default_rng(21)
    mask = rng.random(shape) < 0.04
    mask[(0,) * len(shape)] = True
    vals = rng.normal(size=shape) * mask
    got = host(discrete_sibson(xp.asarray(vals), xp.asarray(mask), spacing=spacing))
    assert got.shape == shape and got.dtype == np.float64
    np.testing.assert_allclose(got, _reference(vals, mask, spacing, xp=xp), rtol=1e-12, atol=1e-12)


def test_max_radius_leaves_far_cells_undefined(xp):
    rng = np.random.default_rng(22)
    mask = np.zeros((30, 30), bool)
    mask[rng.integers(0, 10, 8), rng.integers(0, 10, 8)] = True  # sites in one corner only
    vals = rng.normal(size=mask.shape) * mask
    got = host(discrete_sibson(xp.asarray(vals), xp.asarray(mask), max_radius=4.0))
    np.testing.assert_allclose(
        got, _reference(vals, mask, (1.0, 1.0), max_radius=4.0, xp=xp), rtol=1e-12, atol=1e-12
    )
    assert np.isnan(got[25:, 25:]).all() and np.isfinite(got[mask]).all()


def test_batched_flushes_agree(monkeypatch):
    import xstereo_gpu.cloud.interpolate as interp

    rng = np.random.default_rng(23)
    mask = rng.random((40, 40)) < 0.02
    vals = rng.normal(size=mask.shape)
    whole = discrete_sibson(vals, mask)
    monkeypatch.setattr(interp, "_FLUSH", 50)
    np.testing.assert_allclose(discrete_sibson(vals, mask), whole, rtol=1e-12, atol=1e-12)


def _linear(c):
    return 3.0 * c[..., 1] - 1.5 * c[..., 0] + 40.0


def test_reproduces_a_linear_function_inside_the_hull(xp):
    rng = np.random.default_rng(24)
    n, dr = 96, 49.0  # view grid, nm
    origin = (-(n // 2) * dr, -(n // 2) * dr)
    cells = rng.choice(n * n, 300, replace=False)
    c = (np.column_stack(np.unravel_index(cells, (n, n))) * dr + origin).astype(float)  # on cell centres
    f = _linear(c / dr)
    got = host(sibson_grid(xp.asarray(c), xp.asarray(f), shape=(n, n), origin=origin, spacing=(dr, dr)))
    grid = np.stack(np.indices((n, n)), -1) * dr + origin
    truth = _linear(grid / dr)
    lin = griddata(c, f, grid.reshape(-1, 2), method="linear").reshape(n, n)
    core = binary_erosion(np.isfinite(lin), iterations=8)
    err = np.abs(got - truth)
    slope = np.hypot(3.0, 1.5)  # value change per cell
    assert core.sum() > 0.5 * n * n
    assert np.median(err[core]) < 0.25 * slope and err[core].max() < 2.0 * slope
    assert np.isfinite(got).all()  # no max_radius: every cell gets a value, also outside the hull
    # exact at the samples
    idx = np.unravel_index(cells, (n, n))
    np.testing.assert_allclose(got[idx], f, rtol=0, atol=1e-9)


def test_qualitatively_like_scipy_linear_and_better_than_nearest():
    rng = np.random.default_rng(25)
    n = 80
    c = rng.uniform(0, n - 1, size=(250, 2))
    smooth = lambda y, x: np.sin(x / 9.0) * np.cos(y / 13.0) * 50 + 0.3 * x  # noqa: E731
    f = smooth(c[:, 0], c[:, 1])
    got = sibson_grid(c, f, shape=(n, n), origin=(0, 0), spacing=(1, 1))
    yy, xx = np.indices((n, n)).astype(float)
    truth = smooth(yy, xx)
    lin = griddata(c, f, (yy, xx), method="linear")
    nearest = griddata(c, f, (yy, xx), method="nearest")
    core = binary_erosion(np.isfinite(lin), iterations=6)
    e_sib = np.abs(got - truth)[core].mean()
    e_lin = np.abs(lin - truth)[core].mean()
    e_near = np.abs(nearest - truth)[core].mean()
    assert e_sib < 0.75 * e_near
    assert e_sib < 1.6 * e_lin
    assert np.abs(got - lin)[core].mean() < 0.5 * np.abs(nearest - lin)[core].mean()


def test_duplicates_and_cell_sharing_samples_average():
    c = np.array([[2.0, 2.0], [2.0, 2.0], [2.1, 1.9], [7.0, 7.0], [50.0, 50.0]])  # last one is off the grid
    v = np.array([1.0, 3.0, 5.0, 10.0, 99.0])
    sv, sm = rasterise_samples(c, v, shape=(10, 10), origin=(0, 0), spacing=(1, 1))
    assert sm.sum() == 2 and sv[2, 2] == pytest.approx(3.0) and sv[7, 7] == 10.0
    out = sibson_grid(c, v, shape=(10, 10), origin=(0, 0), spacing=(1, 1))
    assert out[2, 2] == pytest.approx(3.0) and out[7, 7] == 10.0
    assert 3.0 <= out.min() and out.max() <= 10.0  # a mean of site values: no overshoot
    # symmetric between the two sites: the midpoint cell gets their mean
    assert out[4, 5] == pytest.approx(out[5, 4])
    # non-finite coordinates or values are ignored
    bad = np.array([[np.nan, 1.0], [np.inf, 3.0], [4.0, 4.0]])
    out2 = sibson_grid(
        np.concatenate([c, bad]),
        np.concatenate([v, [7.0, 7.0, np.nan]]),
        shape=(10, 10),
        origin=(0, 0),
        spacing=(1, 1),
    )
    np.testing.assert_array_equal(out2, out)


def test_3d_linear_function(xp):
    rng = np.random.default_rng(26)
    shape, spacing = (20, 24, 24), (146.0, 49.0, 49.0)
    cells = rng.choice(np.prod(shape), 250, replace=False)
    idx = np.column_stack(np.unravel_index(cells, shape))
    c = idx * spacing
    f = idx @ [2.0, -1.0, 0.5]
    got = host(sibson_grid(xp.asarray(c), xp.asarray(f), shape=shape, origin=(0, 0, 0), spacing=spacing))
    truth = np.stack(np.indices(shape), -1) @ [2.0, -1.0, 0.5]
    core = (slice(5, 15), slice(6, 18), slice(6, 18))
    assert np.median(np.abs(got - truth)[core]) < 1.0 and np.isfinite(got).all()
    np.testing.assert_allclose(got[tuple(idx.T)], f, atol=1e-9)


def test_no_sites_and_bad_inputs():
    assert np.isnan(discrete_sibson(np.zeros((4, 4)), np.zeros((4, 4), bool))).all()
    with pytest.raises(InputError, match="site_mask"):
        discrete_sibson(np.zeros((4, 4)), np.zeros((4, 5), bool))
    with pytest.raises(InputError, match="site_values"):
        discrete_sibson(np.zeros(4), np.zeros(4, bool))
    with pytest.raises(InputError, match="spacing"):
        sibson_grid(np.zeros((3, 2)), np.zeros(3), shape=(4, 4), origin=(0, 0), spacing=(1, 0))
    with pytest.raises(InputError, match="coords"):
        sibson_grid(np.zeros((3, 3)), np.zeros(3), shape=(4, 4), origin=(0, 0), spacing=(1, 1))
    with pytest.raises(InputError, match="max_radius"):
        discrete_sibson(np.zeros((4, 4)), np.ones((4, 4), bool), max_radius=-1)
