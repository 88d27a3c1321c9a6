"""Replay a stored EuXFEL run over the Karabo bridge protocol (2.2), train by train.

EXtra-data has ``karabo-bridge-serve-files`` / ``serve_files`` for this, but they need ``psutil``
(for an InfiniBand address) and cannot be stopped cleanly from the same process; this is the same
replay in a few lines: EXtra-data reads the trains (``RunDirectory(...).select(...).trains()``),
karabo-bridge's own serializer makes the messages, and one ZeroMQ socket of the bridge's types (REP:
one train per ``b"next"`` request, nothing lost; PUSH; PUB: a subscriber that is not yet connected
misses trains) sends them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import numpy as np

from ..errors import InputError
from ..io.xfel import _extra_data

__all__ = ["serve_run", "SERVER_TYPES"]

SERVER_TYPES = ("REP", "PUSH", "PUB")
_POLL_MS = 100


def _drop_objects(data: dict) -> None:
    """Remove arrays of Python objects (strings of control sources): the protocol sends numbers."""
    for props in data.values():
        for k in [k for k, v in props.items() if isinstance(v, np.ndarray) and v.dtype.hasobject]:
            del props[k]


def serve_run(
    run_dir: str | os.PathLike,
    endpoint: str,
    *,
    source: str | None = None,
    key: str | None = None,
    sock: str = "REP",
    stop: threading.Event | None = None,
    on_bound: Callable[[str], None] | None = None,
    log: Callable[[str], None] = print,
) -> int:
    """Send every train of a EuXFEL run directory over the bridge protocol; the trains sent.

    Parameters
    ----------
    run_dir : str or path-like
        The run directory (``raw/r0042``).
    endpoint : str
        Where to bind: ``tcp://*:PORT``, ``tcp://127.0.0.1:*`` (a free port, see ``on_bound``).
    source, key : str, optional
        Only this source (glob, EXtra-data's ``select``) and key (default: every source and key).
    sock : {"REP", "PUSH", "PUB"}
        The socket (:data:`SERVER_TYPES`).
    stop : threading.Event, optional
        Set it to stop after the train being sent.
    on_bound : callable, optional
        ``on_bound(endpoint)`` once the socket is bound (the port chosen for ``*``).
    log : callable
        ``log(line)`` for the start and the end.

    Raises
    ------
    InputError
        EXtra-data missing, not a run directory, a selection that matches nothing, an unknown ``sock``.
    """
    import zmq
    from karabo_bridge.serializer import serialize

    if sock not in SERVER_TYPES:
        raise InputError("--sock", repr(sock), f"one of {', '.join(SERVER_TYPES)}")
    ed = _extra_data()
    stop = stop if stop is not None else threading.Event()
    try:
        run = ed.RunDirectory(str(run_dir)).select(source or "*", key or "*")
    except (OSError, ValueError, KeyError) as exc:  # EXtra-data's SourceNameError is a KeyError
        raise InputError(
            str(run_dir), f"{type(exc).__name__}: {exc}", "a EuXFEL run directory holding the source"
        ) from None
    if not run.all_sources:
        raise InputError(f"{run_dir}: {source} {key or ''}".rstrip(), "no such source", "a source of the run")
    ctx = zmq.Context()
    s = ctx.socket(getattr(zmq, sock))
    s.setsockopt(zmq.LINGER, 0)
    s.set_hwm(1)
    sent = 0
    try:
        s.bind(endpoint)
        bound = s.getsockopt_string(zmq.LAST_ENDPOINT)
        log(f"serving {run_dir} ({len(run.train_ids)} trains) on {bound} ({sock})")
        if on_bound is not None:
            on_bound(bound)
        for _, data in run.trains():
            _drop_objects(data)
            msg = serialize(data, protocol_version="2.2")
            if sock == "REP":
                while True:  # one train per b"next"; anything else is answered with an error
                    while not s.poll(_POLL_MS, zmq.POLLIN):
                        if stop.is_set():
                            return sent
                    request = s.recv()
                    if request == b"next":
                        break
                    s.send(b"Error: bad request " + request[:64])
            else:
                while not s.poll(_POLL_MS, zmq.POLLOUT):
                    if stop.is_set():
                        return sent
            s.send_multipart(msg, copy=False)
            sent += 1
            if stop.is_set():
                break
        # let the last trains leave before the socket closes (the bridge's own replay does the same)
        s.setsockopt(zmq.LINGER, 2000)
        log(f"sent {sent} trains")
        return sent
    finally:
        s.close()
        ctx.term()
