"""Progress reporting for long work: stage banners and iteration counters on a text stream.

The library never prints on its own: stages accept an optional ``progress`` callable, and the CLI
passes the methods of a :class:`Progress` bound to stderr.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Prints ``[stage] message`` lines; counters are rewritten in place on a terminal.

    Parameters
    ----------
    stream : text stream, optional
        Where to write (default ``sys.stderr``).
    enabled : bool, optional
        ``False`` silences everything (``--quiet``).
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._stage = ""
        self._t0 = time.perf_counter()
        self._last_pct = -1

    def stage(self, name: str, message: str = "") -> None:
        """Announce the start of a stage."""
        self._end_counter()
        self._stage, self._t0, self._last_pct = name, time.perf_counter(), -1
        self._write(f"[{name}] {message}".rstrip() + "\n")

    def note(self, message: str) -> None:
        """A one-line message within the current stage."""
        self._end_counter()
        self._write(f"[{self._stage}] {message}\n")

    def counter(self, done: int, total: int, message: str = "") -> None:
        """Iteration counter: every call on a terminal, every 25 % otherwise."""
        pct = int(100 * done / max(total, 1))
        elapsed = time.perf_counter() - self._t0
        text = f"[{self._stage}] {done}/{total} ({pct:3d} %, {elapsed:6.1f} s) {message}".rstrip()
        if self.tty:
            self._write("\r" + text + ("\n" if done >= total else ""))
            self._last_pct = -2 if done < total else -1
        elif pct // 25 != self._last_pct // 25 or done >= total:
            self._last_pct = pct
            self._write(text + "\n")

    def _end_counter(self) -> None:
        if self.tty and self._last_pct == -2:
            self._write("\n")
            self._last_pct = -1

    def _write(self, text: str) -> None:
        if self.enabled:
            self.stream.write(text)
            self.stream.flush()
