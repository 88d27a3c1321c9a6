"""``run_stream`` against karabo-bridge's own server (``karabo_bridge.ServerInThread``, protocol 2.2),
fed trains holding simulated stereo frames: results published and stored, bad messages counted,
backpressure, reconnect (issue 13). Loopback only; every wait is bounded."""

from __future__ import annotations

import threading
import time

import h5py
import msgpack
import numpy as np
import pytest
import zmq
from karabo_bridge import ServerInThread
from karabo_bridge.serializer import serialize
from stream_helpers import CAM, KEY, OPTIONS, Subscriber, blank_frame, geometry, hit_frame, train

from xstereo_gpu.stream import TOPIC_SHOT, TOPIC_STATS, Publisher, StreamOptions, run_stream
from xstereo_gpu.stream.queues import BoundedQueue

LOOPBACK = "tcp://127.0.0.1:*"  # a free port, chosen by ZeroMQ


class Streaming:
    """``run_stream`` on a thread; ``result()`` waits for its final statistics (bounded)."""

    def __init__(self, opts: StreamOptions, **kw):
        self.lines: list[str] = []
        self.stop = threading.Event()
        self.final: dict | None = None
        self.error: BaseException | None = None

        def target():
            try:
                self.final = run_stream(
                    opts, geometry(), OPTIONS, stop=self.stop, log=self.lines.append, **kw
                )
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def wait_line(self, text: str, timeout: float = 10.0) -> bool:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.02)
        return False

    def result(self, timeout: float = 30.0) -> dict:
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.stop.set()
            self.thread.join(10)
            pytest.fail(f"the stream did not end in {timeout} s; log: {self.lines}")
        if self.error is not None:
            raise self.error
        return self.final


def test_stream_from_the_bridge_simulation_server_publishes_and_stores(tmp_path):
    nan = np.full(hit_frame().shape, np.nan, np.float32)
    frames = {1000: hit_frame(), 1001: blank_frame(), 1002: nan}
    with ServerInThread(LOOPBACK, sock="REP") as server:
        endpoint = server.endpoint
        pub = Publisher(LOOPBACK)
        sub = Subscriber(pub.endpoint)
        try:
            opts = StreamOptions(server.endpoint, CAM, KEY, max_shots=3, stats_interval_s=0.2, preview_px=16)
            run = Streaming(opts, publisher=pub, store=tmp_path / "store")
            assert sub.wait_for(TOPIC_STATS), "no statistics message before the first train"
            for tid, frame in frames.items():
                server.feed(*train(frame, tid))
            final = run.result()
            shots = {m["train_id"]: m for m in sub.wait_for(TOPIC_SHOT, 3)}
            stats = sub.wait_for(TOPIC_STATS, 2, until=lambda m: m["final"])
        finally:
            sub.close()
            pub.close()
    assert {t: m["status"] for t, m in shots.items()} == {1000: "ok", 1001: "blank", 1002: "failed"}
    ok = shots[1000]
    assert ok["label"] == f"{endpoint}:train 1000" and ok["index"] == 0
    preview = ok["depth_preview_nm"]
    assert preview.dtype == np.float32 and max(preview.shape) <= 16 and np.isfinite(preview).any()
    pts = ok["cloud_points_nm"]
    assert pts.dtype == np.float32 and pts.shape[1] == 3 and len(pts) == ok["cloud_points_total"] > 50
    assert ok["cloud_confidence"].shape == (len(pts),)
    assert ok["quality"]["points"] == len(pts) and ok["quality"]["pixel_size_nm"] > 0
    assert ok["timings_s"]["phase"] > 0 and ok["latency_s"] > 0 and ok["photons"].shape == (2,)
    assert shots[1001]["depth_preview_nm"] is None and len(shots[1001]["cloud_points_nm"]) == 0
    assert "photons in the weaker pattern window" in shots[1001]["reason"]
    assert "NaN" in shots[1002]["reason"]
    assert any("train 1002" in line and "failed" in line for line in run.lines)
    last = stats[-1]
    assert last["final"] and last == final
    assert (final["processed"], final["ok"], final["blank"], final["failed"]) == (3, 1, 1, 1)
    assert final["hit_rate"] == pytest.approx(1 / 3) and final["dropped"] == 0 and final["bad_messages"] == 0
    assert 0 < final["latency_s"]["p50"] <= final["latency_s"]["max"]
    # the store holds what was published, as `xstereo batch` writes it
    with h5py.File(tmp_path / "store" / "run.h5", "r") as f:
        rows = f["summary"][()]
        offsets = f["clouds/offsets"][()]
    assert [r.decode() for r in rows["status"]] == ["ok", "blank", "failed"]
    assert list(rows["index"]) == [0, 1, 2] and offsets[1] == ok["cloud_points_total"]


