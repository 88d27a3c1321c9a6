"""The start-up of ``xstereo batch``'s cluster (xstereo_gpu/batch/clusters.py, issue 9): the worker-count
rule, ``--workers`` parsing, GPU pinning (a real pinned cluster with made-up device ids, on the CPU),
the in-process cases and the memory estimate of one shot."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest
from batch_helpers import OPTIONS, small_shot

from xstereo_gpu import write_shot
from xstereo_gpu.batch import open_source
from xstereo_gpu.batch.clusters import (
    AUTO,
    WORKER_OVERHEAD_BYTES,
    cpu_workers,
    gpu_worker_envs,
    parse_workers,
    pinned_gpu_cluster,
    shot_bytes,
    start_client,
    visible_gpus,
)
from xstereo_gpu.errors import InputError
from xstereo_gpu.memory import CPU_SPLIT_BYTES, GIB


def test_cpu_workers_is_cores_capped_by_memory_and_shots():
    per = GIB + WORKER_OVERHEAD_BYTES  # a shot of 1 GiB and the worker's own memory
    assert cpu_workers(cores=16, available_bytes=64 * GIB, shot_bytes=GIB, shots=1000) == 16
    assert cpu_workers(cores=16, available_bytes=5 * per, shot_bytes=GIB, shots=1000) == 5
    assert cpu_workers(cores=16, available_bytes=64 * GIB, shot_bytes=GIB, shots=3) == 3
    # one worker or none: the shots run in this process
    assert cpu_workers(cores=1, available_bytes=64 * GIB, shot_bytes=GIB, shots=1000) == 0
    assert cpu_workers(cores=16, available_bytes=per + 1, shot_bytes=GIB, shots=1000) == 0
    assert cpu_workers(cores=16, available_bytes=64 * GIB, shot_bytes=GIB, shots=1) == 0
    assert cpu_workers(cores=16, available_bytes=64 * GIB, shot_bytes=0, shots=0) == 0


def test_parse_workers_names_the_option():
    assert parse_workers(None) == parse_workers("auto") == parse_workers(" AUTO ") == AUTO
    assert parse_workers("3") == parse_workers(3) == 3 and parse_workers("0") == 0
    assert parse_workers(None, "tcp://head:8786") is None  # that cluster's workers
    for bad in ("-1", "many", "2.5", ""):
        with pytest.raises(InputError, match="--workers: found"):
            parse_workers(bad)
    with pytest.raises(InputError, match="one of --workers, --scheduler"):
        parse_workers("2", "tcp://head:8786")


def test_visible_gpus_and_one_device_per_worker():
    assert visible_gpus({}, 3) == ["0", "1", "2"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 5"}, 2) == ["2", "5"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b,7"}, 2) == ["GPU-a", "GPU-b"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, 0) == []
    envs = gpu_worker_envs(["2", "5"], 3)  # more workers than devices: in turn
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["2", "5", "2"]
    with pytest.raises(InputError, match="CUDA_VISIBLE_DEVICES"):
        gpu_worker_envs([], 1)


def test_a_pinned_gpu_cluster_gives_each_worker_its_device():
    """The fallback without dask-cuda, started for real: each worker process sees its own
    ``CUDA_VISIBLE_DEVICES`` (made-up ids: nothing touches a GPU) and ignores SIGINT."""
    distributed = pytest.importorskip("distributed")
    with pinned_gpu_cluster(["0", "GPU-x"], 2) as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        ignored = client.run(lambda: signal.getsignal(signal.SIGINT) == signal.SIG_IGN)
        threads = {w["nthreads"] for w in client.scheduler_info()["workers"].values()}
    assert sorted(seen.values()) == ["0", "GPU-x"] and all(ignored.values()) and threads == {1}


def test_start_client_in_this_process_starts_nothing():
    said = []
    with contextlib.ExitStack() as stack:
        assert start_client("0", None, stack=stack, say=said.append) is None
        # auto with a single shot to do: one worker would only add its start-up
        called = []
        estimate = lambda: called.append(1) or GIB  # noqa: E731
        client = start_client(
            None, None, stack=stack, backend="numpy", say=said.append, shots=1, shot_bytes=estimate
        )
        assert client is None
        assert called == [1]
        with pytest.raises(InputError, match="--workers"):
            start_client("4", "tcp://127.0.0.1:9", stack=stack)  # refused before connecting
        with pytest.raises(InputError, match="--scheduler: found 'no address' .*missing port"):
            start_client(None, "no address", stack=stack)
    assert said[0] == "shots in this process (--workers 0)"
    assert said[1].startswith("shots in this process (--workers auto: ") and said[1].endswith(", 1 to do)")


def test_shot_bytes_plans_the_first_readable_shot(tmp_path):
    good = tmp_path / "b.cxi"
    write_shot(good, small_shot(seed=3))
    (tmp_path / "a.cxi").write_bytes(b"not an HDF5 file")
    source = open_source([tmp_path / "a.cxi", good])
    need = shot_bytes(source, [OPTIONS])  # a 128 px shot, 2 runs: far below the CPU split size
    assert 0 < need < CPU_SPLIT_BYTES
    assert shot_bytes(source, [OPTIONS, OPTIONS.replace(phasing__runs=100)]) > need  # the largest plan
    assert shot_bytes(source, [OPTIONS], indices=[0]) == CPU_SPLIT_BYTES  # nothing readable
