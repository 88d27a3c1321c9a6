"""Counters and latencies of a stream, for the periodic statistics message and the final report."""

from __future__ import annotations

import collections
import threading
import time

import numpy as np

__all__ = ["StreamStats", "LATENCY_WINDOW"]

#: Latencies kept for the percentiles (the most recent shots).
LATENCY_WINDOW = 1000


class StreamStats:
    """What a stream has done so far; updated by the receiver and the engine threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self.t0 = time.time()
        self.messages = self.bad_messages = self.shots_received = 0
        self.counts = {"ok": 0, "blank": 0, "failed": 0}
        self.dropped_on_exit = 0
        self._latencies: collections.deque = collections.deque(maxlen=LATENCY_WINDOW)
        self._last = (time.monotonic(), 0)

    def add(self, **counts: int) -> None:
        """Add to the counters named (``messages=1``, ``bad_messages=1``, ``shots_received=2``)."""
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def record(self, status: str, latency_s: float) -> None:
        """One shot processed: its status and seconds from its message's arrival to its publication."""
        with self._lock:
            self.counts[status] += 1
            self._latencies.append(latency_s)

    @property
    def processed(self) -> int:
        return sum(self.counts.values())

    def snapshot(self, *, queue=None, reconnects: int = 0, final: bool = False) -> dict:
        """The statistics message (docs/stream.md): counters, rates and latency percentiles [s]."""
        now_m = time.monotonic()
        with self._lock:
            lat = np.asarray(self._latencies, dtype=np.float64)
            processed = self.processed
            t_last, n_last = self._last
            self._last = (now_m, processed)
            out = {
                "time": time.time(),
                "uptime_s": time.time() - self.t0,
                "messages": self.messages,
                "bad_messages": self.bad_messages,
                "shots_received": self.shots_received,
                "processed": processed,
                **{k: v for k, v in self.counts.items()},
                "hit_rate": self.counts["ok"] / processed if processed else float("nan"),
                "shots_per_s": (processed - n_last) / max(now_m - t_last, 1e-9),
                "shots_per_s_overall": processed / max(time.time() - self.t0, 1e-9),
                "latency_s": {
                    name: float(np.percentile(lat, q)) if lat.size else float("nan")
                    for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
                },
                "dropped": (queue.dropped if queue is not None else 0) + self.dropped_on_exit,
                "dropped_backpressure": queue.dropped if queue is not None else 0,
                "dropped_on_exit": self.dropped_on_exit,
                "queue_depth": len(queue) if queue is not None else 0,
                "queue_high_water": queue.high_water if queue is not None else 0,
                "queue_size": queue.maxsize if queue is not None else 0,
                "blocked_s": queue.blocked_s if queue is not None else 0.0,
                "reconnects": reconnects,
                "final": final,
            }
        return out
