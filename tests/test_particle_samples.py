"""The samples of general 3D structure (issue 10): nanoparticles in random clusters, along a 3D curve,
on scratches of a tilted rough surface. Their layouts, and each end to end at a small size: simulated,
phased from its own pattern, aligned, matched and scored against its ground truth."""

from __future__ import annotations

import numpy as np
import pytest

import xstereo_gpu as xs
from xstereo_gpu.simulate import PARTICLE_SAMPLES, Particles, SimulationOptions

#: A small version of each sample: 128 px crops of a 4 x 4 binned CCD (the same 15 nm view pixels),
#: the layout shrunk to 0.7 um across and 0.6 um (7 voxel depths) deep, fewer particles.
SMALL = dict(binning=4, pattern_size=128, particle_span_um=0.7, particle_depth_um=0.6, supersample=2)


@pytest.mark.parametrize("sample", PARTICLE_SAMPLES)
def test_layouts(sample):
    opts = SimulationOptions.for_sample(sample)
    p = Particles.from_options(opts)
    centres, labels = p.spheres()
    assert 0.5 * opts.particle_count <= len(centres) <= opts.particle_count and len(labels) == len(centres)
    d = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(len(centres))
    assert d.min() >= 2 * p.sphere_radius_m * (1 - 1e-9)  # no overlaps
    assert np.abs(centres[:, :2]).max() <= p.span_m / 2 + p.span_m / 16 * 3
    # the depth is spread: most of the layout's depth extent (15 voxel depths of 86 nm by default)
    span_z = np.ptp(centres[:, 2])
    assert 0.6 * p.depth_m <= span_z <= 1.3 * p.depth_m
    assert span_z / (opts.pixel_size_m / sum(np.tan(np.radians(opts.angles_deg)))) > 9
    # seeded: the same layout again, another with another seed
    np.testing.assert_array_equal(p.spheres()[0], centres)
    other = Particles.from_options(opts.replace(seed=1)).spheres()[0]
    assert other.shape != centres.shape or not np.allclose(other, centres)


#: Measured at seed 0 (2-core CPU VM): curve 0.10 voxel / completeness 0.97 and clusters 0.22 / 0.84 at
#: the SMALL size with 8 runs x 100 iterations; the rough surface's scratches need its full field (at the
#: SMALL size they crowd into a patch that does not phase): 0.24 / 0.87 with 4 runs x 80 iterations (seed
#: 1: 0.87 / 0.62). The limits leave room for other seeds and phasing changes; a wrong twin or a
#: failed phasing gives several voxels and a completeness near 0.2.
@pytest.mark.parametrize(
    "sample, changes, runs, iterations, max_voxels, min_completeness",
    [
        ("curve", dict(SMALL, particle_count=40), 8, 100, 0.3, 0.85),
        ("clusters", dict(SMALL, particle_count=25), 8, 100, 0.6, 0.7),
        ("rough-surface", dict(particle_count=60, supersample=2), 4, 80, 1.0, 0.6),
    ],
)
def test_end_to_end(sample, changes, runs, iterations, max_voxels, min_completeness):
    shot = xs.simulate_shot(SimulationOptions.for_sample(sample, seed=0, **changes))
    opts = xs.PipelineOptions.for_sample(sample, "cpu").replace(
        phasing__runs=runs, phasing__iterations=iterations
    )
    res = xs.run_pipeline(shot, opts)
    acc = res.accuracy
    assert acc["depth_error_median_voxels"] <= max_voxels
    assert acc["completeness_2dz"] >= min_completeness
    assert not res.views.alignment["twin_choice"]["ambiguous"]


def test_offset_moves_views_and_truth():
    """A particle sample off centre: its views rolled by the offset, its truth moved with them."""
    kw = dict(SMALL, particle_count=20, supersample=1)
    centred = xs.simulate_shot(SimulationOptions.for_sample("rough-surface", **kw))
    opts = SimulationOptions.for_sample("rough-surface", **kw, sample_offset_px=(4, -6))
    moved = xs.simulate_shot(opts)
    np.testing.assert_array_equal(moved.truth.views, np.roll(centred.truth.views, (4, -6), axis=(-2, -1)))
    shift = np.array([*opts.sample_offset_m, 0.0])
    np.testing.assert_allclose(moved.truth.edge_points_m, centred.truth.edge_points_m + shift, atol=1e-15)
    np.testing.assert_allclose(
        moved.truth.extra["surface_points_m"], centred.truth.extra["surface_points_m"] + shift, atol=1e-15
    )
