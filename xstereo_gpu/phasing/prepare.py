"""From a CCD frame to per-view intensities and valid-data masks (the ``prepare`` stage).

One frame holds the two diffraction patterns of a stereo pair. :func:`split_patterns` crops an
``N x N`` window around each pattern's zero frequency so that it lands on crop pixel
``(N//2, N//2)`` (the engine's convention ``I = |fftshift(fft2(w))|**2``) and marks as invalid
every pixel without usable data: outside the frame, flagged in the CXI mask, non-finite, or lying
in the overlap with the other pattern (paper: "we crop the overlapped part"). Invalid pixels are
set to 0 and left free by phase retrieval. :func:`single_pattern` does the same for a frame (or an
already split pattern) holding one pattern.

Overlap of the two patterns. Both patterns fall off with the distance from their own zero
frequency (roughly as a power ``q**-a``, ``a`` about 3 to 4 for objects with sharp edges), and the
detector adds them. A pixel of crop k also receives the other pattern's signal, in a proportion
``(d_own / d_other)**a`` of its own, where ``d_own`` and ``d_other`` are its distances to the two
centres. :func:`split_patterns` masks every pixel of crop k with
``d_other < overlap_ratio * d_own``: the other pattern's share left in the kept pixels is then at
most ``overlap_ratio**-a`` of the pixel's own signal if both patterns are equally bright (1.0 = the
perpendicular bisector, where the two are equal; the pipeline's default 1.6 keeps the other
pattern below about 1/4 to 1/7 of the signal), and much less on average. The mask depends only on
the geometry, so it is the same in every exposure of an HDR series.

HDR series. A frame ``(E, H, W)`` holding E exposures is split exposure by exposure (same crops,
same masks plus each exposure's own saturation bits) and the crops of each view are merged by
:func:`xstereo_gpu.phasing.hdr.merge_exposures` (short exposure's centre, long exposure's high
frequencies, Gaussian seam, measured intensity ratio); the result is in counts of the longest
exposure.
"""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module, scipy_module, to_host
from ..errors import InputError
from .hdr import merge_exposures

__all__ = ["split_patterns", "single_pattern", "crop_pattern"]


def _as_frame(frame, mask, where: str, *, stack: bool = False):
    xp = get_array_module(frame)
    f = xp.asarray(frame)
    if not (f.ndim == 2 or (stack and f.ndim == 3 and f.shape[0] >= 1)):
        raise InputError(
            f"{where}.frame",
            f"an array of shape {tuple(f.shape)}",
            "a 2-D frame (H, W) or an (E, H, W) stack of exposures" if stack else "a 2-D frame (H, W)",
        )
    if not (np.issubdtype(f.dtype, np.floating) or np.issubdtype(f.dtype, np.integer)):
        raise InputError(f"{where}.frame", f"dtype {f.dtype}", "real intensities")
    if mask is None:
        m = xp.zeros(f.shape, dtype=xp.uint32)
    else:
        m = xp.asarray(mask)
        if f.ndim == 3 and m.shape == f.shape[1:]:
            m = xp.broadcast_to(m, f.shape)
        if m.shape != f.shape:
            raise InputError(
                f"{where}.mask", f"shape {tuple(m.shape)}", f"the frame's shape {tuple(f.shape)}"
            )
        if not (np.issubdtype(m.dtype, np.integer) or m.dtype == bool):
            raise InputError(f"{where}.mask", f"dtype {m.dtype}", "integer CXI mask bits (uint32, 0 = good)")
    return xp, f, m


def _check_size(size, where: str) -> int:
    if size is None or int(size) != size or int(size) < 4:
        raise InputError(f"{where}.size", repr(size), "an integer N >= 4 (crop side in pixels)")
    return int(size)


