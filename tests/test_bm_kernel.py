"""Block-matching CUDA kernel (kernels/block_matching.cu) against its NumPy twin.

GPU parity tests carry the ``gpu`` marker (skipped without CuPy and a device); the CPU tests check
the source's code (comments stripped: the template, its launch constants and block limit, float literals)
and the binding's argument validation, which fails before touching CuPy.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from _helpers import FIELDS, cuda_code, poison_empty

from xstereo_gpu._kernels import kernel_source
from xstereo_gpu.config import MatchOptions
from xstereo_gpu.errors import InputError
from xstereo_gpu.stereo._bm_kernel import (
    _THREADS,
    _TX,
    _TY,
    KERNEL_FILE,
    MAX_BLOCK,
    block_match_kernel,
)
from xstereo_gpu.stereo.disparity import block_match

# ------------------------------------------------------------------------------------------ CPU


def _static_asserts_hold(code: str, block: int) -> bool:
    """The kernel's static_asserts for block side ``block``, evaluated from its #defines and constexprs."""
    env = {name: int(value) for name, value in re.findall(r"#define (\w+) (\d+)\b", code)}
    for name, expr in re.findall(r"#define (\w+) (\([^)\n]*\))", code):
        env[name] = eval(expr, {}, env)
    env["B"] = block
    for name, expr in re.findall(r"constexpr int (\w+) = ([^;]+);", code):
        env[name] = eval(expr.replace("/", "//"), {}, env)  # C integer division
    conditions = re.findall(r"static_assert\((.+?), \"", code)
    assert len(conditions) == 2  # odd positive block, static shared memory
    return all(eval(c.replace("&&", " and ").replace("/", "//"), {}, env) for c in conditions)


def test_source_defines_the_kernel_and_its_limits():
    code = cuda_code(kernel_source(KERNEL_FILE))
    # the template the binding instantiates (name expression block_match<B>), launched with (BM_TX, BM_NY, 1)
    assert re.search(r"template <int B>\s*__global__ void __launch_bounds__\(BM_NT\)\s*block_match\(", code)
    tx, ny, rpt = (
        int(re.search(rf"#define {name} (\d+)", code).group(1)) for name in ("BM_TX", "BM_NY", "BM_RPT")
    )
    assert (tx, ny, 1) == _THREADS and tx == _TX and ny * rpt == _TY
    assert "#define BM_TY (BM_NY * BM_RPT)" in code and "#define BM_NT (BM_TX * BM_NY)" in code
    # MAX_BLOCK is the largest odd block side the kernel compiles for (its static shared memory fits)
    assert _static_asserts_hold(code, MAX_BLOCK) and _static_asserts_hold(code, 1)
    assert not _static_asserts_hold(code, MAX_BLOCK + 2) and not _static_asserts_hold(code, MAX_BLOCK - 1)
    # float literals carry the f suffix (STYLE anti-pattern 2): no bare 0.5 / 2.0 in float code
    bare = [m for m in re.findall(r"\b\d+\.\d*(?:[eE][-+]?\d+)?f?\b", code) if not m.endswith("f")]
    assert bare == ["0.0"]  # the one float64 accumulator start, on purpose


def _pair(h=6, w=7):
    rng = np.random.default_rng(0)
    return rng.random((h, w), dtype=np.float32), rng.random((h, w), dtype=np.float32)


@pytest.mark.parametrize(
    "bad, where",
    [
        (np.zeros((3, 4, 5), np.float32), "block_match_kernel.left"),
        (np.zeros((0, 5), np.float32), "block_match_kernel.left"),
        (np.zeros((6, 7), np.complex64), "block_match_kernel.left"),
        ([[0.0, 1.0]], "block_match_kernel.left"),
    ],
)
def test_bad_left_image(bad, where):
    _, right = _pair()
    with pytest.raises(InputError) as err:
        block_match_kernel(bad, right)
    assert err.value.where == where


def test_shape_mismatch():
    left, _ = _pair()
    with pytest.raises(InputError) as err:
        block_match_kernel(left, np.zeros((6, 8), np.float32))
    assert err.value.where == "block_match_kernel.right" and "(6, 8)" in err.value.found


