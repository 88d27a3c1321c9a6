"""End-to-end latency and sustained shots/s of ``xstereo stream``: karabo-bridge's simulation server to a
subscribing client, all on this machine over loopback TCP (issue 13).

A ``karabo_bridge.ServerInThread`` (REP, protocol 2.2) is fed trains holding one simulated stereo frame
each (256 x 256, 2 x 128^2 patterns; a fraction ``--hit-rate`` hits, the rest blanks at 1e-4 of the
photons); :func:`~xstereo_gpu.stream.run_stream` reads them (queue ``--queue``, policy ``block``, so no
shot is dropped), reconstructs them with ``--runs`` x ``--iterations`` phasing (the cross recipe of the
``cpu`` profile otherwise) and publishes the results; a SUB client here receives every ``xstereo.shot``
message. Latency = the time the subscriber has the shot's message minus the time its train was fed to
the server. Two modes:

* ``saturate``: every train fed at once; shots/s = shots / (last message - first feed), latency includes
  the time a train waits in the server's buffer and the engine's queue (what a source that outruns the
  engine sees).
* ``paced``: one train every ``--period`` seconds (set it above the per-shot time): latency with no
  queueing, the engine's own.

Usage: ``python benchmarks/stream_bench.py --shots 200 --hit-rate 0 --mode saturate`` (blanks: the
per-message overhead), ``--shots 8 --hit-rate 1 --mode paced --period 3`` (hits). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import threading
import time

import numpy as np

from xstereo_gpu import PipelineOptions, SimulationOptions, simulate_shot
from xstereo_gpu.io.xfel import xfel_geometry
from xstereo_gpu.stream import TOPIC_SHOT, Publisher, StreamOptions, run_stream

CAM, KEY = "SPB_EXP_STEREO/CAM/CCD:daqOutput", "data.image.pixels"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=100)
    ap.add_argument("--hit-rate", type=float, default=0.0)
    ap.add_argument("--mode", choices=("saturate", "paced"), default="saturate")
    ap.add_argument("--period", type=float, default=1.0, help="paced: seconds between trains")
    ap.add_argument("--queue", type=int, default=4)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--backend", default=None)
    args = ap.parse_args()

    import msgpack
    import msgpack_numpy
    import zmq
    from karabo_bridge import ServerInThread

    shot = simulate_shot(
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
    hit = np.round(shot.frame).astype(np.uint16)
    blank = np.round(shot.frame * 1e-4).astype(np.uint16)
    geo = dict(
        wavelength_m=shot.wavelength_m,
        distance_m=shot.distance_m,
        detector_pixel_m=shot.detector_pixel_m,
        angles_deg=shot.angles_deg,
        centres_px=shot.centres_px,
        pattern_size=shot.pattern_size,
    )
    geometry = xfel_geometry("bench", geo, shot.frame.shape)
    options = PipelineOptions.for_sample("cross", "cpu").replace(
        phasing__runs=args.runs, phasing__iterations=args.iterations
    )
    rng = np.random.default_rng(0)
    kinds = rng.random(args.shots) < args.hit_rate

    fed: dict[int, float] = {}
    got: dict[int, float] = {}
    statuses: dict[int, str] = {}
    with ServerInThread("tcp://127.0.0.1:*", sock="REP", maxlen=max(10, args.shots)) as server:
        endpoint = server.endpoint
        pub = Publisher("tcp://127.0.0.1:*", hwm=10_000)
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"xstereo.")
        sub.connect(pub.endpoint)
        stop = threading.Event()
        opts = StreamOptions(
            endpoint,
            CAM,
            KEY,
            queue_size=args.queue,
            policy="block",
            max_shots=args.shots,
            stats_interval_s=0.1,
        )
        final: dict = {}
        runner = threading.Thread(
            target=lambda: final.update(
                run_stream(
                    opts,
                    geometry,
                    options,
                    publisher=pub,
                    stop=stop,
                    backend=args.backend,
                    log=lambda line: None,
                )
            ),
            daemon=True,
        )
        runner.start()
        sub.recv_multipart()  # the first statistics message: subscribed
        # one hit before the timing (imports, FFT plans): not counted
        warm = 10**9
        server.feed({CAM: {KEY: hit}}, {CAM: {"timestamp.tid": warm}})
        while True:
            topic, body = sub.recv_multipart()
            if topic == TOPIC_SHOT:
                break

        def feed():
            for tid in range(args.shots - 1):
                fed[tid] = time.perf_counter()
                server.feed({CAM: {KEY: hit if kinds[tid] else blank}}, {CAM: {"timestamp.tid": tid}})
                if args.mode == "paced":
                    time.sleep(args.period)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        while len(got) < args.shots - 1:
            if not sub.poll(120_000):
                break
            topic, body = sub.recv_multipart()
            if topic != TOPIC_SHOT:
                continue
            t = time.perf_counter()
            msg = msgpack.unpackb(body, object_hook=msgpack_numpy.decode)
            got[msg["train_id"]] = t
            statuses[msg["train_id"]] = msg["status"]
        runner.join(60)
        stop.set()
        sub.close(linger=0)
        ctx.term()
        pub.close()
    lat = np.array([got[t] - fed[t] for t in got])
    wall = max(got.values()) - min(fed.values())
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(
        json.dumps(
            {
                "mode": args.mode,
                "shots": len(got),
                "hits": int(sum(s == "ok" for s in statuses.values())),
                "shots_per_s": len(got) / wall,
                "latency_ms": {
                    q: float(np.percentile(lat, p) * 1e3) for q, p in (("p50", 50), ("p90", 90), ("p99", 99))
                },
                "latency_max_ms": float(lat.max() * 1e3),
                "engine": {
                    k: final.get(k) for k in ("processed", "dropped", "bad_messages", "queue_high_water")
                },
                "runs_x_iterations": f"{args.runs}x{args.iterations}",
                "queue": args.queue,
                "machine": f"{platform.processor() or platform.machine()}, {sys.platform}",
                "commit": commit,
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            }
        )
    )


if __name__ == "__main__":
    main()
