"""Shared by tests/test_stream_*.py: tiny options, a small stereo frame and its geometry, a subscriber."""

from __future__ import annotations

import functools
import threading
import time

import numpy as np

from xstereo_gpu import PipelineOptions, SimulationOptions, simulate_shot
from xstereo_gpu.io.xfel import xfel_geometry

#: Tiny options: 2 runs of 10 iterations, stereo at upsample 2 (a hit in about 1 s on a CPU core).
OPTIONS = PipelineOptions.for_sample("cross", "cpu").replace(
    phasing__runs=2, phasing__iterations=10, preprocess__upsample=2, match__dmin=-33, match__dmax=33
)
CAM = "SPB_EXP_STEREO/CAM/CCD:daqOutput"
KEY = "data.image.pixels"


@functools.cache
def shot():
    """A small simulated stereo shot (256 x 256 frame, 128 px patterns) whose counts fit a uint16."""
    s = simulate_shot(
        SimulationOptions(
            binning=8,
            pattern_size=128,
            cross_size_um=(3.0, 3.0),
            arm_width_um=1.0,
            supersample=1,
            photons=4e6,
            seed=200,
        )
    )
    assert s.frame.max() < 65535
    return s


def hit_frame() -> np.ndarray:
    return np.round(shot().frame).astype(np.uint16)


def blank_frame() -> np.ndarray:
    return np.round(shot().frame * 1e-4).astype(np.uint16)


def geometry_keywords() -> dict:
    s = shot()
    return dict(
        wavelength_m=s.wavelength_m,
        distance_m=s.distance_m,
        detector_pixel_m=s.detector_pixel_m,
        angles_deg=tuple(s.angles_deg),
        centres_px=s.centres_px.tolist(),
        pattern_size=s.pattern_size,
    )


def geometry() -> dict:
    return xfel_geometry("test", geometry_keywords(), shot().frame.shape)


def train(frame: np.ndarray, tid: int) -> tuple[dict, dict]:
    """A bridge train ``(data, metadata)`` holding ``frame`` as the camera's image."""
    return {CAM: {KEY: frame}}, {CAM: {"timestamp.tid": tid}}


class Subscriber:
    """A SUB socket collecting every message of a publisher on a thread, until :meth:`close`."""

    def __init__(self, endpoint: str):
        import zmq

        self.messages: list[tuple[bytes, dict]] = []
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._sock.connect(endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        import msgpack
        import msgpack_numpy

        while not self._stop.is_set():
            if self._sock.poll(50):
                topic, body = self._sock.recv_multipart()
                self.messages.append((topic, msgpack.unpackb(body, object_hook=msgpack_numpy.decode)))

    def wait_for(self, topic: bytes, n: int = 1, timeout: float = 10.0, until=None) -> list[dict]:
        """The messages of ``topic`` once there are ``n`` (and ``until(message)`` holds for one)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            got = [m for t, m in list(self.messages) if t == topic]
            if len(got) >= n and (until is None or any(until(m) for m in got)):
                return got
            time.sleep(0.02)
        return [m for t, m in list(self.messages) if t == topic]

    def close(self):
        self._stop.set()
        self._thread.join()
        self._sock.close(linger=0)
        self._ctx.term()
