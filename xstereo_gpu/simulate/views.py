"""Reconstructed views as another instrument would provide them (the paper's pyramid experiment).

The paper's nanoparticle pyramid was not phased by the stereo engine: "H.C. provided the pyramid 2D
images", reconstructions from a tomographic CDI data set, "already rectified", each with a 42 nm
(10-90 %) resolution. :func:`provided_views` makes such views from a simulated shot's truth: the
phasable exit waves (less the uniform membrane transmission, which a pattern cannot determine) blurred
to that resolution, with complex Gaussian noise.
"""

from __future__ import annotations

import numpy as np

from ..backend import scipy_module
from ..checks import check_positive
from ..shot import GroundTruth

__all__ = ["provided_views", "EDGE_WIDTH_PER_SIGMA"]

#: 10-90 % width of a Gaussian-blurred step, in units of the Gaussian's sigma.
EDGE_WIDTH_PER_SIGMA = 2.5631


def provided_views(
    truth: GroundTruth, *, resolution_m: float = 42e-9, noise: float = 0.03, seed: int = 0
) -> np.ndarray:
    """The true (phasable) views at a given 10-90 % resolution, with noise.

    Parameters
    ----------
    truth : GroundTruth
        A simulated shot's truth (``phasable_views``, ``pixel_size_m``).
    resolution_m : float
        10-90 % edge resolution of the provided views  [m] (paper, Fig. 4: 42 nm).
    noise : float
        Standard deviation of the complex Gaussian noise, as a fraction of each view's largest
        amplitude.
    seed : int
        Seed of the noise.

    Returns
    -------
    (2, N, N) complex64
        Left and right views on the truth's grid.
    """
    check_positive(
        "provided_views.resolution_m",
        resolution_m,
        allow_zero=True,
        expected="a non-negative resolution in m",
    )
    check_positive("provided_views.noise", noise, allow_zero=True, expected="a non-negative fraction")
    ndi = scipy_module(np, "ndimage")
    v = np.asarray(truth.phasable_views, dtype=np.complex64)
    sigma = resolution_m / EDGE_WIDTH_PER_SIGMA / truth.pixel_size_m
    rng = np.random.default_rng(seed)
    out = np.empty_like(v)
    for k in range(v.shape[0]):
        re = ndi.gaussian_filter(v[k].real, sigma) if sigma > 0 else v[k].real
        im = ndi.gaussian_filter(v[k].imag, sigma) if sigma > 0 else v[k].imag
        s = noise * float(np.abs(v[k]).max()) / np.sqrt(2.0)
        out[k] = (re + s * rng.standard_normal(re.shape)) + 1j * (im + s * rng.standard_normal(im.shape))
    return out
