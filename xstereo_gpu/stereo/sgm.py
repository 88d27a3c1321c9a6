"""Semi-global matching: the block-matching cost aggregated along 4 or 8 scan-line paths.

Beyond the paper (issue 4). The matching cost is :func:`~.disparity.block_match`'s (mean absolute
difference over a ``b x b`` block plus the proximity term); instead of taking the winner per block,
the cost volume ``C(p, d)`` is aggregated along scan lines in the manner of Hirschmueller (2008),
libSGM and OpenCV's SGBM:

    L_r(p, d) = C(p, d) + min(L_r(p - r, d), L_r(p - r, d +- 1) + P1, min_k L_r(p - r, k) + P2)
                - min_k L_r(p - r, k)

and ``S(p, d) = sum_r L_r(p, d)`` is minimised over ``d``. The winner is refined with the same
parabola as block matching (on ``S``), and the same range, border and texture rules make a pixel
invalid. The right map is read from the same aggregated volume (as OpenCV's SGBM does): the right
pixel ``x`` at disparity ``d`` is the left pixel ``x + d``.

Invalid disparities (``x - d`` outside the image) carry the finite cost :data:`INVALID_COST`
(1e30) instead of infinity: ``1e30 + P`` rounds back to ``1e30`` in float32, so an invalid entry
never wins a minimum against a valid one, and a path that enters the valid region from an all-invalid
pixel (or starts at the image edge, where the previous pixel is "all invalid") restarts with
``L = C`` exactly, without any special case. Genuine costs must stay far below 1e22 (they are means
of intensity differences, O(1)).

Memory: the cost volume and the sum, both ``(H, W, D) float32``, plus per-line buffers; the paths
stream over the image one scan-line step at a time (vectorised across all lines of one direction).
On NumPy the independent lines of the horizontal and vertical paths are split over
:func:`~xstereo_gpu.backend.fft_workers` threads (diagonal paths run on one thread); the paths are
added to ``S`` in a fixed order, so results do not depend on the thread count. On CuPy float32 input
the aggregation runs in the CUDA kernel ``kernels/sgm.cu`` (:mod:`._sgm_kernel`), which reproduces
this array code operation by operation (bit-identical ``S``); everything else is the same array code.

References
----------
.. [1] H. Hirschmueller, "Stereo processing by semiglobal matching and mutual information",
   IEEE TPAMI 30(2), 328-341 (2008).
"""

from __future__ import annotations

import numpy as np

from ..backend import fft_workers, get_array_module, use_kernels
from ..checks import check_image
from ..config import MatchOptions
from ..errors import InputError
from ..memory import memory_budget, plan_matching
from ._sgm_kernel import MAX_DISPARITIES, aggregate_costs_kernel
from .costs import cost_volume, prepare_costs
from .disparity import _box_valid, run_bands, texture_map
from .match_result import INVALID_COST, MatchResult, path_directions

__all__ = ["semi_global_match", "sgm_cost_volume", "aggregate_costs", "path_directions", "INVALID_COST"]

#: Elements per band of the CPU cost-volume and winner loops (D x rows x W), a few MiB.
_BAND_ELEMENTS = 1 << 20
#: Elements per chunk of the winner selection on CuPy (temporaries of this size).
_GPU_CHUNK_ELEMENTS = 1 << 25


