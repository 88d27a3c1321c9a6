"""``xstereo batch`` end to end on a run written by ``xstereo simulate --shots``: statuses against the
manifest, the exit status, resume, the store read with plain h5py, two workers against this process,
the default cluster on a 50-shot run, progress and the final table (issue 9)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re

import h5py
import numpy as np
import pytest

from xstereo_gpu.batch import RunStore
from xstereo_gpu.cli import main

# tiny options (a hit in about 2 s on a CPU core); in this process unless a test says otherwise
FAST = ["--recipe", "cross", "--runs", "2", "--iterations", "10"]
TINY = [*FAST, "-q", "--workers", "0"]
EXPECTED = {"hit": "ok", "blank": "blank", "corrupt": "failed"}
PROGRESS = re.compile(r"^\[batch\] (\d+)/(\d+) \(\s*(\d+) %\)", re.MULTILINE)


def _simulate(out, shots: int, hit_rate: float, corrupt: float):
    argv = ["simulate", "--shots", str(shots), "--hit-rate", str(hit_rate)]
    argv += ["--corrupt-fraction", str(corrupt), "--sample", "cross", "-o", str(out), "-q"]
    assert main(argv) == 0
    return out


def _expected(run_dir) -> dict:
    manifest = json.loads((run_dir / "manifest.json").read_text())["shots"]
    return {s["index"]: EXPECTED[s["kind"]] for s in manifest}


def _main(argv) -> tuple[int, str, str]:
    """``main(argv)`` with its stdout and stderr captured (for module-scoped fixtures)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return _simulate(tmp_path_factory.mktemp("simulated") / "run", 10, 0.3, 0.2)


@pytest.fixture(scope="module")
def serial(run_dir, tmp_path_factory):
    """The run in this process (``--workers 0``): (store, exit status, stdout, stderr)."""
    store = tmp_path_factory.mktemp("serial") / "store"
    argv = ["batch", str(run_dir / "shot-*.cxi"), "-o", str(store), "--chunk-size", "4", *TINY]
    return (store, argv, *_main(argv))


def test_batch_statuses_follow_the_manifest_and_resume_recomputes_nothing(run_dir, serial, capsys):
    store, argv, rc, out, err = serial
    assert rc == 3  # two corrupt files: the run goes on, the exit status reports them
    with h5py.File(store / "run.h5", "r") as f:
        table = f["summary"][()]
        offsets, points = f["clouds/offsets"][()], f["clouds/points_nm"][()]
    status = {int(r["index"]): r["status"].decode() for r in table}
    assert status == _expected(run_dir)
    for r, row in enumerate(table):  # each ok shot has its cloud, blanks and failures none
        n = offsets[r + 1] - offsets[r]
        assert (n > 50) if row["status"] == b"ok" else (n == 0)
    assert np.isfinite(points).all()
    # -q: no progress, but each failure on stderr and the final table on stdout
    assert err.count("failed:") == 2 and "truncated" in err and "NaN" in err
    assert not PROGRESS.search(err) and "[batch]" not in err
    assert "seconds per stage (3 ok shots)" in out and "medians over the ok shots" in out
    assert "completeness within 2 voxel depths" in out and f"run store: {store.resolve()}/run.h5" in out

    chunks = sorted(p.name for p in (store / "chunks").iterdir())
    assert len(chunks) == 3  # 10 shots in chunks of 4
    assert main(argv) == 3
    assert sorted(p.name for p in (store / "chunks").iterdir()) == chunks  # nothing recomputed
    out = capsys.readouterr().out
    assert "0 shots in" in out and "the store holds 10 of the 10 selected shots" in out


