"""Pre-processing of the two views before block matching (paper, Methods).

"The images are resized by a factor 4, with a bicubic interpolation in the intermediate pixels. A
Gaussian low pass filter is then applied to both images to reduce the effect of the noise
(sigma = 1.9). After filtering, the images are turned binary by defining suited binary thresholds
(0.40 and 0.25, in left and right images, respectively). Finally, [...] the isolated regions
constituted by less than 400 aggregated pixels, with no correspondence in the pair image, are
removed."
"The nanoparticles labelled sample only required background filtering. Hence, a binary mask including
populated regions of the pyramid structure is multiplied by the stereo views" (:func:`background_mask`).
For the phase cross, "a directional gradient along the x-axis - direction of disparities - is applied to
the rectified stereo views" (mode ``"gradient"``).

Grids: upsampling is a cubic-spline zoom with pixel-centre alignment, so that pixel ``j`` of the
matching grid sits at view coordinate ``(j + 0.5) / u - 0.5`` (:func:`view_coordinate`) and view pixel
``c`` at matching coordinate ``(c + 0.5) u - 0.5`` (:func:`matching_coordinate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import get_array_module, scipy_module, to_host
from ..config import PreprocessOptions
from ..errors import InputError

__all__ = [
    "PreprocessResult",
    "preprocess",
    "background_mask",
    "upsample_mask",
    "view_coordinate",
    "matching_coordinate",
]


@dataclass
class PreprocessResult:
    """The two images to match and how they were made.

    Attributes
    ----------
    images : (2, uH, uW) float32
        Left and right images on the matching grid: ``{0, 1}`` in mode ``"binary"``, the signed
        x-derivative mapped to 0..1 (0.5 = no gradient) in mode ``"gradient"``, the normalised and
        upsampled views (0..1) in mode ``"none"``.
    upsample : int
        Upsampling factor ``u`` from view pixels to matching-grid pixels.
    normalised : (2, H, W) float32
        The views on the 0..1 scale (before upsampling).
    removed : tuple of int
        Connected regions (white islands and black holes) flipped per view because they were small
        and had no counterpart in the other view; ``(0, 0)`` in mode ``"none"``.
    thresholds : tuple of float or None
        Binary thresholds actually used (left, right); ``None`` in the other modes.
    mask : (2, uH, uW) bool or None
        The background mask on the matching grid (nearest-neighbour upsampling, see
        :func:`upsample_mask`): disparities where it is False should be discarded. ``None`` when no
        mask was given.
    """

    images: Any
    upsample: int
    normalised: Any
    removed: tuple[int, int] = (0, 0)
    thresholds: tuple[float, float] | None = None
    mask: Any = None


def view_coordinate(j, u: int):
    """View coordinate [view pixels] of matching-grid coordinate ``j`` for upsampling ``u``: ``(j + 0.5)/u - "
    "0.5``."""
    return (j + 0.5) / u - 0.5


def matching_coordinate(c, u: int):
    """Matching-grid coordinate of view coordinate ``c`` (inverse of :func:`view_coordinate`): ``(c + 0.5) u "
    "- 0.5``."""
    return (c + 0.5) * u - 0.5


