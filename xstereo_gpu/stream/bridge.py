"""A Karabo bridge client: the next message of a source, with reconnect and backoff when it goes quiet.

The bridge (a Karabo ``PipeToZeroMQ`` device, EXtra-data's ``serve_files``, ``xstereo serve-run``,
karabo-bridge's simulation server) binds one ZeroMQ socket of type REP, PUB or PUSH; this client
connects the matching REQ (asks ``b"next"`` for each train), SUB or PULL. Each socket holds at most one
message in its queue (high-water mark 1, as karabo-bridge's own client), and ZeroMQ refuses a frame
larger than the size limit (``MAXMSGSIZE``: the peer is disconnected), so a fast source cannot fill
memory here.

A source silent for ``silence_s`` (a bridge that stopped or restarted, a REQ whose request was lost)
is reconnected: the socket is closed and made again after a wait that doubles from ``backoff_s[0]`` to
``backoff_s[1]``, with a log line each time; the first message resets the wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["BridgeClient", "SOCKETS", "SERVER_SOCKETS"]

#: The client's socket for each of the bridge's (server REP -> client REQ, PUB -> SUB, PUSH -> PULL).
SERVER_SOCKETS = {"REP": "REQ", "PUB": "SUB", "PUSH": "PULL"}
SOCKETS = tuple(SERVER_SOCKETS.values())
_POLL_MS = 100


class BridgeClient:
    """Receive the messages of one bridge endpoint.

    Parameters
    ----------
    endpoint : str
        ``tcp://HOST:PORT`` of the bridge.
    sock : {"REQ", "SUB", "PULL"}
        This client's socket type (the bridge's REP, PUB or PUSH: :data:`SERVER_SOCKETS`).
    max_bytes : int
        Largest message frame accepted [bytes] (ZeroMQ ``MAXMSGSIZE``).
    silence_s : float
        Seconds without a message before the client reconnects [s].
    backoff_s : (float, float)
        First and longest wait before a reconnect [s].
    log : callable
        ``log(line)`` for the reconnect lines.

    Attributes
    ----------
    reconnects : int
        Reconnects so far.
    """

    def __init__(
        self,
        endpoint: str,
        sock: str = "REQ",
        *,
        max_bytes: int,
        silence_s: float = 10.0,
        backoff_s: tuple[float, float] = (1.0, 30.0),
        log: Callable[[str], None] = print,
    ):
        import zmq

        if sock not in SOCKETS:
            raise ValueError(f"BridgeClient.sock: found {sock!r}; expected one of {SOCKETS}")
        self.endpoint, self.sock = endpoint, sock
        self.max_bytes, self.silence_s, self.backoff_s = int(max_bytes), float(silence_s), backoff_s
        self.log = log
        self.reconnects = 0
        self._zmq = zmq
        self._context = zmq.Context()
        self._socket = None
        self._asked = False
        self._wait = backoff_s[0]
        self._connect()

    def _connect(self) -> None:
        zmq = self._zmq
        s = self._context.socket(getattr(zmq, self.sock))
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.MAXMSGSIZE, self.max_bytes)
        s.set_hwm(1)
        if self.sock == "SUB":
            s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(self.endpoint)
        self._socket, self._asked = s, False

    def _reconnect(self, silent_s: float, stop: threading.Event) -> None:
        self.reconnects += 1
        self.log(
            f"source {self.endpoint}: no data for {silent_s:.1f} s; reconnecting in {self._wait:.1f} s "
            f"(attempt {self.reconnects})"
        )
        self._socket.close(linger=0)
        stop.wait(self._wait)
        self._wait = min(2 * self._wait, self.backoff_s[1])
        self._connect()

    def receive(self, stop: threading.Event, *, give_up_s: float | None = None) -> list | None:
        """The next message's frames (``zmq.Frame``), or None once ``stop`` is set or after ``give_up_s``
        seconds without one (the end of a replay)."""
        zmq = self._zmq
        quiet_since = last_try = time.monotonic()
        while not stop.is_set():
            if self.sock == "REQ" and not self._asked:
                self._socket.send(b"next")
                self._asked = True
            if self._socket.poll(_POLL_MS, zmq.POLLIN):
                parts = self._socket.recv_multipart(copy=False)
                self._asked = False
                self._wait = self.backoff_s[0]
                return parts
            now = time.monotonic()
            if give_up_s is not None and now - quiet_since >= give_up_s:
                return None
            if now - last_try >= self.silence_s:
                self._reconnect(now - quiet_since, stop)
                last_try = time.monotonic()
        return None

    def close(self) -> None:
        """Close the socket and its context (nothing is left to send)."""
        if self._socket is not None:
            self._socket.close(linger=0)
        self._context.term()
