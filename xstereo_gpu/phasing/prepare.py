"""From a CCD frame to per-view intensities and valid-data masks (the ``prepare`` stage).

One frame holds the two diffraction patterns of a stereo pair. :func:`split_patterns` crops an
``N x N`` window around each pattern's zero frequency so that it lands on crop pixel
``(N//2, N//2)`` (the engine's convention ``I = |fftshift(fft2(w))|**2``) and marks as invalid
every pixel without usable data: outside the frame, flagged in the CXI mask, non-finite, or lying
in the overlap with the other pattern (paper: "we crop the overlapped part"). Invalid pixels are
set to 0 and left free by phase retrieval. :func:`single_pattern` does the same for a frame (or an
already split pattern) holding one pattern.
"""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module, to_host
from ..errors import InputError

__all__ = ["split_patterns", "single_pattern", "crop_pattern"]


def _as_frame(frame, mask, where: str):
    xp = get_array_module(frame)
    f = xp.asarray(frame)
    if f.ndim != 2:
        raise InputError(f"{where}.frame", f"an array of shape {tuple(f.shape)}", "a 2-D frame (H, W)")
    if not (np.issubdtype(f.dtype, np.floating) or np.issubdtype(f.dtype, np.integer)):
        raise InputError(f"{where}.frame", f"dtype {f.dtype}", "real intensities")
    if mask is None:
        m = xp.zeros(f.shape, dtype=xp.uint32)
    else:
        m = xp.asarray(mask)
        if m.shape != f.shape:
            raise InputError(f"{where}.mask", f"shape {tuple(m.shape)}", f"the frame's shape {tuple(f.shape)}")
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
    frame : (H, W) float
        Detector frame  [photons].
    mask : (H, W) uint32
        CXI mask bits (0 = good pixel).
    centre : (2,) float
        ``(row, col)`` of the pattern's zero frequency on the frame  [pixels].
    size : int
        Crop side N  [pixels].

    Returns
    -------
    crop : (N, N) float32
        Intensities, 0 where invalid; frame pixel ``round(centre)`` lands on ``(N//2, N//2)``.
    valid : (N, N) bool
        Inside the frame, mask 0 and finite.
    rows, cols : (N,) int
        Frame row and column of every crop row and column.
    """
    xp = get_array_module(frame)
    h, w = frame.shape
    r0 = int(np.floor(float(centre[0]) + 0.5))
    c0 = int(np.floor(float(centre[1]) + 0.5))
    rows = xp.arange(size) + (r0 - size // 2)
    cols = xp.arange(size) + (c0 - size // 2)
    inside = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
    rr = xp.clip(rows, 0, h - 1)[:, None]
    cc = xp.clip(cols, 0, w - 1)[None, :]
    crop = frame[rr, cc].astype(xp.float32)
    valid = inside & (mask[rr, cc] == 0) & xp.isfinite(crop)
    crop = xp.where(valid, crop, np.float32(0))
    return crop, valid, rows, cols


def split_patterns(frame, mask, centres, size: int, *, overlap_ratio: float = 1.0):
    """Split a frame holding the left and right patterns into two centred crops.

    Parameters
    ----------
    frame : (H, W) float32
        Detector frame  [photons].
    mask : (H, W) uint32 or None
        CXI mask bits; any non-zero bit makes the pixel invalid. ``None``: all pixels good.
    centres : (2, 2) float
        ``(row, col)`` of the zero frequency of the left (row 0) and right (row 1) patterns on
        the frame  [pixels]; each crop is centred on the rounded centre.
    size : int
        Crop side N  [pixels].
    overlap_ratio : float
        A crop pixel is invalid when its distance to the *other* pattern's centre is less than
        ``overlap_ratio`` times its distance to its own centre (1.0 = the perpendicular bisector)
        (:attr:`PrepareOptions.overlap_ratio`).

    Returns
    -------
    intensities : (2, N, N) float32
        Crops with the zero frequency at pixel ``(N//2, N//2)``; 0 at invalid pixels.
    valid : (2, N, N) bool
        True where the pixel holds usable data.
    """
    xp, f, m = _as_frame(frame, mask, "split_patterns")
    size = _check_size(size, "split_patterns")
    c = np.asarray(to_host(centres), dtype=np.float64)
    if c.shape != (2, 2) or not np.all(np.isfinite(c)):
        raise InputError("split_patterns.centres", f"{c.tolist()!r}", "two finite (row, col) pairs, shape (2, 2)")
    h, w = f.shape
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
    return xp.stack(crops).astype(xp.float32), xp.stack(valids)


def _sq(a):
    return a * a


def _find_centre(data: np.ndarray, good: np.ndarray) -> tuple[float, float]:
    """Intensity-weighted centroid of the brightest (blurred, hole-filled) region, on the host."""
    import scipy.ndimage as ndi

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
            raise InputError("single_pattern.centre", repr(centre), f"a (row, col) inside the {h} x {w} frame")
    if size is None:
        r0 = int(np.floor(c[0] + 0.5))
        c0 = int(np.floor(c[1] + 0.5))
        size = 2 * min(r0, h - r0, c0, w - c0)
        if size < 4:
            raise InputError("single_pattern.centre", f"({c[0]:.1f}, {c[1]:.1f})",
                             "a centre at least 2 pixels from the frame edges (or give size)")
    size = _check_size(size, "single_pattern")
    crop, valid, _, _ = crop_pattern(f, m, c, size)
    return crop[None].astype(xp.float32), valid[None]
