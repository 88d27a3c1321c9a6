"""Results out: a ZeroMQ PUB socket publishing each shot's result and the run's statistics.

Each message is two ZeroMQ frames: the topic tag (:data:`TOPIC_SHOT`, :data:`TOPIC_STATS`; a subscriber
filters by prefix) and a msgpack map, NumPy arrays encoded by msgpack-numpy (``msgpack.unpackb(payload,
object_hook=msgpack_numpy.decode)`` gives them back). The fields, dtypes and units are in docs/stream.md.
A PUB socket never waits for a slow subscriber: past its high-water mark ZeroMQ drops that subscriber's
messages, so front ends cannot hold the engine up.
"""

from __future__ import annotations

import math

import numpy as np

from ..batch.record import ShotRecord

__all__ = ["Publisher", "shot_message", "depth_preview", "TOPIC_SHOT", "TOPIC_STATS", "QUALITY_FIELDS"]

TOPIC_SHOT = b"xstereo.shot"
TOPIC_STATS = b"xstereo.stats"
#: Summary-table columns (:data:`~xstereo_gpu.batch.record.COLUMNS`) sent as a shot's ``quality``.
QUALITY_FIELDS = (
    "pixel_size_nm",
    "voxel_depth_nm",
    "prtf_resolution_left_nm",
    "prtf_resolution_right_nm",
    "edge_resolution_left_nm",
    "edge_resolution_right_nm",
    "best_eps_median_left",
    "best_eps_median_right",
    "points",
)


def depth_preview(depth, side: int) -> np.ndarray:
    """The depth map shrunk to at most ``side`` pixels a side: means of ``k x k`` blocks, NaN ignored.

    Parameters
    ----------
    depth : (H, W) float
        Depth [nm], NaN where invalid.
    side : int
        Longest side of the preview [px].

    Returns
    -------
    (ceil(H / k), ceil(W / k)) float32
        ``k = ceil(max(H, W) / side)``; NaN where a block has no valid pixel.
    """
    d = np.asarray(depth, dtype=np.float32)
    k = max(1, math.ceil(max(d.shape) / max(int(side), 1)))
    h, w = -(-d.shape[0] // k) * k, -(-d.shape[1] // k) * k
    padded = np.full((h, w), np.nan, np.float32)
    padded[: d.shape[0], : d.shape[1]] = d
    blocks = padded.reshape(h // k, k, w // k, k)
    good = np.isfinite(blocks)
    n = good.sum(axis=(1, 3))
    total = np.where(good, blocks, 0).sum(axis=(1, 3), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan).astype(np.float32)


def shot_message(
    rec: ShotRecord,
    row: dict,
    cloud: tuple[np.ndarray, np.ndarray],
    *,
    extra: dict,
    received: float,
    latency_s: float,
    preview_px: int,
    max_points: int,
) -> dict:
    """The ``xstereo.shot`` message of a processed shot (docs/stream.md).

    Parameters
    ----------
    rec : ShotRecord
        The shot's record (with its host Results when ok).
    row, cloud
        Its summary row and cleaned cloud (:func:`~xstereo_gpu.batch.record.record_row`,
        :func:`~xstereo_gpu.batch.record.record_cloud`): the store's values.
    extra : dict
        ``train_id`` and ``pulse`` of the shot.
    received : float
        Unix time its message arrived [s].
    latency_s : float
        Seconds from the arrival to this message [s].
    preview_px : int
        Longest side of the depth preview [px].
    max_points : int
        Cloud points sent at most (every ``ceil(M / max_points)``-th point beyond).
    """
    points, conf = cloud
    step = max(1, math.ceil(len(points) / max(int(max_points), 1)))
    res = rec.results
    return {
        "index": int(rec.index),
        "label": rec.label,
        "train_id": extra.get("train_id"),
        "pulse": int(extra.get("pulse", 0)),
        "status": rec.status,
        "reason": rec.reason,
        "photons": np.asarray(rec.photons, dtype=np.float64),
        "quality": {name: row[name] for name in QUALITY_FIELDS},
        "timings_s": {k: float(v) for k, v in rec.timings.items()},
        "received": float(received),
        "latency_s": float(latency_s),
        "depth_preview_nm": None if res is None else depth_preview(res.cloud.depth, preview_px),
        "cloud_points_nm": np.asarray(points[::step], dtype=np.float32),
        "cloud_confidence": np.asarray(conf[::step], dtype=np.float32),
        "cloud_points_total": int(len(points)),
    }


class Publisher:
    """A bound ZeroMQ PUB socket sending topic-tagged msgpack messages.

    Parameters
    ----------
    endpoint : str
        Where to bind (``tcp://*:5556``, ``tcp://127.0.0.1:*`` for a free port).
    hwm : int
        Messages queued per subscriber at most; more are dropped for that subscriber.

    Attributes
    ----------
    endpoint : str
        The bound endpoint (the port chosen for ``*``).
    sent : int
        Messages sent.
    """

    def __init__(self, endpoint: str, *, hwm: int = 100):
        import zmq

        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.PUB)
        self._socket.setsockopt(zmq.LINGER, 500)
        self._socket.setsockopt(zmq.SNDHWM, int(hwm))
        self._socket.bind(endpoint)
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.sent = 0

    def send(self, topic: bytes, payload: dict) -> None:
        """Publish ``payload`` under ``topic`` (never waits)."""
        import msgpack
        import msgpack_numpy
        import zmq

        body = msgpack.packb(payload, default=msgpack_numpy.encode, use_bin_type=True)
        self._socket.send_multipart([topic, body], flags=zmq.NOBLOCK)
        self.sent += 1

    def close(self) -> None:
        """Close the socket (queued messages get half a second to leave) and its context."""
        self._socket.close()
        self._context.term()
