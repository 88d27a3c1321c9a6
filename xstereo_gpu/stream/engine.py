"""The online loop: trains from a Karabo bridge, shots through the batch path, results published.

Two threads. The *receiver* takes each message from the bridge (:class:`~.bridge.BridgeClient`),
checks and decodes it (:mod:`.wire`; a bad message is counted, logged and skipped), turns its frames
into shots and puts them in a :class:`~.queues.BoundedQueue` (full: drop the oldest, or wait). The
*engine* (the calling thread) takes up to ``shots_per_launch`` shots at a time and runs them through
exactly the code of ``xstereo batch`` (:func:`~xstereo_gpu.batch.shots.process_shots`: hit veto, stacked
phasing, the other stages), then publishes each record (:mod:`.publish`) and, with a store, writes it
to a run store (:class:`~xstereo_gpu.batch.store.RunStore`) as ``xstereo batch`` does: the same frames
give the same rows and clouds online and offline.

Memory is bounded: the bridge socket holds one message, the queue ``queue_size`` shots, the engine one
launch of shots and the store's pending chunk ``chunk_size`` rows and clouds (no Results).

Stopping: ``stop`` set (SIGINT/SIGTERM in ``xstereo stream``) ends the receiver; the launch in flight
finishes, the shots still queued are dropped (counted as ``dropped_on_exit``), the store is flushed and
``run.h5`` written, a last statistics message (``final: true``) is published. The stream also ends by
itself after ``max_shots`` shots or ``idle_exit_s`` seconds without a message (a replay that finished),
processing what is queued first.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import __version__
from ..batch.record import record_cloud, record_row
from ..batch.shots import DEFAULT_VETO, process_shots
from ..batch.store import RunStore
from ..batch.veto import VetoOptions
from ..config import PipelineOptions
from ..errors import check
from ..pipeline import Pipeline
from .bridge import SOCKETS, BridgeClient
from .publish import TOPIC_SHOT, TOPIC_STATS, Publisher, shot_message
from .queues import POLICIES, BoundedQueue
from .stats import StreamStats
from .wire import WireError, decode, train_frames, train_shots

__all__ = ["StreamOptions", "run_stream"]


@dataclass(frozen=True)
class StreamOptions:
    """How ``xstereo stream`` reads a bridge, queues and publishes.

    Attributes
    ----------
    source : str
        The bridge's endpoint, ``tcp://HOST:PORT``.
    det_source, key : str
        The detector's source name and the key of its frames (``data.image.pixels``, ``image.data``).
    sock : {"REQ", "SUB", "PULL"}
        This client's socket, for a bridge that binds REP, PUB or PUSH.
    queue_size : int
        Shots waiting at most between the receiver and the engine.
    policy : {"drop-oldest", "block"}
        What a full queue does (:data:`~.queues.POLICIES`).
    shots_per_launch : int
        Shots taken from the queue at once, phased in one stacked launch at most.
    chunk_size : int
        Shots per chunk file of the store.
    stats_interval_s : float
        Seconds between statistics messages [s].
    silence_s : float
        Seconds without a message before a reconnect [s].
    backoff_s : (float, float)
        First and longest wait before a reconnect [s].
    max_message_bytes : int
        Largest message accepted [bytes].
    preview_px : int
        Longest side of the published depth preview [px].
    max_points : int
        Cloud points published per shot at most.
    max_shots : int or None
        Stop after receiving this many shots (None: run until stopped).
    idle_exit_s : float or None
        Stop after this many seconds without a message (None: reconnect and wait for ever).
    """

    source: str
    det_source: str
    key: str
    sock: str = "REQ"
    queue_size: int = 16
    policy: str = "drop-oldest"
    shots_per_launch: int = 4
    chunk_size: int = 16
    stats_interval_s: float = 2.0
    silence_s: float = 10.0
    backoff_s: tuple[float, float] = (1.0, 30.0)
    max_message_bytes: int = 1 << 30
    preview_px: int = 64
    max_points: int = 20000
    max_shots: int | None = None
    idle_exit_s: float | None = None

    def __post_init__(self):
        check(self.sock in SOCKETS, "--sock", repr(self.sock), f"one of {', '.join(SOCKETS)}")
        check(self.policy in POLICIES, "--policy", repr(self.policy), f"one of {', '.join(POLICIES)}")
        for name in ("queue_size", "shots_per_launch", "chunk_size", "preview_px", "max_points"):
            v = getattr(self, name)
            check(isinstance(v, int) and v >= 1, name, repr(v), "an integer >= 1")
        for name in ("stats_interval_s", "silence_s"):
            check(getattr(self, name) > 0, name, repr(getattr(self, name)), "seconds > 0")


def _stderr(line: str) -> None:
    print(f"[stream] {line}", file=sys.stderr, flush=True)


def _receive(client, opts: StreamOptions, geometry, queue, stats, stop, done, log, first_index) -> None:
    """The receiver thread: messages into shots into the queue, until stopped, idle or enough shots."""
    index = first_index
    n = 0
    try:
        while not stop.is_set():
            if opts.max_shots is not None and index - first_index >= opts.max_shots:
                return
            parts = client.receive(stop, give_up_s=opts.idle_exit_s)
            if parts is None:
                if not stop.is_set():
                    log(f"source {opts.source}: no message for {opts.idle_exit_s:g} s; ending the stream")
                return
            t_recv, t_arrived, t0 = time.time(), time.monotonic(), time.perf_counter()
            stats.add(messages=1)
            try:
                data, meta = decode(parts, max_bytes=opts.max_message_bytes)
                train = train_frames(data, meta, opts.det_source, opts.key)
                shots = train_shots(train, geometry, opts.source, n)
            except WireError as exc:
                stats.add(bad_messages=1)
                log(f"bad message {n} from {opts.source}: {exc}; skipped")
                continue
            except Exception as exc:  # noqa: BLE001 - no message may stop the stream; named in the log
                stats.add(bad_messages=1)
                log(f"bad message {n} from {opts.source}: {type(exc).__name__}: {exc}; skipped")
                continue
            finally:
                n += 1
                del parts
            read_s = (time.perf_counter() - t0) / len(shots)
            for label, shot, extra in shots:
                if not queue.put((index, label, shot, read_s, extra, t_recv, t_arrived), stop):
                    stats.add(dropped_on_exit=1)  # stopped while waiting for room (policy block)
                    return
                stats.add(shots_received=1)
                index += 1
    finally:
        done.set()


def run_stream(
    opts: StreamOptions,
    geometry: dict,
    options: PipelineOptions | None = None,
    *,
    publisher: Publisher | None = None,
    store=None,
    veto: VetoOptions = DEFAULT_VETO,
    backend: str | None = None,
    max_memory: int | None = None,
    stop: threading.Event | None = None,
    log: Callable[[str], None] = _stderr,
) -> dict:
    """Reconstruct the shots a Karabo bridge sends, until stopped; publish and optionally store them.

    Parameters
    ----------
    opts : StreamOptions
        The bridge, queue and publication settings.
    geometry : dict
        The shots' geometry (:func:`~xstereo_gpu.io.xfel.xfel_geometry`: a bridge sends none).
    options : PipelineOptions, optional
        The pipeline's options (default: the profile of the backend).
    publisher : Publisher, optional
        Where results and statistics go (the caller closes it).
    store : str or path-like, optional
        A run store directory, as ``xstereo batch -o`` (created when missing; an existing one is
        continued with indices after its last).
    veto, backend, max_memory
        As for :func:`~xstereo_gpu.batch.process.process_run`.
    stop : threading.Event, optional
        Set it to end the stream (a signal handler does); the launch in flight finishes.
    log : callable
        ``log(line)``: reconnects, bad messages, the end (default: stderr, ``[stream]`` first).

    Returns
    -------
    dict
        The final statistics (the last ``xstereo.stats`` message).
    """
    stop = stop if stop is not None else threading.Event()
    pipe = Pipeline(options, backend=backend, max_memory=max_memory)
    run_store = RunStore(store) if store is not None else None
    first_index = max(run_store.labels(), default=-1) + 1 if run_store is not None else 0
    metadata = {
        "options_toml": pipe.options.to_toml(),
        "program": "xstereo-gpu",
        "version": __version__,
        "backend": "numpy" if pipe.xp is np else "cupy",
        "sources": json.dumps(
            {"kind": "karabo-bridge", "endpoint": opts.source, "source": opts.det_source, "key": opts.key}
            | {"geometry": {k: (np.asarray(v).tolist()) for k, v in geometry.items()}}
        ),
        "veto_min_photons": float(veto.min_photons),
        "chunk_size": int(opts.chunk_size),
    }
    queue = BoundedQueue(opts.queue_size, opts.policy)
    stats = StreamStats()
    client = BridgeClient(
        opts.source,
        opts.sock,
        max_bytes=opts.max_message_bytes,
        silence_s=opts.silence_s,
        backoff_s=opts.backoff_s,
        log=log,
    )
    received = threading.Event()  # the receiver has ended
    receiver = threading.Thread(
        target=_receive,
        args=(client, opts, geometry, queue, stats, stop, received, log, first_index),
        name="xstereo-stream-receiver",
        daemon=True,
    )

    def publish_stats(final: bool = False) -> dict:
        snap = stats.snapshot(queue=queue, reconnects=client.reconnects, final=final)
        if publisher is not None:
            publisher.send(TOPIC_STATS, snap)
        return snap

    pending: list[tuple[dict, tuple]] = []
    log(
        f"reading {opts.det_source} {opts.key} from {opts.source} ({opts.sock}), queue {opts.queue_size} "
        f"({opts.policy})" + (f", publishing on {publisher.endpoint}" if publisher is not None else "")
    )
    receiver.start()
    next_stats = time.monotonic() + opts.stats_interval_s
    try:
        while not stop.is_set():
            items = queue.get_many(opts.shots_per_launch, timeout=0.1)
            if time.monotonic() >= next_stats:
                publish_stats()
                next_stats = time.monotonic() + opts.stats_interval_s
            if not items:
                if received.is_set() and not len(queue):
                    break
                continue
            records = process_shots(
                pipe,
                [(i, lab, shot, t) for i, lab, shot, t, *_ in items],
                veto=veto,
                max_shots=opts.shots_per_launch,
            )
            for rec, (*_, extra, t_recv, t_mono) in zip(records, items):
                row, cloud = record_row(rec), record_cloud(rec)
                latency = time.monotonic() - t_mono
                if publisher is not None:
                    publisher.send(
                        TOPIC_SHOT,
                        shot_message(
                            rec,
                            row,
                            cloud,
                            extra=extra,
                            received=t_recv,
                            latency_s=latency,
                            preview_px=opts.preview_px,
                            max_points=opts.max_points,
                        ),
                    )
                stats.record(rec.status, latency)
                if rec.status == "failed":
                    log(f"shot {rec.index} ({rec.label}) failed: {rec.reason}")
                if run_store is not None:
                    pending.append((row, cloud))
                    if len(pending) >= opts.chunk_size:
                        run_store.write_rows(*zip(*pending), metadata=metadata)
                        pending = []
            del items, records
    finally:
        stop.set()
        receiver.join()
        stats.dropped_on_exit += queue.clear()
        client.close()
        if run_store is not None:
            if pending:
                run_store.write_rows(*zip(*pending), metadata=metadata)
            if run_store.chunk_paths():
                run_store.finalize(metadata=metadata)
        final = publish_stats(final=True)
    log(
        f"stream ended: {final['processed']} shots ({final['ok']} ok, {final['blank']} blank, "
        f"{final['failed']} failed), {final['dropped']} dropped, {final['bad_messages']} bad messages, "
        f"{final['reconnects']} reconnects"
    )
    return final