def preprocess(
    views, options: PreprocessOptions | None = None, *, search_range: tuple[int, int] = (-65, 65), mask=None
) -> PreprocessResult:
    """Normalise, upsample and binarise (or differentiate) the two views for matching.

    Normalisation (all modes), per view: non-negative views (amplitudes) are divided by the
    ``options.normalise_percentile`` percentile of their signal (the pixels above 10 % of the
    view's maximum, so that the scale does not depend on the field of view) and clipped to 0..1.
    Views with negative values (e.g. phase images) are, in mode ``"binary"``, shifted by their
    minimum first (unchanged behaviour); in modes ``"none"`` and ``"gradient"`` they are centred on
    their median (the background of a sparse object, and independent of a global phase offset) and
    mapped to ``0.5 + 0.5 (v - median) / s``, ``s`` the same percentile of ``|v - median|`` over
    its signal, so that the background sits at 0.5 and features of either sign keep their sign.
    The decision (non-negative or signed) is taken once for both views so that they share a scale.

    Then each view is upsampled by ``u = options.upsample`` with a cubic-spline zoom (pixel-centre
    aligned, edges extended), and:

    * ``"none"``: nothing more; the upsampled views clipped to 0..1.
    * ``"binary"`` (paper, cross): Gaussian low-pass ``options.sigma`` [matching-grid pixels],
      threshold per view (``options.thresholds``, left and right; with ``options.equalise_area``
      the right threshold is instead the one that gives the right view the left view's white area)
      to ``{0, 1}``, then removal of small unmatched regions: a connected region (white,
      8-connected, or black, 4-connected) smaller than ``options.min_region`` pixels is flipped to
      the surrounding colour unless the other view holds a region of the same colour, with an area
      within a factor 2, whose bounding box overlaps this region's bounding box shifted along x
      over the disparity search range. White islands are handled first, then black holes.
    * ``"gradient"`` (paper, phase cross: "a directional gradient along the x-axis"): Gaussian
      low-pass ``options.sigma``, Sobel derivative ``Gx`` along x (the disparity direction) of the
      *unclipped* normalised view, and ``0.5 + 0.5 clip(Gx / g, -1, 1)`` with ``g`` the
      ``options.normalise_percentile`` percentile of ``|Gx|`` over its signal (pixels above 10 % of
      the maximum ``|Gx|``). The sign is kept: a rising and a falling edge (the two sides of a bar)
      then look different to the SAD, whereas ``|Gx|`` makes them identical and lets a block match
      the wrong side of a thin feature; uniform areas sit at 0.5 and carry no SAD contrast, so the
      matcher's texture rule drops them as it does in the binary mode.

    Parameters
    ----------
    views : (2, H, W) float32
        Left and right views (real: amplitude or phase), NumPy or CuPy.
    options : PreprocessOptions, optional
        Defaults: the paper's (x4, sigma 1.9, thresholds 0.40 / 0.25, 400 px, mode ``"binary"``).
    search_range : (int, int)
        ``(dmin, dmax)`` of the block matching [matching-grid pixels], where a region's counterpart
        may lie: a point at column ``x`` of the left image is at ``x - d`` of the right image.
        Pass ``(options.match.dmin, options.match.dmax)``.
    mask : (2, H, W) bool, optional
        Background mask on the view grid (True = populated region; e.g. :func:`background_mask`).
        The views are multiplied by it before normalisation (paper, pyramid) and its upsampled copy
        is returned in ``PreprocessResult.mask`` so that disparities outside it can be discarded.

    Returns
    -------
    PreprocessResult
        ``images (2, uH, uW) float32`` on the device of ``views``, the factor ``u``, the normalised
        views, the number of regions removed per view and the upsampled mask.
    """
    options = options or PreprocessOptions()
    xp = get_array_module(views)
    views = _check_views(xp, views)
    dmin, dmax = (int(v) for v in search_range)
    if dmin > dmax:
        raise InputError("preprocess.search_range", repr(search_range), "(dmin, dmax) with dmin <= dmax")
    if options.mode not in ("binary", "gradient", "none"):  # PreprocessOptions validates; keep it closed
        raise InputError("preprocess.mode", repr(options.mode), "one of 'binary', 'gradient', 'none'")
    ndi = scipy_module(xp, "ndimage")
    u = int(options.upsample)
    up_mask = None
    if mask is not None:
        mask = _check_mask(xp, mask, views.shape)
        views = views * mask
        up_mask = upsample_mask(mask, u)

    # --- normalise each view to 0..1 ------------------------------------------------------------
    flat = views.reshape(2, -1)
    signed = options.mode != "binary" and bool((flat < 0).any())
    if signed:
        centre = xp.median(flat, axis=1)[:, None]
        dev = xp.abs(flat - centre)
        s = _signal_percentile(xp, dev, options.normalise_percentile)
        scale = xp.where(s > 0, 0.5 / xp.where(s > 0, s, 1), 0).astype(np.float32)
        raw = (0.5 + (flat - centre) * scale).astype(np.float32).reshape(views.shape)
    else:
        lo = xp.minimum(flat.min(axis=1), 0)[:, None]
        shifted = flat - lo
        # the percentile is taken over each view's signal (pixels above 10 % of its maximum), not over
        # the whole field: otherwise a larger field of view (more empty background) lowers it into the
        # noise
        hi = xp.stack([xp.percentile(f[f >= 0.1 * f.max()], options.normalise_percentile) for f in shifted])
        hi = hi[:, None].astype(np.float32)
        scale = xp.where(hi > 0, 1 / xp.where(hi > 0, hi, 1), 0).astype(np.float32)
        raw = (shifted * scale).reshape(views.shape)
    norm = xp.clip(raw, 0, 1).astype(np.float32)

    if options.mode == "gradient":
        src = raw.astype(np.float32, copy=False)
        up = xp.stack([_zoom(ndi, xp, src[v], u) for v in (0, 1)]) if u > 1 else src.copy()
        if options.sigma > 0:
            up = xp.stack([_lowpass(ndi, xp, up[v], options.sigma) for v in (0, 1)])
        gx = xp.stack([ndi.sobel(up[v], axis=1, mode="nearest") for v in (0, 1)]).astype(np.float32)
        g = _signal_percentile(xp, xp.abs(gx).reshape(2, -1), options.normalise_percentile)[:, :, None]
        gscale = xp.where(g > 0, 0.5 / xp.where(g > 0, g, 1), 0).astype(np.float32)
        images = xp.clip(0.5 + gx * gscale, 0, 1).astype(np.float32)
        return PreprocessResult(images, u, norm, (0, 0), None, up_mask)

    # --- upsample (cubic spline, pixel-centre aligned) ----------------------------------------------
    if u > 1:
        # one 2-D zoom per view: a 3-D zoom with factor 1 on the view axis costs 4x more taps
        up = xp.stack([_zoom(ndi, xp, norm[v], u) for v in (0, 1)])
        up = xp.clip(up, 0, 1).astype(np.float32, copy=False)
    else:
        up = norm.copy()

    if options.mode == "none":
        return PreprocessResult(up, u, norm, (0, 0), None, up_mask)

    # --- low-pass and binarise ------------------------------------------------------------------------
    if options.sigma > 0:
        up = xp.stack([_lowpass(ndi, xp, up[v], options.sigma) for v in (0, 1)])
    thresholds = [float(t) for t in options.thresholds]
    if options.equalise_area:
        # the right threshold that gives the right view the left view's white area
        frac = float((up[0] > thresholds[0]).mean())
        thresholds[1] = float(xp.percentile(up[1], 100.0 * (1.0 - frac))) if 0 < frac < 1 else thresholds[1]
    thr = xp.asarray(np.asarray(thresholds, dtype=np.float32))[:, None, None]
    binary = up > thr
    removed = (0, 0)
    if options.min_region > 0:
        binary, removed = _remove_unmatched(binary, int(options.min_region), dmin, dmax)
    return PreprocessResult(binary.astype(np.float32), u, norm, removed, tuple(thresholds), up_mask)