def test_block_too_large_and_bad_options():
    left, right = _pair()
    with pytest.raises(InputError) as err:
        block_match_kernel(left, right, MatchOptions(block=MAX_BLOCK + 2, dmin=-3, dmax=3))
    assert err.value.where == "match.block" and str(MAX_BLOCK) in err.value.expected
    with pytest.raises(InputError) as err:
        block_match_kernel(left, right, {"block": 3})
    assert err.value.where == "block_match_kernel.options"


def test_one_column_with_texture_rule():
    img = np.zeros((5, 1), np.float32)
    with pytest.raises(InputError) as err:
        block_match_kernel(img, img, MatchOptions(block=1, dmin=-2, dmax=2, texture_threshold=0.1))
    assert "width 1" in err.value.found


def test_numpy_arrays_rejected_with_pointer_to_twin():
    left, right = _pair()
    with pytest.raises(InputError) as err:
        block_match_kernel(left, right, MatchOptions(block=3, dmin=-3, dmax=3))
    assert err.value.where == "block_match_kernel.left"
    assert "numpy" in err.value.found and "cupy" in err.value.expected


# ------------------------------------------------------------------------------------------ GPU


def _textured_pair(rng, h, w, shift, flat=False):
    """Smooth random texture; right = left shifted by ``shift`` columns plus noise; optional
    uniform patch (textureless area)."""
    base = rng.random((h, w + 2 * abs(shift) + 4), dtype=np.float32)
    k = np.array([0.25, 0.5, 0.25], np.float32)
    base = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), 1, base).astype(np.float32)
    s0 = abs(shift) + 2
    left = base[:, s0 : s0 + w]
    right = base[:, s0 + shift : s0 + shift + w] + 0.02 * rng.standard_normal((h, w)).astype(np.float32)
    right = np.clip(right, 0, 1).astype(np.float32)
    if flat:
        left[h // 4 : h // 2, w // 4 : w // 2] = 0.5
        right[h // 4 : h // 2, w // 4 : w // 2] = 0.5
        left[-3:, :] = 0.25  # uniform rows at the bottom edge
    return np.ascontiguousarray(left), np.ascontiguousarray(right)


def _compare(res_k, res_np, cupy):
    for f in FIELDS:
        got = cupy.asnumpy(getattr(res_k, f))
        want = getattr(res_np, f)
        assert got.dtype == np.float32 and got.shape == want.shape, f
        assert not np.any(got == -12345.0), f"{f}: unwritten pixels"
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{f}: NaN pattern")
        ok = ~np.isnan(want)
        tol = 1e-4 if f.startswith(("disparity", "confidence")) else 1e-5
        np.testing.assert_allclose(got[ok], want[ok], rtol=0, atol=tol, err_msg=f)


@pytest.mark.gpu
@pytest.mark.parametrize("block", [1, 3, 5, 9, 23])
@pytest.mark.parametrize("dmin, dmax, shift", [(-7, 7, 3), (-12, -2, -6), (2, 9, 5), (-3, 40, 0)])
def test_parity_with_twin(monkeypatch, block, dmin, dmax, shift):
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(1000 * block + dmax)
    # 70 x 45: tiles cut in both directions, last tile partial; image edges inside every tile row
    left, right = _textured_pair(rng, 70, 45, shift, flat=True)
    opts = MatchOptions(
        block=block, dmin=dmin, dmax=dmax, proximity_weight=0.05, texture_threshold=0.05 / max(1, block // 3)
    )
    want = block_match(left, right, opts)
    poison_empty(monkeypatch, cupy)
    got = block_match_kernel(cupy.asarray(left), cupy.asarray(right), opts)
    _compare(got, want, cupy)
    assert np.isfinite(want.disparity_left).sum() > 0.2 * left.size  # the test sees valid pixels
    assert np.isnan(want.disparity_left).sum() > 0  # ... and invalid ones


@pytest.mark.gpu
@pytest.mark.parametrize("block", [1, 3, 23, 33])
def test_parity_random_no_texture_rule(monkeypatch, block):
    """Plain random images (many near ties), no texture rule, range wider than the image and
    wider than one chunk of 32 disparities."""
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(7 + block)
    left = rng.random((37, 33), dtype=np.float32)
    right = rng.random((37, 33), dtype=np.float32)
    opts = MatchOptions(block=block, dmin=-40, dmax=35, proximity_weight=0.0, texture_threshold=0.0)
    want = block_match(left, right, opts)
    poison_empty(monkeypatch, cupy)
    got = block_match_kernel(cupy.asarray(left), cupy.asarray(right), opts)
    _compare(got, want, cupy)


@pytest.mark.gpu
def test_parity_uniform_images_and_float64_input(monkeypatch):
    """Textureless everywhere: the proximity term decides (ties of +-d go to the smaller d)."""
    cupy = pytest.importorskip("cupy")
    left = np.full((20, 30), 0.3)
    right = np.full((20, 30), 0.7)
    for thr in (0.0, 0.05):
        opts = MatchOptions(block=3, dmin=-5, dmax=5, texture_threshold=thr)
        want = block_match(left, right, opts)
        poison_empty(monkeypatch, cupy)
        got = block_match_kernel(cupy.asarray(left), cupy.asarray(right), opts)
        _compare(got, want, cupy)
        monkeypatch.undo()


@pytest.mark.gpu
def test_known_shift_recovered():
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(3)
    left, right = _textured_pair(rng, 64, 96, 4)
    res = block_match_kernel(
        cupy.asarray(left), cupy.asarray(right), MatchOptions(block=5, dmin=-10, dmax=10)
    )
    d = cupy.asnumpy(res.disparity_left)[:, 12:-12]
    assert np.nanmedian(np.abs(d - 4)) < 0.2
    assert res.disparity_left.device == cupy.cuda.Device()


@pytest.mark.gpu
def test_non_finite_reference_pixel_invalidates_its_blocks():
    """No host synchronisation checks finiteness: a NaN pixel makes the blocks holding it invalid."""
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(4)
    left, right = (cupy.asarray(a) for a in _textured_pair(rng, 16, 16, 1))
    left[7, 8] = cupy.nan
    res = block_match_kernel(left, right, MatchOptions(block=3, dmin=-2, dmax=2, texture_threshold=0.0))
    assert np.isnan(cupy.asnumpy(res.disparity_left)[6:9, 7:10]).all()


# ------------------------------------------------------------------------------ wiring into block_match


def test_block_match_kernels_keyword_on_numpy_is_the_twin():
    rng = np.random.default_rng(11)
    left, right = _textured_pair(rng, 24, 40, 3)
    opts = MatchOptions(block=3, dmin=-6, dmax=6)
    a, b = block_match(left, right, opts, kernels=True), block_match(left, right, opts, kernels=False)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert np.nanmedian(np.abs(a.disparity_left[:, 8:-8] - 3)) < 0.2


@pytest.mark.gpu
@pytest.mark.parametrize(
    "block, env, kernels, want_kernel",
    [
        (3, None, None, True),
        (23, None, None, True),
        (3, "0", None, False),
        (3, "0", True, True),
        (3, None, False, False),
        (MAX_BLOCK + 2, None, None, False),
    ],
)
def test_block_match_dispatches_on_cupy(monkeypatch, block, env, kernels, want_kernel):
    """CuPy inputs run the kernel unless XSTEREO_KERNELS=0, kernels=False or the block is too big;
    either way the result matches the NumPy twin."""
    cupy = pytest.importorskip("cupy")
    from xstereo_gpu.stereo import disparity

    if env is None:
        monkeypatch.delenv("XSTEREO_KERNELS", raising=False)
    else:
        monkeypatch.setenv("XSTEREO_KERNELS", env)
    calls = []
    real = disparity.block_match_kernel
    monkeypatch.setattr(disparity, "block_match_kernel", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    rng = np.random.default_rng(block)
    left, right = _textured_pair(rng, 40, 64, 4, flat=True)
    opts = MatchOptions(
        block=block, dmin=-9, dmax=9, proximity_weight=0.05, texture_threshold=0.05 / max(1, block // 3)
    )
    got = block_match(cupy.asarray(left), cupy.asarray(right), opts, kernels=kernels)
    assert bool(calls) == want_kernel
    assert isinstance(got.disparity_left, cupy.ndarray)
    _compare(got, block_match(left, right, opts), cupy)
