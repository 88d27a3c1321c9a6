"""The bad-input contract of the ``xstereo`` command.

Bad input ends with a message on stderr naming the file or field, the value found and what was
expected, exit status 2, and no partial outputs: no output file or directory, no ``*.tmp-*``
sibling, and an existing output directory left as it was. The CLI is called in-process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import shutil

import h5py
import numpy as np
import pytest
from _helpers import (
    DATA,
    DATA_LINK,
    PETRA,
    TINY,
    copy_inside,
    elsewhere,
    link_data,
    make_ext,
    make_raw,
    make_vds,
)

from xstereo_gpu.cli import main

#: The same for ``phase``, which has no --no-figures.
TINY_PHASE = ["--runs", "2", "--iterations", "10", "-q"]
ANGLES = "/entry_1/stereo_1/angles"


# -- helpers ---------------------------------------------------------------------------------------


def _digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(folder: pathlib.Path) -> dict[str, str]:
    """Relative path -> content hash of every file below ``folder`` ("<dir>" for folders)."""
    return {
        str(p.relative_to(folder)): ("<dir>" if p.is_dir() else _digest(p)) for p in sorted(folder.rglob("*"))
    }


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
    return _corrupt(shot, tmp / "noangles.cxi", lambda f: f.__delitem__(ANGLES)), [
        "noangles.cxi",
        ANGLES,
        "missing dataset",
    ]


def _nan_pixel(tmp, shot):
    return _corrupt(shot, tmp / "nan.cxi", _set_pixel(np.nan)), [
        "nan.cxi",
        "frame",
        "1 NaN/inf pixels",
        "finite",
    ]


def _negative_pixel(tmp, shot):
    return _corrupt(shot, tmp / "neg.cxi", _set_pixel(-7.0)), [
        "neg.cxi",
        "frame",
        "1 negative",
        "-7",
        "non-negative",
    ]


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


@pytest.mark.parametrize(
    "make",
    [
        _missing,
        _text,
        _truncated,
        _no_angles,
        _nan_pixel,
        _negative_pixel,
        _data_3d,
        _data_1d,
        _angles_70,
        _hdr_times_mismatch,
        _hdr_times_negative,
    ],
    ids=lambda f: f.__name__.lstrip("_"),
)
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
    err = _fails(
        ["simulate", "--angles", "70", "9.5", "-o", out, "--binning", "8", "--pattern-size", "128", "-q"],
        capsys,
    )
    assert "angles_deg[0]" in err and "70" in err and "(0, 60)" in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


# -- 3. geometry with a bad angle ------------------------------------------------------------------


@pytest.mark.parametrize(
    "angles, index, value", [(("0", "9.5"), 0, "0.0"), (("9.5", "-3"), 1, "-3.0"), (("9.5", "nan"), 1, "nan")]
)
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


@pytest.mark.parametrize(
    "extra", [["--angles", "9.5", "9.5"], ["--pixel-size", "45e-9"]], ids=["angles-only", "pixel-size-only"]
)
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


@pytest.mark.parametrize(
    "argv",
    [
        ["geometry", "--pixel-size", "49e-9", "--angles", "9.5"],
        ["run", "shot.cxi"],
        ["phase", "p.npy", "-o", "out", "--frame", "two"],
    ],
    ids=["one-angle", "no-output", "frame-not-int"],
)
def test_usage_errors_exit_2(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:  # argparse reports usage errors itself, with status 2
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: xstereo" in err and "error:" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "content, expected",
    [
        ("1 2 3 4\n5 6 7 8\n", ["pts.txt", "shape (2, 4)", "at least 4 rows"]),
        ("1 2 3\n" * 5, ["pts.txt", "shape (5, 3)", "at least 4 rows of 4"]),
        ("a b c d\n" * 5, ["pts.txt", "unreadable numbers", "rows of 4 numbers"]),
    ],
)
def test_run_bad_rectification_points(content, expected, shot_file, tmp_path, capsys):
    pts = tmp_path / "pts.txt"
    pts.write_text(content)
    out = tmp_path / "out"
    err = _fails(["run", shot_file, "-o", out, "--points", pts, *TINY], capsys)
    for text in expected:
        assert text in err, f"{text!r} not in {err!r}"
    assert not out.exists()
    _no_leftovers(tmp_path)


# -- 8. one table of bad inputs: files, options and silent wrong results (issue 11) ----------------
#
# Each row builds its bad input in tmp_path and returns a Case: the CLI argv, the exit status and the
# fragments that must appear in one stderr line (where, found, expected) -- an "error: " line, or a
# "warning: " line for what is suspicious but possible.

SAMPLE = "/entry_1/sample_1/name"
SOURCE = "/entry_1/instrument_1/source_1"
DETECTOR = "/entry_1/instrument_1/detector_1"


@dataclasses.dataclass
class Case:
    argv: list
    expected: list
    status: int = 2
    warning: bool = False
    keeps_output: bool | None = False  # True: a run that completed but found nothing keeps its views;
    # None: the output existed before the command (and is checked to be left as it was)


REFUSED = ["inside", "the input file's directory", "--allow-external-data"]


def _c_external_link(tmp, shot):
    out = elsewhere(tmp, shot)
    p = link_data(copy_inside(tmp, shot), make_ext(str(out / "frame.h5")))
    return Case(
        ["run", p, "-o", tmp / "out", *TINY],
        ["shot.cxi:" + DATA_LINK, f"an HDF5 external link to {out / 'frame.h5'}:/frame", *REFUSED],
    )


def _c_external_link_relative(tmp, shot):
    out = elsewhere(tmp, shot)
    p = link_data(copy_inside(tmp, shot), make_ext("../elsewhere/frame.h5"))
    return Case(
        ["run", p, "-o", tmp / "out", *TINY],
        [
            "shot.cxi:" + DATA_LINK,
            "external link to ../elsewhere/frame.h5",
            f"(= {out / 'frame.h5'})",
            *REFUSED,
        ],
    )


def _c_external_link_via_symlink(tmp, shot):
    # a target that is inside the folder by name but a symlink to a file outside it
    out = elsewhere(tmp, shot)
    p = copy_inside(tmp, shot)
    (p.parent / "frame.h5").symlink_to(out / "frame.h5")
    link_data(p, make_ext("frame.h5"))
    return Case(
        ["run", p, "-o", tmp / "out", *TINY],
        ["shot.cxi:" + DATA_LINK, "external link to frame.h5", f"(= {out / 'frame.h5'})", *REFUSED],
    )


def _c_external_raw(tmp, shot):
    out = elsewhere(tmp, shot)
    p = link_data(copy_inside(tmp, shot), make_raw(str(out / "frame.raw")))
    return Case(
        ["run", p, "-o", tmp / "out", *TINY],
        ["shot.cxi:" + DATA_LINK, f"external raw storage in {out / 'frame.raw'}", *REFUSED],
    )


def _c_external_raw_passwd(tmp, shot):
    p = link_data(copy_inside(tmp, shot), make_raw("/etc/passwd", np.uint8))
    return Case(
        ["run", p, "-o", tmp / "out", *TINY],
        ["shot.cxi:" + DATA_LINK, "external raw storage in /etc/passwd", *REFUSED],
    )


def _c_virtual_dataset(tmp, shot):
    out = elsewhere(tmp, shot)
    p = link_data(copy_inside(tmp, shot), make_vds(str(out / "frame.h5")))
    return Case(
        ["run", p, "-o", tmp / "out", *TINY],
        ["shot.cxi:" + DATA_LINK, f"a virtual dataset with sources in {out / 'frame.h5'}", *REFUSED],
    )


def _c_virtual_dataset_missing_source(tmp, shot):
    p = link_data(copy_inside(tmp, shot), make_vds("gone.h5"))
    return Case(
        ["run", p, "-o", tmp / "out", *TINY, "--allow-external-data"],
        ["shot.cxi:" + DATA_LINK, "sources in gone.h5, a file that does not exist", "HDF5 would read zeros"],
    )


def _c_soft_link_loop(tmp, shot):
    def edit(f):
        del f[DATA_LINK]
        f[DATA_LINK] = h5py.SoftLink("/entry_1/data_1/other")
        f["/entry_1/data_1/other"] = h5py.SoftLink(DATA_LINK)

    p = _corrupt(shot, tmp / "loop.cxi", edit)
    return Case(
        ["run", p, "-o", tmp / "out", *TINY],
        [
            "loop.cxi:" + DATA_LINK,
            "a loop of links",
            "soft link /entry_1/data_1/data -> /entry_1/data_1/other",
            "no soft-link loop",
        ],
    )


def _c_stereo_views_external_link(tmp, shot):
    out = tmp / "elsewhere"
    out.mkdir()
    with h5py.File(out / "frame.h5", "w") as g:
        g["frame"] = np.random.default_rng(9).random((32, 32), dtype=np.float32)
    (tmp / "in").mkdir()
    p = tmp / "in" / "views.cxi"
    with h5py.File(p, "w") as f:
        f["entry_1/image_1/data"] = h5py.ExternalLink(str(out / "frame.h5"), "/frame")
        f["entry_1/image_2/data"] = np.zeros((32, 32), np.float32)
    return Case(
        ["stereo", p, p, "-o", tmp / "out", "-q"],
        ["views.cxi:/entry_1/image_1/data", "an HDF5 external link to", *REFUSED],
    )


def _config(tmp, shot, text):
    cfg = tmp / "opts.toml"
    cfg.write_text(text)
    return ["run", shot, "-o", tmp / "out", "--config", cfg, *TINY]


def _c_config_string_for_int(tmp, shot):
    return Case(
        _config(tmp, shot, '[phasing]\nruns = "many"\n'),
        ["opts.toml: [phasing] runs", "found 'many' (a string)", "expected an integer"],
    )


def _c_config_float_for_int(tmp, shot):
    return Case(
        _config(tmp, shot, "[match]\nblock = 3.0\n"),
        ["opts.toml: [match] block", "3.0 (a float)", "an integer"],
    )


def _c_config_list_for_number(tmp, shot):
    return Case(
        _config(tmp, shot, "[phasing]\nbeta = [0.8, 0.9]\n"),
        ["opts.toml: [phasing] beta", "[0.8, 0.9] (a list)", "expected a number"],
    )


def _c_config_bool_for_int(tmp, shot):
    return Case(
        _config(tmp, shot, "[phasing]\nruns = true\n"), ["[phasing] runs", "True (a boolean)", "an integer"]
    )


def _c_config_unknown_key(tmp, shot):
    return Case(
        _config(tmp, shot, "[phasing]\nrns = 4\n"),
        ["opts.toml: [phasing] rns", "an unknown key (did you mean 'runs'?)", "'iterations'"],
    )


def _c_config_unknown_section(tmp, shot):
    return Case(
        _config(tmp, shot, "[phasingg]\nruns = 4\n"),
        ["opts.toml: [phasingg]", "an unknown section (did you mean 'phasing'?)", "[match]"],
    )


def _c_config_out_of_range(tmp, shot):
    return Case(
        _config(tmp, shot, "[phasing]\nruns = 0\n"),
        ["opts.toml: [phasing] runs", "found 0", "a positive integer"],
    )


def _c_bool_frame(tmp, shot):
    p = _corrupt(shot, tmp / "bits.cxi", lambda f: _replace_data(f, lambda d: d > 2))
    return Case(
        ["run", p, "-o", tmp / "out", *TINY], ["bits.cxi:" + DATA_LINK, "dtype bool", "photon counts"]
    )


def _c_bool_npy(tmp, shot):
    p = tmp / "bits.npy"
    np.save(p, np.random.default_rng(1).random((32, 32)) > 0.5)
    return Case(
        ["phase", p, "-o", tmp / "out", *TINY_PHASE], ["bits.npy", "dtype bool", "a bool array is a mask"]
    )


def _c_uint8_saturated(tmp, shot):
    p = tmp / "u8.npy"
    np.save(p, np.clip(np.random.default_rng(2).poisson(250.0, (32, 32)), 0, 255).astype(np.uint8))
    return Case(
        ["phase", p, "-o", tmp / "out", *TINY_PHASE],
        ["u8.npy", "uint8 counts with", "at 255, the uint8 maximum", "uint16/uint32/float32", "0x2"],
        status=0,
        warning=True,
    )


def _c_constant_npy(tmp, shot):
    p = tmp / "flat.npy"
    np.save(p, np.full((32, 32), 5.0, np.float32))
    return Case(
        ["phase", p, "-o", tmp / "out", *TINY_PHASE],
        ["flat.npy", "a constant pattern: all 1024 unmasked pixels are 5", "cannot be phased"],
    )


def _c_constant_shot(tmp, shot):
    p = _corrupt(shot, tmp / "flat.cxi", lambda f: _replace_data(f, lambda d: np.full_like(d, 3.0)))
    return Case(
        ["run", p, "-o", tmp / "out", *TINY],
        ["flat.cxi: frame", "a constant frame: all", "unmasked pixels are 3", "cannot be phased"],
    )


def _c_tiny_angles(tmp, shot):
    def edit(f):
        f[ANGLES][...] = [1e-6, 1e-6]

    p = _corrupt(shot, tmp / "tiny.cxi", edit)
    return Case(
        ["run", p, "-o", tmp / "out", *TINY],
        [
            "tiny.cxi:" + ANGLES,
            "1e-06 + 1e-06 deg",
            "voxel depth of 2.86e+07 view pixels",
            "tan t1 + tan t2 >= 0.001",
        ],
    )


def _c_tiny_angles_option(tmp, shot):
    return Case(
        ["run", shot, "-o", tmp / "out", "--angles", "1e-6", "1e-6", *TINY],
        ["--angles", "1e-06 + 1e-06 deg", "no depth information", "the paper: 3.5 to 9.5 deg"],
    )


def _c_small_angles_warning(tmp, shot):
    return Case(
        ["geometry", "--pixel-size", "49e-9", "--angles", "0.5", "0.5"],
        ["--angles", "0.5 + 0.5 deg", "a voxel depth of 57.3 view pixels", "a few degrees"],
        status=0,
        warning=True,
    )


def _c_wavelength_1m(tmp, shot):
    def edit(f):
        f[SOURCE + "/wavelength"][...] = 1.0

    p = _corrupt(shot, tmp / "radio.cxi", edit)
    return Case(
        ["run", p, "-o", tmp / "out", *TINY],
        ["radio.cxi:" + SOURCE + "/wavelength", "found 1 m, not a possible wavelength", "10 pm .. 100 nm"],
    )


def _c_wavelength_1m_option(tmp, shot):
    return Case(
        ["run", shot, "-o", tmp / "out", "--wavelength", "1", *TINY],
        ["--wavelength", "found 1 m", "not a possible wavelength", "in metres"],
    )


def _c_wavelength_visible_warning(tmp, shot):
    p = tmp / "optical.npy"
    np.save(p, np.random.default_rng(3).poisson(4.0, (32, 32)).astype(np.float32))
    return Case(
        [
            "phase",
            p,
            "-o",
            tmp / "out",
            "--wavelength",
            "5e-7",
            "--distance",
            "0.05",
            "--detector-pixel",
            "13.5e-6",
            *TINY_PHASE,
        ],
        ["--wavelength", "found 5e-07 m (500 nm)", "plausible: wavelength in 10 pm .. 100 nm"],
        status=0,
        warning=True,
    )


def _c_distance_in_mm(tmp, shot):
    def edit(f):
        f[DETECTOR + "/distance"][...] = 150.0  # 150 mm written as metres

    p = _corrupt(shot, tmp / "mm.cxi", edit)
    return Case(
        ["run", p, "-o", tmp / "out", *TINY],
        [
            "mm.cxi:" + DETECTOR + "/distance",
            "found 150 m",
            "5 mm .. 20 m",
            "refused outside 100 um .. 100 m",
        ],
        status=2,
    )


def _c_pixel_in_um(tmp, shot):
    return Case(
        ["run", shot, "-o", tmp / "out", "--detector-pixel", "13.5", *TINY],
        ["--detector-pixel", "found 13.5 m", "not a possible detector pixel", "1 um .. 1 mm"],
    )


def _c_no_valid_matches_run(tmp, shot):
    out = tmp / "out"
    return Case(
        ["run", shot, "-o", out, "--range", "300", "310", *TINY],
        [
            "stereo: found 0 valid disparities",
            "range [300, 310]",
            "--range DMIN DMAX",
            "--block",
            "--thresholds",
            f"kept in {out / 'views.cxi'}",
            "xstereo stereo",
        ],
        keeps_output=True,
    )


def _c_no_valid_matches_stereo(tmp, shot):
    left, right = tmp / "left.npy", tmp / "right.npy"
    np.save(left, np.full((32, 32), 0.5, np.float32))
    np.save(right, np.full((32, 32), 0.5, np.float32))
    return Case(
        ["stereo", left, right, "-o", tmp / "out", "-q", "--recipe", "cross"],
        [
            "left.npy",
            "right.npy",
            "stereo: found 0 valid disparities",
            "none of the 16384 matching-grid pixels",
            "--range",
            "--block",
        ],
    )


def _c_no_sample_name(tmp, shot):
    p = _corrupt(shot, tmp / "anon.cxi", lambda f: f.__delitem__(SAMPLE))
    return Case(
        ["run", p, "-o", tmp / "out", *TINY],
        [
            "anon.cxi:" + SAMPLE,
            "found no sample name",
            "profile is used",
            "--recipe {cross,phase-cross,pyramid,clusters,curve,rough-surface,natural}",
        ],
        status=0,
        warning=True,
    )


def _c_unknown_sample_name(tmp, shot):
    def edit(f):
        del f[SAMPLE]
        f[SAMPLE] = "foam"

    p = _corrupt(shot, tmp / "foam.cxi", edit)
    return Case(
        ["run", p, "-o", tmp / "out", *TINY],
        [
            "foam.cxi:" + SAMPLE,
            "the sample name 'foam', which names no recipe",
            "profile is used",
            "--recipe",
        ],
        status=0,
        warning=True,
    )


def _c_no_signal_in_left_pattern(tmp, shot):
    def edit(f):
        def fn(d):
            d = d.copy()
            d[:, :128] = 0  # the left pattern (centre column 88) has no photons, the right one (168) has
            return d

        _replace_data(f, fn)

    p = _corrupt(shot, tmp / "dark.cxi", edit)
    return Case(
        ["run", p, "-o", tmp / "out", *TINY],
        [
            "dark.cxi:" + DATA_LINK + " (left pattern): phasing.intensities",
            "no signal in view 0",
            "positive intensities",
        ],
    )


def _c_no_signal_in_the_crop_cxi(tmp, shot):
    p = tmp / "corner.cxi"
    data = np.zeros((64, 64), np.float32)
    data[60, 60] = 100.0
    with h5py.File(p, "w") as f:
        f[DATA] = data
    return Case(
        ["phase", p, "-o", tmp / "out", "--centre", "16", "16", "--size", "16", *TINY_PHASE],
        [
            "corner.cxi:" + DATA + " (the 16x16 crop at (16.0, 16.0) phased): phasing.intensities",
            "no signal in view 0",
        ],
    )


def _c_declared_dataset_too_large(tmp, shot):
    def edit(f):
        det = f[DETECTOR]
        for name in ("data", "mask"):
            if name in det:
                del det[name]
        det.create_dataset(
            "data", shape=(50000, 50000), dtype="float32", chunks=(1000, 1000)
        )  # nothing written

    p = _corrupt(shot, tmp / "big.cxi", edit)
    return Case(["run", p, "-o", tmp / "out", *TINY], ["big.cxi", "50000 x 50000", "needs about", "GiB"])


def _c_phase_size_too_large(tmp, shot):
    p = tmp / "pattern.npy"
    np.save(p, np.random.default_rng(1).poisson(4.0, (32, 32)).astype(np.float32))
    return Case(
        ["phase", p, "-o", tmp / "out", "--size", "100000", *TINY_PHASE], ["--size", "needs about", "TiB"]
    )


def _c_pattern_size_twice_the_frame(tmp, shot):
    return Case(
        ["run", shot, "-o", tmp / "out", "--pattern-size", "512", *TINY],
        ["pattern size", "512", "256 x 256 frame"],
    )


def _c_demo_pattern_size_twice_the_frame(tmp, shot):
    return Case(
        ["demo", "--binning", "8", "--pattern-size", "512", "-o", tmp / "out", *TINY], ["pattern_size", "512"]
    )


def _c_output_holds_the_input(tmp, shot):
    out = tmp / "out"
    out.mkdir()
    p = out / "shot.cxi"
    shutil.copyfile(shot, p)
    return Case(
        ["run", p, "-o", out, "--overwrite", *TINY],
        [str(out), f"the input {p} inside it", "holds none of the inputs"],
        keeps_output=None,
    )


def _c_output_holds_the_config(tmp, shot):
    out = tmp / "out"
    out.mkdir()
    cfg = out / "opts.toml"
    cfg.write_text("[phasing]\nruns = 2\n")
    return Case(
        ["run", shot, "-o", out, "--overwrite", "--config", cfg, *TINY],
        [str(out), "opts.toml inside it", "holds none of the inputs"],
        keeps_output=None,
    )


def _c_output_is_an_ancestor_of_the_input(tmp, shot):
    (tmp / "a" / "b").mkdir(parents=True)
    p = tmp / "a" / "b" / "shot.cxi"
    shutil.copyfile(shot, p)
    return Case(
        ["run", p, "-o", tmp / "a", "--overwrite", *TINY], [str(tmp / "a"), "inside it"], keeps_output=None
    )


def _c_stereo_output_holds_a_view(tmp, shot):
    out = tmp / "out"
    out.mkdir()
    left = out / "left.npy"
    np.save(left, np.random.default_rng(2).random((32, 32), dtype=np.float32))
    return Case(
        ["stereo", left, left, "-o", out, "--overwrite", "-q"], ["left.npy inside it"], keeps_output=None
    )


def _c_simulate_onto_an_existing_file(tmp, shot):
    p = tmp / "shot.cxi"
    shutil.copyfile(shot, p)
    return Case(["simulate", "-o", p, "--no-hdr", "-q"], [str(p), "an existing file", "--overwrite"])


def _c_simulate_into_a_directory(tmp, shot):
    (tmp / "d").mkdir()
    return Case(
        ["simulate", "-o", tmp / "d", "--no-hdr", "-q"],
        [str(tmp / "d"), "an existing directory", "a file name"],
    )


def _c_simulate_run_option_without_shots(tmp, shot):
    return Case(
        ["simulate", "-o", tmp / "x.cxi", "--hit-rate", "0.5", "-q"],
        ["--hit-rate", "given without --shots", "--shots N"],
    )


def _c_simulate_run_bad_hit_rate(tmp, shot):
    return Case(
        ["simulate", "--shots", "5", "-o", tmp / "run", "--hit-rate", "1.5", "-q"],
        ["hit_rate", "1.5"],
    )


def _c_simulate_run_jitter_without_shots(tmp, shot):
    return Case(
        ["simulate", "-o", tmp / "x.cxi", "--position-jitter", "0.5", "-q"],
        ["--position-jitter", "given without --shots", "--shots N"],
    )


def _c_simulate_run_bad_position_jitter(tmp, shot):
    return Case(
        ["simulate", "--shots", "5", "-o", tmp / "run", "--position-jitter", "2", "-q"],
        ["position_jitter", "2", "a fraction in [0, 1]"],
    )


BAD_INPUTS = [
    _c_simulate_run_option_without_shots,
    _c_simulate_run_bad_hit_rate,
    _c_simulate_run_jitter_without_shots,
    _c_simulate_run_bad_position_jitter,
    _c_external_link,
    _c_external_link_relative,
    _c_external_link_via_symlink,
    _c_external_raw,
    _c_external_raw_passwd,
    _c_virtual_dataset,
    _c_virtual_dataset_missing_source,
    _c_soft_link_loop,
    _c_stereo_views_external_link,
    _c_config_string_for_int,
    _c_config_float_for_int,
    _c_config_list_for_number,
    _c_config_bool_for_int,
    _c_config_unknown_key,
    _c_config_unknown_section,
    _c_config_out_of_range,
    _c_bool_frame,
    _c_bool_npy,
    _c_uint8_saturated,
    _c_constant_npy,
    _c_constant_shot,
    _c_tiny_angles,
    _c_tiny_angles_option,
    _c_small_angles_warning,
    _c_wavelength_1m,
    _c_wavelength_1m_option,
    _c_wavelength_visible_warning,
    _c_distance_in_mm,
    _c_pixel_in_um,
    _c_no_valid_matches_run,
    _c_no_valid_matches_stereo,
    _c_no_sample_name,
    _c_unknown_sample_name,
    _c_no_signal_in_left_pattern,
    _c_no_signal_in_the_crop_cxi,
    _c_declared_dataset_too_large,
    _c_phase_size_too_large,
    _c_pattern_size_twice_the_frame,
    _c_demo_pattern_size_twice_the_frame,
    _c_output_holds_the_input,
    _c_output_holds_the_config,
    _c_output_is_an_ancestor_of_the_input,
    _c_stereo_output_holds_a_view,
    _c_simulate_onto_an_existing_file,
    _c_simulate_into_a_directory,
]


@pytest.mark.parametrize("make", BAD_INPUTS, ids=lambda f: f.__name__[3:])
def test_bad_input_table(make, shot_file, tmp_path, capsys):
    case = make(tmp_path, shot_file)
    inputs = [a for a in case.argv if isinstance(a, pathlib.Path) and a.is_file()]
    before = {p: _digest(p) for p in inputs}
    existing = _snapshot(tmp_path)
    rc = main([str(a) for a in case.argv])
    err = capsys.readouterr().err
    assert rc == case.status, f"exit status {rc}; stderr: {err}"
    assert "Traceback" not in err
    kind = "warning: " if case.warning else "error: "
    lines = [line for line in err.splitlines() if kind in line]
    assert lines, f"no {kind!r} line in {err!r}"
    hits = [line for line in lines if all(text in line for text in case.expected)]
    assert hits, f"no line with all of {case.expected} in {lines}"
    out = tmp_path / "out"
    if case.keeps_output is None:  # refused: whatever was there is left as it was
        assert _snapshot(tmp_path) == existing
    elif case.status == 2 and not case.keeps_output:
        assert not out.exists()
    if case.keeps_output:
        assert (out / "views.cxi").is_file()
    _no_leftovers(tmp_path)
    assert {p: _digest(p) for p in inputs} == before  # inputs are never modified


# -- 9. the opt-in --allow-external-data (links themselves: test_h5safe.py) ----------------------------


def test_allow_external_data_option(tmp_path, capsys):
    out = tmp_path / "elsewhere"
    out.mkdir()
    with h5py.File(out / "frame.h5", "w") as g:
        g["frame"] = np.random.default_rng(4).poisson(4.0, (32, 32)).astype(np.float32)
    (tmp_path / "in").mkdir()
    p = tmp_path / "in" / "pattern.cxi"
    with h5py.File(p, "w") as f:
        f[DATA] = h5py.ExternalLink(str(out / "frame.h5"), "/frame")
    err = _fails(["phase", p, "-o", tmp_path / "v1", *TINY_PHASE], capsys)
    assert "pattern.cxi:" + DATA in err and "--allow-external-data" in err
    rc = main([str(a) for a in ["phase", p, "-o", tmp_path / "v2", "--allow-external-data", *TINY_PHASE]])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "v2" / "view.cxi").is_file()
    from xstereo_gpu.cli import build_parser

    for argv in (["run", "s.cxi", "-o", "o"], ["stereo", "a.cxi", "b.cxi", "-o", "o"]):
        assert build_parser().parse_args(argv + ["--allow-external-data"]).allow_external_data
