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
* HDR series (paper's Methods: 30 s and 240 s): :func:`expose` turns an expected photon rate per
  pixel into Poisson counts for each integration time, clipped at the full-well (saturation) level
  with the clipped pixels flagged by CXI mask bit 0x2 ("saturated"). :func:`saturation_level` picks
  a level that the longest exposure exceeds at the pattern centres and the shortest never reaches.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from ..backend import fft_workers
from ..checks import check_positive
from ..errors import InputError

__all__ = [
    "MASK_SHADOWED",
    "MASK_SATURATED",
    "PAPER_EXPOSURES_S",
    "far_field",
    "photon_counts",
    "add_patterns",
    "apply_beamstop",
    "saturation_level",
    "expose",
]

#: CXI pixel-mask bit of a pixel shadowed by the beamstop.
MASK_SHADOWED = np.uint32(0x10)
#: CXI pixel-mask bit of a saturated pixel.
MASK_SATURATED = np.uint32(0x2)
#: Integration times of the paper's HDR series  [s].
PAPER_EXPOSURES_S = (30.0, 240.0)


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
            frame[fr0:fr1, fc0:fc1] += pat[fr0 - r0 : fr1 - r0, fc0 - c0 : fc1 - c0]
    return frame


def apply_beamstop(frame: np.ndarray, mask: np.ndarray, centres_px, radius_px: float) -> None:
    """Zero a disc of ``radius_px`` around each centre and flag it 0x10 (shadowed), in place.

    Parameters
    ----------
    frame : (H, W) float32 or (E, H, W) float32
        Frame (or stack of exposures), modified in place.
    mask : (H, W) uint32 or (E, H, W) uint32
        CXI mask, modified in place.
    centres_px : (V, 2) float
        ``(row, col)`` of each beamstop centre.
    radius_px : float
        Disc radius [pixels]; a pixel is shadowed when its centre lies within it. 0 = no beamstop.
    """
    if radius_px <= 0:
        return
    rows = np.arange(frame.shape[-2])[:, None]
    cols = np.arange(frame.shape[-1])[None, :]
    for cr, cc in np.asarray(centres_px, dtype=float):
        disc = (rows - cr) ** 2 + (cols - cc) ** 2 <= radius_px**2
        frame[..., disc] = 0
        mask[..., disc] |= MASK_SHADOWED


def _times(times_s, where: str) -> np.ndarray:
    try:
        t = np.asarray(times_s, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise InputError(where, repr(times_s), "integration times [s] (numbers)") from None
    if t.size < 1 or not np.all(np.isfinite(t) & (t > 0)):
        raise InputError(where, repr(times_s), "one or more positive finite integration times [s]")
    return t


def saturation_level(rate, times_s=PAPER_EXPOSURES_S) -> float:
    """Full-well level that saturates the longest exposure's centre but not the shortest exposure.

    The geometric mean of the peak expected counts of the shortest and longest exposures,
    ``max(rate) * sqrt(t_min t_max)``: for 30 s and 240 s the long exposure's peak is 2.8x over it
    (its central speckles saturate, the reason for HDR) and the short exposure's peak 2.8x under it
    (never reached by Poisson noise once the peak holds more than a few counts).

    Parameters
    ----------
    rate : (H, W) float
        Expected photons per second per pixel.
    times_s : (E,) float
        Integration times  [s].

    Returns
    -------
    float
        Saturation level  [counts].
    """
    t = _times(times_s, "saturation_level.times_s")
    peak = float(np.max(rate))
    if not (np.isfinite(peak) and peak > 0):
        raise InputError("saturation_level.rate", f"maximum {peak!r}", "a positive finite photon rate")
    return peak * math.sqrt(float(t.min()) * float(t.max()))


def expose(
    rate,
    times_s=PAPER_EXPOSURES_S,
    *,
    rng: np.random.Generator,
    rate_scale: float = 1.0,
    full_well: float | None = None,
    mask=None,
):
    """Record a series of exposures of the same expected frame: Poisson counts, clipped at saturation.

    Parameters
    ----------
    rate : (H, W) float
        Expected photons per second per pixel (both patterns on the frame, noiseless).
    times_s : (E,) float
        Integration time of each exposure  [s]; default the paper's ``(30, 240)``.
    rng : numpy.random.Generator
        Source of the noise (the exposures are drawn in order, independently).
    rate_scale : float
        Factor applied to ``rate`` first (e.g. ``photons_per_second / rate.sum()`` to give a
        normalised pattern a flux).
    full_well : float, optional
        Saturation level  [counts]: a pixel drawing ``>= full_well`` counts reads ``full_well`` and
        is flagged. Default :func:`saturation_level` of the scaled rate on the pixels ``mask``
        leaves unflagged (a beamstop hides the brightest pixels).
    mask : (H, W) uint32, optional
        Bits OR-ed into every exposure's mask (e.g. a beamstop, 0x10); pixels with any bit set
        read 0 in every exposure.

    Returns
    -------
    frames : (E, H, W) float32
        Integer-valued counts per exposure.
    masks : (E, H, W) uint32
        ``mask`` plus bit 0x2 (saturated) where the exposure reached ``full_well``.
    full_well : float
        The saturation level used  [counts].
    """
    t = _times(times_s, "expose.times_s")
    lam = np.asarray(rate, dtype=np.float64)
    if lam.ndim != 2:
        raise InputError("expose.rate", f"shape {lam.shape}", "an (H, W) frame of photon rates")
    check_positive("expose.rate_scale", rate_scale)
    lam = lam * float(rate_scale)
    if not np.all(np.isfinite(lam) & (lam >= 0)):
        raise InputError(
            "expose.rate", "negative or non-finite rates", "non-negative finite photons per second"
        )
    base = np.zeros(lam.shape, np.uint32) if mask is None else np.asarray(mask, dtype=np.uint32)
    if base.shape != lam.shape:
        raise InputError("expose.mask", f"shape {base.shape}", f"the rate's shape {lam.shape}")
    fw = saturation_level(np.where(base != 0, 0.0, lam), t) if full_well is None else float(full_well)
    if not (np.isfinite(fw) and fw > 0):
        raise InputError("expose.full_well", repr(full_well), "a positive saturation level [counts]")
    frames = np.empty((t.size,) + lam.shape, dtype=np.float32)
    masks = np.empty((t.size,) + lam.shape, dtype=np.uint32)
    for e, te in enumerate(t):
        counts = rng.poisson(lam * te).astype(np.float64)
        sat = counts >= fw
        frames[e] = np.where(base != 0, 0.0, np.minimum(counts, fw))
        masks[e] = base | np.where(sat & (base == 0), MASK_SATURATED, np.uint32(0))
    return frames, masks, fw
