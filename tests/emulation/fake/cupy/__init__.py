"""Stand-in for CuPy backed by NumPy memory, for the CUDA emulation tests (tests/emulation/).

Only what the project's kernel bindings and array code use; any other ``cupy.<name>`` is NumPy's
function of that name run on the wrapped arrays (results wrapped again), so unsupported corners
fail loudly rather than silently copy to the host.
"""

from __future__ import annotations

import numpy as _np

from . import cuda  # noqa: F401
from ._core import HOST_READS, Device, _unwrap, _wrap, count_read, host_reads, ndarray, reset_host_reads  # noqa: F401
from ._raw import RawKernel, RawModule  # noqa: F401

__version__ = "0.0-emulation"
EMULATION = True

# dtypes and constants
for _n in (
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool_",
    "intp",
    "dtype",
    "pi",
    "e",
    "inf",
    "nan",
    "newaxis",
    "finfo",
    "iinfo",
    "result_type",
    "can_cast",
    "promote_types",
    "float_",
    "complex_",
):
    if hasattr(_np, _n):
        globals()[_n] = getattr(_np, _n)
bool = _np.bool_  # noqa: A001  (cupy.bool is numpy.bool_ too)


def _from_host(obj, dtype=None, order=None):
    if isinstance(obj, ndarray):
        a = obj._a
        if dtype is not None and _np.dtype(dtype) != a.dtype:
            a = a.astype(dtype)
        if order in ("C",) and not a.flags.c_contiguous:
            a = _np.ascontiguousarray(a)
        return a, a is obj._a
    return _np.array(obj, dtype=dtype, order=order or "K", copy=True), False


def asarray(a, dtype=None, order=None, *, blocking=False):
    arr, same = _from_host(a, dtype, order)
    return a if same else ndarray._from(arr)


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    if isinstance(obj, ndarray):
        a = _np.array(obj._a, dtype=dtype, copy=copy, order=order, ndmin=ndmin)
        return obj if a is obj._a else ndarray._from(a)
    return ndarray._from(_np.array(obj, dtype=dtype, copy=True, order=order, ndmin=ndmin))


def ascontiguousarray(a, dtype=None):
    if isinstance(a, ndarray):
        b = _np.ascontiguousarray(a._a, dtype=dtype)
        return a if b is a._a else ndarray._from(b)
    return ndarray._from(_np.ascontiguousarray(a, dtype=dtype).copy())


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    if isinstance(a, ndarray):
        count_read("asnumpy")
        return a._a.copy()
    return _np.asarray(a)


class _MemoryPool:
    """The default memory pool's stand-in: NumPy owns the memory, nothing is pooled."""

    def free_all_blocks(self):
        pass

    def free_bytes(self):
        return 0

    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0


_POOL = _MemoryPool()


def get_default_memory_pool():
    return _POOL


def get_array_module(*args):
    import sys

    for a in args:
        if isinstance(a, ndarray):
            return sys.modules[__name__]
    return _np


#: CuPy functions that synchronise with the host to size their output or check their arguments
#: (``nonzero`` and its relatives count the hits, ``unique`` its values, ``bincount`` takes
#: ``int(x.max())``, ``percentile``/``quantile`` check ``q`` on the host): each call on a device
#: array counts as one host read, as boolean-mask indexing does (``ndarray.__getitem__``) - a lower
#: bound where CuPy reads more than once (``percentile`` checks ``q`` with two reads).
SYNCING = frozenset(
    {
        "nonzero",
        "flatnonzero",
        "argwhere",
        "unique",
        "bincount",
        "percentile",
        "quantile",
        "nanpercentile",
        "nanquantile",
        "compress",
        "extract",
        "trim_zeros",
    }
)


def __getattr__(name):
    f = getattr(_np, name, None)
    if f is None:
        raise AttributeError(f"fake cupy has no attribute {name!r}")
    if isinstance(f, _np.ufunc) or callable(f):

        def wrapped(*args, **kwargs):
            if (name in SYNCING or (name == "where" and len(args) == 1)) and any(
                isinstance(a, ndarray) for a in args
            ):
                count_read(name)
            out = kwargs.get("out")
            res = f(*_unwrap(args), **_unwrap(kwargs))
            if out is not None:
                return out
            return _wrap(res)

        wrapped.__name__ = name
        globals()[name] = wrapped
        return wrapped
    return f


class fft:  # noqa: N801 - cupy.fft namespace
    @staticmethod
    def _w(fname):
        import scipy.fft as sfft

        f = getattr(sfft, fname)

        def g(*args, **kwargs):
            return _wrap(f(*_unwrap(args), **_unwrap(kwargs)))

        return g


for _n in (
    "fft",
    "ifft",
    "fft2",
    "ifft2",
    "fftn",
    "ifftn",
    "rfft",
    "irfft",
    "rfft2",
    "irfft2",
    "rfftn",
    "irfftn",
    "fftshift",
    "ifftshift",
    "fftfreq",
    "rfftfreq",
):
    setattr(fft, _n, staticmethod(fft._w(_n)))
