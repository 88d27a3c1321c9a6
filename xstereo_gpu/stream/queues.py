"""A bounded queue between the bridge's receiver and the engine, with an explicit overflow policy."""

from __future__ import annotations

import collections
import threading
import time

from ..errors import check

__all__ = ["BoundedQueue", "POLICIES"]

#: ``drop-oldest``: a full queue discards its oldest shot for the new one (the newest data is what an
#: online display wants; the receiver never waits, so the bridge is never held up); ``block``: the
#: receiver waits for room (no shot is lost here; the bridge's own queue then fills, and a PUB bridge
#: drops trains, a REP or PUSH bridge waits).
POLICIES = ("drop-oldest", "block")


class BoundedQueue:
    """A FIFO of at most ``maxsize`` items, shared by one producer and one consumer thread.

    Parameters
    ----------
    maxsize : int
        Items held at most (>= 1); memory is bounded by ``maxsize`` shots.
    policy : {"drop-oldest", "block"}
        What :meth:`put` does when the queue is full (:data:`POLICIES`).

    Attributes
    ----------
    put_count : int
        Items put.
    dropped : int
        Items discarded by ``drop-oldest``.
    high_water : int
        Most items held at once.
    blocked_s : float
        Seconds ``put`` spent waiting for room (``block``) [s].
    """

    def __init__(self, maxsize: int, policy: str):
        check(isinstance(maxsize, int) and maxsize >= 1, "queue size", repr(maxsize), "an integer >= 1")
        check(policy in POLICIES, "policy", repr(policy), f"one of {', '.join(POLICIES)}")
        self.maxsize, self.policy = maxsize, policy
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self.put_count = self.dropped = self.high_water = 0
        self.blocked_s = 0.0

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, item, stop: threading.Event) -> bool:
        """Add ``item``; False if ``stop`` was set while waiting for room (the item is not added)."""
        with self._cond:
            if len(self._items) >= self.maxsize:
                if self.policy == "drop-oldest":
                    self._items.popleft()
                    self.dropped += 1
                else:
                    t0 = time.perf_counter()
                    while len(self._items) >= self.maxsize and not stop.is_set():
                        self._cond.wait(0.1)
                    self.blocked_s += time.perf_counter() - t0
                    if len(self._items) >= self.maxsize:
                        return False
            self._items.append(item)
            self.put_count += 1
            self.high_water = max(self.high_water, len(self._items))
            self._cond.notify_all()
            return True

    def get_many(self, n: int, timeout: float) -> list:
        """Up to ``n`` items, oldest first, waiting at most ``timeout`` seconds for the first."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            out = [self._items.popleft() for _ in range(min(n, len(self._items)))]
            if out:
                self._cond.notify_all()
            return out

    def clear(self) -> int:
        """Discard every item held; how many."""
        with self._cond:
            n = len(self._items)
            self._items.clear()
            self._cond.notify_all()
            return n
