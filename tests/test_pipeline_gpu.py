"""The same stages on CuPy and on NumPy give the same results (run with `pytest -m gpu` on a GPU)."""

import numpy as np
import pytest

import xstereo_gpu as xs

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def shot():
    return xs.simulate_shot()


@pytest.mark.parametrize("kernels_env", ["1", "0"])
def test_stereo_and_cloud_stages_match_numpy(shot, monkeypatch, kernels_env):
    """With the CUDA kernels (default) and with the twins' CuPy code (XSTEREO_KERNELS=0)."""
    import cupy

    monkeypatch.setenv("XSTEREO_KERNELS", kernels_env)

    opts = xs.PipelineOptions.for_profile("cpu")
    views = shot.truth.views
    out = {}
    for backend in ("numpy", "cupy"):
        pipe = xs.Pipeline(opts, backend=backend)
        stereo = pipe.stereo(views)
        cloud = pipe.cloud(stereo, shot.geometry)
        assert isinstance(stereo.disparity_left, cupy.ndarray if backend == "cupy" else np.ndarray)
        out[backend] = (stereo.to_host(), cloud.to_host())
    (ref, ref_cloud), (gpu, gpu_cloud) = out["numpy"], out["cupy"]
    # float32 rounding differs between cuFFT/CUDA and SciPy: allow a pixel or point in 10^4 to flip
    a, b = ref.images, gpu.images
    assert b.dtype == a.dtype and b.shape == a.shape and (a != b).mean() < 1e-4
    for key, a, b in (
        ("disparity_left", ref.disparity_left, gpu.disparity_left),
        ("disparity_right", ref.disparity_right, gpu.disparity_right),
        ("depth", ref_cloud.depth, gpu_cloud.depth),
    ):
        assert b.dtype == a.dtype and b.shape == a.shape
        assert (np.isfinite(a) == np.isfinite(b)).mean() > 0.9999, key
        both = np.isfinite(a) & np.isfinite(b)
        assert (np.abs(b[both] - a[both]) < 1e-3).mean() > 0.999, key
    kept_gpu, kept_ref = gpu_cloud.kept, ref_cloud.kept
    if kept_gpu.shape == kept_ref.shape:
        assert (kept_gpu == kept_ref).mean() > 0.999
    else:
        assert abs(len(kept_gpu) - len(kept_ref)) < 1e-3 * len(kept_ref)


def test_prepare_and_phasing_on_gpu_are_as_good_as_numpy(shot):
    import cupy

    o = xs.PhasingOptions(runs=16, iterations=150)
    i_np, v_np = xs.split_patterns(shot.frame, shot.mask, shot.centres_px, shot.pattern_size)
    i_cp, v_cp = xs.split_patterns(
        cupy.asarray(shot.frame), cupy.asarray(shot.mask), shot.centres_px, shot.pattern_size
    )
    np.testing.assert_array_equal(cupy.asnumpy(i_cp), i_np)
    np.testing.assert_array_equal(cupy.asnumpy(v_cp), v_np)
    res = xs.phase_retrieval(i_cp, v_cp, o)
    assert isinstance(res.views, cupy.ndarray) and res.views.dtype == cupy.complex64
    for k in range(2):
        reg = xs.accuracy.register_to_truth(cupy.asnumpy(res.views[k]), shot.truth.views[k])
        assert reg["correlation"] > 0.9


@pytest.mark.parametrize("kernels", [True, False])
def test_phasing_kernels_and_twin_code_on_gpu_both_reconstruct(shot, kernels):
    """The kernel path is used by default, reads the host only every K iterations, and
    reconstructs as well as the twins' CuPy code (the escape hatch)."""
    import cupy

    from xstereo_gpu.phasing.runs import host_read_limit

    o = xs.PhasingOptions(runs=16, iterations=150)
    i_cp, v_cp = xs.split_patterns(
        cupy.asarray(shot.frame), cupy.asarray(shot.mask), shot.centres_px, shot.pattern_size
    )
    res = xs.phase_retrieval(i_cp, v_cp, o, kernels=kernels)
    assert res.history["kernels"] is kernels
    assert res.history["host_reads"] <= host_read_limit(o.iterations + o.final_er, o.check_every)
    assert np.all(np.isfinite(cupy.asnumpy(res.best_eps)))
    for k in range(2):
        reg = xs.accuracy.register_to_truth(cupy.asnumpy(res.views[k]), shot.truth.views[k])
        assert reg["correlation"] > 0.9


def test_full_pipeline_on_gpu_meets_the_targets(shot):
    res = xs.run_pipeline(shot, xs.PipelineOptions.for_profile("paper"), backend="cupy")
    assert res.device["backend"] == "cupy"
    dz = res.geometry.voxel_depth_m * 1e9
    assert res.accuracy["depth_error_median_nm"] <= dz
    assert res.accuracy["completeness_2dz"] >= 0.7
