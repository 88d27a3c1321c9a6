"""xstereo-gpu: computed stereo lensless X-ray imaging on NumPy or CuPy."""

__version__ = "0.1.0"
