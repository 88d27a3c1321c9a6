"""Shot and views files (xstereo_gpu.io.cxi): round trips with and without truth, reader variants, bad files
named in the message, HDR exposure series, views.cxi."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
from _helpers import PETRA

from xstereo_gpu.errors import InputError
from xstereo_gpu.io import (
    read_image,
    read_pattern,
    read_shot,
    read_views,
    write_shot,
    write_views,
)
from xstereo_gpu.io.cxi import HC_JM, MASK_SHADOWED, MASK_SUPPORT
from xstereo_gpu.phasing.prepare import split_patterns
from xstereo_gpu.shot import GroundTruth, Shot
from xstereo_gpu.simulate.detector import MASK_SATURATED


def make_shot(rng, *, truth=True, h=48, w=80, n=16) -> Shot:
    frame = rng.poisson(5.0, size=(h, w)).astype(np.float32)
    mask = np.zeros((h, w), dtype=np.uint32)
    mask[h // 2 - 2 : h // 2 + 2, :] = MASK_SHADOWED
    frame[h // 2, 3] = np.nan  # masked pixels may hold anything
    gt = None
    if truth:
        views = (rng.standard_normal((2, n, n)) + 1j * rng.standard_normal((2, n, n))).astype(np.complex64)
        gt = GroundTruth(
            views=views,
            pixel_size_m=4.9e-8,
            edge_points_m=rng.standard_normal((30, 3)) * 1e-6,
            edge_labels=rng.integers(0, 2, 30).astype(np.int8),
            description="cross lid, tilt 10 deg",
        )
    return Shot(
        frame=frame,
        mask=mask,
        wavelength_m=2.4e-8,
        distance_m=0.026,
        detector_pixel_m=2.7e-5,
        angles_deg=(9.5, 9.5),
        centres_px=np.array([[24.0, 20.5], [24.0, 60.25]]),
        pattern_size=n,
        sample="cross",
        truth=gt,
        extra={
            "seed": 7,
            "note": "simulated",
            "flux": 3.5e7,
            "hdr": True,
            "exposures_s": [30.0, 240.0],
            "labels": ["short", "long"],
        },
    )


def assert_shots_equal(a: Shot, b: Shot) -> None:
    np.testing.assert_array_equal(a.frame, b.frame)
    assert a.frame.dtype == b.frame.dtype == np.float32
    np.testing.assert_array_equal(a.mask, b.mask)
    assert b.mask.dtype == np.uint32
    assert (a.wavelength_m, a.distance_m, a.detector_pixel_m) == (
        b.wavelength_m,
        b.distance_m,
        b.detector_pixel_m,
    )
    assert tuple(a.angles_deg) == tuple(b.angles_deg)
    np.testing.assert_array_equal(a.centres_px, b.centres_px)
    assert a.pattern_size == b.pattern_size and a.sample == b.sample
    assert a.extra == b.extra and {k: type(v) for k, v in a.extra.items()} == {
        k: type(v) for k, v in b.extra.items()
    }
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
    shot = read_shot(
        fixtures_dir / PETRA,
        frame=3,
        angles_deg=(4.0, 5.0),
        centres_px=[[50.0, 25.0], [50.0, 75.0]],
        pattern_size=32,
    )
    assert shot.frame.shape == (100, 100) and shot.angles_deg == (4.0, 5.0)
    assert shot.distance_m == pytest.approx(1.12) and shot.detector_pixel_m == pytest.approx(55e-6)


def _bad_shot_file(tmp_path, rng, fn):
    path = write_shot(
        tmp_path / f"bad{len(list(tmp_path.glob('bad*.cxi')))}.cxi", make_shot(rng, truth=False)
    )
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
    p = _bad_shot_file(
        tmp_path, rng, _replace("entry_1/instrument_1/detector_1/data", np.ones(7, np.float32))
    )
    cases.append(("1D", p, read_shot, "1 dimensions"))
    p = _bad_shot_file(tmp_path, rng, _replace("entry_1/instrument_1/detector_1/data", np.ones((2, 48, 80))))
    cases.append(("3D", p, read_shot, "2 frames"))
    p = _bad_shot_file(tmp_path, rng, _replace("entry_1/stereo_1/angles", np.array([9.5, 75.0])))
    cases.append(("angle", p, read_shot, "angles"))
    p = _bad_shot_file(tmp_path, rng, _replace("entry_1/data_1/data", h5py.SoftLink("/entry_1/nothing")))
    cases.append(("dangling link", p, read_shot, "cannot be resolved"))
    np.save(tmp_path / "one.npy", np.ones(5))
    cases.append(("1D npy", tmp_path / "one.npy", read_pattern, "1 dimensions"))
    np.save(
        tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True
    )  # never loaded with pickle
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


def test_views_round_trip(tmp_path, xp):
    rng = np.random.default_rng(6)
    n = 24
    views = (rng.standard_normal((2, n, n)) + 1j * rng.standard_normal((2, n, n))).astype(np.complex64)
    supports = rng.random((2, n, n)) > 0.5
    prtf = rng.random((2, 12)).astype(np.float32)
    errors = rng.random(45)
    params = {
        "runs": 45,
        "beta": 0.9,
        "angles_deg": (9.5, 9.5),
        "threshold": np.float32(0.25),
        "nan": float("nan"),
    }
    path = write_views(
        tmp_path / "views.cxi",
        xp.asarray(views),
        supports=xp.asarray(supports),
        pixel_size_m=4.9e-8,
        parameters=params,
        extra={"prtf": xp.asarray(prtf), "run_errors": errors},
    )
    back, info = read_views(path)
    np.testing.assert_array_equal(back, views)
    assert back.dtype == np.complex64
    np.testing.assert_array_equal(info["supports"], supports)
    assert info["pixel_size_m"] == 4.9e-8 and info["names"] == ["left", "right"]
    assert info["parameters"] == {
        "runs": 45,
        "beta": 0.9,
        "angles_deg": [9.5, 9.5],
        "threshold": 0.25,
        "nan": None,
    }
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
    path = write_views(
        tmp_path / "view.cxi",
        view,
        supports=np.ones((1, 8, 8), bool),
        pixel_size_m=float("nan"),
        parameters={},
        names=("view",),
        extra={"best_eps": np.arange(5.0)[None]},
    )
    back, info = read_views(path)
    np.testing.assert_array_equal(back, view)
    assert info["pixel_size_m"] is None and info["names"] == ["view"] and info["parameters"] == {}
    assert info["extra"]["best_eps"].shape == (1, 5)
    with pytest.raises(InputError, match="pixel_size_m"):
        write_views(
            tmp_path / "bad.cxi",
            view,
            supports=np.ones((1, 8, 8), bool),
            pixel_size_m=-1.0,
            parameters={},
            names=("view",),
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["view.cxi"]


def test_geometry_units_round_trip(tmp_path):
    """Pixel size of the views follows lambda D / (N p) from the file's geometry."""
    shot = make_shot(np.random.default_rng(8), truth=False)
    back = read_shot(write_shot(tmp_path / "g.cxi", shot))
    assert math.isclose(back.pixel_size_m, 2.4e-8 * 0.026 / (16 * 2.7e-5), rel_tol=1e-12)


