"""The bad-input contract of the ``xstereo`` command.

Bad input ends with a message on stderr naming the file or field, the value found and what was
expected, exit status 2, and no partial outputs: no output file or directory, no ``*.tmp-*``
sibling, and an existing output directory left as it was. The CLI is called in-process.
"""

from __future__ import annotations

import hashlib
import pathlib
import shutil

import h5py
import numpy as np
import pytest

import xstereo_gpu
from xstereo_gpu.cli import main
from xstereo_gpu.errors import InputError

#: Tiny phasing/matching work for run-type commands (errors fire before it anyway).
TINY = ["--runs", "2", "--iterations", "10", "--no-figures", "-q"]
#: The same for ``phase``, which has no --no-figures.
TINY_PHASE = ["--runs", "2", "--iterations", "10", "-q"]
DATA = "/entry_1/instrument_1/detector_1/data"
ANGLES = "/entry_1/stereo_1/angles"
PETRA = "cdtools_petra3_p25_nearfield/PETRAIII_P25_Near_Field_Ptycho.cxi"


# -- helpers ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shot_file(tmp_path_factory) -> pathlib.Path:
    """A valid, small simulated shot: 256 x 256 frame (binning 8), two 128 px patterns, a smaller cross."""
    opts = xstereo_gpu.SimulationOptions(binning=8, pattern_size=128, cross_size_um=(3.0, 3.0), arm_width_um=1.0,
                                         supersample=1, seed=3)
    path = tmp_path_factory.mktemp("shot") / "shot.cxi"
    xstereo_gpu.write_shot(path, xstereo_gpu.simulate_shot(opts))
    return path


def _digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(folder: pathlib.Path) -> dict[str, str]:
    """Relative path -> content hash of every file below ``folder`` ("<dir>" for folders)."""
    return {str(p.relative_to(folder)): ("<dir>" if p.is_dir() else _digest(p)) for p in sorted(folder.rglob("*"))}


def _no_leftovers(root: pathlib.Path) -> None:
    left = [str(p) for pat in ("*.tmp-*", "*.old-*") for p in root.rglob(pat)]
    assert not left, f"partial outputs left behind: {left}"


def _fails(argv: list[str], capsys) -> str:
    """Run the CLI, check exit status 2 and one error line on stderr; return stderr."""
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    assert rc == 2, f"exit status {rc}; stderr: {cap.err}"
    assert "error: " in cap.err, cap.err
    assert "Traceback" not in cap.err
    return cap.err


def _corrupt(src: pathlib.Path, dst: pathlib.Path, edit) -> pathlib.Path:
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def _replace_data(f, fn) -> None:
    data = f[DATA][()]
    del f[DATA]
    f[DATA] = fn(data)


def _set_pixel(value):
    def edit(f):
        def fn(d):
            d = d.copy()
            d[128, 40] = value  # inside the left pattern's crop, unmasked
            return d
        _replace_data(f, fn)
    return edit


# -- 1. xstereo run on a bad shot ------------------------------------------------------------------

def _missing(tmp, shot):
    return tmp / "absent.cxi", ["absent.cxi", "no such file"]


def _text(tmp, shot):
    p = tmp / "shot.cxi"
    p.write_text("this is not HDF5\n")
    return p, ["shot.cxi", "not an HDF5 file"]


def _truncated(tmp, shot):
    p = tmp / "half.cxi"
    raw = shot.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    return p, ["half.cxi", "truncated"]


def _no_angles(tmp, shot):
    return _corrupt(shot, tmp / "noangles.cxi", lambda f: f.__delitem__(ANGLES)), \
        ["noangles.cxi", ANGLES, "missing dataset"]


def _nan_pixel(tmp, shot):
    return _corrupt(shot, tmp / "nan.cxi", _set_pixel(np.nan)), ["nan.cxi", "frame", "1 NaN/inf pixels", "finite"]


def _negative_pixel(tmp, shot):
    return _corrupt(shot, tmp / "neg.cxi", _set_pixel(-7.0)), ["neg.cxi", "frame", "1 negative", "-7", "non-negative"]


def _data_3d(tmp, shot):
    p = _corrupt(shot, tmp / "stack.cxi", lambda f: _replace_data(f, lambda d: np.stack([d, d, d])))
    return p, ["stack.cxi", "data", "3 frames", "(3, 256, 256)"]


def _hdr_times(times):
    def edit(f):
        _replace_data(f, lambda d: np.stack([d, d]))
        f["/entry_1/stereo_1/exposure_times"] = np.array(times, dtype=np.float64)
    return edit


