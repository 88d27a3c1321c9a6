"""A NumPy-backed stand-in for ``cupy.ndarray`` (tests/emulation/README.md).

Every array wraps a NumPy array (its "device memory"); views share memory as on the device.
Implicit conversion to NumPy raises ``TypeError`` as CuPy does, and every device-to-host read
(``.get()``, ``bool()``/``int()``/``float()``/``item()`` of an array, ``cupy.asnumpy``, and the
synchronisations CuPy makes itself to size an output: boolean-mask indexing, ``nonzero`` and its
relatives, see ``cupy.SYNCING``) is counted in :data:`HOST_READS`.
"""

from __future__ import annotations

import numbers

import numpy as np
import numpy.lib.mixins

#: Device-to-host reads since the last reset: {"get": n, "bool": n, "int": n, "float": n, ...}.
HOST_READS: dict[str, int] = {}


def count_read(kind: str) -> None:
    HOST_READS[kind] = HOST_READS.get(kind, 0) + 1


def host_reads() -> int:
    return sum(HOST_READS.values())


def reset_host_reads() -> None:
    HOST_READS.clear()


class Device:
    def __init__(self, device=None):
        self.id = 0 if device is None else int(getattr(device, "id", device))
        if self.id != 0:
            raise ValueError(f"fake cupy: only device 0 exists (got {self.id})")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<CUDA Device {self.id}>"

    def synchronize(self):
        pass

    @property
    def mem_info(self):
        """(free, total) bytes: the stand-in's 1 GiB "device" (as cupy.cuda.runtime says)."""
        return (1 << 30, 1 << 30)


def _unwrap(x):
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def _wrap(x):
    """NumPy results become device arrays (scalars become 0-d arrays, as CuPy returns them)."""
    if isinstance(x, ndarray):
        return x
    if isinstance(x, np.ndarray):
        return ndarray._from(x)
    if isinstance(x, np.generic):
        return ndarray._from(np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _has_mask(key) -> bool:
    """Whether an index holds a boolean device array (CuPy synchronises on such indexing)."""
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, ndarray) and k.dtype == np.bool_ for k in keys)


class _Flags:
    def __init__(self, a):
        self._a = a

    @property
    def c_contiguous(self):
        return self._a.flags.c_contiguous

    @property
    def f_contiguous(self):
        return self._a.flags.f_contiguous

    def __getitem__(self, k):
        return self._a.flags[k]


class _Pointer:
    def __init__(self, a):
        self.ptr = a.ctypes.data


class ndarray(numpy.lib.mixins.NDArrayOperatorsMixin):
    """Device array of the stand-in: a NumPy array that cannot be read implicitly."""

    __array_priority__ = 100

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        self._a = np.empty(shape, dtype=dtype, order=order)

    @classmethod
    def _from(cls, a: np.ndarray) -> ndarray:
        obj = cls.__new__(cls)
        obj._a = a
        return obj

    # --- NumPy protocols: numpy functions on device arrays run on the device (as CuPy's NEP-18)
    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly."
        )

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o) for o in out)
        for v in inputs:
            if isinstance(v, np.ndarray) and v.ndim > 0:
                raise TypeError(f"fake cupy: {ufunc.__name__} mixes a device array with a NumPy array")
        res = getattr(ufunc, method)(*_unwrap(inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(res)

    def __array_function__(self, func, types, args, kwargs):
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    # --- metadata
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: _Flags(self._a))
    data = property(lambda self: _Pointer(self._a))
    device = property(lambda self: Device(0))
    T = property(lambda self: _wrap(self._a.T))

    @property
    def real(self):
        return _wrap(self._a.real)

    @property
    def imag(self):
        return _wrap(self._a.imag)

    def __len__(self):
        return len(self._a)

    def __repr__(self):
        return f"fakecupy.ndarray(shape={self.shape}, dtype={self.dtype})"

    def __iter__(self):
        for i in range(len(self._a)):
            yield self[i]

    def __getitem__(self, key):
        if _has_mask(key):
            count_read("mask")  # CuPy counts the mask's hits on the host to size the result
        return _wrap(self._a[_unwrap(key)])

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray) and value.ndim > 0:
            raise TypeError("fake cupy: assigning a NumPy array into a device array (use cupy.asarray)")
        if _has_mask(key):
            count_read("mask")  # CuPy's masked scatter sizes its work on the host too
        self._a[_unwrap(key)] = _unwrap(value)

    # --- host reads (counted)
    def get(self, stream=None, order="C", out=None, blocking=True):
        count_read("get")
        return self._a.copy()

    def item(self):
        count_read("item")
        return self._a.item()

    def tolist(self):
        count_read("tolist")
        return self._a.tolist()

    def __bool__(self):
        count_read("bool")
        return bool(self._a)

    def __float__(self):
        count_read("float")
        return float(self._a)

    def __int__(self):
        count_read("int")
        return int(self._a)

    def __complex__(self):
        count_read("complex")
        return complex(self._a)

    def __index__(self):
        count_read("index")
        return self._a.__index__()

    # --- methods: delegate to NumPy, results stay on the device
    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args, **kwargs):
            if name in ("nonzero", "compress"):
                count_read(name)  # sized on the host, as cupy.nonzero
            return _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))

        return method

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        return _wrap(self._a.astype(dtype, order=order, copy=copy))

    def copy(self, order="C"):
        return _wrap(self._a.copy(order=order))

    def view(self, dtype=None):
        return _wrap(self._a.view() if dtype is None else self._a.view(dtype))

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()


def is_scalar_like(x) -> bool:
    return isinstance(x, (numbers.Number, np.generic))