def upsample_mask(mask, u: int):
    """Nearest-neighbour upsampling of a view-grid mask to the matching grid.

    Matching-grid pixel ``j`` sits at view coordinate ``(j + 0.5)/u - 0.5``, whose nearest view
    pixel is ``j // u``; so the mask is each view pixel repeated ``u x u`` times.

    Parameters
    ----------
    mask : (..., H, W) bool
    u : int
        Upsampling factor.

    Returns
    -------
    (..., uH, uW) bool
    """
    xp = get_array_module(mask)
    m = xp.asarray(mask).astype(bool, copy=False)
    return xp.repeat(xp.repeat(m, u, axis=-2), u, axis=-1)


def background_mask(
    views,
    *,
    sigma: float = 2.0,
    fraction: float = 0.15,
    closing: int = 3,
    dilation: int = 2,
    max_hole: int | None = None,
):
    """Mask of the populated regions of each view (paper, pyramid: "a binary mask including
    populated regions of the pyramid structure").

    Per view: the signal ``|v|`` (``|v - median|`` when the views hold negative values, e.g. phase
    images) is smoothed with a Gaussian of ``sigma`` [view pixels] and thresholded at
    ``fraction`` of its maximum; the result is closed (``closing`` iterations of a 3 x 3 square,
    joining particles a few pixels apart into one region), dilated by ``dilation`` iterations
    (a margin around the features, so that blocks straddling their edges still see them), and
    holes smaller than ``max_hole`` pixels are filled.

    Parameters
    ----------
    views : (2, H, W) float32
        Left and right views (real), NumPy or CuPy.
    sigma : float
        Gaussian smoothing [view pixels] (0: none).
    fraction : float
        Threshold as a fraction of each view's maximum smoothed signal, in (0, 1).
    closing, dilation : int
        Iterations of binary closing and dilation with a 3 x 3 structuring element (0: none).
    max_hole : int, optional
        Holes (background regions not touching the border) smaller than this are filled; default
        ``H * W // 100``. 0 fills none.

    Returns
    -------
    (2, H, W) bool
        True in the populated regions; on the device of ``views``.
    """
    xp = get_array_module(views)
    views = _check_views(xp, views, where="background_mask.views")
    if not 0 < fraction < 1:
        raise InputError("background_mask.fraction", repr(fraction), "a value in (0, 1)")
    for name, val in (("sigma", sigma), ("closing", closing), ("dilation", dilation)):
        if val < 0:
            raise InputError(f"background_mask.{name}", repr(val), "a value >= 0")
    ndi = scipy_module(xp, "ndimage")
    H, W = views.shape[1:]
    max_hole = H * W // 100 if max_hole is None else int(max_hole)
    flat = views.reshape(2, -1)
    if bool((flat < 0).any()):
        sig = xp.abs(flat - xp.median(flat, axis=1)[:, None]).reshape(views.shape)
    else:
        sig = views
    square = xp.ones((3, 3), dtype=bool)
    out = []
    for v in (0, 1):
        s = ndi.gaussian_filter(sig[v], sigma, mode="nearest") if sigma > 0 else sig[v]
        m = s > fraction * s.max()
        if closing > 0:
            # pad so that the closing does not erode regions at the border
            m = ndi.binary_closing(xp.pad(m, closing), structure=square, iterations=int(closing))
            m = m[closing:-closing, closing:-closing]
        if dilation > 0:
            m = ndi.binary_dilation(m, structure=square, iterations=int(dilation))
        if max_hole > 0:
            holes = ndi.binary_fill_holes(m) & ~m
            labels, n = ndi.label(holes)
            if int(n) > 0:
                area = xp.bincount(labels.ravel(), minlength=int(n) + 1)
                small = area < max_hole
                small[0] = False
                m = m | small[labels]
        out.append(m)
    return xp.stack(out)