def _hdr_times_mismatch(tmp, shot):
    p = _corrupt(shot, tmp / "hdr3.cxi", _hdr_times([30.0, 240.0, 10.0]))
    return p, ["hdr3.cxi", "/entry_1/stereo_1/exposure_times", "3 times for a stack of 2 frames", "(2,)"]


def _hdr_times_negative(tmp, shot):
    p = _corrupt(shot, tmp / "hdrneg.cxi", _hdr_times([30.0, -240.0]))
    return p, ["hdrneg.cxi", "/entry_1/stereo_1/exposure_times", "-240.0", "positive"]


def _data_1d(tmp, shot):
    p = _corrupt(shot, tmp / "flat.cxi", lambda f: _replace_data(f, np.ravel))
    return p, ["flat.cxi", "data", "1 dimensions", "(65536,)", "2D frame"]


def _angles_70(tmp, shot):
    def edit(f):
        f[ANGLES][...] = [70.0, 9.5]
    return _corrupt(shot, tmp / "wide.cxi", edit), ["wide.cxi", ANGLES + "[0]", "found 70.0 deg", "(0, 60)"]


@pytest.mark.parametrize("make", [_missing, _text, _truncated, _no_angles, _nan_pixel, _negative_pixel, _data_3d,
                                  _data_1d, _angles_70, _hdr_times_mismatch, _hdr_times_negative], ids=lambda f: f.__name__.lstrip("_"))
def test_run_bad_shot(make, shot_file, tmp_path, capsys):
    src, expected = make(tmp_path, shot_file)
    before = _digest(src) if src.exists() else None
    out = tmp_path / "out"
    err = _fails(["run", src, "-o", out, *TINY], capsys)
    for text in expected:
        assert text in err, f"{text!r} not in {err!r}"
    assert not out.exists()
    _no_leftovers(tmp_path)
    if before is not None:
        assert _digest(src) == before  # inputs are never modified


# -- 2. simulate with a bad angle ------------------------------------------------------------------

def test_simulate_bad_angles(tmp_path, capsys):
    out = tmp_path / "X.cxi"
    err = _fails(["simulate", "--angles", "70", "9.5", "-o", out, "--binning", "8", "--pattern-size", "128", "-q"],
                 capsys)
    assert "angles_deg[0]" in err and "70" in err and "(0, 60)" in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


# -- 3. geometry with a bad angle ------------------------------------------------------------------

@pytest.mark.parametrize("angles, index, value", [(("0", "9.5"), 0, "0.0"), (("9.5", "-3"), 1, "-3.0"),
                                                  (("9.5", "nan"), 1, "nan")])
def test_geometry_bad_angles(angles, index, value, capsys):
    err = _fails(["geometry", "--pixel-size", "49e-9", "--angles", *angles], capsys)
    assert f"angles[{index}]" in err and f"found {value} deg" in err and "(0, 60)" in err


def test_geometry_without_pixel_size(capsys):
    err = _fails(["geometry", "--angles", "9.5", "9.5", "--wavelength", "24e-9"], capsys)
    assert "--pixel-size" in err and "--distance" in err and "--size" in err


# -- 4. no signal: the support would be empty ------------------------------------------------------

def test_phase_all_zero_pattern(tmp_path, capsys):
    src = tmp_path / "zero.npy"
    np.save(src, np.zeros((64, 64), np.float32))
    out = tmp_path / "out"
    err = _fails(["phase", src, "-o", out, *TINY_PHASE], capsys)
    assert "zero.npy" in err and "no signal" in err and "4096 unmasked pixels are 0" in err
    assert not out.exists()
    _no_leftovers(tmp_path)


def test_phase_every_pixel_masked(tmp_path, capsys):
    src = tmp_path / "masked.cxi"
    rng = np.random.default_rng(0)
    with h5py.File(src, "w") as f:
        d = f.create_group("entry_1/instrument_1/detector_1")
        d["data"] = rng.poisson(5.0, (32, 32)).astype(np.float32)
        d["mask"] = np.ones((32, 32), np.uint32)
    out = tmp_path / "out"
    err = _fails(["phase", src, "-o", out, *TINY_PHASE], capsys)
    assert "masked.cxi" in err and "no signal" in err and "every one of the 1024 pixels is masked" in err
    assert not out.exists()
    _no_leftovers(tmp_path)