def test_batch_on_two_workers_stores_what_the_in_process_run_stores(run_dir, serial, tmp_path, capsys):
    """``--workers 2``: an embedded LocalCluster of two processes; its store matches ``--workers 0``'s
    (shots 0-6: a hit, blanks and a corrupt file)."""
    store = tmp_path / "store"
    argv = ["batch", str(run_dir / "shot-*.cxi"), "-o", str(store), *FAST, "--workers", "2", "--stop", "7"]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "[batch] shots on 2 local Dask worker processes (--workers 2)" in err
    ref = {i: s for i, s in RunStore(serial[0]).statuses().items() if i < 7}
    assert RunStore(store).statuses() == ref and sorted(set(ref.values())) == ["blank", "failed", "ok"]
    with h5py.File(store / "run.h5", "r") as f, h5py.File(serial[0] / "run.h5", "r") as g:
        for column in ("reason", "points"):
            assert f["summary"][column].tolist() == g["summary"][column][:7].tolist()
        np.testing.assert_array_equal(f["summary"]["photons_left"], g["summary"]["photons_left"][:7])


def test_batch_selection_and_a_store_that_is_not_one(run_dir, tmp_path, capsys):
    store = tmp_path / "sel"
    files = [str(p) for p in sorted(run_dir.glob("shot-*.cxi"))]
    manifest = json.loads((run_dir / "manifest.json").read_text())["shots"]
    blank_files = [files[s["index"]] for s in manifest if s["kind"] == "blank"][:3]
    assert main(["batch", *blank_files, "-o", str(store), "--step", "2", *TINY]) == 0
    with h5py.File(store / "run.h5", "r") as f:
        assert [r.decode() for r in f["summary"]["status"]] == ["blank", "blank"]  # indices 0 and 2
    out = capsys.readouterr().out
    assert "seconds per stage" not in out  # no ok shot: no stage table
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main(["batch", blank_files[0], "-o", str(tmp_path / "other"), *TINY]) == 2
    assert "not a run store" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["notes.txt"]
    for bad in (["--workers", "many"], ["--workers", "-1"], ["--workers", "2", "--scheduler", "tcp://x:1"]):
        argv = ["batch", blank_files[0], "-o", str(tmp_path / "bad"), *FAST, "-q", *bad]
        assert main(argv) == 2
        assert "--workers" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    argv = ["batch", blank_files[0], "-o", str(tmp_path / "bad"), *TINY, "--shots-per-launch", "0"]
    assert main(argv) == 2
    assert "--shots-per-launch: found 0" in capsys.readouterr().err


def test_batch_without_recipe_takes_each_shots_sample_recipe(run_dir, tmp_path, capsys):
    """No --recipe: the hit's sample name ("cross") chooses the recipe, so no recipe warning."""
    manifest = json.loads((run_dir / "manifest.json").read_text())["shots"]
    hit = next(run_dir / s["file"] for s in manifest if s["kind"] == "hit")
    tiny = [a for a in TINY if a not in ("--recipe", "cross")]
    assert main(["batch", str(hit), "-o", str(tmp_path / "s"), *tiny]) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.slow
def test_batch_on_the_default_cluster_of_a_50_shot_run(tmp_path, capsys):
    """The issue's end-to-end run: 50 simulated shots (2 hits, blanks, 5 corrupt files) with no
    ``--workers`` (auto: a LocalCluster on a machine of 2 cores or more); plain progress lines on a
    non-terminal stderr, the final table on stdout."""
    run_dir = _simulate(tmp_path / "run", 50, 0.04, 0.1)
    store = tmp_path / "store"
    assert main(["batch", str(run_dir / "shot-*.cxi"), "-o", str(store), *FAST]) == 3
    out, err = capsys.readouterr()
    assert RunStore(store).statuses() == _expected(run_dir)
    if len(os.sched_getaffinity(0)) >= 2:
        assert re.search(r"\[batch\] shots on \d+ local Dask worker processes \(--workers auto: ", err)
    steps = [(int(d), int(t)) for d, t, _ in PROGRESS.findall(err)]
    assert 5 <= len(steps) <= 12 and steps[-1] == (50, 50)  # every 10 %, not every shot
    assert err.count("failed:") == 5
    assert "the store holds 50 of the 50 selected shots: 2 ok, 43 blank, 5 failed" in out
    assert re.search(r"\| ok\s+\|\s+2 \|\s+2 \|", out) and re.search(r"\| blank\s+\|\s+43 \|\s+43 \|", out)
    assert "seconds per stage (2 ok shots)" in out and re.search(r"\| phase\s+\|", out)
    assert "depth error vs ground truth, median per shot [nm]" in out