def _garbage() -> list[list[bytes]]:
    """Messages a bridge client must survive: each is counted as bad, none stops the stream."""
    pack = msgpack.packb
    head = pack({"source": CAM, "content": "msgpack", "metadata": {"timestamp.tid": 7}})

    def array(shape, dtype, payload: bytes):
        return [
            head,
            pack({}),
            pack({"source": CAM, "content": "array", "path": KEY, "dtype": dtype, "shape": shape}),
            payload,
        ]

    frame = blank_frame()
    return [
        [b"\xc1 not msgpack at all"],  # one frame: not the 2.2 pairs
        [b"\xc1\xc1", b"x"],  # a header that is not msgpack
        [pack({"content": "msgpack"}), pack({})],  # a header without a source
        [pack({"source": CAM, "content": "video"}), b""],  # an unknown content
        array([1 << 30, 1 << 30], "<f4", b"\0" * 16),  # a huge declared size, 16 bytes sent
        array([2], "|O", b"\0" * 16),  # Python objects
        array([2, 2], "<c8", b"\0" * 32),  # complex: not intensities
        serialize({CAM: {"other.key": frame}}),  # the key missing
        serialize({"ANOTHER/SOURCE": {KEY: frame}}),  # the source missing
        serialize({CAM: {KEY: np.zeros((2, 2, 2, 2), np.uint16)}}),  # a 4D entry
        serialize({CAM: {KEY: np.ones((8, 8), np.uint16)}}),  # too small for the pattern centres
    ]


def test_bad_messages_are_counted_logged_and_skipped():
    garbage = _garbage()
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.bind(LOOPBACK)
    try:
        endpoint = push.getsockopt_string(zmq.LAST_ENDPOINT)
        run = Streaming(StreamOptions(endpoint, CAM, KEY, sock="PULL", max_shots=1))
        for msg in garbage:
            push.send_multipart(msg)
        push.send_multipart(serialize(*train(blank_frame(), 42)))
        final = run.result()
    finally:
        push.close()
        ctx.term()
    assert final["bad_messages"] == len(garbage) and final["messages"] == len(garbage) + 1
    assert (final["processed"], final["blank"]) == (1, 1)
    bad = [line for line in run.lines if line.startswith("bad message")]
    assert len(bad) == len(garbage)
    for text in (
        "bridge protocol 2.2",
        "not msgpack",
        "'source'",
        "content 'video'",
        "payload holds 16",
        "dtype '|O'",
        "dtype '<c8'",
        "no key",
        "no source",
        "(2, 2, 2, 2)",
        "lie outside",
    ):
        assert any(text in line for line in bad), text


def test_backpressure_drop_oldest_bounds_the_queue_and_counts_the_drops():
    """A hit keeps the engine busy while 12 blank trains arrive: a queue of 1 drops the oldest (which
    shots are dropped depends on the threads' timing; that some are, and the counts, do not)."""
    with ServerInThread(LOOPBACK, sock="PUSH", maxlen=20) as server:
        run = Streaming(
            StreamOptions(
                server.endpoint, CAM, KEY, sock="PULL", queue_size=1, max_shots=13, shots_per_launch=1
            )
        )
        server.feed(*train(hit_frame(), 1))
        for tid in range(2, 14):
            server.feed(*train(blank_frame(), tid))
        final = run.result()
    assert final["shots_received"] == 13 and final["queue_high_water"] == 1
    assert final["dropped_backpressure"] >= 1  # the hit, or blanks that came while it was reconstructed
    assert final["processed"] + final["dropped"] == 13 and final["dropped_on_exit"] == 0
    assert final["ok"] + final["blank"] == final["processed"]


def test_backpressure_block_loses_nothing():
    with ServerInThread(LOOPBACK, sock="PUSH", maxlen=20) as server:
        run = Streaming(
            StreamOptions(server.endpoint, CAM, KEY, sock="PULL", queue_size=1, policy="block", max_shots=8)
        )
        for tid in range(8):
            server.feed(*train(blank_frame(), tid))
        final = run.result()
    assert (final["processed"], final["blank"], final["dropped"]) == (8, 8, 0)
    q, stop = BoundedQueue(2, "block"), threading.Event()
    assert q.put(1, stop) and q.put(2, stop)
    stop.set()
    assert not q.put(3, stop)  # full and stopped: not added, not dropped
    assert q.get_many(5, 0.1) == [1, 2] and q.dropped == 0 and q.blocked_s > 0


def test_a_source_that_disappears_is_reconnected_with_backoff():
    server = ServerInThread(LOOPBACK, sock="REP")
    endpoint = server.endpoint
    server.start()
    opts = StreamOptions(endpoint, CAM, KEY, max_shots=2, silence_s=0.3, backoff_s=(0.1, 0.4))
    run = Streaming(opts)
    server.feed(*train(blank_frame(), 1))
    t0 = time.monotonic()
    while server.buffer.qsize() and time.monotonic() - t0 < 10:
        time.sleep(0.02)
    time.sleep(0.3)  # the train leaves the socket
    server.stop()  # the bridge goes away
    assert run.wait_line("reconnecting"), run.lines
    with ServerInThread(endpoint, sock="REP") as again:  # and comes back on the same port
        again.feed(*train(blank_frame(), 2))
        final = run.result()
    assert final["processed"] == 2 and final["reconnects"] >= 1
    line = next(line for line in run.lines if "reconnecting" in line)
    assert line.startswith(f"source {endpoint}: no data for") and "(attempt 1)" in line
