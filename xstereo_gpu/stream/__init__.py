"""Online: shots from a Karabo bridge through the many-shot path, results published over ZeroMQ.

Modules::

    deps      require                    the optional packages (the ``stream`` extra), with a clear message
    wire      decode, train_frames, train_shots   bridge messages (protocol 2.2) checked, frames into shots
    bridge    BridgeClient               REQ / SUB / PULL client with reconnect and backoff
    queues    BoundedQueue               the receiver-to-engine queue: drop-oldest or block, with counters
    stats     StreamStats                counters, rates and latency percentiles
    publish   Publisher, shot_message    results and statistics on a ZeroMQ PUB socket (msgpack)
    engine    StreamOptions, run_stream  the loop: receive, veto, reconstruct, publish, store
    serve     serve_run                  replay a stored EuXFEL run over the bridge protocol

Beside :mod:`xstereo_gpu.batch`, whose shot code (:func:`~xstereo_gpu.batch.shots.process_shots`) and
run store it reuses; the message schema is in docs/stream.md.
"""

from .engine import StreamOptions, run_stream
from .publish import TOPIC_SHOT, TOPIC_STATS, Publisher
from .serve import serve_run

__all__ = ["StreamOptions", "run_stream", "Publisher", "serve_run", "TOPIC_SHOT", "TOPIC_STATS"]
