"""kNN mean-distance kernel (kernels/knn_outliers.cu) against its NumPy/SciPy twin.

GPU tests (marker ``gpu``) compare the CuPy binding with ``knn_mean_distance`` / ``remove_outliers``
on NumPy: the mean distances must be bit-identical and the kept sets equal. CPU tests check the
binding's argument validation (before CuPy is touched), that the source ships with the kernels and
the instances the binding asks for (read on its code, comments stripped), and run the kernel source
itself on the host (compiled with g++, CUDA built-ins replaced by plain C++, NumPy standing in for
CuPy) against the twin, so that the search logic is exercised without a GPU.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
from _helpers import cuda_code

from xstereo_gpu._kernels import kernel_source
from xstereo_gpu.cloud import _knn_kernel, outliers
from xstereo_gpu.cloud._knn_kernel import KNN_KERNEL_MAX_K, knn_mean_distance_kernel
from xstereo_gpu.cloud.outliers import knn_mean_distance, remove_outliers
from xstereo_gpu.errors import InputError


def _keep(md, t=0.1):
    """remove_outliers' test applied to given mean distances (NumPy)."""
    mu, sd = md.mean(), md.std()
    return md <= mu + t * sd + 1e-12 * abs(mu)


def _clouds():
    """Named (points, k) cases: random clouds and the degenerate ones."""
    rng = np.random.default_rng(7)
    m = 2000
    u = rng.random((m, 3))
    s = rng.random(m)
    far = u.copy()
    far[:4] = [[1e6, 0.0, 0.0], [-1e6, 1e6, 5.0], [0.0, 0.0, 1e9], [1e12, 1e12, 1e12]]
    centres = rng.random((15, 3)) * 100.0
    return {
        "uniform": (u, 80),
        "gaussian": (rng.standard_normal((m, 3)), 128),
        "identical": (np.full((m, 3), 1.5), 80),
        "line_x": (np.c_[s, np.zeros(m), np.zeros(m)], 80),
        "line_diagonal": (np.c_[s, 2.0 * s + 1.0, -s], 5),
        "plane": (np.c_[u[:, :2], np.zeros(m)], 80),
        "far_outliers": (far, 80),
        "duplicate_clusters": (centres[rng.integers(0, 15, m)], 80),
        "integer_grid_ties": (np.stack(np.meshgrid(*[np.arange(12.0)] * 3), -1).reshape(-1, 3), 26),
        "heavy_tails": (rng.standard_cauchy((m, 3)), 80),
        "two_points": (u[:2], 80),
        "k_above_m": (u[:100], 128),
    }


# --------------------------------------------------------------------------------------------- #
# CPU: validation and packaging


def test_source_ships_and_instantiates_its_kernels():
    code = cuda_code(kernel_source("knn_outliers.cu"))
    assert re.search(r"template <typename T>\s*__global__ void knn_cell_keys\(", code)
    assert re.search(r"template <int KCAP>\s*__global__ void knn_mean_distance_grid\(", code)
    assert "__dadd_rn(" in code and "__dmul_rn(" in code
    # every name expression the binding asks for is explicitly instantiated (directly or by the macro)
    instances = set(re.findall(r"^template __global__ void (\w+<\w+>)\(", code, flags=re.M))
    macro = re.search(r"#define KNN_INSTANTIATE\(K\)[\s\\]*template __global__ void (\w+)<K>\(", code).group(
        1
    )
    instances |= {f"{macro}<{k}>" for k in re.findall(r"^KNN_INSTANTIATE\((\w+)\)", code, flags=re.M)}
    for expr in _knn_kernel._NAME_EXPRESSIONS:
        assert expr in instances, expr


@pytest.mark.parametrize(
    "points, where",
    [
        (np.zeros((5, 2)), "points"),
        (np.zeros(5), "points"),
        ([[0.0, 0.0, 0.0]], "points"),
        (np.zeros((5, 3), dtype=np.int64), "points"),
        (np.zeros((5, 3), dtype=np.complex128), "points"),
        (np.zeros((5, 3)), "points"),  # right shape and dtype, but a NumPy array
    ],
)
def test_rejects_bad_points_before_cupy(points, where):
    with pytest.raises(InputError) as err:
        knn_mean_distance_kernel(points, 5)
    assert err.value.where == f"knn_mean_distance_kernel.{where}"


@pytest.mark.parametrize("k", [0, -3, 2.5, True, "8", None])
def test_rejects_bad_k(k):
    with pytest.raises(InputError) as err:
        knn_mean_distance_kernel(np.zeros((10, 3)), k)
    assert err.value.where == "knn_mean_distance_kernel.k"


def test_rejects_k_above_capacity_only_after_clamping():
    with pytest.raises(InputError, match="at most 128"):
        knn_mean_distance_kernel(np.zeros((500, 3)), KNN_KERNEL_MAX_K + 1)
    # k = 500 clamps to M - 1 = 99 <= 128: passes the k check, fails on the NumPy array type
    with pytest.raises(InputError) as err:
        knn_mean_distance_kernel(np.zeros((100, 3)), 500)
    assert err.value.where == "knn_mean_distance_kernel.points"


