"""Memory planning: a budget from free memory, estimates of each stage's peak, and splits that fit.

The stages hold their big arrays on one device (host RAM on NumPy, GPU memory on CuPy). Before
anything is allocated, the pipeline asks this module

* how much it may use: :func:`memory_budget` (free RAM from ``/proc/meminfo`` ``MemAvailable``
  and the cgroup limit on NumPy, ``cupy.cuda.Device().mem_info`` plus the pool's free blocks on
  CuPy, times :data:`AUTO_FRACTION`: the *limit*; on NumPy the stages that can split aim at
  :data:`CPU_SPLIT_BYTES` at most, the *budget*, because on the CPU batches and strips cost no
  time; an explicit ``max_memory``, e.g. ``--max-memory 4G``, is both budget and limit);
* how much a stage needs: :func:`phasing_bytes` (runs of both views, difference-map work buffers,
  FFT and alignment temporaries) and :func:`matching_bytes` (block matching's per-pixel trackers,
  or semi-global matching's ``H x W x D`` cost and sum volumes);
* how to split it to fit: :func:`plan_phasing` (runs in batches; the results are bit-identical to
  one batch) and :func:`plan_matching` (SGM in horizontal strips with carried path states; exact).

A stage is split to fit the budget; when even its smallest split exceeds the budget it may still use
up to the limit; beyond that :func:`plan_phasing` / :func:`plan_matching` raise
:class:`~xstereo_gpu.errors.InputError` naming the option at fault, so the CLI stops with a clear
message (exit 2) before any compute. Estimates are deliberately simple (bytes per element of the
arrays that are alive at a stage's peak, counted from the code) and err on the high side.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import numpy as np

from .backend import fft_workers
from .errors import InputError

__all__ = [
    "GIB",
    "AUTO_FRACTION",
    "parse_size",
    "format_size",
    "available_memory",
    "memory_budget",
    "phasing_bytes",
    "matching_bytes",
    "sgm_strip_bytes",
    "plan_phasing",
    "plan_shots",
    "MAX_SHOTS_PER_LAUNCH",
    "plan_matching",
    "check_allocation",
    "PhasingPlan",
    "MatchingPlan",
]

GIB = 1 << 30

#: Share of the free memory a plan may use when no explicit budget is given (the rest is headroom
#: for what the estimates do not count: the interpreter, libraries, small arrays).
AUTO_FRACTION = 0.8
#: Working size the splittable stages aim at on the CPU without ``--max-memory`` (phasing batches
#: and SGM strips are as fast as one block there: measured SGM 1024^2 x 131, 22 s whole, 20 s in
#: strips of 32 rows). On a GPU big batches are faster, so the budget is the whole limit there.
CPU_SPLIT_BYTES = 2 * GIB

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMGT]?)(I?B)?\s*$", re.IGNORECASE)


def parse_size(text, where: str = "--max-memory") -> int:
    """A human size in bytes: ``"4G"``, ``"512M"``, ``"2GiB"``, ``"1.5GB"``, ``"1000000"``.

    Units K, M, G, T are binary (powers of 1024) with or without ``B``/``iB``; a plain number is bytes.

    Parameters
    ----------
    text : str or int
        The size.
    where : str
        Named in the error (the option the value came from).

    Returns
    -------
    int
        Bytes, at least 1.

    Raises
    ------
    InputError
        For anything else (negative, zero, unknown unit, not a number).
    """
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        value = int(text)
    else:
        m = _SIZE.match(str(text))
        if not m:
            raise InputError(where, repr(text), "a size such as 4G, 512M, 2GiB or a number of bytes")
        unit = m.group(2).upper()
        if m.group(3) and not unit and m.group(3).upper() == "IB":
            raise InputError(where, repr(text), "a size such as 4G, 512M, 2GiB or a number of bytes")
        value = int(float(m.group(1)) * _UNITS[unit])
    if value < 1:
        raise InputError(where, repr(text), "a positive size such as 4G, 512M, 2GiB or a number of bytes")
    return value


def format_size(nbytes: float) -> str:
    """``"8.19 GiB"``-style text for messages."""
    nbytes = float(nbytes)
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{nbytes:.0f} B"


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    """Room left under a cgroup v2 memory limit (containers), or None without a limit."""
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            limit = fh.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as fh:
            current = int(fh.read().strip())
        return max(0, int(limit) - current)
    except (OSError, ValueError):
        return None


def available_memory(xp=np) -> tuple[int, str]:
    """Free memory of the device ``xp`` computes on, and where the number came from.

    Parameters
    ----------
    xp : module
        ``numpy``: free host RAM (``MemAvailable`` of ``/proc/meminfo``, else
        ``os.sysconf`` available pages; lowered to the room under a cgroup v2 limit). ``cupy``: free
        memory of the current device plus the free blocks of CuPy's default memory pool.

    Returns
    -------
    (int, str)
        Bytes, and a short description of the source.
    """
    if xp is not np:
        free, _total = xp.cuda.Device().mem_info
        pool = xp.get_default_memory_pool().free_bytes()
        return int(free) + int(pool), "free device memory (cudaMemGetInfo + memory pool)"
    avail = _meminfo_available()
    source = "MemAvailable (/proc/meminfo)"
    if avail is None:
        try:
            avail = int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
            source = "available physical pages (sysconf)"
        except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
            avail, source = 4 * GIB, "unknown (assumed 4 GiB)"
    room = _cgroup_available()
    if room is not None and room < avail:
        avail, source = room, "room under the cgroup memory limit"
    return int(avail), source


def memory_budget(xp=np, max_memory: int | None = None) -> dict:
    """Bytes a stage should aim at (budget) and may not exceed (limit).

    ``max_memory`` when given is both. Otherwise the limit is :data:`AUTO_FRACTION` of the free
    memory, and the budget the same on a GPU, at most :data:`CPU_SPLIT_BYTES` on NumPy.

    Returns
    -------
    dict
        ``budget_bytes``, ``limit_bytes`` (int), ``source`` (str), ``available_bytes`` (int, free
        memory now).
    """
    avail, source = available_memory(xp)
    if max_memory is not None:
        return {
            "budget_bytes": int(max_memory),
            "limit_bytes": int(max_memory),
            "source": "--max-memory",
            "available_bytes": avail,
        }
    limit = int(AUTO_FRACTION * avail)
    budget = limit if xp is not np else min(limit, CPU_SPLIT_BYTES)
    return {
        "budget_bytes": budget,
        "limit_bytes": limit,
        "available_bytes": avail,
        "source": f"{AUTO_FRACTION:.0%} of {source}"
        + ("" if budget == limit else f", splits aiming at {format_size(budget)}"),
    }


def _expected(budget: int, hint: str) -> str:
    return f"at most {format_size(budget)} free for it ({hint})"


# -- phasing -------------------------------------------------------------------------------------

#: Bytes per element of one batch's ``(V, b, N, N)`` arrays while it iterates: iterate and best
#: (complex64, 16), three complex work buffers (24), a float32 buffer (4), supports and masks (3),
#: shrink-wrap temporaries (float32 magnitude + blur, 8) and the random start (float32 phases and a
#: complex64 temporary, counted once more: 12), the collapse guard's reference support (1; the R-factor
#: records use the work buffers) -> 68, rounded up.
PHASING_ITER_BYTES = 72
#: Bytes per element of one batch during the alignment (twin candidates, the registration's
#: cross-power spectra and FFTs, the shifted and phase-corrected copies).
PHASING_ALIGN_BYTES = 96


@dataclass(frozen=True)
class PhasingPlan:
    """How the phasing runs are batched.

    Attributes
    ----------
    runs_per_batch : int
    batches : int
    estimated_peak_bytes : int
        :func:`phasing_bytes` for that batch size.
    budget_bytes : int
    """

    runs_per_batch: int
    batches: int
    estimated_peak_bytes: int
    budget_bytes: int

    def to_dict(self) -> dict:
        return {
            "runs_per_batch": self.runs_per_batch,
            "batches": self.batches,
            "estimated_peak_bytes": self.estimated_peak_bytes,
            "budget_bytes": self.budget_bytes,
        }


def phasing_bytes(views: int, runs: int, n: int, runs_per_batch: int | None = None) -> int:
    """Estimated peak bytes of phasing ``views`` views with ``runs`` runs of ``n x n`` each.

    In batches (``runs_per_batch < runs``) the best iterates of all runs (complex64) are held to
    the end and one batch iterates (:data:`PHASING_ITER_BYTES` per element) or is aligned in
    place (:data:`PHASING_ALIGN_BYTES`) at a time. In one batch the iteration state is still alive
    while all runs are aligned (``PHASING_ITER_BYTES + PHASING_ALIGN_BYTES`` per element; measured:
    136 MiB for 2 x 8 runs of 256^2, estimate 176 MiB). Plus a few ``(V, N, N)`` arrays
    (intensities, amplitudes, masks, the average).
    """
    b = runs if runs_per_batch is None else max(1, min(int(runs_per_batch), runs))
    e = int(views) * int(n) * int(n)
    if b >= runs:
        return e * ((PHASING_ITER_BYTES + PHASING_ALIGN_BYTES) * runs + 40)
    return e * (8 * runs + max(PHASING_ITER_BYTES, PHASING_ALIGN_BYTES) * b + 40)


def plan_phasing(
    views: int,
    runs: int,
    n: int,
    budget: int,
    *,
    limit: int | None = None,
    where: str = "--max-memory",
    runs_per_batch: int | None = None,
) -> PhasingPlan:
    """The largest batch of runs whose :func:`phasing_bytes` fits in ``budget``.

    Parameters
    ----------
    views, runs, n : int
        ``V``, ``R``, ``N`` of the ``(V, R, N, N)`` runs.
    budget : int
        Bytes to aim at.
    limit : int, optional
        Bytes that may not be exceeded (default: ``budget``): one run per batch when even that
        exceeds ``budget``.
    where : str
        The input named when nothing fits (``--max-memory``, ``--size``, ``--pattern-size``).
    runs_per_batch : int, optional
        Force this batch size (checked against the limit).

    Raises
    ------
    InputError
        When even one run per batch does not fit in the limit.
    """
    runs = int(runs)
    limit = int(budget if limit is None else max(limit, budget))
    if runs_per_batch is not None:
        b = max(1, min(int(runs_per_batch), runs))
    else:
        if phasing_bytes(views, runs, n) <= budget:
            b = runs
        else:
            per_run = max(PHASING_ITER_BYTES, PHASING_ALIGN_BYTES) * int(views) * int(n) ** 2
            fixed = int(views) * int(n) ** 2 * (8 * runs + 40)  # held best iterates + small arrays
            b = min(runs - 1, int(max(0, budget - fixed) // per_run))
    b = max(b, 1)
    need = phasing_bytes(views, runs, n, b)
    if need > limit:
        need1 = phasing_bytes(views, runs, n, 1)
        raise InputError(
            where,
            f"needs about {format_size(min(need1, need))} to phase {views} view(s) of "
            f"{n} x {n} pixels with {runs} runs (one run per batch)",
            _expected(limit, "use --max-memory, fewer --runs or a smaller --pattern-size / --size"),
        )
    return PhasingPlan(
        runs_per_batch=b, batches=math.ceil(runs / b), estimated_peak_bytes=need, budget_bytes=int(budget)
    )


#: Most shots phased in one stack (:func:`plan_shots`): beyond it a launch is large enough to fill a GPU
#: (16 shots x 2 views x 32 runs = 1024 images of 256^2 per FFT) and the latency of a launch grows.
MAX_SHOTS_PER_LAUNCH = 16


def plan_shots(views: int, runs: int, n: int, budget: int, *, cap: int = MAX_SHOTS_PER_LAUNCH) -> int:
    """Shots whose stacked phasing (``views`` views each) fits ``budget`` in one batch of runs.

    Parameters
    ----------
    views, runs, n : int
        Views per shot, runs per view and pattern side [px].
    budget : int
        Bytes to aim at (:func:`memory_budget`).
    cap : int
        At most this many shots.

    Returns
    -------
    int
        The largest ``S <= cap`` with ``phasing_bytes(S * views, runs, n) <= budget``; 1 when even
        one shot needs its runs in batches (it is then phased alone, in batches).
    """
    s = 1
    while s < int(cap) and phasing_bytes((s + 1) * int(views), runs, n) <= budget:
        s += 1
    return s


# -- matching ------------------------------------------------------------------------------------

#: Float32 images of the matched size alive during matching: both images and their edge-padded
#: copies, six output maps, texture maps and the consistency check's copies, the thread bands'
#: trackers (block matching on NumPy, 512^2 pixels: 24 MiB measured).
MATCH_IMAGE_ARRAYS = 24

#: Extra bytes per pixel of the census and ZNCC costs (:mod:`~xstereo_gpu.stereo.costs`): what
#: ``prepare_costs`` keeps of both images (two uint64 census strings; or padded images, block means
#: and inverse deviations) and the per-disparity temporaries (a handful of float32 / uint64 images).
COST_BYTES_PER_PIXEL = 64


def _sgm_band_bytes(h: int, w: int, d: int, device: bool) -> int:
    """SGM's band temporaries: about six float32 copies of a cost-volume / winner band (``2**20``
    elements on each CPU thread, ``2**25`` on a device), never more than the ``h`` rows (the
    volume or strip) themselves."""
    elems = max(1 << 25 if device else 1 << 20, w * d)
    return 6 * 4 * min(h * w * d, elems) * (1 if device else fft_workers())


#: Extra float32 per pixel of block matching on CuPy (one band = the whole image: two trackers of
#: seven arrays, four cost buffers, the block sums).
BM_DEVICE_ARRAYS = 22


@dataclass(frozen=True)
class MatchingPlan:
    """How the disparity maps are computed.

    Attributes
    ----------
    method : str
    shape : (int, int)
        Matching-grid ``(H, W)``.
    disparities : int
    strip_rows : int or None
        SGM rows per strip (None: the whole volume at once; always None for block matching).
    strips : int
    estimated_peak_bytes : int
    budget_bytes : int
    """

    method: str
    shape: tuple
    disparities: int
    strip_rows: int | None
    strips: int
    estimated_peak_bytes: int
    budget_bytes: int

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "shape": list(self.shape),
            "disparities": self.disparities,
            "strip_rows": self.strip_rows,
            "strips": self.strips,
            "estimated_peak_bytes": self.estimated_peak_bytes,
            "budget_bytes": self.budget_bytes,
        }


def _up_paths(paths: int) -> int:
    """SGM directions going up the image (their states are stored at strip boundaries)."""
    return 1 if paths == 4 else 3


def sgm_strip_bytes(h: int, w: int, d: int, paths: int, rows: int | None) -> int:
    """Bytes of SGM's volumes: whole (``rows=None``: cost + sum, ``2 H W D`` float32) or strips.

    In strips of ``rows`` rows: the strip's cost and sum volumes (``2 rows W D``) plus the stored
    states of the upward paths at every strip boundary (``strips * up * W (D + 1)``) and the carried
    states of the downward ones.
    """
    if rows is None or rows >= h:
        return 2 * h * w * d * 4
    strips = math.ceil(h / rows)
    up = _up_paths(paths)
    return 4 * (2 * rows * w * d + (strips + 1) * up * w * (d + 1) + 2 * up * w * (d + 1))


def matching_bytes(
    h: int,
    w: int,
    d: int,
    *,
    method: str = "bm",
    paths: int = 4,
    strip_rows: int | None = None,
    device: bool = False,
    cost: str = "sad",
) -> int:
    """Estimated peak bytes of one disparity-map pair of ``h x w`` pixels over ``d`` disparities.

    Block matching keeps no cost volume (a running minimum over ``d``): a fixed number of images
    (:data:`MATCH_IMAGE_ARRAYS`, plus :data:`BM_DEVICE_ARRAYS` on a device where the whole image is
    one band). SGM adds :func:`sgm_strip_bytes`. The census and ZNCC costs
    (:mod:`~xstereo_gpu.stereo.costs`) are computed as a volume for either method (counted as SGM's)
    and add :data:`COST_BYTES_PER_PIXEL` per pixel.
    """
    base = MATCH_IMAGE_ARRAYS * h * w * 4
    if cost != "sad":
        method = "sgm"
        base += COST_BYTES_PER_PIXEL * h * w
    if method == "sgm":
        rows = h if strip_rows is None else min(h, int(strip_rows))
        return base + _sgm_band_bytes(rows, w, d, device) + sgm_strip_bytes(h, w, d, paths, strip_rows)
    return base + (BM_DEVICE_ARRAYS * h * w * 4 if device else 0)


def plan_matching(
    h: int,
    w: int,
    d: int,
    budget: int,
    *,
    limit: int | None = None,
    method: str = "bm",
    paths: int = 4,
    device: bool = False,
    where: str = "--max-memory",
    cost: str = "sad",
) -> MatchingPlan:
    """The split of the matching stage that fits ``budget``: whole, or SGM strips of as many rows as fit.

    When nothing fits ``budget``, the smallest split (block matching as it is, SGM strips of the
    memory-optimal height) is used if it fits ``limit`` (default: ``budget``).

    Raises
    ------
    InputError
        When even the smallest split does not fit the limit.
    """
    h, w, d = int(h), int(w), int(d)
    limit = int(budget if limit is None else max(limit, budget))
    if cost != "sad":
        method = "sgm"  # a cost volume, split in strips like SGM's
    need = matching_bytes(h, w, d, method=method, paths=paths, device=device, cost=cost)
    if need <= budget or (method != "sgm" and need <= limit):
        return MatchingPlan(method, (h, w), d, None, 1, need, int(budget))
    if method == "sgm":
        up = _up_paths(paths)
        best = max(1, int(math.sqrt(up * h / 2)))  # minimises 2 r + up H / r
        # the largest strip height that fits, but no smaller than the memory-optimal one
        rows = None
        for r in range(h - 1, best - 1, -1):
            need = matching_bytes(h, w, d, method=method, paths=paths, strip_rows=r, device=device, cost=cost)
            if need <= budget:
                rows = r
                break
        if rows is not None:
            need = matching_bytes(
                h, w, d, method=method, paths=paths, strip_rows=rows, device=device, cost=cost
            )
            return MatchingPlan(method, (h, w), d, rows, math.ceil(h / rows), need, int(budget))
        need = matching_bytes(h, w, d, method=method, paths=paths, strip_rows=best, device=device, cost=cost)
        if need <= limit:
            return MatchingPlan(method, (h, w), d, best, math.ceil(h / best), need, int(budget))
        what = f"semi-global matching of {h} x {w} pixels over {d} disparities, in strips of {best} rows"
    else:
        what = f"block matching of {h} x {w} pixels over {d} disparities"
    raise InputError(
        where,
        f"needs about {format_size(need)} ({what})",
        _expected(limit, "use --max-memory, a smaller --upsample, a narrower --range or --method bm"),
    )


def check_allocation(
    shape, dtype, where: str, *, copies: float = 3.0, what: str = "read it", budget: int | None = None, xp=np
) -> int:
    """Refuse an array declared too large for the free memory, before it is read or allocated.

    Parameters
    ----------
    shape : tuple of int
        Declared shape (e.g. an HDF5 dataset's, before reading it).
    dtype : dtype-like
        Declared element type; at least 4 bytes per element are counted (the data become float32).
    where : str
        Named in the error (``"shot.cxi:/entry_1/data_1/data"``, ``"--size"``).
    copies : float
        How many such arrays the step holds at once (raw data, float32 copy, mask, ...).
    budget : int, optional
        Bytes available (default: the limit of :func:`memory_budget` of ``xp``).

    Returns
    -------
    int
        The estimated bytes.

    Raises
    ------
    InputError
        ``found``: "needs about X GiB ...", ``expected``: at most the budget.
    """
    count = 1
    for s in shape:
        count *= max(0, int(s))
    need = int(count * max(4, np.dtype(dtype).itemsize) * copies)
    if budget is None:
        budget = memory_budget(xp)["limit_bytes"]
    if need > budget:
        dims = " x ".join(str(int(s)) for s in shape)
        raise InputError(
            where,
            f"a declared {dims} {np.dtype(dtype)} array: needs about {format_size(need)} to {what}",
            _expected(budget, "a smaller frame, crop or --size"),
        )
    return need
