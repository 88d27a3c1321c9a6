"""``xstereo batch`` end to end on a run written by ``xstereo simulate --shots``: statuses against the
manifest, the exit status, resume, the store read with plain h5py (issue 9)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from xstereo_gpu.cli import main

TINY = ["--recipe", "cross", "--runs", "2", "--iterations", "10", "-q"]
EXPECTED = {"hit": "ok", "blank": "blank", "corrupt": "failed"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("simulated") / "run"
    argv = [
        "simulate",
        "--shots",
        "10",
        "--hit-rate",
        "0.3",
        "--corrupt-fraction",
        "0.2",
        "--sample",
        "cross",
    ]
    assert main([*argv, "-o", str(out), "-q"]) == 0
    return out


def test_batch_statuses_follow_the_manifest_and_resume_recomputes_nothing(run_dir, tmp_path, capsys):
    store = tmp_path / "store"
    argv = ["batch", str(run_dir / "shot-*.cxi"), "-o", str(store), "--chunk-size", "4", *TINY]
    assert main(argv) == 3  # two corrupt files: the run goes on, the exit status reports them
    err = capsys.readouterr().err
    manifest = json.loads((run_dir / "manifest.json").read_text())["shots"]
    with h5py.File(store / "run.h5", "r") as f:
        table = f["summary"][()]
        offsets, points = f["clouds/offsets"][()], f["clouds/points_nm"][()]
    status = {int(r["index"]): r["status"].decode() for r in table}
    assert status == {s["index"]: EXPECTED[s["kind"]] for s in manifest}
    for r, row in enumerate(table):  # each ok shot has its cloud, blanks and failures none
        n = offsets[r + 1] - offsets[r]
        assert (n > 50) if row["status"] == b"ok" else (n == 0)
    assert np.isfinite(points).all()
    assert err.count("failed:") == 2 and "truncated" in err and "NaN" in err

    chunks = sorted(p.name for p in (store / "chunks").iterdir())
    assert len(chunks) == 3  # 10 shots in chunks of 4
    assert main(argv) == 3
    assert sorted(p.name for p in (store / "chunks").iterdir()) == chunks  # nothing recomputed
    assert "the store holds 10 of the 10 selected shots" in capsys.readouterr().out


def test_batch_selection_and_a_store_that_is_not_one(run_dir, tmp_path, capsys):
    store = tmp_path / "sel"
    files = [str(p) for p in sorted(run_dir.glob("shot-*.cxi"))]
    manifest = json.loads((run_dir / "manifest.json").read_text())["shots"]
    blank_files = [files[s["index"]] for s in manifest if s["kind"] == "blank"][:3]
    assert main(["batch", *blank_files, "-o", str(store), "--step", "2", *TINY]) == 0
    with h5py.File(store / "run.h5", "r") as f:
        assert [r.decode() for r in f["summary"]["status"]] == ["blank", "blank"]  # indices 0 and 2
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main(["batch", blank_files[0], "-o", str(tmp_path / "other"), *TINY]) == 2
    assert "not a run store" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["notes.txt"]


def test_batch_without_recipe_takes_each_shots_sample_recipe(run_dir, tmp_path, capsys):
    """No --recipe: the hit's sample name ("cross") chooses the recipe, so no recipe warning."""
    manifest = json.loads((run_dir / "manifest.json").read_text())["shots"]
    hit = next(run_dir / s["file"] for s in manifest if s["kind"] == "hit")
    tiny = [a for a in TINY if a not in ("--recipe", "cross")]
    assert main(["batch", str(hit), "-o", str(tmp_path / "s"), *tiny]) == 0
    assert "warning" not in capsys.readouterr().err
