"""process_run (xstereo_gpu/batch/process.py): a 12-shot run, its store, resume, kill, retry, stacks."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from batch_helpers import BLANK, CORRUPT, N_SHOTS, NAN, OK, OPTIONS, make_run, make_stack

import xstereo_gpu.batch.process as process_module
from xstereo_gpu import PipelineOptions, process_run
from xstereo_gpu.batch import RunStore, open_source
from xstereo_gpu.errors import InputError

TESTS = pathlib.Path(__file__).resolve().parent


def _content(run_h5) -> dict:
    """Everything in run.h5 but the timings, how the hits were stacked, and the run's metadata (a stack
    of shots gives each shot what it gets alone, so the rest is the same however they were stacked)."""
    with h5py.File(run_h5, "r") as f:
        rows = f["summary"][()]
        out = {n: rows[n] for n in rows.dtype.names if not n.startswith("time_") and n != "shots_per_launch"}
        out.update({k: f[f"clouds/{k}"][()] for k in ("offsets", "points_nm", "confidence")})
    return out


class _Counter:
    """Wraps Pipeline.prepare (once per shot reconstructed), recording the source of every shot."""

    def __init__(self, monkeypatch, fail: bool = False):
        self.sources: list[str] = []
        real = process_module.Pipeline.prepare

        def prepare(pipe, shot):
            self.sources.append(pathlib.Path(shot.source).name)
            if fail:
                raise FloatingPointError("overflow in the difference map")
            return real(pipe, shot)

        monkeypatch.setattr(process_module.Pipeline, "prepare", prepare)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """The 12 shots, reconstructed into a store in chunks of 4: (shot files, store, records)."""
    root = tmp_path_factory.mktemp("run")
    files = make_run(root / "shots")
    records = list(process_run(files, OPTIONS, store=root / "store", chunk_size=4, backend="numpy"))
    return files, root / "store", records


def test_statuses_and_reasons(full_run):
    _, _, records = full_run
    assert [r.index for r in records] == list(range(N_SHOTS))
    status = {r.index: r.status for r in records}
    assert {i for i, s in status.items() if s == "ok"} == set(OK)
    assert {i for i, s in status.items() if s == "blank"} == set(BLANK)
    assert {i for i, s in status.items() if s == "failed"} == {CORRUPT, NAN}
    assert "truncated" in records[CORRUPT].reason and "NaN" in records[NAN].reason
    for r in records:
        if r.status == "ok":
            assert r.results is not None and r.reason == "" and r.results.cloud.cleaned_nm.shape[0] > 100
            assert r.results.accuracy["depth_error_median_nm"] > 0 and r.timings["phase"] > 0
            assert r.photons.min() > 1e6
        else:
            assert r.results is None and r.reason
        if r.status == "blank":
            assert "photons" in r.reason and r.photons.max() < 1e4 and "phase" not in r.timings


def test_the_store_is_read_by_plain_h5py(full_run):
    _, store, records = full_run
    names = sorted(p.name for p in (store / "chunks").iterdir())
    assert names == ["chunk-000000-000003.h5", "chunk-000004-000007.h5", "chunk-000008-000011.h5"]
    with h5py.File(store / "run.h5", "r") as f:
        rows = f["summary"][()]
        offsets, points = f["clouds/offsets"][()], f["clouds/points_nm"][()]
        conf = f["clouds/confidence"][()]
        meta = dict(f["metadata"].attrs)
    assert rows.shape == (N_SHOTS,) and rows["index"].tolist() == list(range(N_SHOTS))
    assert [s.decode() for s in rows["status"]] == [r.status for r in records]
    for k, r in enumerate(records):
        got = points[offsets[k] : offsets[k + 1]]
        if r.status == "ok":
            c = r.results.cloud
            np.testing.assert_array_equal(got, c.cleaned_nm)
            np.testing.assert_array_equal(conf[offsets[k] : offsets[k + 1]], c.confidence[c.kept])
            q = r.results.quality
            assert rows["prtf_resolution_left_nm"][k] == q["left"]["prtf_resolution_nm"]
            assert rows["edge_resolution_right_nm"][k] == q["right"]["edge_resolution_nm"]
            assert rows["depth_error_median_nm"][k] == r.results.accuracy["depth_error_median_nm"]
            assert rows["pixel_size_nm"][k] == pytest.approx(r.results.geometry.pixel_size_m * 1e9)
            assert rows["time_total_s"][k] == r.timings["total"]
        else:
            assert got.shape == (0, 3)
    assert PipelineOptions.from_toml(meta["options_toml"]) == OPTIONS
    assert meta["program"] == "xstereo-gpu" and meta["backend"] == "numpy"
    assert (store / "summary.csv").read_text().count("\n") == N_SHOTS + 1


def test_resume_recomputes_only_the_missing_chunk(full_run, tmp_path, monkeypatch):
    files, store, _ = full_run
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    (copy / "chunks" / "chunk-000008-000011.h5").unlink()
    calls = _Counter(monkeypatch)
    again = list(process_run(files, OPTIONS, store=copy, chunk_size=4, backend="numpy"))
    assert [r.index for r in again] == [8, 9, 10, 11]
    assert calls.sources == ["shot-08.cxi", "shot-10.cxi"]
    np.testing.assert_equal(_content(copy / "run.h5"), _content(store / "run.h5"))  # NaN == NaN here
    # a third run finds everything done
    assert list(process_run(files, OPTIONS, store=copy, backend="numpy")) == []


def test_a_killed_run_resumes_where_it_stopped(full_run, tmp_path):
    files, _, _ = full_run
    store = tmp_path / "store"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from batch_helpers import OPTIONS; from xstereo_gpu.batch import process_run, open_source;"
        "src = open_source(sys.argv[3:], stop=6);"
        "[None for _ in process_run(src, OPTIONS, store=sys.argv[2], chunk_size=2, shots_per_launch=1,"
        " backend='numpy')]"
    )
    # one hit per launch: the first chunk (shots 0, 1) is written a reconstruction before the next one
    # (stacked, the three hits would finish together and the three chunks follow one another at once)
    proc = subprocess.Popen([sys.executable, "-c", code, str(TESTS), str(store), *map(str, files)])
    try:
        deadline = time.monotonic() + 60
        while not (store / "chunks").exists() or not RunStore(store).chunk_paths():
            assert proc.poll() is None, "the run ended before its first chunk"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not (store / "run.h5").exists()  # killed before the end
    done = RunStore(store).done()
    assert done and done < set(range(6))
    again = list(process_run(open_source(files, stop=6), OPTIONS, store=store, chunk_size=2, backend="numpy"))
    assert [r.index for r in again] == sorted(set(range(6)) - done)
    with h5py.File(store / "run.h5", "r") as f:
        status = [s.decode() for s in f["summary"]["status"]]
    assert status == ["ok", "blank", "ok", "blank", "ok", "failed"]


def test_retry_failed_redoes_failed_shots_and_the_newer_record_wins(full_run, tmp_path, monkeypatch):
    files, _, _ = full_run
    store = tmp_path / "store"
    inputs = [files[0], files[1]]  # ok, blank
    with monkeypatch.context() as m:
        calls = _Counter(m, fail=True)
        first = list(process_run(inputs, OPTIONS, store=store, backend="numpy"))
    assert [r.status for r in first] == ["failed", "blank"] and calls.sources == ["shot-00.cxi"]
    assert first[0].reason.startswith("FloatingPointError: overflow")
    assert list(process_run(inputs, OPTIONS, store=store, backend="numpy")) == []
    retried = list(process_run(inputs, OPTIONS, store=store, retry_failed=True, backend="numpy"))
    assert [(r.index, r.status) for r in retried] == [(0, "ok")]
    with h5py.File(store / "run.h5", "r") as f:
        assert [s.decode() for s in f["summary"]["status"]] == ["ok", "blank"]
        assert f["summary"]["reason"][0].decode() == ""


def test_a_consumer_that_stops_early_leaves_what_was_finished(full_run, tmp_path):
    files, _, _ = full_run
    store = tmp_path / "store"
    gen = process_run([files[i] for i in BLANK], OPTIONS, store=store, backend="numpy")
    assert [next(gen).index, next(gen).index] == [0, 1]
    gen.close()
    with h5py.File(store / "run.h5", "r") as f:
        assert f["summary"]["index"].tolist() == [0, 1]
    assert RunStore(store).done() == {0, 1}


def test_a_store_of_other_inputs_is_refused(full_run):
    files, store, _ = full_run
    with pytest.raises(InputError, match="stored as"):
        next(process_run(files[::-1], OPTIONS, store=store, backend="numpy"))


def test_a_stack_run(full_run, tmp_path):
    files, _, _ = full_run
    with h5py.File(files[0], "r") as f:
        frame = f["entry_1/instrument_1/detector_1/data"][()]
    stack = make_stack(tmp_path / "stack.cxi", [frame, frame * 1e-4, np.full_like(frame, np.nan)], files[0])
    records = list(process_run(stack, OPTIONS, store=tmp_path / "store", backend="numpy"))
    assert [(r.index, r.status) for r in records] == [(0, "ok"), (1, "blank"), (2, "failed")]
    assert [r.label for r in records] == [f"{stack}#{k}" for k in range(3)]
    with h5py.File(tmp_path / "store" / "run.h5", "r") as f:
        assert f["summary"]["label"][2].decode().endswith("stack.cxi#2")


def test_options_per_shot_are_asked_for_hits_only(full_run, tmp_path):
    """A callable chooses each hit's options (a recipe per sample); one pipeline per distinct options."""
    files, _, _ = full_run
    asked = []

    def options_for(shot):
        asked.append(shot.sample)
        return OPTIONS if len(asked) % 2 else OPTIONS.replace(match__method="bm")

    inputs = [files[i] for i in (0, 1, 2)]  # ok, blank, ok
    recs = list(process_run(inputs, options_for, store=tmp_path / "store", backend="numpy"))
    assert [r.status for r in recs] == ["ok", "blank", "ok"]
    assert asked == ["cross", "cross"]  # the blank was vetoed before any options were chosen
    assert [r.results.options.match.method for r in (recs[0], recs[2])] == ["sgm", "bm"]