def test_phase_no_signal_in_the_crop(tmp_path, capsys):
    # the file has signal, but not in the crop that is phased: phasing itself refuses it
    src = tmp_path / "corner.npy"
    data = np.zeros((64, 64), np.float32)
    data[60, 60] = 100.0
    np.save(src, data)
    out = tmp_path / "out"
    err = _fails(["phase", src, "-o", out, "--centre", "16", "16", "--size", "16", *TINY_PHASE], capsys)
    assert "phasing.intensities" in err and "no signal in view 0" in err and "256 valid pixels are 0" in err
    assert "support would be empty" in err
    assert not out.exists()
    _no_leftovers(tmp_path)


def test_phasing_api_refuses_empty_input():
    opts = xstereo_gpu.PhasingOptions(runs=2, iterations=10)
    inten = np.zeros((2, 16, 16), np.float32)
    inten[0, 8, 8] = 50.0  # view 0 has signal, view 1 has none
    with pytest.raises(InputError, match=r"no signal in view 1: all 256 valid pixels are 0"):
        xstereo_gpu.PhaseRetrieval(inten, np.ones(inten.shape, bool), opts)
    inten[1, 8, 8] = 50.0
    valid = np.ones(inten.shape, bool)
    valid[1] = False
    with pytest.raises(InputError, match=r"no valid pixel in view 1 \(every pixel is masked\)") as err:
        xstereo_gpu.PhaseRetrieval(inten, valid, opts)
    assert err.value.where == "phasing.valid"
    support = np.ones(inten.shape, bool)
    support[0] = False
    with pytest.raises(InputError, match=r"empty support .* index \(0,\)") as err:
        xstereo_gpu.PhaseRetrieval(inten, None, opts, support=support)
    assert err.value.where == "phasing.support"
    pr = xstereo_gpu.PhaseRetrieval(inten, None, opts)  # the same data with signal everywhere is fine
    assert pr.support.shape == (2, 2, 16, 16) and bool(pr.support.any(axis=(-2, -1)).all())


# -- 5. a non-empty output directory -------------------------------------------------------------

def _inputs_for(command: str, shot: pathlib.Path, tmp: pathlib.Path) -> list:
    if command == "run":
        return [shot]
    if command == "demo":
        return ["--binning", "8", "--pattern-size", "128"]
    if command == "phase":
        p = tmp / "pattern.npy"
        np.save(p, np.random.default_rng(1).poisson(4.0, (32, 32)).astype(np.float32))
        return [p]
    left, right = tmp / "left.npy", tmp / "right.npy"
    rng = np.random.default_rng(2)
    np.save(left, rng.random((32, 32), dtype=np.float32))
    np.save(right, rng.random((32, 32), dtype=np.float32))
    return [left, right]


@pytest.mark.parametrize("command", ["run", "demo", "phase", "stereo"])
def test_non_empty_output_without_overwrite(command, shot_file, tmp_path, capsys):
    out = tmp_path / "results"
    (out / "figures").mkdir(parents=True)
    (out / "keep.txt").write_text("earlier results\n")
    (out / "figures" / "old.png").write_bytes(b"\x89PNG fake")
    before = _snapshot(out)
    tiny = {"stereo": ["-q"], "phase": TINY_PHASE}.get(command, TINY)
    err = _fails([command, *_inputs_for(command, shot_file, tmp_path), "-o", out, *tiny], capsys)
    assert str(out) in err and "a non-empty directory" in err and "--overwrite" in err
    assert _snapshot(out) == before
    _no_leftovers(tmp_path)


def test_output_is_a_file(shot_file, tmp_path, capsys):
    out = tmp_path / "results"
    out.write_text("not a folder\n")
    err = _fails(["run", shot_file, "-o", out, *TINY], capsys)
    assert str(out) in err and "an existing file" in err
    assert out.read_text() == "not a folder\n"
    _no_leftovers(tmp_path)


def test_run_overwrite_replaces_the_directory(shot_file, tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / "keep.txt").write_text("earlier results\n")
    rc = main(["run", str(shot_file), "-o", str(out), "--overwrite", *TINY])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    names = {p.name for p in out.iterdir()}
    assert "keep.txt" not in names
    assert {"views.cxi", "summary.json", "cloud.ply", "depth.tif"} <= names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # no tmp or old siblings
    _no_leftovers(tmp_path)


# -- 6. stereo ---------------------------------------------------------------------------------------

