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


def test_scipy_module_is_scipy_on_numpy():
    import scipy.fft
    import scipy.ndimage
    import scipy.signal

    a = np.zeros(3)
    assert backend.scipy_module(a, "fft") is scipy.fft
    assert backend.scipy_module(np, "ndimage") is scipy.ndimage  # a module works as well as an array
    assert backend.scipy_module([1.0], "signal") is scipy.signal  # anything not CuPy counts as NumPy
    with pytest.raises(ModuleNotFoundError):
        backend.scipy_module(a, "no_such_submodule")


@pytest.mark.gpu
def test_scipy_module_is_cupyx_scipy_on_cupy():
    import cupy
    import cupyx.scipy.fft
    import cupyx.scipy.ndimage

    assert backend.scipy_module(cupy.zeros(3), "fft") is cupyx.scipy.fft
    assert backend.scipy_module(cupy, "ndimage") is cupyx.scipy.ndimage


def test_use_kernels_is_false_on_numpy_whatever_the_environment(monkeypatch):
    monkeypatch.setenv("XSTEREO_KERNELS", "not-a-choice")  # not even read on NumPy
    assert backend.use_kernels(np) is False
    assert backend.use_kernels(np, True) is False


def test_use_kernels_reads_the_keyword_then_the_environment(monkeypatch):
    gpu = object()  # stands for the cupy module: anything that is not numpy
    monkeypatch.delenv("XSTEREO_KERNELS", raising=False)
    assert backend.use_kernels(gpu) is True
    for value, want in (
        ("0", False),
        ("off", False),
        ("1", True),
        ("yes", True),
        (" TRUE ", True),
        ("", True),
    ):
        monkeypatch.setenv("XSTEREO_KERNELS", value)
        assert backend.use_kernels(gpu) is want
        # the keyword wins
        assert backend.use_kernels(gpu, True) is True and backend.use_kernels(gpu, False) is False
    monkeypatch.setenv("XSTEREO_KERNELS", "maybe")
    with pytest.raises(InputError, match="XSTEREO_KERNELS"):
        backend.use_kernels(gpu)
    assert backend.use_kernels(gpu, False) is False  # an explicit choice does not read the environment


def test_fits_int32_is_the_kernels_index_limit():
    assert backend.INT32_MAX == 2**31 - 1 == np.iinfo(np.int32).max
    assert backend.fits_int32()
    assert backend.fits_int32(0, 2**31 - 1, np.int64(5))
    assert not backend.fits_int32(2**31)
    assert not backend.fits_int32(3, 2 * 2**30)  # every size must fit
    H = W = 32768  # 2 H W = 2**31: one past the block-matching kernel's limit
    assert backend.fits_int32(H * W) and not backend.fits_int32(2 * H * W)
