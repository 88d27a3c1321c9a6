"""Reading inputs as the field writes them (xstereo_gpu.io.images, io.spimage): libspimage HDF5, mask and
support files, refused ambiguous layouts, PNG/JPEG/RGB stereo images, and the commands that use them."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest
import tifffile
from _helpers import PETRA
from PIL import Image

from xstereo_gpu.cli import main
from xstereo_gpu.errors import InputError, InputWarning
from xstereo_gpu.figures import _extent
from xstereo_gpu.io import read_image, read_mask, read_pattern, read_support, read_views
from xstereo_gpu.io.cxi import MASK_INVALID

TINY_PHASE = ["--runs", "2", "--iterations", "10", "-q"]


# -- libspimage HDF5 ---------------------------------------------------------------------------------


def _write_spimage(path, image, valid, *, shifted=False, scaled=True, phased=False, centre_xy=(0.0, 0.0)):
    """A 2D image as libspimage's write_h5_img stores it: HDF5 shape (nx, ny, 1), x fastest in the buffer."""
    ny, nx = image.shape
    if shifted:
        image, valid = np.fft.ifftshift(image), np.fft.ifftshift(valid)
    with h5py.File(path, "w") as f:
        f["mask"] = valid.astype(np.int32).reshape(nx, ny, 1)
        f["real"] = np.real(image).astype(np.float32).reshape(nx, ny, 1)
        if phased:
            f["imag"] = np.imag(image).astype(np.float32).reshape(nx, ny, 1)
        f["image_center"] = np.array([centre_xy[0], centre_xy[1], 0.0], np.float32)
        for name, v in (("phased", phased), ("shifted", shifted), ("scaled", scaled)):
            f[name] = np.array([float(v)], np.float32)
        f["lambda"] = np.array([632.8e-9], np.float32)
        f["detector_distance"] = np.array([0.05], np.float32)
        f["pixel_size"] = np.array([20e-6, 20e-6, 20e-6], np.float32)
        f["num_dimensions"] = np.array([2.0], np.float32)
        f["version"] = np.array([2], np.int32)


def test_spimage_amplitudes_shifted_non_square(tmp_path):
    rng = np.random.default_rng(0)
    amp = rng.uniform(1, 10, (10, 14)).astype(np.float32)  # (ny, nx): rows = y, non-square
    valid = np.ones(amp.shape, bool)
    valid[2, 9] = False
    path = tmp_path / "ring.h5"
    _write_spimage(path, amp, valid, shifted=True, scaled=True)
    with h5py.File(path, "r") as f:
        assert f["real"].shape == (14, 10, 1)  # libspimage's (nx, ny, 1)
    for dataset in (None, "real"):
        p = read_pattern(path, dataset=dataset)
        np.testing.assert_allclose(p.data, amp.astype(np.float64) ** 2, rtol=1e-6)  # intensities, centred
        assert np.argwhere(p.mask != 0).tolist() == [[2, 9]] and p.mask[2, 9] == MASK_INVALID
        assert p.centre == (5.0, 7.0)  # the middle after the fftshift
        assert p.wavelength_m == pytest.approx(632.8e-9) and p.distance_m == pytest.approx(0.05)
        assert p.pixel_size_m == pytest.approx(20e-6)
        assert p.dataset == "/real" and any("squared" in n for n in p.notes)


def test_spimage_written_by_h5py_as_2d(tmp_path):
    # Python writers of the layout store the NumPy (H, W) array as it is, image_center in its axis order
    amp = np.arange(1, 10 * 14 + 1, dtype=np.float32).reshape(10, 14)
    with h5py.File(tmp_path / "py.h5", "w") as f:
        f["real"], f["mask"] = amp, np.ones(amp.shape, np.int32)
        f["image_center"] = np.array(amp.shape) / 2.0 - 0.5
        for name, v in (("phased", 0), ("scaled", 1), ("shifted", 0), ("lambda", 0.0), ("pixel_size", 0.0)):
            f[name] = [v]
    p = read_pattern(tmp_path / "py.h5")
    np.testing.assert_array_equal(p.data, amp.astype(np.float64) ** 2)
    assert p.centre == (4.5, 6.5) and p.wavelength_m is None and p.pixel_size_m is None


