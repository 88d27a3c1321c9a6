"""``cupyx`` of the CuPy stand-in (tests/emulation/fake/cupy)."""

from contextlib import contextmanager

from . import scipy  # noqa: F401


@contextmanager
def allow_synchronize(allow):
    yield


def scatter_max(a, slices, value):
    """``cupyx.scatter_max``: ``a[slices] = max(a[slices], value)`` with repeated indices."""
    import numpy as np
    from cupy._core import _unwrap

    np.maximum.at(_unwrap(a), _unwrap(slices), _unwrap(value))


def scatter_min(a, slices, value):
    """``cupyx.scatter_min``: ``a[slices] = min(a[slices], value)`` with repeated indices."""
    import numpy as np
    from cupy._core import _unwrap

    np.minimum.at(_unwrap(a), _unwrap(slices), _unwrap(value))
