"""Read ahead: the next shots are read on a thread while the current ones are computed."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

__all__ = ["prefetch"]

T = TypeVar("T")
_END = object()


def prefetch(items: Iterator[T], depth: int) -> Iterator[T]:
    """Iterate ``items`` on a background thread, at most ``depth`` items ahead of the consumer.

    Reading HDF5 (h5py releases the GIL around its I/O) and decompressing overlap with the compute
    of the shots already read (NumPy FFTs and CuPy synchronisations release the GIL too).

    Parameters
    ----------
    items : iterator
        Produces the items (e.g. :meth:`~xstereo_gpu.batch.sources.ShotSource.items`).
    depth : int
        Items read ahead (>= 1); each is a whole shot in memory.

    Yields
    ------
    The items of ``items``, in order. An exception raised by ``items`` is re-raised here; closing
    this generator (the consumer stops) stops the reader after the item it is reading.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put((_END, exc))
            return
        put((_END, None))

    thread = threading.Thread(target=reader, name="xstereo-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = q.get()
            if item is _END:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        thread.join()
