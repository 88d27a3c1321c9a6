"""``cupyx.scipy.fft`` of the stand-in: scipy.fft on the wrapped arrays (single precision kept)."""

import scipy.fft as _sfft
from cupy._core import _unwrap, _wrap


class _Plan:
    def __init__(self, shape, dtype, axes, value_type):
        self.shape, self.dtype, self.axes, self.value_type = shape, dtype, axes, value_type


def get_fft_plan(a, shape=None, axes=None, value_type="C2C"):
    return _Plan(tuple(a.shape), a.dtype, axes, value_type)


def _checked(name):
    f = getattr(_sfft, name)

    def g(x, *args, plan=None, **kwargs):
        if plan is not None and (tuple(x.shape) != plan.shape or x.dtype != plan.dtype):
            raise ValueError(f"fake cupyx: plan for {plan.shape} {plan.dtype} used on {x.shape} {x.dtype}")
        kwargs.pop("workers", None)
        return _wrap(f(_unwrap(x), *args, **_unwrap(kwargs)))

    g.__name__ = name
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
):
    globals()[_n] = _checked(_n)
fftfreq, rfftfreq = _sfft.fftfreq, _sfft.rfftfreq