def test_spimage_intensities_complex_and_centre(tmp_path):
    rng = np.random.default_rng(1)
    field = (rng.normal(size=(8, 8)) + 1j * rng.normal(size=(8, 8))).astype(np.complex64)
    path = tmp_path / "c.h5"
    _write_spimage(path, field, np.ones((8, 8), bool), scaled=False, phased=True, centre_xy=(3.5, 4.0))
    p = read_pattern(path)
    np.testing.assert_allclose(p.data, np.abs(field), rtol=1e-5)  # unscaled: the stored magnitudes
    assert p.centre == (4.0, 3.5)  # (x, y) -> (row, col)
    with h5py.File(path, "r+") as f:  # a 3D volume (nz = 4) is not a pattern
        del f["real"], f["mask"]
        f["real"] = np.ones((6, 6, 4), np.float32)
        f["mask"] = np.ones((6, 6, 4), np.int32)
    with pytest.raises(InputError, match=r"c\.h5:/real: found shape \(6, 6, 4\) \(a 3D volume\)"):
        read_pattern(path)


# -- layouts that could be read two ways -----------------------------------------------------------


def test_trailing_singleton_and_channels_last_refused(tmp_path):
    h5 = tmp_path / "single.h5"
    with h5py.File(h5, "w") as f:
        f["entry_1/data_1/data"] = np.ones((98, 98, 1), np.float32)
    with pytest.raises(InputError) as err:
        read_pattern(h5, frame=0)  # was a (98, 1) pattern
    msg = str(err.value)
    assert "single.h5:/entry_1/data_1/data" in msg and "shape (98, 98, 1)" in msg
    assert "trailing axis of length 1" in msg and "(F, H, W)" in msg
    # a libspimage file read through another of its datasets gets the hint
    _write_spimage(tmp_path / "sp.h5", np.ones((98, 98)), np.ones((98, 98), bool))
    with pytest.raises(InputError, match="this is a libspimage file"):
        read_pattern(tmp_path / "sp.h5", dataset="mask", frame=0)
    np.save(tmp_path / "rgb.npy", np.ones((20, 30, 3), np.float32))
    for reader in (read_pattern, read_image):
        with pytest.raises(
            InputError, match=r"rgb\.npy: found shape \(20, 30, 3\): a trailing axis of length 3"
        ):
            reader(tmp_path / "rgb.npy")
    tifffile.imwrite(tmp_path / "one.tif", np.ones((20, 30, 1), np.float32))
    with pytest.raises(InputError, match="trailing axis of length 1"):
        read_image(tmp_path / "one.tif")
    tifffile.imwrite(tmp_path / "rgb.tif", np.ones((20, 30, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputError, match=r"rgb\.tif: found a colour image \(20, 30, 3\)"):
        read_pattern(tmp_path / "rgb.tif")


def test_phase_refuses_singleton_with_exit_2(tmp_path, capsys):
    src = tmp_path / "third.h5"
    with h5py.File(src, "w") as f:
        f["scan/data"] = np.ones((64, 64, 1), np.float32)
    out = tmp_path / "out"
    rc = main(["phase", str(src), "-o", str(out), "--dataset", "scan/data", "--frame", "0", *TINY_PHASE])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "third.h5:/scan/data" in err and "shape (64, 64, 1)" in err and "(F, H, W)" in err
    assert not out.exists()


# -- mask and support files --------------------------------------------------------------------------


def _pattern(n=64, seed=0):
    yy, xx = np.mgrid[:n, :n]
    obj = ((yy - n / 2) ** 2 + (xx - n / 2) ** 2 < 7**2).astype(float)
    obj[n // 2 - 3 : n // 2 + 1, n // 2 + 2 : n // 2 + 6] = 0.3
    f = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(obj)))
    i = np.abs(f) ** 2
    return np.random.default_rng(seed).poisson(i / i.max() * 1e5).astype(np.float32)


def test_mask_file_conventions(tmp_path):
    data = _pattern(16)
    np.save(tmp_path / "p.npy", data)
    bad = np.zeros((16, 16), np.uint8)
    bad[0, :3] = 1
    np.save(tmp_path / "bad.npy", bad)
    p = read_pattern(tmp_path / "p.npy", mask=tmp_path / "bad.npy")
    assert np.argwhere(p.mask).tolist() == [[0, 0], [0, 1], [0, 2]]
    # 1 = valid (libspimage, Hawk) as a PNG
    Image.fromarray((1 - bad) * 255).save(tmp_path / "valid.png")
    q = read_pattern(tmp_path / "p.npy", mask=tmp_path / "valid.png", mask_convention="valid")
    np.testing.assert_array_equal(q.mask != 0, bad != 0)
    # the same file read as CXI excludes most pixels: a warning says which convention to try
    with pytest.warns(InputWarning, match="--mask-convention valid"):
        read_pattern(tmp_path / "p.npy", mask=tmp_path / "valid.png")
    with pytest.warns(InputWarning, match="--mask-convention cxi"):
        read_pattern(tmp_path / "p.npy", mask=tmp_path / "bad.npy", mask_convention="valid")
    # an HDF5 mask merges with the file's own mask bits
    with h5py.File(tmp_path / "shot.cxi", "w") as f:
        f["entry_1/instrument_1/detector_1/data"] = data
        own = np.zeros((16, 16), np.uint32)
        own[5, 5] = 0x8
        f["entry_1/instrument_1/detector_1/mask"] = own
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["mask"] = bad.astype(np.uint32) * 0x200
    r = read_pattern(tmp_path / "shot.cxi", mask=tmp_path / "m.h5")
    assert r.mask[5, 5] == 0x8 and r.mask[0, 0] == 0x200 and int(np.count_nonzero(r.mask)) == 4
    np.save(tmp_path / "small.npy", np.zeros((8, 16), np.uint8))
    with pytest.raises(InputError, match=r"small\.npy: found shape \(8, 16\); expected the pattern's shape"):
        read_pattern(tmp_path / "p.npy", mask=tmp_path / "small.npy")
    np.testing.assert_array_equal(read_mask(tmp_path / "bad.npy", (16, 16)), bad.astype(np.uint32))


def test_support_files(tmp_path):
    s = np.zeros((12, 12), np.uint8)
    s[3:8, 4:9] = 1
    np.save(tmp_path / "s.npy", s)
    tifffile.imwrite(tmp_path / "s.tif", s * 255)
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["support"] = s.astype(bool)
    _write_spimage(tmp_path / "hawk.h5", s.astype(np.float32), np.ones_like(s, bool), scaled=False)
    for name in ("s.npy", "s.tif", "s.h5", "hawk.h5"):
        np.testing.assert_array_equal(read_support(tmp_path / name), s != 0, err_msg=name)
    # a libspimage real-space image (a Hawk reconstruction) as a stereo view: its modulus, not squared
    view = (3 * s).astype(np.float32) * np.exp(0.5j)
    _write_spimage(tmp_path / "real.h5", view, np.ones_like(s, bool), scaled=True, phased=True)
    np.testing.assert_allclose(read_image(tmp_path / "real.h5"), 3.0 * s, rtol=1e-6)
    np.save(tmp_path / "rect.npy", np.ones((12, 10), np.uint8))
    with pytest.raises(InputError, match=r"rect\.npy: found shape \(12, 10\); expected a square"):
        read_support(tmp_path / "rect.npy")
    np.save(tmp_path / "empty.npy", np.zeros((12, 12)))
    with pytest.raises(InputError, match="empty support"):
        read_support(tmp_path / "empty.npy")


def test_phase_with_mask_and_support_files(tmp_path, capsys):
    data = _pattern(64)
    data[30:34, 30:34] = 0  # a beamstop, excluded by the mask file
    np.save(tmp_path / "pattern.npy", data)
    bad = np.zeros((64, 64), np.uint8)
    bad[30:34, 30:34] = 1
    np.save(tmp_path / "mask.npy", bad)
    support = np.zeros((48, 48), np.uint8)
    yy, xx = np.mgrid[:48, :48]
    support[(yy - 24) ** 2 + (xx - 24) ** 2 < 10**2] = 1
    np.save(tmp_path / "support.npy", support)
    out = tmp_path / "out"
    argv = ["phase", tmp_path / "pattern.npy", "-o", out, "--mask", tmp_path / "mask.npy"]
    rc = main([str(a) for a in [*argv, "--support", tmp_path / "support.npy", *TINY_PHASE]])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    views, info = read_views(out / "view.cxi")
    assert views.shape == (1, 48, 48)  # the support's side is the crop's
    inp = info["parameters"]["input"]
    assert inp["support"].endswith("support.npy") and inp["mask"].endswith("mask.npy")
    assert "16 pixels excluded" in inp["notes"][0]
    assert (out / "figures" / "view.png").is_file()
    # a --size that disagrees with the support is refused before phasing
    argv = [*argv, "-o", tmp_path / "o2", "--support", tmp_path / "support.npy", "--size", "32"]
    rc = main([str(a) for a in [*argv, *TINY_PHASE]])
    assert rc == 2 and "--size" in capsys.readouterr().err


def test_petra_fixture_with_mask_file(fixtures_dir, tmp_path):
    path = fixtures_dir / PETRA
    own = read_pattern(path, frame=0).mask
    extra = np.zeros(own.shape, np.uint8)
    extra[0, :10] = 1
    np.save(tmp_path / "m.npy", extra)
    p = read_pattern(path, frame=0, mask=tmp_path / "m.npy")
    np.testing.assert_array_equal(p.mask, own | extra.astype(np.uint32))


# -- stereo images -----------------------------------------------------------------------------------


def _texture(h=40, w=56, seed=3):
    from scipy import ndimage

    img = ndimage.gaussian_filter(np.random.default_rng(seed).random((h, w)), 1.5)
    return (img - img.min()) / (img.max() - img.min())


def test_read_pictures(tmp_path):
    t = _texture()
    Image.fromarray((t * 255).astype(np.uint8)).save(tmp_path / "g8.png")
    g16 = (t * 65535).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g8.png"), (t * 255).astype(np.uint8))
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png"), g16.astype(np.float32))  # 16 bits kept
    rgb = (np.stack([t, 0.5 * t, 1 - t], -1) * 255).astype(np.uint8)
    luma = rgb.astype(np.float64) @ [0.299, 0.587, 0.114]
    Image.fromarray(rgb).save(tmp_path / "c.png")
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    for name in ("c.png", "c.tif"):
        with pytest.warns(InputWarning, match="RGB colour image: read as its luminance"):
            img = read_image(tmp_path / name)
        assert img.shape == (40, 56)  # not a stack of 40 (56, 3) frames
        np.testing.assert_allclose(img, luma, atol=1e-3)
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    with pytest.warns(InputWarning, match="luminance"):
        assert np.abs(read_image(tmp_path / "c.jpg") - luma).mean() < 3  # lossy, close
    Image.fromarray(np.dstack([rgb, np.full((40, 56), 255, np.uint8)])).save(tmp_path / "a.png")
    with pytest.warns(InputWarning, match="alpha ignored"):
        np.testing.assert_allclose(read_image(tmp_path / "a.png"), luma, atol=1e-3)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"bad\.png: found an unreadable picture"):
        read_image(tmp_path / "bad.png")


