"""Block matching: SAD plus a weaker proximity term, parabolic subpixel, left and right maps.

Paper (Methods): blocks of 3 x 3 pixels, a scan of 65 pixels to either side, "a simple sum of
absolute differences, added to a less weighted pixel proximity term" as the cost, a second-order
sub-pixel interpolation of the winning disparity, and two maps (left w.r.t. right and vice versa).

Convention (DESIGN.md section 5): a point at column ``x`` of the left image is at column ``x - d`` of
the right image, so ``d = x_left - x_right``; the right map uses the same sign (the point at ``x`` of
the right image is at ``x + d`` of the left image).

Implementation: a running minimum over ``d``; no ``(D, H, W)`` cost volume is ever held. For each
``d`` the absolute differences are box-summed once and serve both maps, because the right map's cost
at column ``x`` is the left map's cost at column ``x + d``. Per pixel and per map the loop keeps the
best cost and its ``d``, the costs at ``d_best - 1`` and ``d_best + 1`` (for the parabola) and the
best cost outside ``d_best +- 1`` (for the confidence), using the fact that the running minimum two
steps back is the minimum over all ``d' <= d - 2``. On NumPy the image is cut into bands of rows that
fit in the CPU cache and the bands run on a thread pool; on CuPy the whole image is one band. This is
the NumPy twin (and oracle) of the CUDA kernel :func:`~._bm_kernel.block_match_kernel`, which
:func:`block_match` runs on CuPy.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..backend import fft_workers, fits_int32, get_array_module, use_kernels
from ..checks import check_image
from ..config import MatchOptions
from ..errors import InputError
from ._bm_kernel import MAX_BLOCK, block_match_kernel
from .match_result import MatchResult

__all__ = ["MatchResult", "block_match", "texture_map"]

#: Elements per band on the CPU path (rows x width): small enough for the working set of one
#: band (about a dozen float32 arrays) to stay in the L2/L3 caches.
_BAND_ELEMENTS = 48 * 1024


def block_match(
    left, right, options: MatchOptions | None = None, *, kernels: bool | None = None
) -> MatchResult:
    """Dense block matching of a rectified pair, both maps at once.

    For a left pixel ``(y, x)`` the cost of disparity ``d`` is the mean over the ``b x b`` block of
    ``|L(y, x) - R(y, x - d)|`` plus ``w |d| / max(|dmin|, |dmax|)`` (``w`` =
    ``options.proximity_weight``), for integer ``d`` in ``[dmin, dmax]`` with ``x - d`` inside the
    image. The winner is refined with a parabola through the costs at ``d - 1, d, d + 1`` (offset
    clipped to +-0.5). The right map is the same with ``R(y, x)`` against ``L(y, x + d)``. Rows
    beyond the image are edge-replicated for the blocks.

    A disparity is invalid (NaN) when the minimum lies at the end of the search range or next to
    the image border (no parabola possible, the match may lie outside), or when the reference
    block's mean ``|dI/dx|`` (:func:`texture_map`) is below ``options.texture_threshold`` (uniform
    regions and edges parallel to x carry no disparity information). That mean shrinks as
    ``1 / b`` for a single edge crossing the block: scale the threshold down for large blocks.

    Parameters
    ----------
    left, right : (H, W) float32
        Rectified views on the matching grid, intensities on a 0..1 scale (as returned by
        :func:`xstereo_gpu.stereo.preprocess`). NumPy or CuPy; the result lives on the same device.
    options : MatchOptions, optional
        Block size, search range, proximity weight, texture threshold (defaults: the paper's).
    kernels : bool, optional
        On CuPy, run the CUDA kernel :func:`~._bm_kernel.block_match_kernel` (same results to
        float32 rounding) for blocks up to :data:`~._bm_kernel.MAX_BLOCK`. Default: yes unless
        the environment variable ``XSTEREO_KERNELS=0``; ``False`` runs this twin's array code on
        CuPy (for comparison). Ignored on NumPy.

    Returns
    -------
    MatchResult
        Disparity maps [matching-grid pixels], costs and confidences, all ``(H, W) float32``.

    See Also
    --------
    xstereo_gpu.stereo.lr_consistency : left-right check of the two maps.
    """
    options = options or MatchOptions()
    xp = get_array_module(left, right)
    b = int(options.block)
    on_kernel = use_kernels(xp, kernels) and b <= MAX_BLOCK and fits_int32(2 * getattr(left, "size", 0))
    # the kernel path makes no host synchronisation (finiteness: see block_match_kernel)
    left = check_image(left, "block_match.left", finite=not on_kernel)
    right = check_image(right, "block_match.right", finite=not on_kernel)
    if left.shape != right.shape:
        raise InputError("block_match.right", f"shape {right.shape}", f"the left image's shape {left.shape}")
    H, W = left.shape
    if on_kernel:
        return block_match_kernel(left, right, options)
    h = b // 2
    Lp = xp.pad(left, h, mode="edge")
    Rp = xp.pad(right, h, mode="edge")

    out = {key: xp.empty((H, W), dtype=np.float32) for key in ("dl", "dr", "cl", "cr", "ql", "qr")}

    def run(r0: int, r1: int) -> None:
        res = _match_band(
            Lp[r0 : r1 + 2 * h],
            Rp[r0 : r1 + 2 * h],
            W,
            b,
            int(options.dmin),
            int(options.dmax),
            float(options.proximity_weight),
        )
        for key, value in zip(("dl", "cl", "ql", "dr", "cr", "qr"), res):
            out[key][r0:r1] = value

    if xp is np:
        rows = max(1, min(H, _BAND_ELEMENTS // max(W, 1)))
        run_bands(xp, run, [(r, min(H, r + rows)) for r in range(0, H, rows)])
    else:
        run(0, H)

    thr = options.texture_threshold
    if thr > 0:
        for key, img in (("l", left), ("r", right)):
            flat = texture_map(img, block=b) < thr
            out["d" + key][flat] = np.nan
            out["c" + key][flat] = np.nan
            out["q" + key][flat] = 0
    return MatchResult(out["dl"], out["dr"], out["cl"], out["cr"], out["ql"], out["qr"])


def run_bands(xp, run, bands, workers: int | None = None) -> None:
    """Call ``run(lo, hi)`` for each band, on a thread pool on NumPy."""
    workers = min(fft_workers() if workers is None else workers, len(bands)) if xp is np else 1
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda rr: run(*rr), bands))
    else:
        for rr in bands:
            run(*rr)


def texture_map(image, *, block: int = 3):
    """Block mean of ``|dI/dx|``: how much a block can tell about a shift along x.

    For ``b > 1`` the derivative is the forward difference between neighbouring columns *inside*
    the block (``b (b - 1)`` differences), so a uniform block next to an edge scores 0; for
    ``b = 1`` it is the central difference at the pixel. Rows and columns beyond the image are
    edge-replicated.

    Parameters
    ----------
    image : (H, W) float32
        Image on a 0..1 scale.
    block : int
        Block side ``b`` (odd)  [pixels].

    Returns
    -------
    (H, W) float32
        Mean absolute x-derivative over the block around each pixel [intensity per pixel]; a step
        of height 1 crossing a 3 x 3 block scores 0.5.
    """
    xp = get_array_module(image)
    image = image.astype(np.float32, copy=False)
    if block == 1:
        return xp.abs(xp.gradient(image, axis=1)).astype(np.float32, copy=False)
    h = block // 2
    ip = xp.pad(image, h, mode="edge")
    diff = xp.abs(ip[:, 1:] - ip[:, :-1])
    s = _box_valid(_box_valid(diff, block - 1, axis=1), block, axis=0)
    s *= np.float32(1.0 / (block * (block - 1)))
    return s


# --------------------------------------------------------------------------------------------- #
# internals


def _box_valid(a, b: int, axis: int, out=None):
    """Sum of ``b`` consecutive elements along ``axis`` ('valid' mode: length shrinks by b - 1)."""
    xp = get_array_module(a)
    n = a.shape[axis] - b + 1

    def sl(start, stop):
        idx = [slice(None)] * a.ndim
        idx[axis] = slice(start, stop)
        return tuple(idx)

    if b == 1:
        if out is None:
            return a.copy()
        out[...] = a
        return out
    if b <= 7:
        out = xp.add(a[sl(0, n)], a[sl(1, n + 1)], out=out)
        for i in range(2, b):
            out += a[sl(i, n + i)]
        return out
    # long blocks: running sum in float64 (exact enough for any image width)
    cs = xp.cumsum(a, axis=axis, dtype=np.float64)
    res = cs[sl(b - 1, None)].copy()
    res[sl(1, None)] -= cs[sl(0, n - 1)]
    if out is None:
        return res.astype(np.float32)
    out[...] = res
    return out


class _Tracker:
    """Running best / neighbours / second best over d for one map of one band."""

    __slots__ = ("best", "best_m1", "bd", "cprev", "cnext", "second", "upd_prev")

    def __init__(self, xp, shape):
        inf = np.float32(np.inf)
        self.best = xp.full(shape, inf, dtype=np.float32)  # min over d' <= d - 1
        self.best_m1 = xp.full(shape, inf, dtype=np.float32)  # min over d' <= d - 2
        self.bd = xp.zeros(shape, dtype=np.int32)
        self.cprev = xp.full(shape, inf, dtype=np.float32)
        self.cnext = xp.full(shape, inf, dtype=np.float32)
        self.second = xp.full(shape, inf, dtype=np.float32)
        self.upd_prev = xp.zeros(shape, dtype=bool)

    def step(self, xp, c, c_prev, d: int) -> None:
        """Fold in the cost map ``c`` of disparity ``d`` (``c_prev``: the map of ``d - 1``)."""
        upd = c < self.best
        newbest = xp.minimum(c, self.best)
        xp.copyto(self.bd, np.int32(d), where=upd)
        xp.copyto(self.cprev, c_prev, where=upd)
        xp.copyto(self.cnext, c, where=self.upd_prev)
        # second best outside d_best +- 1: d'=d joins unless it is d_best + 1; a new best at d
        # leaves exactly the d' <= d - 2, whose minimum is the running best two steps back.
        second = xp.minimum(self.second, c)
        xp.copyto(second, self.second, where=self.upd_prev)
        xp.copyto(second, self.best_m1, where=upd)
        self.second = second
        self.best_m1 = self.best
        self.best = newbest
        self.upd_prev = upd

    def finish(self, xp, dmax: int, scale: float):
        """Subpixel disparity (NaN invalid), mean cost, confidence."""
        best, cp, cn = self.best, self.cprev, self.cnext
        valid = xp.isfinite(cp) & xp.isfinite(cn) & (self.bd != dmax)
        with np.errstate(invalid="ignore", divide="ignore"):
            denom = cp - 2 * best + cn
            off = xp.where(valid & (denom > 0), 0.5 * (cp - cn) / xp.where(denom > 0, denom, 1), 0)
            off = xp.clip(off, -0.5, 0.5)
            disp = xp.where(valid, self.bd.astype(np.float32) + off, np.nan).astype(np.float32)
            cost = xp.where(valid, best * np.float32(1.0 / scale), np.nan).astype(np.float32)
            conf = xp.where(
                valid & (self.second > 0), 1 - best / xp.where(self.second > 0, self.second, 1), 0
            )
            conf = xp.clip(conf, 0, 1).astype(np.float32)
        return disp, cost, conf


def _match_band(Lp, Rp, W: int, b: int, dmin: int, dmax: int, wprox: float):
    """Both maps for one band of rows. ``Lp, Rp``: (rows + b - 1, W + b - 1), edge-padded."""
    xp = get_array_module(Lp)
    h = b // 2
    rows = Lp.shape[0] - 2 * h
    inf = np.float32(np.inf)
    scale = float(b * b)
    dnorm = float(max(abs(dmin), abs(dmax))) or 1.0
    shape = (rows, W)
    tl, tr = _Tracker(xp, shape), _Tracker(xp, shape)
    bufl = [xp.full(shape, inf, dtype=np.float32) for _ in range(2)]
    bufr = [xp.full(shape, inf, dtype=np.float32) for _ in range(2)]
    hs = xp.empty((rows + 2 * h, W), dtype=np.float32)
    ad = xp.empty((rows + 2 * h, W + 2 * h), dtype=np.float32)
    for i, d in enumerate(range(dmin, dmax + 1)):
        k = i & 1
        cl, cr = bufl[k], bufr[k]
        x0, x1 = max(0, d), min(W, W + d)
        if x1 > x0:
            n = x1 - x0
            a = ad[:, : n + 2 * h]
            xp.subtract(Lp[:, x0 : x1 + 2 * h], Rp[:, x0 - d : x1 - d + 2 * h], out=a)
            xp.abs(a, out=a)
            s = _box_valid(a, b, axis=1, out=hs[:, :n])
            _box_valid(s, b, axis=0, out=cl[:, x0:x1])
            cl[:, x0:x1] += np.float32(scale * wprox * abs(d) / dnorm)
            cl[:, :x0] = inf
            cl[:, x1:] = inf
            cr[:, x0 - d : x1 - d] = cl[:, x0:x1]
            cr[:, : x0 - d] = inf
            cr[:, x1 - d :] = inf
        else:
            cl[...] = inf
            cr[...] = inf
        tl.step(xp, cl, bufl[1 - k], d)
        tr.step(xp, cr, bufr[1 - k], d)
    return (*tl.finish(xp, dmax, scale), *tr.finish(xp, dmax, scale))
