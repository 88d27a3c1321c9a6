"""Links in input HDF5 files (xstereo_gpu.io.h5safe, through read_shot and read_pattern): followed inside
the input's directory, refused outside it unless allowed, checked all the way."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from _helpers import (
    DATA,
    DATA_LINK,
    copy_inside,
    elsewhere,
    link_data,
    make_ext,
    make_raw,
    make_vds,
)

import xstereo_gpu
from xstereo_gpu.errors import InputError


@pytest.mark.parametrize("kind", ["external link", "external raw", "virtual dataset"])
def test_links_inside_the_directory_are_followed(kind, shot_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the file's folder: relative names resolve against the file's
    p = copy_inside(tmp_path, shot_file)
    with h5py.File(shot_file, "r") as f:
        frame = f[DATA][()]
    with h5py.File(p.parent / "frame.h5", "w") as g:
        g["frame"] = frame
    frame.astype("<f4").tofile(p.parent / "frame.raw")
    make = {
        "external link": make_ext("frame.h5"),
        "external raw": make_raw("frame.raw"),
        "virtual dataset": make_vds("frame.h5"),
    }
    link_data(p, make[kind])
    shot = xstereo_gpu.read_shot(p)
    np.testing.assert_array_equal(shot.frame, frame)


def _outside_kinds(tmp, shot):
    out = elsewhere(tmp, shot)
    return {
        "external link": make_ext(str(out / "frame.h5")),
        "external raw": make_raw(str(out / "frame.raw")),
        "virtual dataset": make_vds(str(out / "frame.h5")),
    }


@pytest.mark.parametrize("kind", ["external link", "external raw", "virtual dataset"])
def test_allow_external_data_follows_outside_targets(kind, shot_file, tmp_path):
    make = _outside_kinds(tmp_path, shot_file)[kind]
    p = link_data(copy_inside(tmp_path, shot_file), make)
    with pytest.raises(InputError, match="allow-external-data") as err:
        xstereo_gpu.read_shot(p)
    assert err.value.where == f"{p}:{DATA_LINK}"
    with h5py.File(shot_file, "r") as f:
        frame = f[DATA][()]
    np.testing.assert_array_equal(xstereo_gpu.read_shot(p, allow_external_data=True).frame, frame)


def test_links_are_checked_all_the_way(shot_file, tmp_path):
    """A chain through an inside file to an outside one, a virtual source stored outside, an env prefix."""
    out = elsewhere(tmp_path, shot_file)
    p = copy_inside(tmp_path, shot_file)
    with h5py.File(p.parent / "hop.h5", "w") as g:  # inside, but itself a link to the outside
        g["frame"] = h5py.ExternalLink(str(out / "frame.h5"), "/frame")
    link_data(p, make_ext("hop.h5"))
    with pytest.raises(InputError, match=r"external link to .*elsewhere/frame.h5:/frame") as err:
        xstereo_gpu.read_shot(p)
    assert err.value.where == f"{p}:{DATA_LINK}"

    q = copy_inside(tmp_path, shot_file, "vds.cxi")
    with h5py.File(q.parent / "source.h5", "w") as g:  # a virtual source whose bytes are outside
        g.create_dataset(
            "frame", shape=(256, 256), dtype=np.float32, external=[(str(out / "frame.raw"), 0, 4 * 256 * 256)]
        )
    link_data(q, make_vds("source.h5"))
    with pytest.raises(InputError, match="external raw storage in .*elsewhere/frame.raw"):
        xstereo_gpu.read_shot(q)


def test_external_link_loop_between_files(tmp_path):
    a, b = tmp_path / "a.cxi", tmp_path / "b.h5"
    with h5py.File(a, "w") as f:
        f[DATA] = h5py.ExternalLink("b.h5", "/y")
    with h5py.File(b, "w") as f:
        f["y"] = h5py.ExternalLink("a.cxi", DATA)
    with pytest.raises(InputError, match="a loop of links") as err:
        xstereo_gpu.read_pattern(a)
    assert err.value.where == f"{a}:{DATA}"


def test_external_raw_prefix_from_the_environment(shot_file, tmp_path, monkeypatch):
    # HDF5 prefers HDF5_EXTFILE_PREFIX (read when the library starts) to the file's directory: a relative
    # name is checked against it too (here set late, so HDF5 itself would not use it: the check is stricter)
    out = elsewhere(tmp_path, shot_file)
    p = link_data(copy_inside(tmp_path, shot_file), make_raw("frame.raw"))
    monkeypatch.setenv("HDF5_EXTFILE_PREFIX", str(out))
    with pytest.raises(InputError, match=r"external raw storage in frame.raw \(= .*elsewhere/frame.raw\)"):
        xstereo_gpu.read_shot(p)