def semi_global_match(
    left,
    right,
    options: MatchOptions | None = None,
    *,
    kernels: bool | None = None,
    max_memory: int | None = None,
    strip_rows: int | None = None,
    aggregate: bool = True,
) -> MatchResult:
    """Semi-global matching of a rectified pair, both maps (same contract as block matching).

    The cost ``C(p, d)`` of disparity ``d`` at left pixel ``p = (y, x)`` is exactly the block
    matching cost (block mean of ``|L(y, x) - R(y, x - d)|`` plus ``w |d| / max(|dmin|, |dmax|)``);
    it is aggregated along ``options.sgm_paths`` directions with penalties ``options.sgm_p1``
    (``|dd| = 1`` between neighbours) and ``options.sgm_p2`` (``|dd| > 1``), summed over the
    paths, and minimised over ``d`` with parabolic subpixel refinement on the sum (offset clipped
    to +-0.5). The right map takes the same sum at the left pixel ``x + d``.

    A disparity is invalid (NaN) exactly when block matching would call it invalid for the same
    winner: the minimum lies at an end of the search range or next to the image border, or the
    reference block's mean ``|dI/dx|`` (:func:`~.disparity.texture_map`) is below
    ``options.texture_threshold``.

    Parameters
    ----------
    left, right : (H, W) float32
        Rectified views on the matching grid, intensities on a 0..1 scale. NumPy or CuPy; the
        result lives on the same device.
    options : MatchOptions, optional
        Block size, search range, proximity weight, texture threshold, ``sgm_p1``, ``sgm_p2``,
        ``sgm_paths`` (``options.method`` is not consulted: this function is the ``"sgm"`` method).
    kernels : bool, optional
        On CuPy, aggregate with the CUDA kernel :func:`~._sgm_kernel.aggregate_costs_kernel`
        (bit-identical sums). Default: yes unless the environment variable ``XSTEREO_KERNELS=0``;
        ``False`` runs this twin's array code on CuPy. Ignored on NumPy.
    max_memory : int, optional
        Bytes the matching may take (default: :func:`~xstereo_gpu.memory.memory_budget` of the
        device: most of the free memory, strips aiming at 2 GiB on NumPy). When the two ``(H, W, D)`` volumes
        do not fit, the image is matched in horizontal
        strips (:func:`~xstereo_gpu.memory.plan_matching`) with the path states carried across
        strip boundaries: the same sums, bit-identical maps (the strips run the array code, also on
        CuPy). :class:`~xstereo_gpu.errors.InputError` (naming ``--max-memory``) before any compute
        when even strips do not fit.
    strip_rows : int, optional
        Force strips of this many rows (tests, benchmarks); not checked against the budget.
    aggregate : bool
        ``False``: no path aggregation, the winner of the cost volume itself (block matching with
        the cost ``options.cost``; ``S`` and the confidence are then the data cost's).

    Returns
    -------
    MatchResult
        ``(H, W) float32`` maps. ``disparity_*``: ``d = x_left - x_right`` [matching-grid pixels],
        NaN invalid. ``cost_*``: the matching cost ``C`` (block mean + proximity term, as block
        matching reports it) at the winning integer disparity, NaN invalid. ``confidence_*``:
        ``clip(1 - S_best / S_second, 0, 1)`` on the aggregated cost, the second best excluding
        ``d_best +- 1``; 0 invalid.

    See Also
    --------
    xstereo_gpu.stereo.block_match : the paper's winner-takes-all block matching.
    aggregate_costs : the path aggregation alone (NumPy twin of ``kernels/sgm.cu``).
    """
    options = MatchOptions() if options is None else options
    if not isinstance(options, MatchOptions):
        raise InputError("semi_global_match.options", type(options).__name__, "a MatchOptions")
    xp = get_array_module(left, right)
    left = check_image(left, "semi_global_match.left")
    right = check_image(right, "semi_global_match.right")
    if left.shape != right.shape:
        raise InputError(
            "semi_global_match.right", f"shape {right.shape}", f"the left image's shape {left.shape}"
        )
    H, W = left.shape
    dmin, dmax = int(options.dmin), int(options.dmax)
    if strip_rows is None:
        b = memory_budget(xp, max_memory)
        plan = plan_matching(
            H,
            W,
            dmax - dmin + 1,
            b["budget_bytes"],
            limit=b["limit_bytes"],
            method="sgm",
            paths=int(options.sgm_paths),
            device=xp is not np,
            cost=options.cost,
        )
        strip_rows = plan.strip_rows
    if strip_rows is not None and int(strip_rows) < H:
        out = {key: xp.empty((H, W), dtype=np.float32) for key in ("dl", "dr", "cl", "cr", "ql", "qr")}
        _strip_match(left, right, options, max(1, int(strip_rows)), out, aggregate=aggregate)
        return _texture_mask(out, left, right, options)

    cost = _cost_volume(
        left,
        right,
        int(options.block),
        dmin,
        dmax,
        float(options.proximity_weight),
        kind=options.cost,
        census_window=options.census_window,
    )
    agg = None if aggregate else cost
    if agg is None and use_kernels(xp, kernels) and cost.shape[2] <= MAX_DISPARITIES:
        agg = aggregate_costs_kernel(cost, p1=options.sgm_p1, p2=options.sgm_p2, paths=options.sgm_paths)
    if agg is None:
        agg = _aggregate(cost, float(options.sgm_p1), float(options.sgm_p2), int(options.sgm_paths))

    out = {key: xp.empty((H, W), dtype=np.float32) for key in ("dl", "dr", "cl", "cr", "ql", "qr")}
    D = cost.shape[2]
    if xp is np:
        rows = max(1, min(H, _BAND_ELEMENTS // max(W * D, 1)))
    else:
        rows = max(1, min(H, _GPU_CHUNK_ELEMENTS // max(W * D, 1)))
    bands = [(r, min(H, r + rows)) for r in range(0, H, rows)]

    def run(r0: int, r1: int) -> None:
        for side in ("l", "r"):
            d, c, q = _winner(agg[r0:r1], cost[r0:r1], dmin, side)
            out["d" + side][r0:r1] = d
            out["c" + side][r0:r1] = c
            out["q" + side][r0:r1] = q

    run_bands(xp, run, bands)
    agg = cost = None  # free the volumes (the closure above holds them)
    return _texture_mask(out, left, right, options)


def _texture_mask(out: dict, left, right, options: MatchOptions) -> MatchResult:
    """Invalidate the pixels of too little texture (as block matching does) and wrap the maps."""
    thr = options.texture_threshold
    if thr > 0:
        for key, img in (("l", left), ("r", right)):
            flat = texture_map(img, block=int(options.block)) < thr
            out["d" + key][flat] = np.nan
            out["c" + key][flat] = np.nan
            out["q" + key][flat] = 0
    return MatchResult(out["dl"], out["dr"], out["cl"], out["cr"], out["ql"], out["qr"])


def sgm_cost_volume(left, right, options: MatchOptions | None = None):
    """The matching cost of every left pixel and disparity, as one volume.

    Parameters
    ----------
    left, right : (H, W) float32
        Rectified views, 0..1 scale (NumPy or CuPy).
    options : MatchOptions, optional
        ``block``, ``dmin``, ``dmax``, ``proximity_weight``, ``cost``, ``census_window``.

    Returns
    -------
    (H, W, D) float32
        ``C[y, x, i]`` for ``d = dmin + i``. ``cost="sad"``: block mean of ``|L - R(x - d)|`` plus
        the proximity term [0..1 intensity scale], computed as :func:`~.disparity.block_match`
        computes it (``(box_sum + b^2 w |d| / dnorm) * (1 / b^2)`` in float32). ``"census"``,
        ``"zncc"``: :func:`~.costs.cost_volume` (0..1 plus the proximity term).
        :data:`INVALID_COST` where ``x - d`` lies outside the image.
    """
    options = MatchOptions() if options is None else options
    left = check_image(left, "sgm_cost_volume.left")
    right = check_image(right, "sgm_cost_volume.right")
    if left.shape != right.shape:
        raise InputError(
            "sgm_cost_volume.right", f"shape {right.shape}", f"the left image's shape {left.shape}"
        )
    return _cost_volume(
        left,
        right,
        int(options.block),
        int(options.dmin),
        int(options.dmax),
        float(options.proximity_weight),
        kind=options.cost,
        census_window=options.census_window,
    )


def aggregate_costs(cost, *, p1: float = 0.02, p2: float = 0.2, paths: int = 4, workers: int | None = None):
    """Sum over scan-line paths of the SGM path costs ``L_r`` (the NumPy twin of ``kernels/sgm.cu``).

    For each direction ``r`` of :func:`path_directions` (in that order), streaming along the
    paths::

        L_r(p, d) = C(p, d) + (min(L(p-r, d), L(p-r, d-1) + P1, L(p-r, d+1) + P1, m + P2) - m)
        m = min_k L_r(p - r, k),   S(p, d) += L_r(p, d)

    all in float32 with exactly these roundings (``a + P1``, ``m + P2``, ``t - m``, ``C + (t - m)``,
    ``S + L``; minima are exact). A path starts at the image edge as if its previous pixel were all
    :data:`INVALID_COST`, which gives ``L = C``.

    Parameters
    ----------
    cost : (H, W, D) float32
        Matching cost per pixel and disparity index (NumPy or CuPy), :data:`INVALID_COST` where a
        disparity is impossible.
    p1, p2 : float
        Penalties for a disparity change of 1 and of more than 1 between neighbours [cost units].
    paths : int
        4 (horizontal and vertical) or 8 (plus diagonals).
    workers : int, optional
        Threads on NumPy (default :func:`~xstereo_gpu.backend.fft_workers`); the result does not
        depend on it.

    Returns
    -------
    (H, W, D) float32
        ``S``, the aggregated cost [cost units].
    """
    xp = get_array_module(cost)
    if getattr(cost, "ndim", None) != 3 or min(cost.shape) < 1:
        raise InputError(
            "aggregate_costs.cost",
            f"shape {getattr(cost, 'shape', type(cost).__name__)}",
            "a non-empty (H, W, D) volume",
        )
    if cost.dtype != np.float32:
        raise InputError("aggregate_costs.cost", f"dtype {cost.dtype}", "float32")
    if not (0 <= p1 <= p2):
        raise InputError("aggregate_costs.p2", f"p1={p1!r}, p2={p2!r}", "0 <= p1 <= p2")
    path_directions(paths)
    return _aggregate(xp.ascontiguousarray(cost), float(p1), float(p2), int(paths), workers)


# --------------------------------------------------------------------------------------------- #
# internals


def _cost_volume(
    left,
    right,
    b: int,
    dmin: int,
    dmax: int,
    wprox: float,
    rows: tuple[int, int] | None = None,
    padded=None,
    *,
    kind: str = "sad",
    census_window: tuple[int, int] = (7, 9),
):
    """(H, W, D) float32 cost (see :func:`sgm_cost_volume`); inputs already checked.

    ``rows = (R0, R1)`` computes only the rows ``R0:R1`` (an ``(R1 - R0, W, D)`` volume whose
    entries equal those rows of the whole volume); ``padded`` passes what the caller keeps of the
    images: ``(Lp, Rp)`` edge-padded for ``kind="sad"``, :func:`~.costs.prepare_costs` otherwise.

    Valid entries are computed with :func:`~.disparity._box_valid` in block matching's order
    (horizontal sum over the block's columns, then vertical sum of the row sums), so they equal
    block matching's costs. NumPy: bands of rows, all disparities at once through a strided window
    on the (zero-extended) right image. CuPy: one disparity at a time over the whole image.
    """
    if kind != "sad":
        prepared = prepare_costs(left, right, kind, b, census_window) if padded is None else padded
        return cost_volume(prepared, left.shape, kind, b, dmin, dmax, wprox, rows)
    xp = get_array_module(left)
    H, W = left.shape
    D = dmax - dmin + 1
    h = b // 2
    scale = float(b * b)
    inv_scale = np.float32(1.0 / scale)
    dnorm = float(max(abs(dmin), abs(dmax))) or 1.0
    prox = np.array([scale * wprox * abs(d) / dnorm for d in range(dmin, dmax + 1)], dtype=np.float32)
    Lp, Rp = padded if padded is not None else (xp.pad(left, h, mode="edge"), xp.pad(right, h, mode="edge"))
    R0, R1 = (0, H) if rows is None else (int(rows[0]), int(rows[1]))
    # matched column x - d inside the image, (W, D)
    u = xp.arange(W, dtype=np.int32)[:, None] - xp.arange(dmin, dmax + 1, dtype=np.int32)[None, :]
    outside = (u < 0) | (u > W - 1)
    vol = xp.empty((R1 - R0, W, D), dtype=np.float32)

    if xp is not np:
        nr = R1 - R0
        hs = xp.empty((nr + 2 * h, W), dtype=np.float32)
        ad = xp.empty((nr + 2 * h, W + 2 * h), dtype=np.float32)
        for i, d in enumerate(range(dmin, dmax + 1)):
            x0, x1 = max(0, d), min(W, W + d)
            if x1 <= x0:
                continue
            n = x1 - x0
            a = ad[:, : n + 2 * h]
            xp.subtract(
                Lp[R0 : R1 + 2 * h, x0 : x1 + 2 * h], Rp[R0 : R1 + 2 * h, x0 - d : x1 - d + 2 * h], out=a
            )
            xp.abs(a, out=a)
            s = _box_valid(a, b, axis=1, out=hs[:, :n])
            c = _box_valid(s, b, axis=0, out=vol[:, x0:x1, i])
            c += prox[i]
            c *= inv_scale
        vol[:, outside] = INVALID_COST
        return vol

    # R extended with zeros so that column xp - d exists for every padded column xp and every d
    pl, pr = max(0, dmax), max(0, -dmin)
    Rpe = np.pad(Rp, ((0, 0), (pl, pr)))
    win = np.lib.stride_tricks.sliding_window_view(Rpe, D, axis=1)  # [y, j, k] = Rpe[y, j + k]
    Rv = win[:, pl - dmax : pl - dmax + W + 2 * h, ::-1]  # [y, xp, i] = Rp[y, xp - d_i]
    proxv = np.asarray(prox)

    def run(r0: int, r1: int) -> None:
        ad = np.subtract(Lp[r0 : r1 + 2 * h, :, None], Rv[r0 : r1 + 2 * h])
        np.abs(ad, out=ad)
        hs = _box_valid(ad, b, axis=1)
        c = _box_valid(hs, b, axis=0, out=vol[r0 - R0 : r1 - R0])
        c += proxv
        c *= inv_scale
        np.copyto(c, INVALID_COST, where=outside)

    # at least 4h rows per band, so that the 2h halo rows recomputed per band stay a minor cost
    step = max(1, min(H, max(_BAND_ELEMENTS // max(W * D, 1), 4 * h)))
    run_bands(xp, run, [(r, min(R1, r + step)) for r in range(R0, R1, step)])
    return vol


def _aggregate(cost, p1: float, p2: float, paths: int, workers: int | None = None):
    """S = sum over paths of L_r, streaming (see :func:`aggregate_costs`)."""
    xp = get_array_module(cost)
    H, W, D = cost.shape
    out = xp.empty((H, W, D), dtype=np.float32)
    if xp is np:
        workers = fft_workers() if workers is None else max(1, int(workers))
    else:
        workers = 1
    for k, (dy, dx) in enumerate(path_directions(paths)):
        n = H if dy == 0 else W
        if dy != 0 and dx != 0:
            parts = 1  # a diagonal line crosses every column: lines cannot be split by column
        else:
            parts = max(1, min(workers, n // 64))
        edges = [n * j // parts for j in range(parts + 1)]
        run_bands(
            xp,
            lambda lo, hi: _sweep(cost, out, dy, dx, p1, p2, k == 0, lo, hi),
            list(zip(edges[:-1], edges[1:])),
            workers=parts,
        )
    return out


def _sweep(
    cost, out, dy: int, dx: int, p1: float, p2: float, first: bool, lo: int, hi: int, init=None, final=None
) -> None:
    """Aggregate one direction over the lines ``lo:hi`` (rows if ``dy == 0``, else columns).

    ``init = (L, m)``: the path costs ``(n, D)`` and their minima ``(n, 1)`` of the line before the
    first one of ``cost`` (a strip's neighbour; default: all invalid, i.e. the image edge).
    ``final = (L, m)``: arrays that receive the last line's. ``out=None`` only streams the state.
    """
    xp = get_array_module(cost)
    H, W, D = cost.shape
    n = hi - lo
    f1, f2 = np.float32(p1), np.float32(p2)
    # previous line state, padded with one all-invalid entry at each end (diagonal shifts)
    prev = [xp.full((n + 2, D), INVALID_COST, dtype=np.float32) for _ in range(2)]
    mins = [xp.full((n + 2, 1), INVALID_COST, dtype=np.float32) for _ in range(2)]
    if init is not None:
        prev[0][1 : n + 1] = init[0]
        mins[0][1 : n + 1] = init[1]
    a = xp.empty((n, D), dtype=np.float32)
    t = xp.empty((n, D), dtype=np.float32)
    tm = xp.empty((n, 1), dtype=np.float32)
    sh = dx if dy != 0 else 0
    ps = slice(1 - sh, 1 - sh + n)
    if dy == 0:
        steps = range(W) if dx > 0 else range(W - 1, -1, -1)
    else:
        steps = range(H) if dy > 0 else range(H - 1, -1, -1)
    L = m = None
    for j, k in enumerate(steps):
        if dy == 0:
            c, s = cost[lo:hi, k], None if out is None else out[lo:hi, k]
        else:
            c, s = cost[k, lo:hi], None if out is None else out[k, lo:hi]
        pv, mv = prev[j & 1][ps], mins[j & 1][ps]
        L = prev[1 - (j & 1)][1 : n + 1]
        xp.add(pv, f1, out=a)
        xp.add(mv, f2, out=tm)
        xp.minimum(pv, tm, out=t)
        if D > 1:
            xp.minimum(t[:, 1:], a[:, :-1], out=t[:, 1:])
            xp.minimum(t[:, :-1], a[:, 1:], out=t[:, :-1])
        xp.subtract(t, mv, out=t)
        xp.add(c, t, out=L)
        if s is None:
            pass
        elif first:
            s[...] = L
        else:
            s += L
        m = mins[1 - (j & 1)][1 : n + 1]
        xp.amin(L, axis=1, keepdims=True, out=m)
    if final is not None and L is not None:
        final[0][...] = L
        final[1][...] = m


def _sweep_lines(
    cost, out, k: int, dy: int, dx: int, p1: float, p2: float, workers: int, init=None, final=None
):
    """One direction over a whole (strip) volume, its lines split over threads as :func:`_aggregate` does."""
    xp = get_array_module(cost)
    H, W, D = cost.shape
    n = H if dy == 0 else W
    parts = 1 if (dy != 0 and dx != 0) else max(1, min(workers, n // 64))
    edges = [n * j // parts for j in range(parts + 1)]

    def run(lo, hi):
        _sweep(
            cost,
            out,
            dy,
            dx,
            p1,
            p2,
            k == 0,
            lo,
            hi,
            None if init is None else (init[0][lo:hi], init[1][lo:hi]),
            None if final is None else (final[0][lo:hi], final[1][lo:hi]),
        )

    run_bands(xp, run, list(zip(edges[:-1], edges[1:])), workers=parts)


def _strip_match(
    left,
    right,
    options: MatchOptions,
    rows: int,
    out: dict,
    workers: int | None = None,
    aggregate: bool = True,
) -> None:
    """Semi-global matching in horizontal strips of ``rows`` rows, exactly (same ``S`` as one volume).

    The horizontal paths lie inside a strip. A downward path (``dy > 0``) carries the state of
    the strip's last row into the next strip. An upward path (``dy < 0``) needs the state of the
    row below the strip: a first pass from the bottom strip up computes only the upward paths and
    stores their states at every strip boundary (``(W, D)`` each); the second pass, top down,
    recomputes each strip's cost volume, runs every direction in the order of
    :func:`path_directions` from those states, and picks the winners of the strip. Each ``S``
    element is the same float32 sum in the same order as with one volume, so the maps are
    bit-identical; the price is the upward paths and the cost volume computed twice. Peak memory:
    two ``(rows, W, D)`` volumes plus the stored states
    (:func:`~xstereo_gpu.memory.sgm_strip_bytes`). ``aggregate=False``: each strip's winners are
    taken on its cost volume (no paths).
    """
    xp = get_array_module(left)
    H, W = left.shape
    b, dmin, dmax = int(options.block), int(options.dmin), int(options.dmax)
    D = dmax - dmin + 1
    p1, p2 = float(options.sgm_p1), float(options.sgm_p2)
    dirs = path_directions(int(options.sgm_paths))
    if xp is np:
        workers = fft_workers() if workers is None else max(1, int(workers))
    else:
        workers = 1
    h = b // 2
    kind, window = options.cost, options.census_window
    if kind == "sad":
        padded = (xp.pad(left, h, mode="edge"), xp.pad(right, h, mode="edge"))
    else:
        padded = prepare_costs(left, right, kind, b, window)
    wprox = float(options.proximity_weight)
    if not aggregate:
        dirs = ()
    strips = [(r, min(H, r + rows)) for r in range(0, H, rows)]

    def state():
        return (xp.empty((W, D), dtype=np.float32), xp.empty((W, 1), dtype=np.float32))

    up = [k for k, (dy, _) in enumerate(dirs) if dy < 0]
    below: list[dict] = [dict() for _ in strips]  # per strip: state of the row under it, per upward path
    carry: dict = {}
    for s in range(len(strips) - 1, 0, -1) if up else ():
        r0, r1 = strips[s]
        cost = _cost_volume(
            left, right, b, dmin, dmax, wprox, rows=(r0, r1), padded=padded, kind=kind, census_window=window
        )
        nxt = {}
        for k in up:
            dy, dx = dirs[k]
            nxt[k] = state()
            _sweep_lines(cost, None, k, dy, dx, p1, p2, workers, init=carry.get(k), final=nxt[k])
        carry = nxt
        below[s - 1] = nxt
        del cost
    down: dict = {}
    for s, (r0, r1) in enumerate(strips):
        cost = _cost_volume(
            left, right, b, dmin, dmax, wprox, rows=(r0, r1), padded=padded, kind=kind, census_window=window
        )
        agg = xp.empty(cost.shape, dtype=np.float32) if aggregate else cost
        for k, (dy, dx) in enumerate(dirs):
            if dy == 0:
                _sweep_lines(cost, agg, k, dy, dx, p1, p2, workers)
            elif dy > 0:
                nxt = state()
                _sweep_lines(cost, agg, k, dy, dx, p1, p2, workers, init=down.get(k), final=nxt)
                down[k] = nxt
            else:
                _sweep_lines(cost, agg, k, dy, dx, p1, p2, workers, init=below[s].get(k))
        below[s] = {}
        n = r1 - r0
        step = max(1, min(n, (_BAND_ELEMENTS if xp is np else _GPU_CHUNK_ELEMENTS) // max(W * D, 1)))

        def run(a0: int, a1: int) -> None:
            for side in ("l", "r"):
                d, c, q = _winner(agg[a0:a1], cost[a0:a1], dmin, side)
                out["d" + side][r0 + a0 : r0 + a1] = d
                out["c" + side][r0 + a0 : r0 + a1] = c
                out["q" + side][r0 + a0 : r0 + a1] = q

        run_bands(xp, run, [(a, min(n, a + step)) for a in range(0, n, step)])
        agg = cost = None  # free this strip's volumes (the closure above holds them)


def _winner(agg, cost, dmin: int, side: str):
    """Disparity, data cost and confidence of one band (n rows) for the left or right map.

    Left map: the minimum of ``S[y, x, :]`` (invalid entries hold ``paths * INVALID_COST`` and
    never win against a valid one). Right map: ``S_R[y, x, i] = S[y, x + d_i, i]``, read through a
    strided view of an infinity-padded copy of the band (flat offset ``(x + d_min) D + i (D + 1)``).
    """
    xp = get_array_module(agg)
    n, W, D = agg.shape
    inf = np.float32(np.inf)
    if side == "l":
        s = agg
    else:
        pb, pa = max(0, -dmin), max(0, dmin + D - 1)
        padded = xp.full((n, pb + W + pa, D), inf, dtype=np.float32)
        padded[:, pb : pb + W] = agg
        base = padded[:, dmin + pb :]
        s = xp.lib.stride_tricks.as_strided(
            base,
            shape=(n, W, D),
            strides=(base.strides[0], base.strides[1], base.strides[1] + base.strides[2]),
        )
    i = xp.argmin(s, axis=2)[..., None]
    best = xp.take_along_axis(s, i, axis=2)[..., 0]
    sm = xp.take_along_axis(s, xp.maximum(i - 1, 0), axis=2)[..., 0]
    sp = xp.take_along_axis(s, xp.minimum(i + 1, D - 1), axis=2)[..., 0]
    # second best outside d_best +- 1: hide those three entries, take the minimum, restore them
    rr = xp.arange(n)[:, None, None]
    xx = xp.arange(W)[None, :, None]
    near = xp.clip(i + xp.arange(-1, 2), 0, D - 1)
    s[rr, xx, near] = inf
    second = s.min(axis=2)
    s[rr, xx, near[..., 0:1]] = sm[..., None]
    s[rr, xx, near[..., 2:3]] = sp[..., None]
    s[rr, xx, i] = best[..., None]
    i = i[..., 0]
    d = i + dmin
    xs = xp.arange(W, dtype=d.dtype)
    u = xs - d if side == "l" else xs + d  # matched column in the other image
    valid = (i > 0) & (i < D - 1) & (u >= 1) & (u <= W - 2)
    x_ref = xs if side == "l" else xp.clip(u, 0, W - 1)  # the left pixel holding the cost
    cb = xp.take_along_axis(cost.reshape(n, W * D), x_ref * D + i, axis=1)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        denom = sm - 2 * best + sp
        ok = valid & (denom > 0)
        off = xp.where(ok, 0.5 * (sm - sp) / xp.where(ok, denom, 1), 0)
        off = xp.clip(off, -0.5, 0.5)
        disp = xp.where(valid, d.astype(np.float32) + off, np.nan).astype(np.float32)
        cst = xp.where(valid, cb, np.nan).astype(np.float32)
        conf = xp.where(valid & (second > 0), 1 - best / xp.where(second > 0, second, 1), 0)
        conf = xp.clip(conf, 0, 1).astype(np.float32)
    return disp, cst, conf
