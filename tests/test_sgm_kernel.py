"""SGM path-aggregation CUDA kernel (kernels/sgm.cu) against its NumPy twin (sgm.aggregate_costs).

GPU parity tests carry the ``gpu`` marker (skipped without CuPy and a device); the CPU tests check
the source's code (comments stripped: the template, its launch bound, the instances the binding asks
for, float literals), the launch configuration, the binding's argument validation (which fails before
touching CuPy) and, where nvcc is installed, that every template instance compiles.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from _helpers import FIELDS, cuda_code, poison_empty

from xstereo_gpu._kernels import kernel_source
from xstereo_gpu.config import MatchOptions
from xstereo_gpu.errors import InputError
from xstereo_gpu.stereo._sgm_kernel import (
    _DPT,
    _MAX_THREADS,
    KERNEL_FILE,
    MAX_DISPARITIES,
    aggregate_costs_kernel,
    launch_config,
)
from xstereo_gpu.stereo.sgm import INVALID_COST, aggregate_costs, semi_global_match

# ------------------------------------------------------------------------------------------ CPU


def test_source_defines_the_kernel_and_its_instances():
    code = cuda_code(kernel_source(KERNEL_FILE))
    assert re.search(
        r"template <int DPT>\s*__global__ void __launch_bounds__\(SGM_MAX_THREADS\)\s*sgm_aggregate\(", code
    )
    assert int(re.search(r"#define SGM_MAX_THREADS (\d+)", code).group(1)) == _MAX_THREADS
    for dpt in _DPT:  # every instance the binding may ask for is instantiated for nvcc
        assert f"template __global__ void sgm_aggregate<{dpt}>(" in code
    # float literals carry the f suffix (STYLE anti-pattern 2)
    floats = re.findall(r"\b\d+\.\d*(?:[eE][-+]?\d+)?f?", code)
    assert floats and all(m.endswith("f") for m in floats)
    assert "__fadd_rn(" in code and "__fsub_rn(" in code


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_compiles_with_nvcc(tmp_path):
    src = tmp_path / "sgm.cu"
    src.write_text(kernel_source(KERNEL_FILE))
    out = subprocess.run(
        ["nvcc", "-std=c++17", "-arch=sm_80", "-ptx", "-o", str(tmp_path / "sgm.ptx"), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    ptx = (tmp_path / "sgm.ptx").read_text()
    assert ptx.count(".entry") == len(_DPT)


@pytest.mark.parametrize(
    "D, want",
    [
        (1, (1, 32)),
        (32, (1, 32)),
        (33, (1, 64)),
        (131, (1, 160)),
        (1024, (1, 1024)),
        (1025, (2, 544)),
        (4097, (8, 544)),
        (MAX_DISPARITIES, (8, 1024)),
    ],
)
def test_launch_config(D, want):
    dpt, threads = launch_config(D)
    assert (dpt, threads) == want
    assert threads % 32 == 0 and threads <= 1024 and dpt * threads >= D


def test_launch_config_too_many_disparities():
    with pytest.raises(InputError) as err:
        launch_config(MAX_DISPARITIES + 1)
    assert str(MAX_DISPARITIES) in err.value.expected


@pytest.mark.parametrize(
    "bad, found",
    [
        (np.zeros((4, 5), np.float32), "shape (4, 5)"),
        (np.zeros((0, 5, 3), np.float32), "shape (0, 5, 3)"),
        (np.zeros((4, 5, 3), np.float64), "dtype float64"),
        ([[[0.0]]], "list"),
        (np.zeros((2, 2, MAX_DISPARITIES + 1), np.float32), f"{MAX_DISPARITIES + 1} disparities"),
    ],
)
def test_bad_volume(bad, found):
    with pytest.raises(InputError) as err:
        aggregate_costs_kernel(bad)
    assert err.value.where == "aggregate_costs_kernel.cost" and found in err.value.found


def test_bad_penalties_and_paths():
    vol = np.zeros((4, 5, 3), np.float32)
    with pytest.raises(InputError) as err:
        aggregate_costs_kernel(vol, p1=0.3, p2=0.2)
    assert err.value.where == "aggregate_costs_kernel.p2"
    with pytest.raises(InputError):
        aggregate_costs_kernel(vol, p1=float("nan"))
    with pytest.raises(InputError) as err:
        aggregate_costs_kernel(vol, paths=6)
    assert err.value.where == "match.sgm_paths"


def test_numpy_arrays_rejected_with_pointer_to_twin():
    with pytest.raises(InputError) as err:
        aggregate_costs_kernel(np.zeros((4, 5, 3), np.float32))
    assert "numpy" in err.value.found and "aggregate_costs" in err.value.expected


# ------------------------------------------------------------------------------------------ GPU


def _volume(rng, H, W, D, invalid=True):
    cost = rng.random((H, W, D), dtype=np.float32)
    if invalid:  # the invalid wedges of a signed range: x - d outside the image
        d = np.arange(D) - D // 3
        x = np.arange(W)[:, None]
        cost[:, (x - d < 0) | (x - d >= W)] = INVALID_COST
    return cost


@pytest.mark.gpu
@pytest.mark.parametrize("paths", [4, 8])
@pytest.mark.parametrize(
    "H, W, D", [(37, 53, 17), (53, 37, 131), (1, 40, 9), (40, 1, 9), (9, 11, 1), (6, 7, 1025), (5, 4, 4100)]
)
def test_parity_with_twin(monkeypatch, paths, H, W, D):
    """Bit-identical sums: every DPT instance, non-square images (diagonal line starts), single
    rows/columns, D = 1, invalid wedges."""
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(H * 1000 + W * 10 + D + paths)
    cost = _volume(rng, H, W, D)
    want = aggregate_costs(cost, p1=0.03, p2=0.3, paths=paths)
    poison_empty(monkeypatch, cupy)
    got = aggregate_costs_kernel(cupy.asarray(cost), p1=0.03, p2=0.3, paths=paths)
    got = cupy.asnumpy(got)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert not np.any(got == -12345.0), "unwritten entries"
    np.testing.assert_array_equal(got, want)


@pytest.mark.gpu
def test_parity_zero_and_equal_penalties(monkeypatch):
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(2)
    cost = _volume(rng, 30, 31, 40)
    for p1, p2 in ((0.0, 0.0), (0.1, 0.1), (0.0, 5.0)):
        want = aggregate_costs(cost, p1=p1, p2=p2, paths=8)
        got = cupy.asnumpy(aggregate_costs_kernel(cupy.asarray(cost), p1=p1, p2=p2, paths=8))
        np.testing.assert_array_equal(got, want)


@pytest.mark.gpu
@pytest.mark.parametrize("paths", [4, 8])
def test_semi_global_match_kernel_equals_array_code(paths):
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(20 + paths)
    left = rng.random((48, 70), dtype=np.float32)
    right = np.roll(left, -3, axis=1) + 0.02 * rng.random((48, 70), dtype=np.float32)
    opts = MatchOptions(block=3, dmin=-9, dmax=9, sgm_paths=paths, method="sgm")
    want = semi_global_match(left, right, opts)
    lg, rg = cupy.asarray(left), cupy.asarray(right)
    with_kernel = semi_global_match(lg, rg, opts, kernels=True)
    array_code = semi_global_match(lg, rg, opts, kernels=False)
    for f in FIELDS:
        k, a = cupy.asnumpy(getattr(with_kernel, f)), cupy.asnumpy(getattr(array_code, f))
        np.testing.assert_array_equal(k, a, err_msg=f)
        np.testing.assert_allclose(k, getattr(want, f), rtol=0, atol=1e-6, err_msg=f)
    d = cupy.asnumpy(with_kernel.disparity_left)[:, 12:-12]
    assert np.nanmedian(np.abs(d - 3)) < 0.1


# ------------------------------------------------------------------- CPU emulation of the kernel
# The kernel's own source, compiled as C++ with one OS thread per CUDA thread: __syncthreads is a
# barrier, __shfl_xor_sync exchanges through a buffer between two barriers. This checks the kernel's
# logic (line starts, padding, prefetch, reductions, every DPT instance) bit for bit against the
# twin on a machine without a GPU; it cannot see races or the device memory model.

_HARNESS = r"""// CPU emulation of kernels/sgm.cu: one OS thread per CUDA thread,
// barriers for syncs and shuffles.
#include <pthread.h>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <thread>
struct dim3 { unsigned x = 1, y = 1, z = 1; };
static thread_local dim3 threadIdx, blockIdx;
static dim3 blockDim;
static pthread_barrier_t bar;
static float shfl_buf[1024];
#define __global__
#define __launch_bounds__(x)
#define __restrict__
#define __shared__
#define __forceinline__ inline
#define __device__
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
inline void __syncthreads() { pthread_barrier_wait(&bar); }
inline float __shfl_xor_sync(unsigned, float v, int o) {
    int t = threadIdx.x; shfl_buf[t] = v; pthread_barrier_wait(&bar);
    float r = shfl_buf[t ^ o]; pthread_barrier_wait(&bar); return r;
}
float sgm_smem[20000];
#include KERNEL