# --------------------------------------------------------------------------------------------- #
# CPU: the kernel source run on the host


_HOST_SHIM = r"""
#include <cmath>
#include <cstring>
#include <algorithm>
struct knn_dim3 { unsigned x, y, z; };
static knn_dim3 blockIdx, threadIdx, blockDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __ddiv_rn(double a, double b) { return a / b; }
static inline double __longlong_as_double(long long x) { double d; std::memcpy(&d, &x, 8); return d; }
using std::max; using std::min; using std::abs;
#include "knn_outliers.cu"
static void knn_at(long long i, unsigned b) { blockDim.x = b; blockIdx.x = i / b; threadIdx.x = i % b; }
extern "C" void run_keys(int isf, const void* p, long long m, double lx, double ly, double lz,
                         double ih, int nx, int ny, int nz, long long* keys) {
  for (long long i = 0; i < m; ++i) {
    knn_at(i, 256);
    if (isf) knn_cell_keys<float>((const float*)p, m, lx, ly, lz, ih, nx, ny, nz, keys);
    else knn_cell_keys<double>((const double*)p, m, lx, ly, lz, ih, nx, ny, nz, keys);
  }
}
extern "C" void run_grid(int kcap, const double* xyz, const long long* order, const long long* keys,
                         const long long* ck, const long long* cs, long long nc, long long m, int k,
                         double lx, double ly, double lz, double h, int nx, int ny, int nz,
                         double slack, double* out) {
  for (long long i = 0; i < m; ++i) {
    knn_at(i, 128);
#define KNN_RUN(K) if (kcap == K) knn_mean_distance_grid<K>(xyz, order, keys, ck, cs, nc, m, k, \
                                      lx, ly, lz, h, nx, ny, nz, slack, out);
    KNN_RUN(8) KNN_RUN(16) KNN_RUN(32) KNN_RUN(64) KNN_RUN(128)
  }
}
"""


class _HostArray(np.ndarray):
    """A NumPy array that answers ``.get()`` and reports a ``cupy`` module, as a CuPy array would."""

    def get(self):
        return np.asarray(self)


_HostArray.__module__ = "cupy._host_stand_in"


def _host(x):
    return x.view(_HostArray) if isinstance(x, np.ndarray) and not isinstance(x, _HostArray) else x


