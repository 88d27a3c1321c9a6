"""Stage timing: the synchronised wall time of a block of device work, and its host reads.

:class:`StageTimer` times a stage; while a :class:`HostReadCounter` is active in the thread, it
also adds the stage's device-to-host reads to the counter (``counter.stages[name]``).

What :class:`HostReadCounter` counts (issue 12, item 2)
-------------------------------------------------------
* **CuPy**: every synchronisation CuPy itself declares through
  ``cupy._core.syncdetect._declare_synchronize`` (the hook behind ``cupyx.allow_synchronize``),
  wrapped with a counting function while the counter is active and restored afterwards: each
  ``ndarray.get()``, hence ``cupy.asnumpy``, ``bool()``/``int()``/``float()``/``item()`` of an
  array and the reads CuPy makes inside ``nonzero``, boolean-mask indexing and the like, and
  ``Device.synchronize()``. Not counted: ``Stream.synchronize()`` (the stage timer's own waits),
  and copies that bypass ``ndarray.get`` (none in this package). When that hook is missing (another
  CuPy version), nothing is counted and the counts are ``None``.
* **The emulation stand-in for CuPy** (tests/emulation/fake): its own counter of host reads.
* **NumPy**: nothing to count (``None``).
"""

from __future__ import annotations

import importlib
import threading
import time

import numpy as np

from .backend import synchronize

__all__ = ["StageTimer", "HostReadCounter"]

_local = threading.local()


class HostReadCounter:
    """Count device-to-host reads (host synchronisations) in a ``with`` block, per stage.

    Parameters
    ----------
    xp : module
        ``numpy`` or ``cupy`` (or the emulation's stand-in).

    Attributes
    ----------
    mechanism : str or None
        What is counted (module docstring); None when nothing can be counted.
    stages : dict
        Reads per :class:`StageTimer` name, accumulated while active.

    Examples
    --------
    >>> with HostReadCounter(np) as c:
    ...     pass
    >>> c.total() is None
    True
    """

    def __init__(self, xp):
        self.stages: dict[str, int] = {}
        self.mechanism = None
        self._raw = None  # () -> reads so far, by the chosen mechanism
        self._base = 0
        self._final = None
        self._syncdetect, self._original = None, None
        self._calls = 0
        if xp is np:
            return
        if getattr(xp, "EMULATION", False):
            self.mechanism = "emulation stand-in: every counted host read"
            self._raw = xp.host_reads
            return
        try:
            mod = importlib.import_module("cupy._core.syncdetect")
        except ImportError:
            return
        if callable(getattr(mod, "_declare_synchronize", None)):
            self.mechanism = "CuPy's declared synchronisations (ndarray.get and Device.synchronize)"
            self._syncdetect = mod
            self._raw = lambda: self._calls

    def total(self) -> int | None:
        """Reads since the counter was entered (None when nothing can be counted)."""
        if self._raw is None:
            return None
        return self._final if self._final is not None else self._raw() - self._base

    def __enter__(self) -> HostReadCounter:
        if getattr(_local, "counter", None) is not None:
            raise RuntimeError("a HostReadCounter is already active in this thread")
        if self._syncdetect is not None:
            original = self._syncdetect._declare_synchronize

            def counted():
                self._calls += 1
                return original()

            self._original = original
            self._syncdetect._declare_synchronize = counted
        self._base = self._raw() if self._raw is not None else 0
        self._final = None
        _local.counter = self
        return self

    def __exit__(self, *exc):
        self._final = self.total()
        _local.counter = None
        if self._original is not None:
            self._syncdetect._declare_synchronize = self._original
            self._original = None
        return False


def _active_total():
    c = getattr(_local, "counter", None)
    return (c, c.total()) if c is not None else (None, None)


class StageTimer:
    """Adds the synchronised wall time of a ``with`` block to ``timings[name]``  [s].

    The device is synchronised on entry and exit, so queued GPU work is counted in the stage that
    queued it. While a :class:`HostReadCounter` is active, the block's host reads are added to
    its ``stages[name]``.
    """

    def __init__(self, xp, timings: dict, name: str):
        self.xp, self.timings, self.name = xp, timings, name

    def __enter__(self):
        self.counter, self.reads0 = _active_total()
        synchronize(self.xp)
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        synchronize(self.xp)
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.t0
        if self.counter is not None and self.reads0 is not None:
            n = self.counter.total() - self.reads0
            self.counter.stages[self.name] = self.counter.stages.get(self.name, 0) + n
