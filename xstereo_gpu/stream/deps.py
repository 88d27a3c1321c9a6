"""The optional packages of the online path, imported with a clear message when missing."""

from __future__ import annotations

import importlib

from ..errors import InputError

__all__ = ["require", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'xstereo-gpu[stream]' (karabo-bridge, pyzmq, msgpack, msgpack-numpy)"
_MODULES = ("zmq", "msgpack", "msgpack_numpy", "karabo_bridge")


def require(what: str = "xstereo stream") -> None:
    """Import the stream's packages; :class:`~xstereo_gpu.errors.InputError` naming the missing ones."""
    missing = []
    for name in _MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise InputError(what, f"{', '.join(missing)} not installed", INSTALL_HINT)