@pytest.fixture(scope="module")
def host_kernel(tmp_path_factory):
    """The .cu compiled for the host, plus a stand-in ``cupy`` module and ``load_module``."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler to run the kernel source on the host")
    d = tmp_path_factory.mktemp("knn_host")
    (d / "knn_outliers.cu").write_text(kernel_source("knn_outliers.cu"))
    (d / "shim.cpp").write_text(_HOST_SHIM)
    lib_path = d / "libknn.so"
    subprocess.run(
        [
            cxx,
            "-O2",
            "-ffp-contract=off",
            "-shared",
            "-fPIC",
            "-I",
            str(d),
            "-o",
            str(lib_path),
            str(d / "shim.cpp"),
        ],
        check=True,
        capture_output=True,
    )
    lib = ctypes.CDLL(str(lib_path))

    fake = types.ModuleType("cupy")
    for name in (
        "ascontiguousarray",
        "isfinite",
        "zeros",
        "empty",
        "not_equal",
        "concatenate",
        "asarray",
        "full",
        "stack",
        "argsort",
        "arange",
        "sort",
        "searchsorted",
        "cumsum",
        "where",
    ):
        fn = getattr(np, name)
        setattr(fake, name, (lambda fn: lambda *a, **kw: _host(fn(*a, **kw)))(fn))

    def convert(a):
        if isinstance(a, np.ndarray):
            assert a.flags.c_contiguous
            return ctypes.c_void_p(a.ctypes.data)
        return {np.int64: ctypes.c_longlong, np.int32: ctypes.c_int, np.float64: ctypes.c_double}[type(a)](
            a.item()
        )

    class Module:
        def get_function(self, name):
            def launch(grid, block, args):
                m = int(args[1] if name.startswith("knn_cell_keys") else args[6])
                assert grid[0] * block[0] >= m
                conv = [convert(a) for a in args]
                if name.startswith("knn_cell_keys"):
                    lib.run_keys(ctypes.c_int("<float>" in name), *conv)
                else:
                    lib.run_grid(ctypes.c_int(int(name.split("<")[1].rstrip(">"))), *conv)

            return launch

    return fake, Module()


def _run_on_host(host_kernel, monkeypatch, points, k):
    fake, module = host_kernel
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(_knn_kernel, "load_module", lambda *a, **kw: module)
    return np.asarray(knn_mean_distance_kernel(_host(np.ascontiguousarray(points)), k))


@pytest.mark.parametrize("case", list(_clouds()))
def test_kernel_source_on_host_matches_twin(host_kernel, monkeypatch, case):
    points, k = _clouds()[case]
    got = _run_on_host(host_kernel, monkeypatch, points, k)
    want = knn_mean_distance(points, k)
    assert got.dtype == np.float64 and got.shape == (points.shape[0],)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(_keep(got), remove_outliers(points, k=k))


@pytest.mark.parametrize("k", [1, 5, 8, 9, 33, 80, 128])
def test_kernel_source_on_host_every_capacity_and_float32(host_kernel, monkeypatch, k):
    pts = (np.random.default_rng(k).random((1500, 3)) * 50.0 + 1e3).astype(np.float32)
    got = _run_on_host(host_kernel, monkeypatch, pts, k)
    want = knn_mean_distance(pts.astype(np.float64), k)
    np.testing.assert_array_equal(got, want)
    assert np.all(got > 0)


# --------------------------------------------------------------------------------------------- #
# GPU parity


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [5, 80, 128])
def test_random_cloud_parity(dtype, k):
    import cupy

    pts = np.random.default_rng(100 + k).random((10_000, 3)).astype(dtype)
    md = knn_mean_distance_kernel(cupy.asarray(pts), k)  # output allocated NaN-filled
    assert isinstance(md, cupy.ndarray) and md.dtype == np.float64 and md.shape == (10_000,)
    got = md.get()
    assert np.isfinite(got).all()
    ref = pts.astype(np.float64)
    np.testing.assert_array_equal(got, knn_mean_distance(ref, k))
    np.testing.assert_array_equal(_keep(got), remove_outliers(ref, k=k))


@pytest.mark.gpu
@pytest.mark.parametrize("case", list(_clouds()))
def test_degenerate_cloud_parity(case):
    import cupy

    points, k = _clouds()[case]
    got = knn_mean_distance_kernel(cupy.asarray(points), k).get()
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got, knn_mean_distance(points, k))
    np.testing.assert_array_equal(_keep(got), remove_outliers(points, k=k))


@pytest.mark.gpu
def test_gpu_edge_sizes_and_errors():
    import cupy

    assert knn_mean_distance_kernel(cupy.zeros((0, 3)), 5).shape == (0,)
    np.testing.assert_array_equal(knn_mean_distance_kernel(cupy.ones((1, 3)), 5).get(), [0.0])
    bad = cupy.zeros((10, 3))
    bad[3, 1] = cupy.nan
    with pytest.raises(InputError, match="non-finite"):
        knn_mean_distance_kernel(bad, 5)
    # strided input (a column slice) is accepted and gives the twin's result
    wide = np.random.default_rng(5).random((3000, 4))
    got = knn_mean_distance_kernel(cupy.asarray(wide)[:, 1:], 80).get()
    np.testing.assert_array_equal(got, knn_mean_distance(wide[:, 1:], 80))


# --------------------------------------------------------------------------------------------- #
# wiring into knn_mean_distance / remove_outliers


def test_kernel_method_needs_cupy_and_keyword_is_ignored_on_numpy():
    pts = np.random.default_rng(9).random((300, 3))
    with pytest.raises(InputError) as err:
        knn_mean_distance(pts, 8, method="kernel")
    assert err.value.where == "knn_mean_distance.method"
    np.testing.assert_array_equal(
        knn_mean_distance(pts, 8, kernels=True), knn_mean_distance(pts, 8, kernels=False)
    )
    np.testing.assert_array_equal(remove_outliers(pts, k=8, kernels=True), remove_outliers(pts, k=8))
    with pytest.raises(InputError):
        knn_mean_distance(pts, 8, method="octree")


@pytest.mark.gpu
@pytest.mark.parametrize(
    "k, env, kernels, method, want_kernel",
    [
        (80, None, None, "auto", True),
        (80, "0", None, "auto", False),
        (80, None, False, "auto", False),
        (80, "0", True, "auto", True),
        (129, None, None, "auto", False),
        (80, None, None, "brute", False),
        (80, "0", None, "kernel", True),
    ],
)
def test_knn_dispatches_on_cupy(monkeypatch, k, env, kernels, method, want_kernel):
    """CuPy points run the grid kernel for k <= 128 unless XSTEREO_KERNELS=0 / kernels=False;
    every path matches the k-d tree twin (bit for bit) and keeps the same points."""
    import cupy

    if env is None:
        monkeypatch.delenv("XSTEREO_KERNELS", raising=False)
    else:
        monkeypatch.setenv("XSTEREO_KERNELS", env)
    calls = []
    real = outliers.knn_mean_distance_kernel
    monkeypatch.setattr(
        outliers, "knn_mean_distance_kernel", lambda *a, **kw: calls.append(1) or real(*a, **kw)
    )
    pts = np.random.default_rng(k).random((3000, 3))
    got = knn_mean_distance(cupy.asarray(pts), k, method=method, kernels=kernels)
    assert bool(calls) == want_kernel
    want = knn_mean_distance(pts, k)
    if want_kernel:
        np.testing.assert_array_equal(got.get(), want)
    else:  # brute force sums the same coordinate differences; the partial sort may differ in the last bit
        np.testing.assert_allclose(got.get(), want, rtol=1e-12)
    if method == "auto":
        keep = remove_outliers(cupy.asarray(pts), k=k, kernels=kernels)
        np.testing.assert_array_equal(keep.get(), remove_outliers(pts, k=k))
