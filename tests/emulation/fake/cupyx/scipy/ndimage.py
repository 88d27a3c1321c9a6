"""``cupyx.scipy.ndimage`` of the stand-in: scipy.ndimage on the wrapped arrays.

``label`` counts one host read: CuPy's returns the number of features as a host integer.
"""

import scipy.ndimage as _ndi
from cupy._core import _unwrap, _wrap, count_read


def __getattr__(name):
    f = getattr(_ndi, name)

    def g(*args, **kwargs):
        if name == "label":
            count_read("label")
        out = kwargs.get("output")
        res = f(*_unwrap(args), **_unwrap(kwargs))
        return out if out is not None and res is None else _wrap(res)

    g.__name__ = name
    globals()[name] = g
    return g
