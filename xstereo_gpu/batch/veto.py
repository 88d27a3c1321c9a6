"""The hit veto: photons in the two pattern windows of a frame, before any phasing.

A frame without a sample in the beam (a *blank*: no hit, a missed pulse, a closed shutter) holds
the dark floor and some stray light but no diffraction; phasing it costs as much as a hit and gives
nothing. The veto sums the frame over the ``N x N`` window of each pattern (the crop the ``prepare``
stage phases, :func:`~xstereo_gpu.phasing.prepare.crop_pattern`) on the valid pixels only, and calls
the shot a hit when the *weaker* pattern has at least ``min_photons``. Two window sums: microseconds
to a millisecond per frame, no FFT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import check

__all__ = ["VetoOptions", "window_photons", "is_hit", "DEFAULT_MIN_PHOTONS"]

#: Default threshold [photons per pattern window]. The simulated shots have ~1e7 photons per pattern
#: (~9e6 at ``binning=8, pattern_size=128``; the paper: "a few 1e7"), a frame scaled down by 1e-4
#: ~1e3. 1e5 is two orders of magnitude below a hit and, on a 1024 x 1024 window, 0.1 photon per
#: pixel: above what a dark frame's offset and stray light leave after the usual background
#: subtraction, and below the photons a pattern needs to be phased to a useful resolution.
DEFAULT_MIN_PHOTONS = 1e5


@dataclass(frozen=True)
class VetoOptions:
    """Options of the hit veto.

    Attributes
    ----------
    min_photons : float
        A shot is a hit when both pattern windows hold at least this many photons  [photons]
        (:data:`DEFAULT_MIN_PHOTONS`). 0 keeps every shot.
    """

    min_photons: float = DEFAULT_MIN_PHOTONS

    def __post_init__(self):
        v = self.min_photons
        check(
            isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v >= 0,
            "VetoOptions.min_photons",
            repr(v),
            "a finite number of photons >= 0",
        )


def window_photons(frame, mask, centres_px, pattern_size: int) -> np.ndarray:
    """Photons in the ``N x N`` window around each pattern centre, valid pixels only.

    Parameters
    ----------
    frame : (H, W) or (E, H, W) float
        Detector frame  [photons]; for an HDR series (E exposures) the brightest exposure counts.
    mask : (H, W) or (E, H, W) uint32
        CXI mask bits (0 = good), the frame's shape (or (H, W) shared by the exposures).
    centres_px : (2, 2) float
        ``(row, col)`` of the left and right pattern centres  [pixels].
    pattern_size : int
        Window side N  [pixels]; the window is the crop of ``prepare`` (frame pixel
        ``round(centre)`` at ``(N//2, N//2)``), clipped to the frame.

    Returns
    -------
    (2,) float64
        Photons of the left and right windows (sum over pixels with mask 0 and a finite value; 0 for
        a window off the frame).
    """
    frame = np.asarray(frame)
    mask = np.asarray(mask)
    h, w = frame.shape[-2:]
    n = int(pattern_size)
    out = np.zeros(2, np.float64)
    for k in range(2):
        r0 = int(np.floor(float(centres_px[k][0]) + 0.5)) - n // 2
        c0 = int(np.floor(float(centres_px[k][1]) + 0.5)) - n // 2
        rs = slice(max(r0, 0), max(min(r0 + n, h), 0))
        cs = slice(max(c0, 0), max(min(c0 + n, w), 0))
        crop = frame[..., rs, cs]
        good = (mask[..., rs, cs] == 0) & np.isfinite(crop)
        sums = np.sum(crop, axis=(-2, -1), where=good, dtype=np.float64)
        out[k] = float(np.max(sums)) if np.ndim(sums) else float(sums)
    return out


def is_hit(photons, options: VetoOptions | None = None) -> bool:
    """Whether a shot with these window photons ``(2,)`` is phased: ``min(photons) >= min_photons``."""
    threshold = (options or VetoOptions()).min_photons
    p = np.asarray(photons, dtype=np.float64)
    return bool(np.all(np.isfinite(p)) and p.min() >= threshold)
