"""Shared fixtures: the array-module fixture ``xp`` (NumPy always, CuPy under the ``gpu`` marker)."""

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
