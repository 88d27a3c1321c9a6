"""Shared fixtures: ``xp`` (NumPy always, CuPy under the ``gpu`` marker), the CXI fixtures, a small shot
file, and
the simulated demo cross and nanoparticle pyramid."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from xstereo_gpu.backend import cupy_available

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures"


def pytest_collection_modifyitems(config, items):
    if cupy_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _cupy():
    import cupy

    return cupy


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module under test: numpy, or cupy on a GPU machine."""
    return np if request.param == "numpy" else _cupy()


@pytest.fixture
def fixtures_dir():
    """The third-party CXI fixtures in ../shared/fixtures; skips when this clone has none."""
    if not FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is absent (a clone outside the workplace)")
    return FIXTURES


@pytest.fixture(scope="session")
def shot_file(tmp_path_factory) -> pathlib.Path:
    """A valid, small simulated shot: 256 x 256 frame (binning 8), two 128 px patterns, a smaller cross."""
    import xstereo_gpu

    opts = xstereo_gpu.SimulationOptions(
        binning=8, pattern_size=128, cross_size_um=(3.0, 3.0), arm_width_um=1.0, supersample=1, seed=3
    )
    path = tmp_path_factory.mktemp("shot") / "shot.cxi"
    xstereo_gpu.write_shot(path, xstereo_gpu.simulate_shot(opts))
    return path


@pytest.fixture(scope="module")
def demo():
    """(options, shot) of the default simulation: the amplitude cross of the demo (one per test module)."""
    from xstereo_gpu.simulate import SimulationOptions, simulate_shot

    return SimulationOptions(), simulate_shot(SimulationOptions())


@pytest.fixture(scope="module")
def pyramid():
    """(options, shot) of the simulated nanoparticle pyramid sample (one per test module)."""
    from xstereo_gpu.simulate import SimulationOptions, simulate_shot

    opts = SimulationOptions.for_sample("pyramid")
    return opts, simulate_shot(opts)
