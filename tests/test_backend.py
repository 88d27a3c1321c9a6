import numpy as np
import pytest

from xstereo_gpu import backend
from xstereo_gpu.errors import InputError


def test_numpy_override(monkeypatch):
    monkeypatch.setenv("XSTEREO_BACKEND", "numpy")
    assert backend.select_backend() is np


def test_unknown_backend_is_refused():
    with pytest.raises(InputError, match="backend"):
        backend.select_backend("opencl")


def test_cupy_request_without_gpu_is_a_clear_error():
    if backend.cupy_available():
        pytest.skip("a GPU is present")
    with pytest.raises(InputError, match="CUDA device"):
        backend.select_backend("cupy")


def test_get_array_module_and_transfers_on_numpy():
    a = np.arange(3)
    assert backend.get_array_module(a, 1.0) is np
    assert backend.to_host(a) is a
    np.testing.assert_array_equal(backend.to_device([1, 2], np), [1, 2])


def test_device_info_on_numpy_says_so():
    info = backend.device_info(np)
    assert info["backend"] == "numpy" and "NumPy" in info["device"]


@pytest.mark.gpu
def test_device_info_on_cupy_has_the_card():
    import cupy

    info = backend.device_info(cupy)
    assert info["backend"] == "cupy" and info["memory_total_bytes"] > 0 and info["device"]
