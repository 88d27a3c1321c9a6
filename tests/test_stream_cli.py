"""``xstereo stream`` as a process: SIGTERM ends it with exit 0 and the store written; the example
subscriber of docs/examples runs against a real publisher (issue 13). Loopback only, bounded waits."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
from karabo_bridge import ServerInThread
from stream_helpers import CAM, KEY, OPTIONS, blank_frame, geometry, geometry_keywords, hit_frame, train

import xstereo_gpu
from xstereo_gpu.stream import Publisher, StreamOptions, run_stream

ROOT = pathlib.Path(__file__).resolve().parents[1]
SUBSCRIBER = ROOT / "docs" / "examples" / "subscriber.py"
LOOPBACK = "tcp://127.0.0.1:*"


def _env() -> dict:
    env = dict(os.environ)
    here = str(pathlib.Path(xstereo_gpu.__file__).resolve().parents[1])
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Lines:
    """The lines a pipe of a process writes, collected on a thread."""

    def __init__(self, pipe):
        self.lines: list[str] = []
        self._thread = threading.Thread(
            target=lambda: self.lines.extend(iter(pipe.readline, "")), daemon=True
        )
        self._thread.start()

    def wait_for(self, text: str, timeout: float) -> bool:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if any(text in line for line in list(self.lines)):
                return True
            time.sleep(0.05)
        return False

    def text(self) -> str:
        self._thread.join(10)
        return "".join(self.lines)


def _feed_blanks(
    server, stop: threading.Event, first_tid: int = 1, every_s: float = 0.05
) -> threading.Thread:
    def feed():
        tid = first_tid
        while not stop.is_set():
            try:
                server.feed(*train(blank_frame(), tid), timeout=0.2)
                tid += 1
            except Exception:  # noqa: BLE001 - queue.Full: the client is not asking; try again
                pass
            stop.wait(every_s)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    return t


def test_sigterm_ends_a_running_stream_with_exit_0_and_the_store_flushed(tmp_path):
    geo = geometry_keywords()
    flags = ["--wavelength", str(geo["wavelength_m"]), "--distance", str(geo["distance_m"])]
    flags += ["--detector-pixel", str(geo["detector_pixel_m"]), "--angles", *map(str, geo["angles_deg"])]
    flags += ["--centres", *(str(v) for rc in geo["centres_px"] for v in rc)]
    flags += ["--pattern-size", str(geo["pattern_size"])]
    store = tmp_path / "store"
    stop = threading.Event()
    with ServerInThread(LOOPBACK, sock="REP") as server:
        endpoint = server.endpoint
        server.feed(*train(np.full(hit_frame().shape, np.nan, np.float32), 0))  # failed: a log line
        feeder = _feed_blanks(server, stop)
        argv = [sys.executable, "-m", "xstereo_gpu.cli", "stream", "--source", endpoint, "--det-source", CAM]
        argv += ["--key", KEY, *flags, "-o", str(store), "--chunk-size", "1000", "--profile", "cpu"]
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path
        )
        try:
            err, stdout = Lines(proc.stderr), Lines(proc.stdout)
            assert err.wait_for("train 0) failed", 60), err.lines
            time.sleep(0.3)  # some blank shots too
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)  # not communicate(): it would read stderr beside the Lines thread
            out = stdout.text()
        finally:
            stop.set()
            feeder.join(5)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err.text()
    final = json.loads(out)
    assert final["final"] and final["failed"] == 1 and final["processed"] >= 2
    assert f"signal {int(signal.SIGTERM)}: stopping" in err.text() and "stream ended" in err.text()
    with h5py.File(store / "run.h5", "r") as f:  # every shot processed is in the store
        rows = f["summary"][()]
    assert len(rows) == final["processed"] and rows["status"][0] == b"failed"
    assert list(rows["index"]) == list(range(len(rows)))


def test_the_example_subscriber_prints_shots_and_stats_from_a_publisher():
    stop = threading.Event()
    with ServerInThread(LOOPBACK, sock="REP") as server:
        pub = Publisher(LOOPBACK)
        opts = StreamOptions(server.endpoint, CAM, KEY, stats_interval_s=0.1, max_shots=50)
        runner = threading.Thread(
            target=run_stream,
            args=(opts, geometry(), OPTIONS),
            kwargs=dict(publisher=pub, stop=stop),
            daemon=True,
        )
        runner.start()
        proc = subprocess.Popen(
            [sys.executable, str(SUBSCRIBER), pub.endpoint, "3"],
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        feeder, feeding = None, threading.Event()
        try:
            lines = Lines(proc.stdout)
            assert lines.wait_for("stats:", 30), lines.lines  # subscribed: the shots will reach it
            feeder = _feed_blanks(server, feeding, every_s=0.02)
            proc.wait(timeout=30)
        finally:
            stop.set()
            feeding.set()
            runner.join(10)
            if feeder is not None:
                feeder.join(5)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            pub.close()
    assert proc.returncode == 0
    text = lines.text()
    shots = [line for line in text.splitlines() if line.startswith("shot ")]
    assert len(shots) == 3 and all(": blank" in line and "0 points" in line for line in shots), text
    assert "stats: 0 shots" in text and "dropped 0" in text


def test_missing_packages_and_missing_geometry_are_clear_errors(monkeypatch, capsys):
    from xstereo_gpu.cli import main

    argv = ["stream", "--source", "tcp://127.0.0.1:9", "--det-source", CAM, "--key", KEY]
    assert main(argv) == 2  # no bridge needed: the geometry is checked before connecting
    err = capsys.readouterr().err
    assert "wavelength_m, distance_m" in err and "--wavelength" in err and "--pattern-size" in err
    monkeypatch.setitem(sys.modules, "zmq", None)  # pyzmq not installed
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "zmq not installed" in err and "pip install 'xstereo-gpu[stream]'" in err
