"""Far field and detector: both diffraction patterns on one CCD frame.

* Far field of a view (engine convention): ``I = |fftshift(fft2(w))|**2``, zero frequency at pixel
  ``(N//2, N//2)`` of the N x N crop.
* Each pattern is scaled so that its sum is the requested photon number, then Poisson noise is drawn.
* The two patterns are added on the frame with their zero frequencies at the pattern centres. The twin
  beams are treated as mutually *incoherent* (their intensities add): they reach the detector at
  different angles and their patterns are centred ``D (tan t1 + tan t2) / p`` pixels apart, so any
  interference term would be a fringe far finer than a pixel where the two patterns overlap (only at
  high frequencies, which the pipeline crops away), and the paper phases each pattern on its own.
* A beamstop disc around each centre reads 0 and carries the CXI mask bit 0x10 ("shadowed").
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from ..backend import fft_workers
from ..errors import InputError

__all__ = ["MASK_SHADOWED", "far_field", "photon_counts", "add_patterns", "apply_beamstop"]

#: CXI pixel-mask bit of a pixel shadowed by the beamstop.
MASK_SHADOWED = np.uint32(0x10)


def far_field(wave: np.ndarray) -> np.ndarray:
    """Noiseless far-field intensity of an exit wave, zero frequency at ``(N//2, N//2)``.

    Parameters
    ----------
    wave : (..., N, N) complex64
        Exit wave(s) on the view grid.

    Returns
    -------
    (..., N, N) float32
        ``|fftshift(fft2(wave))|**2`` (arbitrary units).
    """
    w = np.asarray(wave, dtype=np.complex64)
    f = scipy.fft.fft2(w, axes=(-2, -1), workers=fft_workers())
    f = np.fft.fftshift(f, axes=(-2, -1))
    return (f.real * f.real + f.imag * f.imag).astype(np.float32)


def photon_counts(intensity: np.ndarray, *, photons: float, rng: np.random.Generator) -> np.ndarray:
    """Scale a pattern to ``photons`` expected photons in total and draw Poisson counts.

    Parameters
    ----------
    intensity : (N, N) float32
        Noiseless pattern (any non-negative units).
    photons : float
        Expected total number of photons.
    rng : numpy.random.Generator
        Source of the noise.

    Returns
    -------
    (N, N) float32
        Integer-valued photon counts.
    """
    lam = np.asarray(intensity, dtype=np.float64)
    total = lam.sum()
    if not (np.isfinite(total) and total > 0):
        raise InputError("simulated pattern", f"total intensity {total!r}", "a positive finite total")
    lam = lam * (float(photons) / total)
    return rng.poisson(lam).astype(np.float32)


def add_patterns(patterns, centres_px, shape: tuple[int, int]) -> np.ndarray:
    """Sum N x N patterns onto a frame, each with its pixel ``(N//2, N//2)`` at its centre.

    Parts of a pattern falling outside the frame are dropped.

    Parameters
    ----------
    patterns : (V, N, N) float32
        Patterns to place.
    centres_px : (V, 2) float
        ``(row, col)`` of each pattern's zero frequency on the frame (rounded to whole pixels).
    shape : tuple of int
        ``(H, W)`` of the frame.

    Returns
    -------
    (H, W) float32
    """
    frame = np.zeros(shape, dtype=np.float32)
    for pat, (cr, cc) in zip(patterns, np.asarray(centres_px, dtype=float)):
        n0, n1 = pat.shape
        r0, c0 = int(round(cr)) - n0 // 2, int(round(cc)) - n1 // 2
        fr0, fr1 = max(r0, 0), min(r0 + n0, shape[0])
        fc0, fc1 = max(c0, 0), min(c0 + n1, shape[1])
        if fr0 < fr1 and fc0 < fc1:
            frame[fr0:fr1, fc0:fc1] += pat[fr0 - r0:fr1 - r0, fc0 - c0:fc1 - c0]
    return frame


def apply_beamstop(frame: np.ndarray, mask: np.ndarray, centres_px, radius_px: float) -> None:
    """Zero a disc of ``radius_px`` around each centre and flag it 0x10 (shadowed), in place.

    Parameters
    ----------
    frame : (H, W) float32
        Frame, modified in place.
    mask : (H, W) uint32
        CXI mask, modified in place.
    centres_px : (V, 2) float
        ``(row, col)`` of each beamstop centre.
    radius_px : float
        Disc radius [pixels]; a pixel is shadowed when its centre lies within it. 0 = no beamstop.
    """
    if radius_px <= 0:
        return
    rows = np.arange(frame.shape[0])[:, None]
    cols = np.arange(frame.shape[1])[None, :]
    for cr, cc in np.asarray(centres_px, dtype=float):
        disc = (rows - cr) ** 2 + (cols - cc) ** 2 <= radius_px ** 2
        frame[disc] = 0
        mask[disc] |= MASK_SHADOWED
