"""The xstereo command: reports, round trips and the bad-input contract (message, exit 2, no outputs)."""

import json

import numpy as np
import pytest

from xstereo_gpu.cli import main
from xstereo_gpu.config import PipelineOptions


def test_geometry_reproduces_the_paper(capsys):
    assert main(["geometry", "--pixel-size", "49e-9", "--angles", "9.5", "9.5", "--resolution", "127e-9", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert round(rep["voxel_depth_nm"]) == 146 and round(rep["resolution_z_nm"]) == 379
    assert main(["geometry", "--pixel-size", "15e-9", "--angles", "3.5", "3.5", "--resolution", "42e-9"]) == 0
    text = capsys.readouterr().out
    assert "122.6 nm" in text and "343.3 nm" in text


def test_geometry_from_detector(capsys):
    assert main(["geometry", "--wavelength", "24e-9", "--distance", "0.026", "--detector-pixel", "13.5e-6",
                 "--size", "1024", "--angles", "9.5", "9.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pixel_size_nm"] == pytest.approx(45.14, abs=0.01)


def test_geometry_bad_angles_exit_2(capsys):
    assert main(["geometry", "--pixel-size", "49e-9", "--angles", "70", "9.5"]) == 2
    err = capsys.readouterr().err
    assert "angles[0]" in err and "70" in err and "(0, 60)" in err


def test_info_says_numpy(capsys, monkeypatch):
    monkeypatch.setenv("XSTEREO_BACKEND", "numpy")
    assert main(["info"]) == 0
    assert "backend: NumPy" in capsys.readouterr().out


def test_config_round_trip(capsys):
    assert main(["config", "--profile", "cpu"]) == 0
    assert PipelineOptions.from_toml(capsys.readouterr().out) == PipelineOptions.for_profile("cpu")


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
