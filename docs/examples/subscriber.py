"""A front end's start: print what ``xstereo stream --publish tcp://*:5556`` publishes (docs/stream.md).

Usage: ``python subscriber.py [tcp://HOST:5556] [SHOTS]`` (stop after SHOTS shot messages; 0: never).
"""

import sys

import msgpack
import msgpack_numpy
import zmq

endpoint = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:5556"
count = int(sys.argv[2]) if len(sys.argv) > 2 else 0
sock = zmq.Context().socket(zmq.SUB)
sock.connect(endpoint)
sock.setsockopt(zmq.SUBSCRIBE, b"xstereo.")  # both topics: xstereo.shot and xstereo.stats
shots = 0
while count == 0 or shots < count:
    topic, body = sock.recv_multipart()
    msg = msgpack.unpackb(body, object_hook=msgpack_numpy.decode)
    if topic == b"xstereo.shot":
        shots += 1
        depth = msg["depth_preview_nm"]  # float32 (h, w) [nm] or None
        print(
            f"shot {msg['index']} train {msg['train_id']}: {msg['status']} {msg['reason']}; "
            f"{len(msg['cloud_points_nm'])} points, latency {msg['latency_s'] * 1e3:.0f} ms"
            + ("" if depth is None else f", depth preview {depth.shape}"),
            flush=True,
        )
    elif topic == b"xstereo.stats":
        lat = msg["latency_s"]
        print(
            f"stats: {msg['processed']} shots, hit rate {msg['hit_rate']:.2f}, "
            f"{msg['shots_per_s']:.1f} shots/s, latency p50 {lat['p50'] * 1e3:.0f} ms, "
            f"dropped {msg['dropped']}, bad messages {msg['bad_messages']}",
            flush=True,
        )