def _hdr_shot(rng, *, e=2) -> Shot:
    h, w, n = 40, 64, 16
    frames = rng.poisson(50.0, size=(e, h, w)).astype(np.float32)
    masks = np.zeros((e, h, w), np.uint32)
    masks[:, 20, 10:12] = MASK_SHADOWED
    masks[-1, 20, 20] = MASK_SATURATED
    views = (rng.standard_normal((2, n, n)) + 1j * rng.standard_normal((2, n, n))).astype(np.complex64)
    gt = GroundTruth(
        views=views,
        pixel_size_m=4.5e-8,
        edge_points_m=rng.standard_normal((12, 3)) * 1e-6,
        edge_labels=rng.integers(0, 2, 12).astype(np.int8),
        description="pyramid",
        extra={
            "pyramid_height_m": 1.8e-6,
            "n_spheres": 57,
            "closed": True,
            "name": "notch",
            "surface_points_m": rng.standard_normal((300, 3)) * 1e-6,
            "edge_hidden": rng.random(12) > 0.5,
            "big": rng.standard_normal(5000),
        },
    )
    return Shot(
        frame=frames,
        mask=masks,
        wavelength_m=2.4e-8,
        distance_m=0.026,
        detector_pixel_m=5.4e-5,
        angles_deg=(9.5, 9.5),
        centres_px=np.array([[20.0, 16.0], [20.0, 48.0]]),
        pattern_size=n,
        sample="cross",
        truth=gt,
        extra={"seed": 3},
        exposure_times_s=np.array([30.0, 240.0]),
    )


