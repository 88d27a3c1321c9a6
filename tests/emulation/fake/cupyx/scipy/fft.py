"""``cupyx.scipy.fft`` of the stand-in: scipy.fft on the wrapped arrays (single precision kept)."""

import scipy.fft as _sfft
from cupy._core import _unwrap, _wrap


class _Plan:
    """A cuFFT plan's stand-in: checked shapes, and ``fft(a, out, direction)`` as ``PlanNd.fft``."""

    def __init__(self, shape, dtype, axes, value_type):
        self.shape, self.dtype, self.axes, self.value_type = shape, dtype, axes, value_type

    def fft(self, a, out, direction):
        """Unnormalised C2C transform of ``a`` into ``out`` (may be ``a``): -1 forward, +1 inverse."""
        for name, v in (("input", a), ("output", out)):
            if tuple(v.shape) != self.shape or v.dtype != self.dtype or not v.flags.c_contiguous:
                raise ValueError(
                    f"fake cupyx: plan for C-contiguous {self.shape} {self.dtype} given {name} "
                    f"{v.shape} {v.dtype}"
                )
        if direction not in (-1, 1):
            raise ValueError(f"fake cupyx: direction {direction!r}")
        f = _sfft.fftn if direction == -1 else _sfft.ifftn
        out._a[...] = f(_unwrap(a), axes=self.axes, norm="backward" if direction == -1 else "forward")


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