def crop_pattern(frame, mask, centre, size: int):
    """Crop ``size x size`` around a rounded centre; pixels outside the frame are invalid.

    Parameters
    ----------
    frame : (..., H, W) float
        Detector frame  [photons] (leading axes, e.g. exposures, are cropped alike).
    mask : (..., H, W) uint32
        CXI mask bits (0 = good pixel), the frame's shape.
    centre : (2,) float
        ``(row, col)`` of the pattern's zero frequency on the frame  [pixels].
    size : int
        Crop side N  [pixels].

    Returns
    -------
    crop : (..., N, N) float32
        Intensities, 0 where invalid; frame pixel ``round(centre)`` lands on ``(N//2, N//2)``.
    valid : (..., N, N) bool
        Inside the frame, mask 0 and finite.
    rows, cols : (N,) int
        Frame row and column of every crop row and column.
    """
    xp = get_array_module(frame)
    h, w = frame.shape[-2:]
    r0 = int(np.floor(float(centre[0]) + 0.5))
    c0 = int(np.floor(float(centre[1]) + 0.5))
    rows = xp.arange(size) + (r0 - size // 2)
    cols = xp.arange(size) + (c0 - size // 2)
    inside = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
    rr = xp.clip(rows, 0, h - 1)[:, None]
    cc = xp.clip(cols, 0, w - 1)[None, :]
    crop = frame[..., rr, cc].astype(xp.float32)
    valid = inside & (mask[..., rr, cc] == 0) & xp.isfinite(crop)
    crop = xp.where(valid, crop, np.float32(0))
    return crop, valid, rows, cols


def split_patterns(
    frame,
    mask,
    centres,
    size: int,
    *,
    overlap_ratio: float = 1.0,
    exposure_times_s=None,
    hdr_sigma: float = 2.0,
    hdr_dilate: int = 3,
    return_hdr: bool = False,
):
    """Split a frame holding the left and right patterns into two centred crops.

    Parameters
    ----------
    frame : (H, W) float32 or (E, H, W) float32
        Detector frame  [photons], or E exposures of it (an HDR series, merged per view).
    mask : (H, W) uint32, (E, H, W) uint32 or None
        CXI mask bits; any non-zero bit makes the pixel invalid (0x2 = saturated in that
        exposure). An (H, W) mask is shared by all exposures. ``None``: all pixels good.
    centres : (2, 2) float
        ``(row, col)`` of the zero frequency of the left (row 0) and right (row 1) patterns on
        the frame  [pixels]; each crop is centred on the rounded centre.
    size : int
        Crop side N  [pixels].
    overlap_ratio : float
        A crop pixel is invalid when its distance to the *other* pattern's centre is less than
        ``overlap_ratio`` times its distance to its own centre (1.0 = the perpendicular bisector)
        (:attr:`PrepareOptions.overlap_ratio`); see the module notes.
    exposure_times_s : (E,) float, optional
        Integration times of the exposures  [s] (``Shot.exposure_times_s``); required for a stack.
    hdr_sigma, hdr_dilate : float, int
        Seam smoothing and dilation  [pixels] of :func:`~xstereo_gpu.phasing.hdr.merge_exposures`.
    return_hdr : bool
        Also return the merge details.

    Returns
    -------
    intensities : (2, N, N) float32
        Crops with the zero frequency at pixel ``(N//2, N//2)``; 0 at invalid pixels. For a
        stack: the HDR merge, in counts of the longest exposure.
    valid : (2, N, N) bool
        True where the pixel holds usable data.
    hdr : HDRMerge or None
        Only with ``return_hdr``: the merge of the two views (``ratios`` (2, E), ``weights``
        (2, E, N, N), ...); None for a single frame.
    """
    xp, f, m = _as_frame(frame, mask, "split_patterns", stack=True)
    times = None
    if f.ndim == 3:
        if exposure_times_s is None:
            raise InputError(
                "split_patterns.exposure_times_s",
                f"None for a stack of {f.shape[0]} exposures",
                f"{f.shape[0]} integration times [s] (Shot.exposure_times_s)",
            )
        times = np.asarray(to_host(exposure_times_s), dtype=np.float64).ravel()
        if times.shape != (f.shape[0],) or not np.all(np.isfinite(times) & (times > 0)):
            raise InputError(
                "split_patterns.exposure_times_s",
                f"{times.tolist()!r}",
                f"{f.shape[0]} positive integration times [s], one per exposure",
            )
    size = _check_size(size, "split_patterns")
    c = np.asarray(to_host(centres), dtype=np.float64)
    if c.shape != (2, 2) or not np.all(np.isfinite(c)):
        raise InputError(
            "split_patterns.centres", f"{c.tolist()!r}", "two finite (row, col) pairs, shape (2, 2)"
        )
    h, w = f.shape[-2:]
    if np.any(c[:, 0] < 0) or np.any(c[:, 0] > h - 1) or np.any(c[:, 1] < 0) or np.any(c[:, 1] > w - 1):
        raise InputError("split_patterns.centres", f"{c.tolist()!r}", f"centres inside the {h} x {w} frame")
    if not overlap_ratio > 0:
        raise InputError("split_patterns.overlap_ratio", repr(overlap_ratio), "a positive number")
    crops, valids = [], []
    for k in range(2):
        crop, valid, rows, cols = crop_pattern(f, m, c[k], size)
        own, other = c[k], c[1 - k]
        y = rows.astype(xp.float64)[:, None]
        x = cols.astype(xp.float64)[None, :]
        # squares as products: exact on both backends (CuPy's ``** 2`` is ``pow``, not guaranteed
        # exact), so pixels on the bisector (equal distances) are classified identically
        d_own2 = _sq(y - own[0]) + _sq(x - own[1])
        d_other2 = _sq(y - other[0]) + _sq(x - other[1])
        valid = valid & ~(d_other2 < (overlap_ratio**2) * d_own2)
        crops.append(xp.where(valid, crop, np.float32(0)))
        valids.append(valid)
    inten, valid = xp.stack(crops).astype(xp.float32), xp.stack(valids)
    if times is None:
        return (inten, valid, None) if return_hdr else (inten, valid)
    hdr = merge_exposures(inten, valid, times, sigma=hdr_sigma, dilate=hdr_dilate)
    if return_hdr:
        return hdr.intensity, hdr.valid, hdr
    return hdr.intensity, hdr.valid


def _sq(a):
    return a * a


def _find_centre(data: np.ndarray, good: np.ndarray) -> tuple[float, float]:
    """Intensity-weighted centroid of the brightest (blurred, hole-filled) region, on the host."""
    ndi = scipy_module(np, "ndimage")
    h, w = data.shape
    d = np.where(good & np.isfinite(data), np.maximum(data, 0), 0).astype(np.float64)
    blurred = ndi.gaussian_filter(d, 2.0)
    top = blurred.max()
    if not top > 0:
        return float(h // 2), float(w // 2)
    region = ndi.binary_fill_holes(blurred > 0.1 * top)
    labels, _ = ndi.label(region)
    peak = np.unravel_index(np.argmax(blurred), blurred.shape)
    region = labels == labels[peak]
    weights = d * region
    if not weights.sum() > 0:
        weights = blurred * region
    total = weights.sum()
    yy, xx = np.indices(d.shape)
    return float((weights * yy).sum() / total), float((weights * xx).sum() / total)


def single_pattern(data, mask=None, *, centre=None, size: int | None = None):
    """Crop a frame (or an already split pattern) holding one diffraction pattern.

    Parameters
    ----------
    data : (H, W) float32
        Frame or pattern  [photons].
    mask : (H, W) uint32, optional
        CXI mask bits (0 = good pixel).
    centre : (2,) float, optional
        ``(row, col)`` of the zero frequency  [pixels]. Default: the intensity-weighted centroid of
        the brightest region (Gaussian-blurred pattern above 10 % of its maximum, holes such as a
        beamstop shadow filled, connected to the maximum); the frame centre ``(H//2, W//2)``
        for an empty frame.
    size : int, optional
        Crop side N  [pixels]. Default: the largest even square around the rounded centre that
        fits in the frame.

    Returns
    -------
    intensities : (1, N, N) float32
        Zero frequency at pixel ``(N//2, N//2)``; 0 at invalid pixels.
    valid : (1, N, N) bool
    """
    xp, f, m = _as_frame(data, mask, "single_pattern")
    h, w = f.shape
    if centre is None:
        c = _find_centre(np.asarray(to_host(f), dtype=np.float64), np.asarray(to_host(m)) == 0)
    else:
        c = tuple(float(v) for v in np.asarray(to_host(centre), dtype=np.float64).ravel())
        if len(c) != 2 or not np.all(np.isfinite(c)) or not (0 <= c[0] <= h - 1 and 0 <= c[1] <= w - 1):
            raise InputError(
                "single_pattern.centre", repr(centre), f"a (row, col) inside the {h} x {w} frame"
            )
    if size is None:
        r0 = int(np.floor(c[0] + 0.5))
        c0 = int(np.floor(c[1] + 0.5))
        size = 2 * min(r0, h - r0, c0, w - c0)
        if size < 4:
            raise InputError(
                "single_pattern.centre",
                f"({c[0]:.1f}, {c[1]:.1f})",
                "a centre at least 2 pixels from the frame edges (or give size)",
            )
    size = _check_size(size, "single_pattern")
    crop, valid, _, _ = crop_pattern(f, m, c, size)
    return crop[None].astype(xp.float32), valid[None]
