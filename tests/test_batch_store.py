"""The run store (xstereo_gpu/batch/store.py): chunk files, done(), finalize, run.h5 read by plain h5py."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from xstereo_gpu.batch import RunStore, ShotRecord
from xstereo_gpu.batch.record import COLUMNS
from xstereo_gpu.batch.store import read_cloud
from xstereo_gpu.errors import InputWarning
from xstereo_gpu.geometry import StereoGeometry

GEOMETRY = StereoGeometry(45e-9, (9.5, 9.5))


def _results(seed: int, n: int):
    """A stand-in for Results with what a record row reads."""
    rng = np.random.default_rng(seed)
    kept = rng.random(n) > 0.3
    return SimpleNamespace(
        quality={
            "left": {"prtf_resolution_nm": 40.0 + seed, "edge_resolution_nm": 70.0},
            "right": {"prtf_resolution_nm": 41.0, "edge_resolution_nm": 66.0 + seed},
        },
        views=SimpleNamespace(best_eps=rng.random((2, 3)).astype(np.float32)),
        accuracy={"depth_error_median_nm": 60.0 + seed, "completeness_2dz": 0.7},
        cloud=SimpleNamespace(
            points_nm=rng.normal(size=(n, 3)) * 1e3, confidence=rng.random(n).astype(np.float32), kept=kept
        ),
    )


def _ok(i: int, n: int = 50) -> ShotRecord:
    return ShotRecord(
        i,
        f"shot-{i}.cxi",
        "ok",
        photons=np.array([1e7, 2e7]),
        timings={"total": 1.5, "read": 0.1},
        geometry=GEOMETRY,
        results=_results(i, n),
    )


def _blank(i: int) -> ShotRecord:
    return ShotRecord(
        i, f"shot-{i}.cxi", "blank", "10 photons", np.array([10.0, 12.0]), {"veto": 1e-4}, GEOMETRY
    )


def _failed(i: int) -> ShotRecord:
    return ShotRecord(i, f"shot-{i}.cxi", "failed", "InputError: truncated")


def test_chunks_merge_into_run_h5_read_by_plain_h5py(tmp_path):
    store = RunStore(tmp_path / "run")
    recs = [_ok(0), _blank(1), _failed(2), _ok(3, 0), _ok(4, 80)]
    p1 = store.write_chunk(recs[:3], metadata={"options_toml": "x = 1"})
    p2 = store.write_chunk(recs[3:])
    assert p1.name == "chunk-000000-000002.h5" and p2.name == "chunk-000003-000004.h5"
    assert [p.name for p in store.chunk_paths()] == [p1.name, p2.name]
    assert store.done() == {0, 1, 2, 3, 4}
    assert store.done(retry_failed=True) == {0, 1, 3, 4}
    run = store.finalize(metadata={"options_toml": "[phasing]\nruns = 2", "sources": "[]"})
    with h5py.File(run, "r") as f:
        rows = f["summary"][()]
        offsets = f["clouds/offsets"][()]
        points = f["clouds/points_nm"][()]
        conf = f["clouds/confidence"][()]
        meta = dict(f["metadata"].attrs)
    assert rows.dtype.names == tuple(name for name, _, _ in COLUMNS)
    assert rows["index"].tolist() == [0, 1, 2, 3, 4]
    assert [s.decode() for s in rows["status"]] == ["ok", "blank", "failed", "ok", "ok"]
    assert rows["reason"][2].decode() == "InputError: truncated"
    assert offsets.shape == (6,) and offsets[-1] == points.shape[0] == conf.shape[0]
    for k, rec in enumerate(recs):
        c = rec.results.cloud if rec.results is not None else None
        want = c.points_nm[c.kept] if c is not None else np.zeros((0, 3))
        np.testing.assert_array_equal(points[offsets[k] : offsets[k + 1]], want)
        assert rows["points"][k] == len(want)
        if c is not None:
            np.testing.assert_array_equal(conf[offsets[k] : offsets[k + 1]], c.confidence[c.kept])
    np.testing.assert_array_equal(read_cloud(run, 4)[0], points[offsets[4] : offsets[5]])
    assert rows["prtf_resolution_left_nm"][0] == 40.0 and np.isnan(rows["prtf_resolution_left_nm"][1])
    assert rows["photons_right"][1] == 12.0 and np.isnan(rows["photons_left"][2])
    assert rows["pixel_size_nm"][0] == pytest.approx(45.0) and np.isnan(rows["pixel_size_nm"][2])
    assert rows["time_total_s"][0] == 1.5 and np.isnan(rows["time_phase_s"][0])
    assert meta["options_toml"].startswith("[phasing]") and "chunk-000000-000002.h5" in meta["chunks"]
    with open(tmp_path / "run" / "summary.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["status"] for r in table] == ["ok", "blank", "failed", "ok", "ok"]
    assert table[1]["prtf_resolution_left_nm"] == "" and float(table[0]["depth_error_median_nm"]) == 60.0


def test_pandas_reads_the_summary_in_one_line(tmp_path):
    pandas = pytest.importorskip("pandas")
    store = RunStore(tmp_path / "run")
    store.write_chunk([_ok(0), _blank(1)])
    run = store.finalize()
    with h5py.File(run, "r") as f:
        df = pandas.DataFrame(f["summary"][()])
    assert len(df) == 2 and df["status"].str.decode("utf-8").tolist() == ["ok", "blank"]
    assert pandas.read_csv(tmp_path / "run" / "summary.csv")["index"].tolist() == [0, 1]


def test_the_newest_record_of_an_index_wins_and_chunks_never_replace_each_other(tmp_path):
    store = RunStore(tmp_path / "run")
    store.write_chunk([_failed(0), _blank(1)])
    again = store.write_chunk([_ok(0)])  # a retried shot
    assert again.name == "chunk-000000-000000.h5"
    third = store.write_chunk([_ok(0), _ok(1)])
    assert third.name == "chunk-000000-000001-1.h5" and len(store.chunk_paths()) == 3
    assert store.done(retry_failed=True) == {0, 1}
    run = store.finalize()
    with h5py.File(run, "r") as f:
        assert [s.decode() for s in f["summary"]["status"]] == ["ok", "ok"]
    assert store.labels() == {0: "shot-0.cxi", 1: "shot-1.cxi"}


def test_an_unreadable_chunk_is_ignored_with_a_warning_and_temporaries_are_not_chunks(tmp_path):
    store = RunStore(tmp_path / "run")
    store.write_chunk([_blank(0)])
    (store.chunks_dir / "chunk-000001-000001.h5").write_bytes(b"not hdf5")
    (store.chunks_dir / "chunk-000002-000002.h5.tmp-host-1-00000000.h5").write_bytes(b"")
    assert len(store.chunk_paths()) == 2
    with pytest.warns(InputWarning, match="unreadable chunk"):
        assert store.done() == {0}


def test_an_empty_store_finalizes_to_an_empty_table(tmp_path):
    run = RunStore(tmp_path / "run").finalize()
    with h5py.File(run, "r") as f:
        assert f["summary"].shape == (0,) and f["clouds/offsets"][()].tolist() == [0]