# --------------------------------------------------------------------------------------------- #
# internals


def _zoom(ndi, xp, image, u: int):
    """Cubic-spline zoom by ``u`` (pixel-centre aligned, edges extended) of a float32 image.

    SciPy prefilters and interpolates in float64 and rounds the result to the float32 output;
    cupyx.scipy.ndimage does all of it in float32 for a float32 input. On CuPy the image is
    therefore zoomed in float64 and rounded once, so that both backends binarise the same pixels.
    """
    if xp is np:
        return ndi.zoom(image, u, order=3, grid_mode=True, mode="nearest")
    return ndi.zoom(image.astype(np.float64), u, order=3, grid_mode=True, mode="nearest").astype(np.float32)


def _lowpass(ndi, xp, image, sigma: float):
    """Gaussian low-pass (edges extended) of a float32 image, float32 result.

    SciPy filters one axis after the other in float64 arithmetic and stores each pass in the
    float32 output; cupyx.scipy.ndimage uses float32 arithmetic (and float32 weights) for a
    float32 input. On CuPy the same axis passes run in float64 with the same float32 rounding
    between them, so that thresholds cut the same pixels on both backends.
    """
    if xp is np:
        return ndi.gaussian_filter(image, sigma, mode="nearest")
    out = image
    for axis in range(image.ndim):
        out = ndi.gaussian_filter1d(out.astype(np.float64), sigma, axis=axis, mode="nearest").astype(
            np.float32
        )
    return out


def _check_views(xp, views, where: str = "preprocess.views"):
    shape = getattr(views, "shape", None)
    if shape is None or len(shape) != 3 or shape[0] != 2:
        raise InputError(where, f"shape {shape}", "(2, H, W): left and right views")
    if min(shape[1:]) < 2:
        raise InputError(where, f"shape {tuple(shape)}", "views of at least 2 x 2 pixels")
    if xp.iscomplexobj(views):
        raise InputError(where, f"dtype {views.dtype}", "real views (take the amplitude or the phase)")
    views = views.astype(np.float32, copy=False)
    if not bool(xp.isfinite(views).all()):
        raise InputError(where, "non-finite values", "finite views")
    return views


def _check_mask(xp, mask, shape):
    m_shape = getattr(mask, "shape", None)
    if m_shape is None or tuple(m_shape) != tuple(shape):
        raise InputError("preprocess.mask", f"shape {m_shape}", f"the views' shape {tuple(shape)}")
    if get_array_module(mask) is not xp:
        raise InputError(
            "preprocess.mask",
            f"an array of {get_array_module(mask).__name__}",
            f"an array of {xp.__name__}, like the views",
        )
    return mask.astype(bool, copy=False)


