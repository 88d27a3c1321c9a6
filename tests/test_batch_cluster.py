"""process_run on a Dask distributed LocalCluster (xstereo_gpu/batch/cluster.py, issue 9): the same
records as in process, a killed worker loses no shot, ``xstereo batch --scheduler``, resume."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import time

import h5py
import numpy as np
import pytest
from batch_helpers import N_SHOTS, OK, OPTIONS, KillsItsWorker, make_run, small_shot

from xstereo_gpu import write_shot
from xstereo_gpu.batch import RunStore, process_run
from xstereo_gpu.batch.cluster import OptionsBySample
from xstereo_gpu.batch.record import record_cloud
from xstereo_gpu.batch.store import read_cloud
from xstereo_gpu.cli import main

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The 12 shots and their in-process run: (files, store, records)."""
    root = tmp_path_factory.mktemp("cluster")
    files = make_run(root / "shots")
    records = list(process_run(files, OPTIONS, store=root / "ref", chunk_size=4, backend="numpy"))
    return files, root / "ref", records


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def _stored_indices(store) -> list[int]:
    """Every index of every chunk file (a shot stored twice appears twice)."""
    out = []
    for p in RunStore(store).chunk_paths():
        with h5py.File(p, "r") as f:
            out += f["summary"]["index"].tolist()
    return sorted(out)


def _assert_same_run(store, records):
    """The store holds the statuses, reasons and (bit for bit) the clouds of the in-process records."""
    assert RunStore(store).statuses() == {r.index: r.status for r in records}
    with h5py.File(store / "run.h5", "r") as f:
        reasons = [s.decode() for s in f["summary"]["reason"]]
    assert reasons == [r.reason for r in records]
    for r in records:
        got, want = read_cloud(store / "run.h5", r.index), record_cloud(r)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_a_cluster_run_stores_what_the_in_process_run_stores(reference, client, tmp_path):
    files, _, records = reference
    t0 = time.perf_counter()
    got = list(
        process_run(files, OPTIONS, store=tmp_path / "s", chunk_size=4, backend="numpy", client=client)
    )
    wall = time.perf_counter() - t0
    print(f"12 shots on 2 workers: {wall:.1f} s ({N_SHOTS / wall:.2f} shots/s)")
    assert sorted(r.index for r in got) == list(range(N_SHOTS))
    assert all(r.results is None for r in got)  # the Results stay on the workers
    assert {r.index: r.status for r in got} == {r.index: r.status for r in records}
    assert {r.index: r.reason for r in got} == {r.index: r.reason for r in records}
    _assert_same_run(tmp_path / "s", records)
    assert _stored_indices(tmp_path / "s") == list(range(N_SHOTS))


def test_a_killed_worker_loses_no_shot(reference, client, tmp_path):
    files, _, records = reference
    store = tmp_path / "s"
    gen = process_run(files, OPTIONS, store=store, chunk_size=4, backend="numpy", client=client)
    first = next(gen)
    pids = client.run(os.getpid)
    victim = next(iter(pids.values()))
    os.kill(victim, signal.SIGKILL)
    rest = list(gen)
    assert sorted(r.index for r in [first, *rest]) == list(range(N_SHOTS))
    assert _stored_indices(store) == list(range(N_SHOTS))  # every shot exactly once
    _assert_same_run(store, records)
    client.wait_for_workers(2, timeout=30)  # the nanny restarts it, for the tests after this one


def test_a_shot_that_kills_every_worker_fails_alone_and_the_run_goes_on(reference, tmp_path):
    """KilledWorker: the task of four shots is split into one task per shot; the poison shot is
    stored failed with the reason, the three others as in the in-process run."""
    files, _, records = reference
    poison = small_shot(seed=100)
    poison.sample = "poison"
    write_shot(tmp_path / "poison.cxi", poison)
    inputs = [files[0], tmp_path / "poison.cxi", files[2], files[3]]
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        got = list(
            process_run(
                inputs, KillsItsWorker(), store=tmp_path / "s", backend="numpy", client=c, shots_per_launch=4
            )
        )
    by_index = {r.index: r for r in got}
    assert sorted(by_index) == [0, 1, 2, 3]
    assert by_index[1].status == "failed" and by_index[1].reason.startswith("KilledWorker")
    assert [by_index[k].status for k in (0, 2, 3)] == [records[k].status for k in (0, 2, 3)]
    assert RunStore(tmp_path / "s").statuses() == {k: by_index[k].status for k in range(4)}
    np.testing.assert_array_equal(read_cloud(tmp_path / "s" / "run.h5", 2)[0], record_cloud(records[2])[0])


def test_resume_on_a_cluster_computes_only_the_missing_shots(reference, client, tmp_path):
    files, ref, records = reference
    copy = tmp_path / "s"
    shutil.copytree(ref, copy)
    (copy / "chunks" / "chunk-000004-000007.h5").unlink()
    again = list(process_run(files, OPTIONS, store=copy, chunk_size=4, backend="numpy", client=client))
    assert sorted(r.index for r in again) == [4, 5, 6, 7]
    _assert_same_run(copy, records)
    assert list(process_run(files, OPTIONS, store=copy, backend="numpy", client=client)) == []


def test_cli_batch_on_an_existing_cluster(reference, client, tmp_path, capsys):
    """``--scheduler ADDRESS``, with --recipe, then with each shot's sample name choosing it."""
    files, _, records = reference
    inputs = [str(files[i]) for i in (0, 1, 2)]  # ok, blank, ok
    address = client.cluster.scheduler_address
    tiny = ["--runs", "2", "--iterations", "10", "-q", "--scheduler", address]
    for store, recipe in ((tmp_path / "a", ["--recipe", "cross"]), (tmp_path / "b", [])):
        assert main(["batch", *inputs, "-o", str(store), *recipe, *tiny]) == 0
        assert "warning" not in capsys.readouterr().err
        assert RunStore(store).statuses() == {0: "ok", 1: "blank", 2: "ok"}
        for k in (0, 2):  # the CLI's options are the helpers' OPTIONS: the same clouds
            np.testing.assert_array_equal(read_cloud(store / "run.h5", k)[0], record_cloud(records[k])[0])
    assert 0 in OK and 2 in OK


def test_options_by_sample_picks_the_recipe_of_the_shots_sample():
    other = OPTIONS.replace(match__method="bm")
    choose = OptionsBySample((("cross", other),), OPTIONS)
    assert pickle.loads(pickle.dumps(choose)) == choose
    assert choose(type("S", (), {"sample": "cross"})()) == other
    assert choose(type("S", (), {"sample": "mystery"})()) == OPTIONS