def test_hdr_shot_round_trip(tmp_path):
    shot = _hdr_shot(np.random.default_rng(0))
    assert shot.validate().n_exposures == 2 and shot.frame_shape == (40, 64)
    path = write_shot(tmp_path / "hdr.cxi", shot)
    back = read_shot(path)
    np.testing.assert_array_equal(back.frame, shot.frame)
    np.testing.assert_array_equal(back.mask, shot.mask)
    assert back.frame.dtype == np.float32 and back.mask.dtype == np.uint32
    np.testing.assert_array_equal(back.exposure_times_s, [30.0, 240.0])
    assert back.extra == {"seed": 3}
    tx, bx = shot.truth.extra, back.truth.extra
    assert set(bx) == set(tx)
    assert bx["pyramid_height_m"] == 1.8e-6 and isinstance(bx["pyramid_height_m"], float)
    assert bx["n_spheres"] == 57 and bx["closed"] is True and bx["name"] == "notch"
    for key in ("surface_points_m", "edge_hidden", "big"):
        np.testing.assert_array_equal(bx[key], tx[key])
        assert bx[key].dtype == tx[key].dtype
    with h5py.File(path) as f:
        assert f["entry_1/data_1/data"].shape == (2, 40, 64)
        assert f["entry_1/stereo_1/exposure_times"].attrs["units"] == "s"
        np.testing.assert_array_equal(f["entry_1/instrument_1/detector_1/count_time"][()], [30.0, 240.0])
    # one exposure picked out of the series
    one = read_shot(path, frame=1)
    np.testing.assert_array_equal(one.frame, shot.frame[1])
    np.testing.assert_array_equal(one.mask, shot.mask[1])
    np.testing.assert_array_equal(one.exposure_times_s, [240.0])
    # the whole series goes through prepare
    inten, valid = split_patterns(
        back.frame, back.mask, back.centres_px, back.pattern_size, exposure_times_s=back.exposure_times_s
    )
    assert (
        inten.shape == (2, 16, 16) and not valid[0, 8, 2:4].any() and valid[0, 8, 4]
    )  # beamstop (20, 10:12)


def test_single_frame_shot_keeps_its_layout(tmp_path):
    shot = _hdr_shot(np.random.default_rng(1))
    single = Shot(
        frame=shot.frame[0],
        mask=shot.mask[0],
        wavelength_m=shot.wavelength_m,
        distance_m=shot.distance_m,
        detector_pixel_m=shot.detector_pixel_m,
        angles_deg=shot.angles_deg,
        centres_px=shot.centres_px,
        pattern_size=shot.pattern_size,
    )
    path = write_shot(tmp_path / "one.cxi", single)
    back = read_shot(path)
    assert back.exposure_times_s is None and back.frame.shape == (40, 64) and back.n_exposures == 1
    with h5py.File(path) as f:
        assert "exposure_times" not in f["entry_1/stereo_1"]
        assert "count_time" not in f["entry_1/instrument_1/detector_1"]
    timed = Shot(**{**single.__dict__, "exposure_times_s": np.array([30.0])})
    back = read_shot(write_shot(tmp_path / "timed.cxi", timed))
    np.testing.assert_array_equal(back.exposure_times_s, [30.0])


def test_bad_exposure_times(tmp_path):
    rng = np.random.default_rng(2)
    for times, found in (
        (np.array([30.0, -240.0]), "-240"),
        (np.array([30.0]), "1 times"),
        (np.array([30.0, 240.0, 10.0]), "3 times"),
        (None, "None"),
    ):
        shot = _hdr_shot(rng)
        shot.exposure_times_s = times
        with pytest.raises(InputError, match="exposure_times_s") as exc:
            shot.validate()
        assert found in exc.value.found
    shot = _hdr_shot(rng)
    shot.mask = shot.mask[0]
    with pytest.raises(InputError, match="mask"):
        shot.validate()
    # in a file: a time count that does not match the stack, and non-positive times
    path = write_shot(tmp_path / "hdr.cxi", _hdr_shot(rng))
    for name, value, found in (
        ("three.cxi", [30.0, 240.0, 5.0], "3 times for a stack of 2 frames"),
        ("zero.cxi", [30.0, 0.0], "0.0"),
    ):
        bad = tmp_path / name
        bad.write_bytes(path.read_bytes())
        with h5py.File(bad, "a") as f:
            del f["entry_1/stereo_1/exposure_times"]
            f["entry_1/stereo_1/exposure_times"] = np.array(value)
        with pytest.raises(InputError, match="exposure_times") as exc:
            read_shot(bad)
        assert name in exc.value.where and found in exc.value.found
    # truth.extra values that are not numbers
    shot = _hdr_shot(rng)
    shot.truth.extra["bad"] = {"a": 1}
    with pytest.raises(InputError, match="truth.extra"):
        write_shot(tmp_path / "x.cxi", shot)
