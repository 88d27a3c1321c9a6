"""The benchmarks (xstereo_gpu.bench) through ``xstereo bench --quick --no-pipeline --json`` (NumPy): the
table
and the JSON, and benchmarks/roofline.py on that JSON."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from xstereo_gpu.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_roofline_png_and_table_from_bench_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XSTEREO_BACKEND", "numpy")
    src = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--no-pipeline", "--json", str(src), "-q"]) == 0
    capsys.readouterr()
    data = json.loads(src.read_text())
    timed = [r for r in data["rows"] if r.get("fraction_of_floor") is not None]
    assert [r["key"] for r in timed] == ["dm", "bm3", "bm23", "knn"]
    dm = timed[0]
    # the floor is the cost model at the measured limits, and the fraction its ratio to the time
    floor = dm["bytes"] / data["bandwidth_bytes_per_s"] + 2 * data["fft_pair_s"]
    assert abs(dm["floor_ms"] - floor * 1e3) < 1e-9 * max(1.0, floor * 1e3)
    assert abs(dm["fraction_of_floor"] - dm["floor_ms"] / dm["time_ms"]) < 1e-12

    png, md = tmp_path / "out" / "roof.png", tmp_path / "roof.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "roofline.py"), str(src), "-o", str(png), "--md", str(md)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 800
    assert img[..., :3].std() > 0.05  # not a blank canvas
    text = md.read_text()
    table = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table) == 1 + len(timed)  # header + one row per timed case
    for r, line in zip(timed, table[1:]):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == r["name"]
        assert float(cells[2]) == round(r["time_ms"], 3)
        assert abs(float(cells[8]) - 100 * r["fraction_of_floor"]) < 0.01
    assert "copy bandwidth" in text and not list(tmp_path.rglob("*.tmp*"))


def test_roofline_rejects_a_json_without_rows(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"rows": [{"name": "device copy", "time_ms": 1.0}]}))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "roofline.py"), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "no timed hot-path rows" in proc.stderr
    assert not list(tmp_path.glob("*.png"))


def test_bench_quick_writes_a_table_and_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XSTEREO_BACKEND", "numpy")
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--no-pipeline", "--json", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    assert "DM iteration (twin)" in text and "G pixel-disparities/s" in text
    res = json.loads(out.read_text())
    names = [r["name"] for r in res["rows"]]
    assert names[:3] == ["device copy", "FFT pair (fwd + inv)", "DM iteration (twin)"]
    assert all(r["time_ms"] > 0 for r in res["rows"])
    dm = res["rows"][2]
    assert dm["ratio_to_limit"] == pytest.approx(dm["time_ms"] / (2 * res["rows"][1]["time_ms"]))
    assert res["device"]["backend"] == "numpy"
