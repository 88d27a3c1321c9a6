from . import fft, ndimage  # noqa: F401