def test_stereo_shape_mismatch(tmp_path, capsys):
    rng = np.random.default_rng(5)
    left, right = tmp_path / "left.npy", tmp_path / "right.npy"
    np.save(left, rng.random((32, 32), dtype=np.float32))
    np.save(right, rng.random((32, 40), dtype=np.float32))
    out = tmp_path / "out"
    err = _fails(["stereo", left, right, "-o", out, "-q"], capsys)
    assert "right.npy" in err and "(32, 40)" in err and "(32, 32)" in err
    assert not out.exists()
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("extra", [["--angles", "9.5", "9.5"], ["--pixel-size", "45e-9"]],
                         ids=["angles-only", "pixel-size-only"])
def test_stereo_half_geometry(extra, tmp_path, capsys):
    rng = np.random.default_rng(6)
    left, right = tmp_path / "left.npy", tmp_path / "right.npy"
    np.save(left, rng.random((32, 32), dtype=np.float32))
    np.save(right, rng.random((32, 32), dtype=np.float32))
    out = tmp_path / "out"
    err = _fails(["stereo", left, right, "-o", out, "-q", *extra], capsys)
    assert "--angles/--pixel-size" in err and "only one of them given" in err and "both" in err
    assert not out.exists()
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("side", ["left", "right"])
def test_stereo_nan_in_image(side, tmp_path, capsys):
    rng = np.random.default_rng(7)
    images = {s: rng.random((32, 32), dtype=np.float32) for s in ("left", "right")}
    images[side][3, 4] = np.nan
    images[side][5, 6] = np.inf
    paths = {s: tmp_path / f"{s}.npy" for s in images}
    for s, img in images.items():
        np.save(paths[s], img)
    out = tmp_path / "out"
    err = _fails(["stereo", paths["left"], paths["right"], "-o", out, "-q"], capsys)
    assert f"{side}.npy" in err and "2 NaN/inf pixels" in err and "finite" in err
    assert not out.exists()
    _no_leftovers(tmp_path)


# -- 7. a 3D stack without --frame ----------------------------------------------------------------

def test_phase_petra_stack_without_frame(fixtures_dir, tmp_path, capsys):
    src = fixtures_dir / PETRA
    before = _digest(src)
    out = tmp_path / "out"
    err = _fails(["phase", src, "-o", out, *TINY_PHASE], capsys)
    assert "PETRAIII_P25_Near_Field_Ptycho.cxi" in err and "200 frames" in err and "--frame" in err
    assert not out.exists()
    _no_leftovers(tmp_path)
    assert _digest(src) == before


@pytest.mark.parametrize("frame", [None, 5, -1])
def test_phase_npy_stack_frame(frame, tmp_path, capsys):
    src = tmp_path / "stack.npy"
    np.save(src, np.random.default_rng(8).poisson(3.0, (4, 32, 32)).astype(np.float32))
    out = tmp_path / "out"
    argv = ["phase", src, "-o", out, *TINY_PHASE] + ([] if frame is None else ["--frame", str(frame)])
    err = _fails(argv, capsys)
    assert "stack.npy" in err and "4 frames" in err
    if frame is None:
        assert "a stack of 4 frames (4, 32, 32)" in err and "0 <= i < 4" in err
    else:
        assert f"frame={frame} but the stack has 4 frames" in err and "0 <= frame < 4" in err
    assert not out.exists()
    _no_leftovers(tmp_path)


# -- usage errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["geometry", "--pixel-size", "49e-9", "--angles", "9.5"],
                                  ["run", "shot.cxi"], ["phase", "p.npy", "-o", "out", "--frame", "two"]],
                         ids=["one-angle", "no-output", "frame-not-int"])
def test_usage_errors_exit_2(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:  # argparse reports usage errors itself, with status 2
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: xstereo" in err and "error:" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content, expected", [
    ("1 2 3 4\n5 6 7 8\n", ["pts.txt", "shape (2, 4)", "at least 4 rows"]),
    ("1 2 3\n" * 5, ["pts.txt", "shape (5, 3)", "at least 4 rows of 4"]),
    ("a b c d\n" * 5, ["pts.txt", "unreadable numbers", "rows of 4 numbers"]),
])
def test_run_bad_rectification_points(content, expected, shot_file, tmp_path, capsys):
    pts = tmp_path / "pts.txt"
    pts.write_text(content)
    out = tmp_path / "out"
    err = _fails(["run", shot_file, "-o", out, "--points", pts, *TINY], capsys)
    for text in expected:
        assert text in err, f"{text!r} not in {err!r}"
    assert not out.exists()
    _no_leftovers(tmp_path)
