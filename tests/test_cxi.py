"""File input/output: shot files, third-party CXI, TIFF/NPY patterns, views.cxi, PLY, TIFF, JSON, outputs."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest

from xstereo_gpu.errors import InputError
from xstereo_gpu.io import (Pattern, atomic_file, output_directory, read_image, read_pattern, read_shot, read_tiff,
                            read_views, write_json, write_ply, write_shot, write_tiff, write_views)
from xstereo_gpu.io.cxi import HC_JM, MASK_SHADOWED, MASK_SUPPORT
from xstereo_gpu.shot import GroundTruth, Shot

PETRA = "cdtools_petra3_p25_nearfield/PETRAIII_P25_Near_Field_Ptycho.cxi"
MINIMAL = "cxi_format_examples/minimal.cxi"
TYPICAL = "cxi_format_examples/typical_raw.cxi"


def make_shot(rng, *, truth=True, h=48, w=80, n=16) -> Shot:
    frame = rng.poisson(5.0, size=(h, w)).astype(np.float32)
    mask = np.zeros((h, w), dtype=np.uint32)
    mask[h // 2 - 2:h // 2 + 2, :] = MASK_SHADOWED
    frame[h // 2, 3] = np.nan  # masked pixels may hold anything
    gt = None
    if truth:
        views = (rng.standard_normal((2, n, n)) + 1j * rng.standard_normal((2, n, n))).astype(np.complex64)
        gt = GroundTruth(views=views, pixel_size_m=4.9e-8, edge_points_m=rng.standard_normal((30, 3)) * 1e-6,
                         edge_labels=rng.integers(0, 2, 30).astype(np.int8), description="cross lid, tilt 10 deg")
    return Shot(frame=frame, mask=mask, wavelength_m=2.4e-8, distance_m=0.026, detector_pixel_m=2.7e-5,
                angles_deg=(9.5, 9.5), centres_px=np.array([[24.0, 20.5], [24.0, 60.25]]), pattern_size=n,
                sample="cross", truth=gt, extra={"seed": 7, "note": "simulated", "flux": 3.5e7, "hdr": True,
                       "exposures_s": [30.0, 240.0], "labels": ["short", "long"]})


def assert_shots_equal(a: Shot, b: Shot) -> None:
    np.testing.assert_array_equal(a.frame, b.frame)
    assert a.frame.dtype == b.frame.dtype == np.float32
    np.testing.assert_array_equal(a.mask, b.mask)
    assert b.mask.dtype == np.uint32
    assert (a.wavelength_m, a.distance_m, a.detector_pixel_m) == (b.wavelength_m, b.distance_m, b.detector_pixel_m)
    assert tuple(a.angles_deg) == tuple(b.angles_deg)
    np.testing.assert_array_equal(a.centres_px, b.centres_px)
    assert a.pattern_size == b.pattern_size and a.sample == b.sample
    assert a.extra == b.extra and {k: type(v) for k, v in a.extra.items()} == {k: type(v) for k, v in b.extra.items()}
    assert a.pixel_size_m == b.pixel_size_m


def test_shot_round_trip_with_truth(tmp_path):
    rng = np.random.default_rng(1)
    shot = make_shot(rng)
    path = write_shot(tmp_path / "shot.cxi", shot)
    back = read_shot(path)
    assert_shots_equal(shot, back)
    assert back.source == str(path)
    t, u = shot.truth, back.truth
    np.testing.assert_array_equal(t.views, u.views)
    assert u.views.dtype == np.complex64
    np.testing.assert_array_equal(t.edge_points_m, u.edge_points_m)
    np.testing.assert_array_equal(t.edge_labels, u.edge_labels)
    assert u.edge_labels.dtype == np.int8
    assert (t.pixel_size_m, t.description) == (u.pixel_size_m, u.description)
    assert [p.name for p in tmp_path.iterdir()] == ["shot.cxi"]  # no temporary file left


def test_shot_without_truth_and_file_layout(tmp_path):
    shot = make_shot(np.random.default_rng(2), truth=False)
    path = write_shot(tmp_path / "plain.cxi", shot, compression=None)
    back = read_shot(path)
    assert back.truth is None
    assert_shots_equal(shot, back)
    with h5py.File(path, "r") as f:
        assert int(f["cxi_version"][()]) == 160
        link = f["entry_1/data_1"].get("data", getlink=True)
        assert isinstance(link, h5py.SoftLink) and link.path == "/entry_1/instrument_1/detector_1/data"
        assert f["entry_1/instrument_1/source_1/energy"][()] == pytest.approx(HC_JM / 2.4e-8, rel=1e-12)
        assert f["entry_1/instrument_1/detector_1/basis_vectors"].shape == (2, 3)
        assert f["entry_1/instrument_1/detector_1/mask"].dtype == np.uint32
        st = f["entry_1/stereo_1"]
        assert "description" in st.attrs and st.attrs["seed"] == 7
        assert [v.decode() for v in st["view_names"][()]] == ["left", "right"]
        assert int(st["pattern_size"][()]) == 16
        assert "ground_truth_1" not in f["entry_1"]


def _rewrite(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def test_shot_reader_accepts_variants(tmp_path):
    """Energy without wavelength, bytes strings, external link to the data, data_1/data only, no version."""
    shot = make_shot(np.random.default_rng(3), truth=False)
    path = write_shot(tmp_path / "v.cxi", shot)
    ext = tmp_path / "frames.h5"
    with h5py.File(ext, "w") as g:
        g["frame"] = np.asarray(shot.frame)

    def mutate(f):
        del f["cxi_version"]
        del f["entry_1/instrument_1/source_1/wavelength"]
        del f["entry_1/sample_1/name"]
        f["entry_1/sample_1/name"] = np.bytes_(b"cross")  # fixed-length bytes
        del f["entry_1/data_1/data"]
        del f["entry_1/instrument_1/detector_1/data"]
        f["entry_1/data_1/data"] = h5py.ExternalLink("frames.h5", "/frame")

    _rewrite(path, mutate)
    back = read_shot(path)
    assert back.sample == "cross"
    assert back.wavelength_m == pytest.approx(2.4e-8, rel=1e-12)  # from the energy in J
    np.testing.assert_array_equal(back.frame, shot.frame)
    # data_1/data is an external link: the geometry comes from entry_1/instrument_1/detector_1
    assert back.distance_m == shot.distance_m and back.detector_pixel_m == shot.detector_pixel_m


def test_shot_reader_overrides_for_third_party(fixtures_dir):
    shot = read_shot(fixtures_dir / PETRA, frame=3, angles_deg=(4.0, 5.0),
                     centres_px=[[50.0, 25.0], [50.0, 75.0]], pattern_size=32)
    assert shot.frame.shape == (100, 100) and shot.angles_deg == (4.0, 5.0)
    assert shot.distance_m == pytest.approx(1.12) and shot.detector_pixel_m == pytest.approx(55e-6)


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
        d["data"] = np.arange(96, dtype=np.int32).reshape(2, 6, 8)  # not constant: a constant cannot be phased
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


def _bad_shot_file(tmp_path, rng, fn):
    path = write_shot(tmp_path / f"bad{len(list(tmp_path.glob('bad*.cxi')))}.cxi", make_shot(rng, truth=False))
    _rewrite(path, fn)
    return path


def _replace(name, value):
    def fn(f):
        del f[name]
        f[name] = value
    return fn


def _set_pixel(value):
    def fn(f):
        f["entry_1/instrument_1/detector_1/data"][5, 5] = value
    return fn


def test_bad_inputs_name_the_file(tmp_path):
    rng = np.random.default_rng(5)
    cases = []
    cases.append(("missing", tmp_path / "nope.cxi", read_shot, "no such file"))
    text = tmp_path / "text.cxi"
    text.write_text("this is not HDF5\n")
    cases.append(("text", text, read_shot, "not an HDF5 file"))
    full = write_shot(tmp_path / "full.cxi", make_shot(rng, h=200, w=200))
    trunc = tmp_path / "trunc.cxi"
    trunc.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    cases.append(("truncated", trunc, read_shot, "truncated"))
    p = _bad_shot_file(tmp_path, rng, lambda f: f.__delitem__("entry_1/stereo_1/angles"))
    cases.append(("no angles", p, read_shot, "/entry_1/stereo_1/angles"))
    p = _bad_shot_file(tmp_path, rng, lambda f: f.__delitem__("entry_1/instrument_1/detector_1/distance"))
    cases.append(("no distance", p, read_shot, "distance"))
    p = _bad_shot_file(tmp_path, rng, _set_pixel(np.nan))
    cases.append(("NaN", p, read_shot, "NaN"))
    p = _bad_shot_file(tmp_path, rng, _set_pixel(-3.0))
    cases.append(("negative", p, read_shot, "negative"))
    p = _bad_shot_file(tmp_path, rng, _replace("entry_1/instrument_1/detector_1/data", np.ones(7, np.float32)))
    cases.append(("1D", p, read_shot, "1 dimensions"))
    p = _bad_shot_file(tmp_path, rng, _replace("entry_1/instrument_1/detector_1/data", np.ones((2, 48, 80))))
    cases.append(("3D", p, read_shot, "2 frames"))
    p = _bad_shot_file(tmp_path, rng, _replace("entry_1/stereo_1/angles", np.array([9.5, 75.0])))
    cases.append(("angle", p, read_shot, "angles"))
    p = _bad_shot_file(tmp_path, rng, _replace("entry_1/data_1/data", h5py.SoftLink("/entry_1/nothing")))
    cases.append(("dangling link", p, read_shot, "cannot be resolved"))
    np.save(tmp_path / "one.npy", np.ones(5))
    cases.append(("1D npy", tmp_path / "one.npy", read_pattern, "1 dimensions"))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)  # never loaded with pickle
    cases.append(("pickled npy", tmp_path / "obj.npy", read_pattern, "pickle"))
    neg = np.ones((4, 4))
    neg[1, 2] = -1
    np.save(tmp_path / "neg.npy", neg)
    cases.append(("negative npy", tmp_path / "neg.npy", read_pattern, "negative"))
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    cases.append(("extension", tmp_path / "x.png", read_pattern, "extension"))
    cases.append(("text pattern", text, read_pattern, "not an HDF5 file"))
    for label, path, fn, words in cases:
        with pytest.raises(InputError) as err:
            fn(path)
        msg = str(err.value)
        assert str(path) in msg, (label, msg)
        assert words in msg, (label, msg)


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


def test_views_round_trip(tmp_path, xp):
    rng = np.random.default_rng(6)
    n = 24
    views = (rng.standard_normal((2, n, n)) + 1j * rng.standard_normal((2, n, n))).astype(np.complex64)
    supports = rng.random((2, n, n)) > 0.5
    prtf = rng.random((2, 12)).astype(np.float32)
    errors = rng.random(45)
    params = {"runs": 45, "beta": 0.9, "angles_deg": (9.5, 9.5), "threshold": np.float32(0.25), "nan": float("nan")}
    path = write_views(tmp_path / "views.cxi", xp.asarray(views), supports=xp.asarray(supports), pixel_size_m=4.9e-8,
                       parameters=params, extra={"prtf": xp.asarray(prtf), "run_errors": errors})
    back, info = read_views(path)
    np.testing.assert_array_equal(back, views)
    assert back.dtype == np.complex64
    np.testing.assert_array_equal(info["supports"], supports)
    assert info["pixel_size_m"] == 4.9e-8 and info["names"] == ["left", "right"]
    assert info["parameters"] == {"runs": 45, "beta": 0.9, "angles_deg": [9.5, 9.5], "threshold": 0.25, "nan": None}
    assert info["program"] == "xstereo-gpu" and info["version"]
    assert info["date"].endswith("+00:00")
    np.testing.assert_array_equal(info["extra"]["prtf"], prtf)
    np.testing.assert_array_equal(info["extra"]["run_errors"], errors)
    with h5py.File(path, "r") as f:
        assert int(f["cxi_version"][()]) == 160
        g = f["entry_1/image_2"]
        assert g["data_space"][()] == b"real" and g["data_type"][()] == b"exit wave"
        assert g["image_center"][()].tolist() == [12.0, 12.0, 0.0] and int(g["is_fft_shifted"][()]) == 0
        m = g["mask"][()]
        assert m.dtype == np.uint32 and set(np.unique(m).tolist()) <= {0, MASK_SUPPORT}
        assert json.loads(g["process_1/parameters"][()])["runs"] == 45
        assert "run_errors" in f["entry_1/result_1"] and "prtf" in g
    np.testing.assert_allclose(read_image(path, index=1), np.abs(views[1]), rtol=1e-6)
    with pytest.raises(InputError, match="image_3"):
        read_image(path, index=2)


def test_single_view_without_geometry(tmp_path):
    view = np.ones((1, 8, 8), np.complex64) * (1 + 2j)
    path = write_views(tmp_path / "view.cxi", view, supports=np.ones((1, 8, 8), bool), pixel_size_m=float("nan"),
                       parameters={}, names=("view",), extra={"best_eps": np.arange(5.0)[None]})
    back, info = read_views(path)
    np.testing.assert_array_equal(back, view)
    assert info["pixel_size_m"] is None and info["names"] == ["view"] and info["parameters"] == {}
    assert info["extra"]["best_eps"].shape == (1, 5)
    with pytest.raises(InputError, match="pixel_size_m"):
        write_views(tmp_path / "bad.cxi", view, supports=np.ones((1, 8, 8), bool), pixel_size_m=-1.0,
                    parameters={}, names=("view",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["view.cxi"]


def test_ply_readable_by_meshio(tmp_path, xp):
    meshio = pytest.importorskip("meshio")
    rng = np.random.default_rng(7)
    pts = rng.standard_normal((50, 3)) * 1000.0
    conf = rng.random(50)
    view = (rng.random(50) > 0.5).astype(np.int8)
    path = write_ply(tmp_path / "cloud.ply", xp.asarray(pts), scalars={"confidence": xp.asarray(conf), "view": view})
    head = path.read_bytes()[:300]
    assert head.startswith(b"ply\nformat binary_little_endian 1.0\ncomment units nm\n")
    m = meshio.read(path)
    np.testing.assert_allclose(m.points, pts.astype(np.float32), rtol=1e-7)
    np.testing.assert_allclose(m.point_data["confidence"], conf.astype(np.float32))
    np.testing.assert_array_equal(m.point_data["view"], view.astype(np.float32))
    with pytest.raises(InputError, match="confidence"):
        write_ply(tmp_path / "bad.ply", pts, scalars={"confidence": conf[:-1]})
    assert not (tmp_path / "bad.ply").exists()


def test_tiff_nan_and_metadata(tmp_path, xp):
    img = np.arange(30, dtype=np.float32).reshape(5, 6)
    img[1, 2] = np.nan
    meta = {"upsample": 4, "pixel_size_nm": np.float64(12.25), "convention": "x - d", "bad": float("nan")}
    path = write_tiff(tmp_path / "disparity_left.tif", xp.asarray(img), metadata=meta)
    back, m = read_tiff(path)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, img)  # NaN in the same place
    assert m == {"upsample": 4, "pixel_size_nm": 12.25, "convention": "x - d", "bad": None}


def test_write_json(tmp_path):
    obj = {"a": np.float32(1.5), "b": np.arange(3), "c": float("nan"), "d": (1, np.int64(2)), "e": [np.inf]}
    path = write_json(tmp_path / "s.json", obj)
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": None, "d": [1, 2], "e": [None]}
    assert path.read_text().startswith('{\n  "a"')


def test_atomic_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith("out.txt.tmp-") and tmp.suffix == ".txt"
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with atomic_file(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    with atomic_file(tmp_path / "a.npy") as tmp:
        np.save(tmp, np.arange(3))  # the suffix is kept, so np.save does not append another .npy
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "out.txt"]


def test_output_directory(tmp_path):
    out = tmp_path / "run"
    with output_directory(out) as d:
        assert d.parent == tmp_path and d.name.startswith("run.tmp-") and not any(d.iterdir())
        (d / "depth.tif").write_bytes(b"1")
        assert not out.exists()
    assert sorted(p.name for p in out.iterdir()) == ["depth.tif"]
    with pytest.raises(InputError, match="--overwrite") as err:
        with output_directory(out):
            pass
    assert str(out) in str(err.value)
    with output_directory(out, overwrite=True) as d:
        (d / "cloud.ply").write_bytes(b"2")
    assert sorted(p.name for p in out.iterdir()) == ["cloud.ply"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    # a failing body leaves the old directory as it was and no temporary directory
    with pytest.raises(RuntimeError):
        with output_directory(out, overwrite=True) as d:
            (d / "half.tif").write_bytes(b"3")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert sorted(p.name for p in out.iterdir()) == ["cloud.ply"]
    # ... and a new path is not created at all
    fresh = tmp_path / "sub" / "run2"
    with pytest.raises(KeyboardInterrupt):
        with output_directory(fresh) as d:
            (d / "x").write_text("x")
            raise KeyboardInterrupt
    assert not fresh.exists() and list((tmp_path / "sub").iterdir()) == []
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="existing file"):
        with output_directory(tmp_path / "afile"):
            pass
    empty = tmp_path / "empty"
    empty.mkdir()
    with output_directory(empty) as d:
        (d / "a").write_text("a")
    assert (empty / "a").read_text() == "a"


def test_geometry_units_round_trip(tmp_path):
    """Pixel size of the views follows lambda D / (N p) from the file's geometry."""
    shot = make_shot(np.random.default_rng(8), truth=False)
    back = read_shot(write_shot(tmp_path / "g.cxi", shot))
    assert math.isclose(back.pixel_size_m, 2.4e-8 * 0.026 / (16 * 2.7e-5), rel_tol=1e-12)