int main(int argc, char** argv) {
    // args: in.bin out.bin H W D paths p1 p2 big DPT T
    int H = atoi(argv[3]), W = atoi(argv[4]), D = atoi(argv[5]), P = atoi(argv[6]);
    float p1 = atof(argv[7]), p2 = atof(argv[8]), big = atof(argv[9]);
    int dpt = atoi(argv[10]), T = atoi(argv[11]);
    std::vector<float> cost((size_t)H * W * D), sum((size_t)H * W * D, -12345.0f);
    FILE* f = fopen(argv[1], "rb"); fread(cost.data(), 4, cost.size(), f); fclose(f);
    int dirs[8][2] = {{0, 1}, {0, -1}, {1, 0}, {-1, 0}, {1, 1}, {1, -1}, {-1, 1}, {-1, -1}};
    blockDim.x = T;
    pthread_barrier_init(&bar, nullptr, T);
    for (int k = 0; k < P; ++k) {
        int dy = dirs[k][0], dx = dirs[k][1];
        int lines = dy == 0 ? H : (dx == 0 ? W : W + H - 1);
        std::vector<std::thread> th;  // T threads run the blocks one after the other
        for (int t = 0; t < T; ++t)
            th.emplace_back([&, t] {
                threadIdx.x = t;
                for (int b = 0; b < lines; ++b) {
                    blockIdx.x = b;
                    if (dpt == 1)
                        sgm_aggregate<1>(cost.data(), sum.data(), H, W, D, dy, dx, p1, p2, big, k == 0);
                    else if (dpt == 2)
                        sgm_aggregate<2>(cost.data(), sum.data(), H, W, D, dy, dx, p1, p2, big, k == 0);
                    else if (dpt == 4)
                        sgm_aggregate<4>(cost.data(), sum.data(), H, W, D, dy, dx, p1, p2, big, k == 0);
                    else sgm_aggregate<8>(cost.data(), sum.data(), H, W, D, dy, dx, p1, p2, big, k == 0);
                    pthread_barrier_wait(&bar);  // block b done (shared memory is reused)
                }
            });
        for (auto& x : th) x.join();
    }
    f = fopen(argv[2], "wb"); fwrite(sum.data(), 4, sum.size(), f); fclose(f);
    return 0;
}
"""


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    d = tmp_path_factory.mktemp("sgm_emu")
    (d / "sgm.cu").write_text(kernel_source(KERNEL_FILE))
    (d / "harness.cpp").write_text(_HARNESS)
    out = subprocess.run(
        [
            "g++",
            "-O1",
            "-std=c++17",
            "-ffp-contract=off",
            "-pthread",
            f'-DKERNEL="{d / "sgm.cu"}"',
            "-o",
            str(d / "emu"),
            str(d / "harness.cpp"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return d


@pytest.mark.parametrize(
    "H, W, D, paths, config",
    [
        (7, 9, 5, 4, None),
        (9, 7, 5, 8, None),
        (1, 6, 3, 8, None),
        (6, 1, 3, 8, None),
        (6, 8, 40, 8, (2, 32)),
        (5, 7, 70, 4, (4, 32)),
        (4, 5, 33, 8, (8, 32)),
        (8, 6, 45, 8, None),
    ],
)
def test_emulated_kernel_matches_twin(emulator, H, W, D, paths, config):
    rng = np.random.default_rng(H * 100 + W * 10 + D)
    cost = _volume(rng, H, W, D)
    cost.tofile(emulator / "in.bin")
    dpt, threads = config or launch_config(D)
    subprocess.run(
        [
            str(emulator / "emu"),
            str(emulator / "in.bin"),
            str(emulator / "out.bin"),
            str(H),
            str(W),
            str(D),
            str(paths),
            "0.03",
            "0.3",
            repr(float(INVALID_COST)),
            str(dpt),
            str(threads),
        ],
        check=True,
        timeout=60,
    )
    got = np.fromfile(emulator / "out.bin", np.float32).reshape(H, W, D)
    want = aggregate_costs(cost, p1=0.03, p2=0.3, paths=paths)
    assert not np.any(got == -12345.0), "unwritten entries"
    np.testing.assert_array_equal(got, want)