def test_stereo_pngs_upsample_1_on_input_grid(tmp_path, capsys):
    t = _texture()
    for name, img in (("L.png", t), ("R.png", np.roll(t, -3, axis=1))):
        Image.fromarray((img * 65535).astype(np.uint16)).save(tmp_path / name)
    out = tmp_path / "out"
    common = ["--preprocess", "none", "--range", "-6", "6", "-q"]
    rc = main(
        [
            "stereo",
            str(tmp_path / "L.png"),
            str(tmp_path / "R.png"),
            "-o",
            str(out),
            "--upsample",
            "1",
            *common,
        ]
    )
    assert rc == 0, capsys.readouterr().err
    d = tifffile.imread(out / "disparity_left.tif")
    assert d.shape == t.shape  # the maps are on the input grid
    assert np.nanmedian(d) == pytest.approx(3.0, abs=0.2)  # right = left moved 3 px to the left
    summary = json.loads((out / "summary.json").read_text())
    assert summary["input"]["left"].endswith("L.png")


def test_extent_pixels_without_geometry():
    ext, unit = _extent((40, 56), None, 1)
    assert unit == "px" and ext == [-0.5, 55.5, 39.5, -0.5]
    ext, unit = _extent((80, 112), None, 2)  # a matching grid 2x finer: still view pixels
    assert unit == "px" and ext == [-0.5, 55.5, 39.5, -0.5]
    ext, unit = _extent((40, 56), 50e-9, 1)
    assert unit == "um" and ext[0] == pytest.approx(-28.5 * 0.05) and ext[3] == pytest.approx(-20.5 * 0.05)


def test_no_warning_for_grey(tmp_path):
    Image.fromarray((_texture() * 255).astype(np.uint8)).save(tmp_path / "g.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(tmp_path / "g.png")


def test_pipeline_phase_uses_the_support():
    import xstereo_gpu as xs
    from xstereo_gpu.phasing.prepare import single_pattern

    intensities, valid = single_pattern(_pattern(32), None)
    opts = xs.PipelineOptions.for_profile("cpu").replace(phasing__runs=2, phasing__iterations=10)
    support = np.zeros((1, 32, 32), bool)
    support[0, 12:20, 10:22] = True
    with xs.Pipeline(opts, backend="numpy") as pipe:
        given = pipe.phase(intensities, valid, support=support)
        default = pipe.phase(intensities, valid)
    direct = xs.phase_retrieval(intensities, valid, opts.phasing, support=support)
    np.testing.assert_array_equal(given.views, direct.views)  # the support reached phase_retrieval
    assert not np.array_equal(given.views, default.views)
