"""A stored EuXFEL run replayed over the bridge protocol (``xstereo serve-run``), reconstructed online
(``xstereo stream -o``), then offline (``xstereo batch``): the two run stores hold the same results
(issue 13). The run is written by EXtra-data's own test helpers, its camera frames simulated shots."""

from __future__ import annotations

import json
import math
import socket
import threading

import h5py
import numpy as np
from extra_data.tests.mockdata import write_file
from extra_data.tests.mockdata.basler_camera import BaslerCamera
from extra_data.tests.mockdata.xgm import XGM
from stream_helpers import CAM, KEY, OPTIONS, blank_frame, geometry_keywords, hit_frame

from xstereo_gpu.batch.record import COLUMNS
from xstereo_gpu.cli import main

CAMERA = CAM.split(":")[0]
PIXELS = f"INSTRUMENT/{CAM}/data/image/pixels"
#: Train -> what its frame is, and the status both runs must give it.
FRAMES = {
    10000: ("hit", "ok"),
    10001: ("blank", "blank"),
    10002: ("zeros", "failed"),
    10003: ("dark", "blank"),
}
#: Columns that differ by nature between two runs (where and when they ran).
VOLATILE = {"label", "shots_per_launch"} | {name for name, _, _ in COLUMNS if name.startswith("time_")}


def _frame(kind: str) -> np.ndarray:
    if kind == "hit":
        return hit_frame()
    if kind == "blank":
        return blank_frame()
    if kind == "zeros":  # a constant frame: refused when read, `failed` in both runs
        return np.zeros_like(hit_frame())
    return np.random.default_rng(3).poisson(0.01, hit_frame().shape).astype(np.uint16)


def _write_run(run) -> None:
    run.mkdir()
    h, w = hit_frame().shape
    trains = sorted(FRAMES)
    for seq, first in enumerate(trains[::2]):  # two sequence files of two trains
        path = run / f"RAW-R0001-DA01-S{seq:05d}.h5"
        devices = [XGM("SA1_XTD2_XGM/DOOCS/MAIN"), BaslerCamera(CAMERA, sensor_size=(h, w))]
        write_file(str(path), devices, ntrains=2, firsttrain=first, chunksize=1)
        with h5py.File(path, "r+") as f:
            for i in range(2):
                f[PIXELS][i] = _frame(FRAMES[first + i][0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _table(store) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with h5py.File(store / "run.h5", "r") as f:
        return f["summary"][()], f["clouds/offsets"][()], f["clouds/points_nm"][()]


def test_a_replayed_run_streams_to_the_same_results_as_its_batch_run(tmp_path, capsys):
    run = tmp_path / "r0001"
    _write_run(run)
    (tmp_path / "fast.toml").write_text(OPTIONS.to_toml())
    geo = geometry_keywords()
    (tmp_path / "geometry.toml").write_text(
        "\n".join(f"{k} = {json.dumps(list(v) if isinstance(v, tuple) else v)}" for k, v in geo.items())
    )
    port = _free_port()
    served: list[int] = []
    server = threading.Thread(
        target=lambda: served.append(
            main(["serve-run", str(run), "--host", "127.0.0.1", "--port", str(port), "--source", CAM])
        ),
        daemon=True,
    )
    server.start()
    common = ["--config", str(tmp_path / "fast.toml"), "-q"]
    argv = ["stream", "--source", f"tcp://127.0.0.1:{port}", "--det-source", CAM, "--key", KEY]
    argv += ["--geometry", str(tmp_path / "geometry.toml"), "--max-shots", "4", "--idle-exit", "20"]
    assert main([*argv, "-o", str(tmp_path / "online"), "--chunk-size", "3", *common]) == 0
    server.join(20)
    assert served == [0] and not server.is_alive()
    out = capsys.readouterr().out
    assert f"serving {run} (4 trains) on tcp://127.0.0.1:{port} (REP)" in out and "sent 4 trains" in out
    final = json.loads(out[out.index("{") :])
    assert (final["processed"], final["ok"], final["bad_messages"], final["dropped"]) == (4, 1, 0, 0)

    flags = ["--wavelength", str(geo["wavelength_m"]), "--distance", str(geo["distance_m"])]
    flags += ["--detector-pixel", str(geo["detector_pixel_m"]), "--angles", *map(str, geo["angles_deg"])]
    flags += ["--centres", *(str(v) for rc in geo["centres_px"] for v in rc)]
    flags += ["--pattern-size", str(geo["pattern_size"])]
    argv = ["batch", str(run), "--source", CAM, "--key", KEY, *flags, "-o", str(tmp_path / "offline")]
    assert main([*argv, "--workers", "0", *common]) == 3  # the constant frame failed

    online, offline = _table(tmp_path / "online"), _table(tmp_path / "offline")
    rows_on, rows_off = online[0], offline[0]
    assert [r.decode() for r in rows_on["status"]] == [s for _, s in FRAMES.values()]
    for name in rows_on.dtype.names:
        if name in VOLATILE:
            continue
        for a, b, la, lb in zip(rows_on[name], rows_off[name], rows_on["label"], rows_off["label"]):
            if name == "reason":  # a failed shot's reason names it by its label
                a, b = a.replace(la, b"<label>"), b.replace(lb, b"<label>")
            same = a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))
            assert same, (name, a, b)
    assert [r.decode().split(":")[-1] for r in rows_on["label"]] == [f"train {t}" for t in FRAMES]
    assert [r.decode().split(":")[-1] for r in rows_off["label"]] == [f"train {t}" for t in FRAMES]
    np.testing.assert_array_equal(online[1], offline[1])
    np.testing.assert_array_equal(online[2], offline[2])  # the clouds, bit for bit
    assert online[1][1] > 50
