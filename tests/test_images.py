"""Patterns and images (xstereo_gpu.io.images): third-party CXI fixtures, HDF5/NeXus fallbacks, TIFF and
NPY."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from _helpers import PETRA

from xstereo_gpu.errors import InputError
from xstereo_gpu.io import Pattern, read_image, read_pattern
from xstereo_gpu.io.cxi import HC_JM

MINIMAL = "cxi_format_examples/minimal.cxi"


TYPICAL = "cxi_format_examples/typical_raw.cxi"


def test_fixture_minimal(fixtures_dir):
    path = fixtures_dir / MINIMAL
    with h5py.File(path, "r") as f:
        assert "cxi_version" not in f
    p = read_pattern(path, validate=False)
    assert isinstance(p, Pattern)
    assert p.data.shape == (50, 100) and p.data.dtype == np.float32
    assert p.mask.shape == (50, 100) and p.mask.dtype == np.uint32 and not p.mask.any()
    assert (p.wavelength_m, p.distance_m, p.pixel_size_m) == (None, None, None)
    assert p.dataset == "/entry_1/data_1/data"
    # the spec's example holds test values, not photon counts: the default check refuses them
    with pytest.raises(InputError, match="negative intensities") as err:
        read_pattern(path)
    assert str(path) in str(err.value)


def test_fixture_typical_raw(fixtures_dir):
    path = fixtures_dir / TYPICAL
    p = read_pattern(path, validate=False)
    assert p.data.shape == (50, 100)
    assert p.distance_m == pytest.approx(0.15)  # detector_1, found through the soft link data_1/data
    assert p.wavelength_m == pytest.approx(HC_JM / 2.8893e-16, rel=1e-12)  # energy in J
    assert p.wavelength_m == pytest.approx(6.875e-10, rel=1e-3)
    q = read_pattern(path, dataset="entry_1/data_2/data")  # soft link to detector_2: 0.65 m
    assert q.distance_m == pytest.approx(0.65) and q.data.min() >= 0
    # byte strings are decoded: the third-party sample name through a shot read with its stereo facts given
    from xstereo_gpu.io.cxi import _open_hdf5, _read_str

    with _open_hdf5(path) as f:
        assert _read_str(f, "entry_1/sample_1/name", str(path)) == "Mimivirus"
        assert _read_str(f, "entry_1/start_time", str(path)).startswith("2009-12-11")


def test_fixture_petra(fixtures_dir):
    path = fixtures_dir / PETRA
    with pytest.raises(InputError, match="200 frames") as err:
        read_pattern(path)
    assert str(path) in str(err.value)
    with pytest.raises(InputError, match="200 frames"):
        read_pattern(path, frame=200)
    p = read_pattern(path, frame=0)
    assert p.data.shape == (100, 100) and p.data.dtype == np.float32
    assert p.pixel_size_m == pytest.approx(55e-6, rel=1e-6)
    assert p.distance_m == pytest.approx(1.12, rel=1e-6)
    assert p.wavelength_m == pytest.approx(9.7949e-11, rel=1e-4)
    assert p.mask.dtype == np.uint32 and p.mask.shape == (100, 100) and int((p.mask != 0).sum()) == 5
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(p.data, f["entry_1/instrument_1/detector_1/data"][0].astype(np.float32))
    p7 = read_pattern(path, frame=7)
    assert not np.array_equal(p7.data, p.data)


@pytest.mark.parametrize("layout", ["rows", "transposed"])
def test_pixel_from_basis_vectors(tmp_path, layout, fixtures_dir):
    # the PETRA III file's (3, 2) basis vectors, alone (x/y_pixel_size removed), in both layouts
    with h5py.File(fixtures_dir / PETRA, "r") as f:
        bv = f["entry_1/instrument_1/detector_1/basis_vectors"][()]
    assert bv.shape == (3, 2)
    path = tmp_path / "bv.cxi"
    with h5py.File(path, "w") as f:
        d = f.create_group("entry_1/instrument_1/detector_1")
        d["data"] = np.arange(96, dtype=np.int32).reshape(
            2, 6, 8
        )  # not constant: a constant cannot be phased
        d["distance"] = 1.12
        d["basis_vectors"] = bv if layout == "transposed" else bv.T
        f["entry_1/instrument_1/source_1/wavelength"] = 1e-10
    p = read_pattern(path, frame=1)
    assert p.pixel_size_m == pytest.approx(55e-6, rel=1e-6)
    assert p.dataset == "/entry_1/instrument_1/detector_1/data" and p.frame == 1
    assert p.wavelength_m == 1e-10


def test_hdf5_fallback_dataset_and_units(tmp_path):
    path = tmp_path / "scan.nxs"
    with h5py.File(path, "w") as f:
        f["entry/instrument/detector/data"] = np.full((4, 5), 2.0) + np.eye(4, 5)  # not constant
        e = f.create_dataset("entry/instrument/source/energy", data=8.0)  # NeXus names and units
        e.attrs["units"] = "keV"
        d = f.create_dataset("entry/instrument/detector/distance", data=350.0)
        d.attrs["units"] = "mm"
    p = read_pattern(path)
    assert p.dataset == "/entry/instrument/detector/data" and float(p.data.sum()) == 44.0
    assert p.wavelength_m == pytest.approx(1.5498e-10, rel=1e-4)  # 8 keV
    assert p.distance_m == pytest.approx(0.35)
    with h5py.File(path, "r+") as f:
        del f["entry/instrument/source/energy"]
        f["entry/instrument/source/energy"] = 8000.0  # eV without units: not CXI
    with pytest.raises(InputError, match="looks like eV"):
        read_pattern(path)


def test_tiff_and_npy_patterns(tmp_path):
    rng = np.random.default_rng(4)
    img = rng.poisson(3.0, (12, 20)).astype(np.uint16)
    import tifffile

    tifffile.imwrite(tmp_path / "p.tif", img)
    p = read_pattern(tmp_path / "p.tif")
    np.testing.assert_array_equal(p.data, img.astype(np.float32))
    assert p.data.dtype == np.float32 and p.pixel_size_m is None and not p.mask.any()
    stack = rng.random((3, 12, 20))
    np.save(tmp_path / "s.npy", stack)
    with pytest.raises(InputError, match="3 frames"):
        read_pattern(tmp_path / "s.npy")
    q = read_pattern(tmp_path / "s.npy", frame=2)
    np.testing.assert_allclose(q.data, stack[2].astype(np.float32))
    assert q.frame == 2
    np.testing.assert_allclose(read_image(tmp_path / "s.npy", index=1), stack[1].astype(np.float32))
    assert read_image(tmp_path / "p.tif").shape == (12, 20)


def test_masked_bad_pixels_are_accepted(tmp_path):
    data = np.ones((6, 6), np.float32)
    data[1, 1] = 3.0  # not constant
    data[2, 2], data[3, 3] = np.nan, -5.0
    path = tmp_path / "m.cxi"
    with h5py.File(path, "w") as f:
        f["entry_1/instrument_1/detector_1/data"] = data
        mask = np.zeros((6, 6), np.uint32)
        mask[2, 2] = mask[3, 3] = 0x8
        f["entry_1/instrument_1/detector_1/mask"] = mask
    p = read_pattern(path)
    assert int(p.mask[2, 2]) == 8 and np.isnan(p.data[2, 2])