def _signal_percentile(xp, a, q: float):
    """Per row of ``a (2, n)`` (non-negative), the ``q`` percentile of its entries above 10 % of its max."""
    return xp.stack([xp.percentile(f[f >= 0.1 * f.max()], q) for f in a])[:, None].astype(np.float32)


def _components(mask, structure):
    """Labels, and host arrays of area and inclusive bounding boxes (r0, r1, c0, c1) per component."""
    xp = get_array_module(mask)
    ndi = scipy_module(xp, "ndimage")
    labels, n = ndi.label(mask, structure=structure)
    n = int(n)
    area = to_host(xp.bincount(labels.ravel(), minlength=n + 1)[1:]).astype(np.int64)
    if n == 0:
        e = np.zeros(0, dtype=np.int64)
        return labels, n, area, (e, e, e, e)
    if xp is np:
        objs = ndi.find_objects(labels)
        box = np.array([(s[0].start, s[0].stop - 1, s[1].start, s[1].stop - 1) for s in objs], dtype=np.int64)
        return labels, n, area, tuple(box.T)
    import cupyx

    H, W = labels.shape
    flat = labels.ravel()
    rows = xp.broadcast_to(xp.arange(H, dtype=np.int32)[:, None], (H, W)).ravel()
    cols = xp.broadcast_to(xp.arange(W, dtype=np.int32)[None, :], (H, W)).ravel()
    big = np.iinfo(np.int32).max
    out = []
    for coord, fn, init in (
        (rows, cupyx.scatter_min, big),
        (rows, cupyx.scatter_max, -1),
        (cols, cupyx.scatter_min, big),
        (cols, cupyx.scatter_max, -1),
    ):
        acc = xp.full(n + 1, init, dtype=np.int32)
        fn(acc, flat, coord)  # atomic min / max per label
        out.append(to_host(acc[1:]).astype(np.int64))
    return labels, n, area, tuple(out)


def _unmatched(stats_self, stats_other, min_region: int, lo_shift: int, hi_shift: int) -> np.ndarray:
    """Labels (1-based) of small components of one view with no counterpart in the other view.

    A counterpart overlaps the bounding box shifted along x by any amount in
    ``[lo_shift, hi_shift]`` and has an area within a factor 2.
    """
    _, n, area, (r0, r1, c0, c1) = stats_self
    _, m, oarea, (or0, or1, oc0, oc1) = stats_other
    small = np.flatnonzero(area < min_region)
    if small.size == 0:
        return small + 1
    if m == 0:
        return small + 1
    cand = np.flatnonzero(oarea < 2 * min_region)  # only these can be within a factor 2 of a small one
    matched = np.zeros(small.size, dtype=bool)
    if cand.size:
        step = max(1, (1 << 22) // cand.size)
        for s in range(0, small.size, step):
            i = small[s : s + step, None]
            j = cand[None, :]
            ok = (
                (oarea[j] * 2 >= area[i])
                & (oarea[j] <= 2 * area[i])
                & (or0[j] <= r1[i])
                & (or1[j] >= r0[i])
                & (oc0[j] <= c1[i] + hi_shift)
                & (oc1[j] >= c0[i] + lo_shift)
            )
            matched[s : s + step] = ok.any(axis=1)
    return small[~matched] + 1


def _remove_unmatched(binary, min_region: int, dmin: int, dmax: int):
    """Flip small regions of ``binary (2, H, W) bool`` that have no counterpart in the other view."""
    xp = get_array_module(binary)
    binary = binary.copy()
    eight = xp.ones((3, 3), dtype=bool)
    four = xp.asarray(np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool))
    removed = [0, 0]
    # left region at columns x lies at x - d in the right view: shift by [-dmax, -dmin];
    # right region at x lies at x + d in the left view: shift by [dmin, dmax].
    shifts = ((-dmax, -dmin), (dmin, dmax))
    for colour, structure in ((True, eight), (False, four)):
        stats = [_components(binary[v] if colour else ~binary[v], structure) for v in (0, 1)]
        flips = [_unmatched(stats[v], stats[1 - v], min_region, *shifts[v]) for v in (0, 1)]
        for v in (0, 1):
            if flips[v].size == 0:
                continue
            labels, n = stats[v][0], stats[v][1]
            lut = np.zeros(n + 1, dtype=bool)
            lut[flips[v]] = True
            hit = xp.asarray(lut)[labels]
            binary[v][hit] = not colour
            removed[v] += int(flips[v].size)
    return binary, (removed[0], removed[1])
