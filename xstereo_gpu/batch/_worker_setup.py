"""Loaded by each worker of an embedded ``xstereo batch`` cluster at start (a Dask ``preload`` module).

The workers share the terminal's process group, so Ctrl-C would also interrupt each of them (a
traceback apiece). They ignore SIGINT instead: the driver gets it, stores what finished and closes
the cluster, which stops them.
"""

from __future__ import annotations

import signal
import threading

__all__ = ["dask_setup"]


def dask_setup(worker) -> None:
    """Ignore SIGINT in this worker process (Dask calls it once per worker, in the main thread)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
