"""Staged outputs (xstereo_gpu.io.staging): atomic files, output directories, what appears meanwhile,
stale temporaries."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from _helpers import temporaries

from xstereo_gpu.errors import InputError
from xstereo_gpu.io import atomic_file, output_directory
from xstereo_gpu.io.staging import _stamp, remove_stale


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_output_directory_never_replaces_what_appeared(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(InputError) as err:
        with output_directory(out) as tmp:
            (tmp / "mine.txt").write_text("mine")
            out.mkdir()  # another run finished first
            (out / "theirs.txt").write_text("theirs")
    assert sorted(p.name for p in out.iterdir()) == ["theirs.txt"]
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("run.kept-")]
    assert len(kept) == 1 and (kept[0] / "mine.txt").read_text() == "mine"
    assert str(kept[0]) in str(err.value) and "appeared" in str(err.value)
    assert temporaries(tmp_path) == []


def test_output_directory_empty_target_filled_meanwhile(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(InputError, match="appeared in the empty directory"):
        with output_directory(out) as tmp:
            (tmp / "mine.txt").write_text("mine")
            (out / "theirs.txt").write_text("theirs")
    assert sorted(p.name for p in out.iterdir()) == ["theirs.txt"]
    assert len(list(tmp_path.glob("run.kept-*"))) == 1


def test_output_directory_overwrite_refuses_a_replaced_directory(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(InputError, match="replaced the one found at the start"):
        with output_directory(out, overwrite=True) as tmp:
            (tmp / "mine.txt").write_text("mine")
            os.rename(out, tmp_path / "moved")
            out.mkdir()
            (out / "theirs.txt").write_text("theirs")
    assert sorted(p.name for p in out.iterdir()) == ["theirs.txt"]
    with output_directory(out, overwrite=True) as tmp:  # and the plain overwrite swaps it
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert temporaries(tmp_path) == []


def test_output_directory_refuses_inputs_and_the_current_directory(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "shot.cxi").write_bytes(b"input")
    with pytest.raises(InputError, match="inside it"):
        with output_directory(out, overwrite=True, inputs=[out / "shot.cxi"]):
            pass
    link = tmp_path / "link.cxi"
    link.symlink_to(out / "shot.cxi")  # an input reached through a link is still inside
    with pytest.raises(InputError, match="inside it"):
        with output_directory(out, overwrite=True, inputs=[link]):
            pass
    monkeypatch.chdir(out)
    for target in (".", tmp_path):
        with pytest.raises(InputError, match="current directory"):
            with output_directory(target, overwrite=True):
                pass
    assert (out / "shot.cxi").read_bytes() == b"input"
    assert temporaries(tmp_path) == []


def test_atomic_file_without_replace_keeps_both(tmp_path):
    target = tmp_path / "shot.cxi"
    with pytest.raises(InputError) as err:
        with atomic_file(target, replace=False) as tmp:
            tmp.write_text("mine")
            target.write_text("theirs")
    assert target.read_text() == "theirs"
    kept = list(tmp_path.glob("shot.cxi.kept-*.cxi"))
    assert len(kept) == 1 and kept[0].read_text() == "mine" and str(kept[0]) in str(err.value)
    with pytest.raises(InputError, match="an existing file"):
        with atomic_file(target, replace=False):
            pass


def test_remove_stale_only_dead_local_writers(tmp_path):
    target = tmp_path / "run"
    host_pid = _stamp().rsplit("-", 2)[0]
    dead = _dead_pid()
    stale_dir = tmp_path / f"run.tmp-{host_pid.split('-')[0]}-{dead}-0123abcd"
    stale_file = tmp_path / f"run.tmp-{host_pid.split('-')[0]}-{dead}-89abcdef.cxi"
    live = tmp_path / f"run.tmp-{host_pid.split('-')[0]}-{os.getpid()}-01234567"
    other_host = tmp_path / f"run.tmp-elsewhere-{dead}-76543210"
    unrelated = tmp_path / f"runner.tmp-{host_pid.split('-')[0]}-{dead}-0123abcd"
    for d in (stale_dir, live, other_host, unrelated):
        d.mkdir()
        (d / "half.tif").write_bytes(b"x")
    stale_file.write_bytes(b"x")
    removed = remove_stale(target)
    assert sorted(removed) == sorted([stale_dir, stale_file])
    assert live.exists() and other_host.exists() and unrelated.exists()
    # a swap killed between its renames: the old directory comes back instead of being removed
    old = tmp_path / f"run.old-{host_pid.split('-')[0]}-{dead}-0a0b0c0d"
    old.mkdir()
    (old / "results.txt").write_text("earlier")
    remove_stale(target)
    assert (target / "results.txt").read_text() == "earlier" and not old.exists()


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
