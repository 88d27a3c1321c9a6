"""Load the CUDA sources in ``kernels/*.cu`` through ``cupy.RawModule``, memoized per device.

The ``.cu`` files ship inside the wheel as the package ``xstereo_gpu.kernels`` (pyproject maps the
top-level ``kernels/`` folder onto it). When the package is imported from a checkout (installed
editable or not, ``python -m pytest`` in the source tree), the sources are read from that checkout's
``kernels/`` folder. Nothing is compiled at import: :func:`load_module`
compiles on
first use and caches the module per (device, file, preamble, name expressions); CuPy also caches the
binaries on disk (``CUPY_CACHE_DIR``).
"""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path

import numpy as np

__all__ = ["kernel_source", "load_module", "ctype"]

_CTYPES = {
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
    np.dtype(np.complex64): "complex<float>",
    np.dtype(np.complex128): "complex<double>",
    np.dtype(np.int32): "int",
    np.dtype(np.int64): "long long",
    np.dtype(np.uint8): "unsigned char",
}


def ctype(dtype) -> str:
    """C type name of a NumPy/CuPy dtype for kernel templates; ValueError for unsupported dtypes."""
    try:
        return _CTYPES[np.dtype(dtype)]
    except KeyError:
        raise ValueError(
            f"no CUDA type for dtype {np.dtype(dtype)}; supported: {sorted(str(d) for d in _CTYPES)}"
        ) from None


#: ``kernels/`` of the source tree this package was imported from (used when it is not installed).
CHECKOUT_KERNELS = Path(__file__).resolve().parent.parent / "kernels"


def kernel_source(name: str) -> str:
    """Text of ``kernels/<name>``: from the checkout's ``kernels/`` when this package sits in a source
    tree (next to ``pyproject.toml``), else as shipped in the package ``xstereo_gpu.kernels``.

    The checkout wins so that an editable install of one checkout never serves its kernels to the
    package of another checkout put first on ``PYTHONPATH`` (a worktree).
    """
    root = CHECKOUT_KERNELS
    if not (root.is_dir() and (root.parent / "pyproject.toml").is_file()):
        try:
            root = importlib.resources.files("xstereo_gpu.kernels")
        except ModuleNotFoundError:
            pass
    path = root.joinpath(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"CUDA source {name!r} not found in {root} (the checkout's kernels/ folder, or the package "
            f"xstereo_gpu.kernels when xstereo_gpu is installed)"
        )
    return path.read_text()


def load_module(
    name: str, *, defines: tuple[tuple[str, str], ...] = (), name_expressions: tuple[str, ...] = ()
):
    """Compiled ``cupy.RawModule`` for ``kernels/<name>`` on the current device.

    Parameters
    ----------
    name : str
        File name in ``kernels/`` (e.g. ``"block_matching.cu"``).
    defines : tuple of (str, str)
        ``#define`` lines prepended to the source (a tuple, so that it can key the cache).
    name_expressions : tuple of str
        Template instantiations to compile (``"sad_running_min<float>"``).
    """
    import cupy

    return _load(cupy.cuda.Device().id, name, tuple(defines), tuple(name_expressions))


@functools.cache
def _load(device_id: int, name: str, defines, name_expressions):
    import cupy

    preamble = "".join(f"#define {k} {v}\n" for k, v in defines)
    with cupy.cuda.Device(device_id):
        return cupy.RawModule(
            code=preamble + kernel_source(name),
            options=("-std=c++17",),
            name_expressions=list(name_expressions) or None,
        )
