"""``xstereo bench --shots N`` (xstereo_gpu/bench_shots.py, issue 9): the JSON and the table are well formed
and their counts add up. No timing is asserted (figures come from benchmarks/, on an idle machine)."""

from __future__ import annotations

import json

import pytest

from xstereo_gpu.bench_shots import ShotBenchOptions
from xstereo_gpu.cli import main
from xstereo_gpu.errors import InputError

ROW_KEYS = {
    "launch_sizes",
    "name",
    "method",
    "workers",
    "shots",
    "ok",
    "blank",
    "failed",
    "wall_s",
    "shots_per_s",
    "hit_shots_per_s",
    "speedup_vs_loop",
    "stage_means_s",
    "skipped",
}


@pytest.mark.slow
def test_bench_shots_quick_writes_json_whose_counts_add_up(tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setenv("XSTEREO_BACKEND", "numpy")
    out = tmp_path / "shots.json"
    argv = ["bench", "--shots", "4", "--hit-rate", "0.5", "--quick", "--size", "128", "--workers", "1"]
    argv += ["--blank-shots", "3", "--work-dir", str(tmp_path / "work"), "--json", str(out), "-q"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    res = json.loads(out.read_text())

    assert res["kind"] == "xstereo-bench-shots"
    assert set(res) >= {"date", "machine", "options", "run", "pipeline", "shots_per_launch", "rows", "blanks"}
    m = res["machine"]
    assert m["backend"] == "numpy" and m["cpu_count"] >= 1 and m["cpu_model"]
    assert {"numpy", "scipy", "h5py", "python", "xstereo_gpu", "distributed", "cpu_threads"} <= set(m)
    run = res["run"]
    assert (run["shots"], run["hits"], run["blanks"]) == (4, 2, 2)
    assert run["pattern_size"] == 128 and run["frame_shape"][-2:] == [256, 256]
    pipe = res["pipeline"]
    assert (
        pipe["quick"] is True and pipe["profile"] == "cpu" and (pipe["runs"], pipe["iterations"]) == (2, 10)
    )
    assert res["shots_per_launch"] is None  # sized from the free memory

    rows = res["rows"]
    assert [r["method"] for r in rows] == ["loop", "process_run", "process_run+dask"]
    assert rows[2]["workers"] == 1
    for r in rows:
        assert set(r) == ROW_KEYS and r["skipped"] is None
        assert r["shots"] == r["ok"] + r["blank"] + r["failed"] == 4
        assert (r["ok"], r["blank"], r["failed"]) == (2, 2, 0)  # every hit reconstructed, every blank vetoed
        assert r["wall_s"] > 0
        assert r["shots_per_s"] == pytest.approx(r["shots"] / r["wall_s"])
        assert r["hit_shots_per_s"] == pytest.approx(r["ok"] / r["wall_s"])
        assert r["speedup_vs_loop"] == pytest.approx(r["shots_per_s"] / rows[0]["shots_per_s"])
        assert {"phase", "stereo", "total"} <= set(r["stage_means_s"])
    assert rows[0]["speedup_vs_loop"] == 1.0
    assert rows[0]["launch_sizes"] == [] and rows[1]["launch_sizes"] == [2]  # both hits in one stack

    b = res["blanks"]
    assert b["shots"] == 3 and b["bytes"] == 3 * b["bytes_per_shot"] > 0
    assert (b["process_run"]["blank"], b["process_run"]["ok"], b["process_run"]["failed"]) == (3, 0, 0)
    for k in ("process_run", "raw_h5py"):
        assert b[k]["shots_per_s"] == pytest.approx(3 / b[k]["wall_s"])
        assert b[k]["mb_per_s"] == pytest.approx(b["bytes"] / b[k]["wall_s"] / 1e6)
    assert b["ratio_to_raw"] == pytest.approx(b["process_run"]["mb_per_s"] / b["raw_h5py"]["mb_per_s"])

    goal = res["goal"]
    assert goal["hit_shots_per_s"] == 20.0 and goal["pattern_size"] == 256
    assert goal["comparable"] is False and goal["met"] is None  # NumPy, 128 px, quick
    assert goal["best_hit_shots_per_s"] == max(r["hit_shots_per_s"] for r in rows)

    for name in ("loop: read, veto, Pipeline.run", "process_run (in process)", "process_run, Dask 1 worker"):
        assert name in text
    assert "blanks: 3 blank shots" in text and "not comparable here" in text
    assert list((tmp_path / "work").iterdir()) == []  # the temporary run is gone


@pytest.mark.parametrize(
    "changes, where, expected",
    [
        (dict(shots=0), "bench.shots", "an integer >= 1"),
        (dict(hit_rate=1.5), "bench.hit_rate", "a fraction in [0, 1]"),
        (dict(size=200), "bench.size", "one of [128, 256, 512, 1024] px"),
        (dict(workers=(1, 0)), "bench.workers", "an integer >= 1"),
        (dict(samples=("disc",)), "bench.samples", "distinct names among"),
        (dict(profile="fast"), "bench.profile", "one of"),
        (dict(shots_per_launch=0), "bench.shots_per_launch", "an integer >= 1"),
    ],
)
def test_bad_bench_options_are_refused(changes, where, expected):
    with pytest.raises(InputError) as info:
        ShotBenchOptions(**changes)
    assert info.value.where == where and expected in info.value.expected


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "--hit-rate", "0.5"], "--hit-rate"),
        (["bench", "--shots", "2", "--no-pipeline"], "--no-pipeline"),
        (["bench", "--shots", "2", "--size", "100"], "bench.size"),
    ],
)
def test_bench_shot_flags_are_checked(argv, message, capsys):
    assert main([*argv, "-q"]) == 2
    assert message in capsys.readouterr().err


def test_workers_flag_parses_lists_and_none(capsys):
    from xstereo_gpu.cli import _worker_counts

    assert _worker_counts("1,2,4") == (1, 2, 4) and _worker_counts("0") == () and _worker_counts("none") == ()
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--shots", "2", "--workers", "1,x"])
    assert exc.value.code == 2 and "worker counts" in capsys.readouterr().err
