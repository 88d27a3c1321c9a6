"""Independent phase-retrieval runs, batched, with best-iterate selection and coherent averaging.

:class:`PhaseRetrieval` holds the explicit state of ``R`` runs for each of ``V`` views on one
``(V, R, N, N)`` complex64 array (STYLE practice 14): ``update(n)`` advances every run by ``n``
iterations, ``done()`` says when ``options.iterations`` iterations of the chosen algorithm (DM, HIO,
RAAR or ER; more when the convergence test extends the schedule, ``options.max_iterations``) plus
``options.final_er`` error-reduction iterations have run. Every ``options.check_every`` iterations it
computes on the device the R-factor on the measured pixels (:func:`~.algorithms.r_factor`) of each
run's support-projected estimate and reads it, with ``eps_n = ||x_{n+1} - x_n||`` and the support
area, in one host read (:attr:`PhaseRetrieval.host_reads`, counted so that tests can check it). Per
run it keeps the estimate of lowest ``eps_n`` (the paper's Methods, every iteration; the default) or
of lowest R-factor (``options.select_by="rfactor"``, at the records). Shrink-wrap has a support-collapse guard
(:meth:`PhaseRetrieval._shrink_wrap`). Everything stays on the input's device.

On CuPy with the difference map, the iteration runs the fused CUDA kernels of
``kernels/difference_map.cu`` (:func:`~._dm_kernel.dm_step_kernel`, and
:func:`~._dm_kernel.track_best_kernel` for the best iterate of every algorithm); their NumPy twins
(:func:`~.algorithms.dm_step` and the selection in :meth:`PhaseRetrieval.update`) are the CPU path.
Escape hatch: ``kernels=False`` (or the environment variable ``XSTEREO_KERNELS=0``) runs the twins'
array code on CuPy too, for comparison.

:func:`phase_retrieval` is the functional entry point: it runs to completion, superposes the best
iterates of the runs (twin choice, subpixel DFT registration, global phase) and averages them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..backend import get_array_module, to_device, to_host, use_kernels
from ..config import PhasingOptions
from ..errors import InputError
from ..memory import memory_budget, plan_phasing
from ._dm_kernel import DMKernelWorkspace, dm_step_kernel, track_best_kernel
from ._fft import fft2, ifft2
from .algorithms import Workspace, dm_step, er_step, fourier_constraint, hio_step, r_factor, raar_step
from .align import align_runs
from .support import autocorrelation_support, box_support, shrink_wrap

__all__ = [
    "PhaseRetrieval",
    "PhasingResult",
    "phase_retrieval",
    "split_phasing",
    "fourier_error",
    "host_read_limit",
]


#: Relative rise of a run's R-factor between two shrink-wrap updates that, with a support shrunk below
#: ``PhasingOptions.collapse_fraction`` of its area meanwhile, marks a collapse of the support.
COLLAPSE_RISE = 0.25


def host_read_limit(iterations: int, check_every: int) -> int:
    """Most host reads the iteration loop may do for ``iterations`` iterations.

    One cost record every ``check_every`` iterations plus one at the last iteration:
    ``ceil(iterations / check_every) + 1``. Tests compare :attr:`PhaseRetrieval.host_reads` with it.
    """
    return math.ceil(int(iterations) / int(check_every)) + 1


def _validate(intensities, valid, support):
    xp = get_array_module(intensities)
    i = xp.asarray(intensities)
    if i.ndim != 3 or i.shape[-1] != i.shape[-2] or i.shape[-1] < 4:
        raise InputError(
            "phasing.intensities", f"an array of shape {tuple(i.shape)}", "shape (V, N, N) with N >= 4"
        )
    if not (np.issubdtype(i.dtype, np.floating) or np.issubdtype(i.dtype, np.integer)):
        raise InputError("phasing.intensities", f"dtype {i.dtype}", "real (float32) intensities")
    v = to_device(valid, xp) if valid is not None else xp.ones(i.shape, dtype=bool)
    if v.shape != i.shape:
        raise InputError(
            "phasing.valid", f"shape {tuple(v.shape)}", f"the intensities' shape {tuple(i.shape)}"
        )
    if v.dtype != bool:
        raise InputError("phasing.valid", f"dtype {v.dtype}", "bool (True = measured pixel)")
    i = i.astype(xp.float32)
    finite = xp.isfinite(i)
    if not bool(xp.all(finite | ~v)):  # one host sync at set-up
        raise InputError(
            "phasing.intensities",
            "non-finite values at valid pixels",
            "finite intensities (mark bad pixels invalid)",
        )
    # one host sync at set-up: per view, the number of valid pixels and of those with signal
    counts = to_host(xp.stack([xp.sum(v, axis=(-2, -1)), xp.sum(v & (i > 0), axis=(-2, -1))]))
    for k in range(i.shape[0]):
        n_valid, n_signal = int(counts[0, k]), int(counts[1, k])
        if n_valid == 0:
            raise InputError(
                "phasing.valid",
                f"no valid pixel in view {k} (every pixel is masked)",
                "at least one measured pixel per view; the support would be empty",
            )
        if n_signal == 0:
            raise InputError(
                "phasing.intensities",
                f"no signal in view {k}: all {n_valid} valid pixels are 0 "
                "(the autocorrelation support would be empty)",
                "a diffraction pattern with positive intensities at valid pixels",
            )
    if support is not None:
        s = to_device(support, xp)
        if (
            s.dtype != bool
            or s.ndim not in (3, 4)
            or s.shape[0] != i.shape[0]
            or s.shape[-2:] != i.shape[-2:]
        ):
            raise InputError(
                "phasing.support",
                f"{s.dtype} array of shape {tuple(s.shape)}",
                f"bool (V, N, N) or (V, R, N, N) with V, N = {i.shape[0]}, {i.shape[-1]}",
            )
        empty = to_host(~xp.any(s, axis=(-2, -1)))
        if empty.any():
            k = tuple(int(a) for a in np.argwhere(empty)[0])
            raise InputError(
                "phasing.support",
                f"an empty support (no True pixel) at index {k}",
                "at least one support pixel per view and run",
            )
        support = s
    return xp, xp.where(v, i, np.float32(0)), v, support


def _random_half_planes(
    rng: np.random.Generator,
    nv: int,
    nr: int,
    n: int,
    runs: tuple[int, int] | None = None,
    offset: float = 0.0,
) -> np.ndarray:
    """Per view and run, the half-plane ``u . (p - c) >= -offset`` near ``c = (N//2, N//2)``, random ``u``.

    The autocorrelation support ``A = O - O`` of an object ``O`` contains, for every direction
    ``u``, the translate of ``O`` whose ``u``-most-negative point sits on the centre, and that
    translate lies in ``A`` intersected with the half-plane. Cutting ``A`` this way keeps a
    valid support while breaking its centro-symmetry, which is what lets object and twin start
    on an equal footing and so causes twin stagnation; different runs get different directions.
    ``runs = (lo, hi)`` returns the half-planes of runs ``lo:hi`` only (the angles of all ``nr``
    runs are drawn, so the stream that follows is the same). ``offset`` [pixels] moves the edge
    away from the centre (the box start keeps 3/4 of its box, see :class:`PhaseRetrieval`).
    """
    angles = rng.random((nv, nr)) * (2 * np.pi)
    if runs is not None:
        angles = angles[:, runs[0] : runs[1]]
    c = np.arange(n) - n // 2
    return (
        np.cos(angles)[..., None, None] * c[:, None] + np.sin(angles)[..., None, None] * c[None, :]
    ) >= -0.5 - offset


def _skip_float32(rng: np.random.Generator, count: int) -> None:
    """Advance ``rng`` past ``count`` float32 draws, as if ``rng.random(count, dtype=float32)`` had run.

    A float32 draw takes 32 bits of a 64-bit output: with no buffered half and an even count, the
    bit generator's ``advance(count // 2)`` (PCG64, numpy's default) skips exactly; otherwise the
    draws are made and discarded in chunks.
    """
    count = int(count)
    if count <= 0:
        return
    bg = rng.bit_generator
    if count % 2 == 0 and hasattr(bg, "advance") and not bg.state.get("has_uint32", 0):
        bg.advance(count // 2)
        return
    while count > 0:
        k = min(count, 1 << 22)
        rng.random(k, dtype=np.float32)
        count -= k


def _random_phases(
    rng: np.random.Generator, nv: int, nr: int, n: int, runs: tuple[int, int] | None
) -> np.ndarray:
    """The starting phases' uniform draws of runs ``lo:hi``: the slice ``[:, lo:hi]`` of
    ``rng.random((nv, nr, n, n), dtype=float32)``, drawn without the other runs' block."""
    if runs is None:
        return rng.random((nv, nr, n, n), dtype=np.float32)
    lo, hi = runs
    out = np.empty((nv, hi - lo, n, n), dtype=np.float32)
    pos = 0  # float32 draws of the (nv, nr, n, n) block consumed so far
    for v in range(nv):
        start = (v * nr + lo) * n * n
        _skip_float32(rng, start - pos)
        out[v] = rng.random((hi - lo, n, n), dtype=np.float32)
        pos = start + (hi - lo) * n * n
    return out


def _random_starts(
    seed,
    nv: int,
    groups: int,
    nr: int,
    n: int,
    runs: tuple[int, int] | None,
    *,
    half_planes: bool,
    offset: float = 0.0,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Half-planes (:func:`_random_half_planes`, or None) and starting phases' draws (:func:`_random_phases`)
    of ``nv`` views in ``groups`` equal consecutive groups, each drawn from its own
    ``numpy.random.default_rng(seed)``: a group gets the starts it gets when phased alone."""
    per = nv // groups
    planes, phases = [], []
    for _ in range(groups):
        rng = np.random.default_rng(seed)
        if half_planes:
            planes.append(_random_half_planes(rng, per, nr, n, runs, offset))
        phases.append(_random_phases(rng, per, nr, n, runs))
    cat = (lambda a: a[0]) if groups == 1 else (lambda a: np.concatenate(a))
    return (cat(planes) if half_planes else None), cat(phases)


class PhaseRetrieval:
    """Batched phase retrieval of ``V`` views with ``R`` independent runs each.

    Parameters
    ----------
    intensities : (V, N, N) float32
        Diffraction intensities, zero frequency at pixel ``(N//2, N//2)``  [photons]; NumPy or
        CuPy (the computation runs where the array lives).
    valid : (V, N, N) bool
        True where the pixel holds data; False pixels (beamstop, overlap, outside the frame) are
        left free by the modulus projection.
    options : PhasingOptions
        Algorithm, runs, iterations, shrink-wrap schedule, seed, ...
    support : (V, N, N) or (V, R, N, N) bool, optional
        Initial support, used as given. Default: :func:`autocorrelation_support` with
        ``options.autocorrelation_threshold``, cut for each run by a random half-plane through its
        centre (a valid, non-centrosymmetric support; it halves the share of runs that stagnate
        in a superposition of the object and its twin).
    kernels : bool, optional
        Use the fused CUDA kernels on CuPy (default: :func:`~xstereo_gpu.backend.use_kernels`,
        i.e. yes unless ``XSTEREO_KERNELS=0``). Ignored on NumPy.
    initial_support : {"autocorrelation", "box"}, optional
        How the default initial support is made (ignored when ``support`` is given):
        ``"autocorrelation"`` as above, or ``"box"``: the centred box of side N/2
        (:func:`~.support.box_support`), which holds any object the sampling can phase, cut for
        each run by a random half-plane N/8 from its centre (3/4 of the box is kept). The cut is
        an asymmetric start (Fienup and Wackerman 1986): a box is centrosymmetric, and from it
        runs on an object that fills most of the box (the pyramid's square notch) stagnate in a
        superposition of the object and its twin; shrink-wrap (growing allowed) restores the
        part cut off. Default: ``options.initial_support`` if the options have that field, else
        ``"autocorrelation"``.
    shrinkwrap_grow : bool, optional
        ``True``: shrink-wrap may grow a support (the new support is the thresholded estimate);
        ``False``: it only shrinks (the new support is intersected with the current one), so a
        loose initial support that holds the object bounds every later one. Default:
        ``options.shrinkwrap_grow`` if the options have that field, else ``True``.
    run_range : (int, int), optional
        Iterate only runs ``lo:hi`` of the ``options.runs`` runs (a batch, see
        :func:`phase_retrieval`'s ``max_memory``): the same random starts as those runs get in
        one batch of all runs, so each run's iterates are the same (bit-identical on NumPy).
        Arrays then have ``hi - lo`` runs. A ``(V, R, N, N)`` support is sliced to the batch.
    view_groups : int, optional
        The views are this many equal consecutive groups (the shots of a stack of shots, two views
        each), and each group gets the random starts it gets when phased alone: phasing a stack of
        shots gives each shot the iterates of its own phasing (bit-identical on NumPy). Every
        other step is per view anyway. Default 1 (all views draw from one stream).
    schedule : int, optional
        Main-algorithm iterations, fixed (no convergence test): how later batches follow the first
        one's extended schedule. The convergence test looks at the runs (and views) iterated
        together, so batching or stacking can extend a schedule differently than one batch would.

    Attributes
    ----------
    iteration : int
        Iterations done so far.
    max_iter : int
        ``main_iterations + options.final_er``; ``main_iterations`` starts at ``options.iterations``
        and the convergence test may extend it up to ``options.max_iterations``.
    costs : list of (V, R) float32 NumPy arrays
        Relative ``eps`` (see ``best_eps``) of every run, recorded every ``options.check_every``
        iterations and at the last one.
    cost_iterations : list of int
        The iteration each entry of ``costs`` belongs to.
    rfactors, areas : lists of (V, R) NumPy arrays
        R-factor on the measured pixels (float32) and support area (int64) of every run, at the
        iterations of ``cost_iterations``.
    best : (V, R, N, N) complex64
        Per run, the support-projected estimate of the iteration with the lowest ``eps`` so far
        (``select_by="rfactor"``: of the recorded iteration with the lowest R-factor), from
        ``options.select_from`` of the main iterations on.
    best_eps : (V, R) float32
        ``eps_n = ||x_{n+1} - x_n||`` of that iterate, divided by the real-space norm of the measured
        amplitudes of the view (``sqrt(sum A**2) / N``), so 0.01 means 1 % of the wave.
    best_r : (V, R) float32
        Its R-factor, plus 1 when its support was larger than the autocorrelation's area (such
        iterates rank after all others); ``inf`` with ``select_by="eps"``.
    thresholds : (V, R, 1, 1) float32
        Shrink-wrap threshold of each run (halved by the collapse guard).
    collapses : (V, R) int32
        How often the collapse guard backed each run off.
    main_iterations : int
        Iterations of the main algorithm (``options.iterations``, or more after the convergence test).
    support : (V, R, N, N) bool
        Current supports (per run after the first shrink-wrap).
    x : (V, R, N, N) complex64
        Current iterates.
    amplitudes : (V, 1, N, N) float32
        Measured amplitudes ``sqrt(I)`` in FFT order (zero frequency at ``[0, 0]``).
    valid : (V, 1, N, N) bool
        Valid-data mask in FFT order.
    xp : module
        ``numpy`` or ``cupy``: where the computation runs.
    uses_kernels : bool
        True on CuPy with the kernels enabled: the difference map (``algorithm="dm"``) runs
        :func:`~._dm_kernel.dm_step_kernel` and every algorithm keeps its best iterates with
        :func:`~._dm_kernel.track_best_kernel`; HIO, ER and shrink-wrap run the twins' CuPy code.
    host_reads : int
        Device-to-host reads made by :meth:`update` so far (one per recorded cost): the loop's
        only host synchronisations, at most :func:`host_read_limit` for a full run.

    Notes
    -----
    Starting points: ``P_S`` of the inverse FFT of the measured amplitudes with uniformly random
    phases, drawn on the host from ``numpy.random.default_rng(options.seed)`` (half-plane angles
    first, then the phases of the whole ``(V, R, N, N)`` block at once) and uploaded; runs are
    reproducible and differ from each other. Shrink-wrap (every
    ``options.shrinkwrap_every`` iterations of the main algorithm, from the current estimate) uses a
    sigma going linearly from ``shrinkwrap_sigma[0]`` at the first update to ``shrinkwrap_sigma[1]``
    at the last; the support is then frozen for the final error reduction.
    """

    def __init__(
        self,
        intensities,
        valid,
        options: PhasingOptions | None = None,
        *,
        support=None,
        kernels: bool | None = None,
        initial_support: str | None = None,
        shrinkwrap_grow: bool | None = None,
        run_range: tuple[int, int] | None = None,
        view_groups: int = 1,
        schedule: int | None = None,
    ):
        options = PhasingOptions() if options is None else options
        if not isinstance(options, PhasingOptions):
            raise InputError("phasing.options", type(options).__name__, "a PhasingOptions")
        if initial_support is None:
            initial_support = getattr(options, "initial_support", "autocorrelation")
        if initial_support not in ("autocorrelation", "box"):
            raise InputError("phasing.initial_support", repr(initial_support), "'autocorrelation' or 'box'")
        if shrinkwrap_grow is None:
            shrinkwrap_grow = getattr(options, "shrinkwrap_grow", True)
        #: shrink-wrap may grow a support (False: it only shrinks)
        self.shrinkwrap_grow = bool(shrinkwrap_grow)
        xp, inten, v, support = _validate(intensities, valid, support)
        self.xp = xp
        self.options = options
        nv, n = inten.shape[0], inten.shape[-1]
        if run_range is not None:
            lo, hi = int(run_range[0]), int(run_range[1])
            if not 0 <= lo < hi <= options.runs:
                raise InputError(
                    "phasing.run_range", repr(run_range), f"(lo, hi) with 0 <= lo < hi <= {options.runs}"
                )
            run_range = (lo, hi)
            if support is not None and support.ndim == 4 and support.shape[1] == options.runs:
                support = support[:, lo:hi]
        r = options.runs if run_range is None else run_range[1] - run_range[0]
        groups = int(view_groups)
        if groups < 1 or nv % groups:
            raise InputError("phasing.view_groups", repr(view_groups), f"a divisor >= 1 of the {nv} views")
        self.amplitudes, self.valid = fourier_constraint(inten, v)  # (V, 1, N, N), FFT order
        planes, phases = _random_starts(
            options.seed,
            nv,
            groups,
            options.runs,
            n,
            run_range,
            half_planes=support is None,
            offset=n / 8 if initial_support == "box" else 0.0,
        )
        if support is None and initial_support == "box":
            box = box_support(inten)[:, None]
            max_area = box.sum(axis=(-2, -1)).reshape(nv, 1)
            support = box & to_device(planes, xp)
        elif support is None:
            support = autocorrelation_support(inten, v, threshold=options.autocorrelation_threshold)
            max_area = support.sum(axis=(-2, -1))[:, None]  # (V, 1)
            support = support[:, None] & to_device(planes, xp)
        else:
            max_area = xp.asarray(support).sum(axis=(-2, -1)).reshape(nv, -1) * 2
        if support.ndim == 3:
            support = support[:, None]
        if support.shape[1] not in (1, r):
            raise InputError("phasing.support", f"{support.shape[1]} runs", f"1 or options.runs = {r}")
        self.support = xp.ascontiguousarray(xp.broadcast_to(support, (nv, r, n, n)))
        empty = to_host(~xp.any(self.support, axis=(-2, -1)))  # one host sync at set-up
        if empty.any():
            k = int(np.argwhere(empty)[0][0])
            raise InputError(
                "phasing.support",
                f"an empty support for view {k} (no pixel of the autocorrelation "
                f"above {options.autocorrelation_threshold:g} of its maximum)",
                "a diffraction pattern with signal at valid pixels",
            )
        #: (V, 1) area of the autocorrelation support: a run whose support grows past it has
        #: spread over the field, and its support no longer constrains anything
        self.max_area = max_area
        phases = to_device(phases * np.float32(2 * np.pi), xp)
        x = (self.amplitudes * xp.exp(1j * phases)).astype(xp.complex64)
        x = ifft2(x, overwrite=True)
        x *= self.support
        self.x = xp.ascontiguousarray(x, dtype=xp.complex64)
        self._work = Workspace(self.x, self.amplitudes, self.valid)
        self.uses_kernels = use_kernels(xp, kernels)
        self._kwork = None
        if self.uses_kernels and options.algorithm == "dm":
            self._kwork = DMKernelWorkspace(self.x)
        self.host_reads = 0
        norm = xp.sqrt(xp.sum(self.amplitudes.astype(xp.float64) ** 2, axis=(-3, -2, -1))) / n
        self._inv_norm = (1.0 / xp.maximum(norm, 1e-30)).astype(xp.float32)[:, None]  # (V, 1)
        self.best = self.x.copy()
        self.best_eps = xp.full((nv, r), np.inf, dtype=xp.float32)
        self.best_r = xp.full((nv, r), np.inf, dtype=xp.float32)
        self.iteration = 0
        #: main-algorithm iterations: ``options.iterations``, extended by the convergence test
        #: (:meth:`_extend`) up to ``options.max_iterations``; ``schedule`` fixes it (no test)
        self.main_iterations = int(options.iterations if schedule is None else schedule)
        self._extensible = schedule is None and options.max_iterations > options.iterations
        self._tested = 0  # main_iterations at the last convergence test
        self.max_iter = self.main_iterations + options.final_er
        self._select_from = int(options.select_from * options.iterations)
        self.costs: list[np.ndarray] = []
        self.rfactors: list[np.ndarray] = []
        self.areas: list[np.ndarray] = []
        self.cost_iterations: list[int] = []
        #: per run: shrink-wrap threshold (halved by the collapse guard) and how often the guard fired
        self.thresholds = xp.full((nv, r, 1, 1), options.shrinkwrap_threshold, dtype=xp.float32)
        self.collapses = xp.zeros((nv, r), dtype=xp.int32)
        self._guard = options.collapse_fraction > 0 and options.shrinkwrap_every > 0
        if self._guard:  # the support of each run before the last shrink-wrap update, and its R
            self._ref_support = self.support.copy()
            self._ref_area = self.support.sum(axis=(-2, -1))
            self._ref_r = xp.full((nv, r), np.inf, dtype=xp.float32)

    def done(self) -> bool:
        """True once ``max_iter`` iterations have run."""
        return self.iteration >= self.max_iter

    def _sigma(self) -> float:
        o = self.options
        updates = o.iterations // o.shrinkwrap_every
        j = self.iteration // o.shrinkwrap_every  # 1 .. updates
        t = 1.0 if updates <= 1 else min(1.0, (j - 1) / (updates - 1))  # the last past the schedule
        s0, s1 = o.shrinkwrap_sigma
        return s0 + (s1 - s0) * t

    def update(self, n: int = 1) -> PhaseRetrieval:
        """Advance every run by ``n`` iterations (fewer if ``max_iter`` is reached).

        No host synchronisation except when a record is read (every ``check_every`` iterations):
        ``eps``, the R-factor on the measured pixels and the support area of every run, in one read.
        """
        xp, o = self.xp, self.options
        for _ in range(int(n)):
            if self.done():
                break
            main = self.iteration < self.main_iterations
            if main and o.algorithm == "dm":  # the fused kernel when it runs
                step, work = (
                    (dm_step_kernel, self._kwork) if self._kwork is not None else (dm_step, self._work)
                )
                _, est, eps = step(
                    self.x, self.amplitudes, self.valid, self.support, beta=o.beta, gammas=o.gammas, work=work
                )
            elif main and o.algorithm == "hio":
                _, est, eps = hio_step(
                    self.x, self.amplitudes, self.valid, self.support, beta=o.hio_beta, work=self._work
                )
            elif main and o.algorithm == "raar":
                _, est, eps = raar_step(
                    self.x, self.amplitudes, self.valid, self.support, beta=o.raar_beta, work=self._work
                )
            else:  # "er", or the final error reduction
                _, est, eps = er_step(self.x, self.amplitudes, self.valid, self.support, work=self._work)
            eps *= self._inv_norm
            it = self.iteration + 1
            record = it % o.check_every == 0 or it >= self.max_iter
            wrap = bool(o.shrinkwrap_every) and it <= self.main_iterations and it % o.shrinkwrap_every == 0
            selecting = self.iteration >= self._select_from
            r = obj = None
            if record or (wrap and self._guard):
                # R-factor of the support-projected estimate, in the workspace's free buffers
                free = [b for b in (self._work.t1, self._work.t2, self._work.t3) if b is not est]
                obj = xp.multiply(est, self.support, out=free[0])
                r = r_factor(obj, self.amplitudes, self.valid, buffers=(free[1], self._work.r))
            if o.select_by == "eps":
                if self.uses_kernels:  # flags and the masked copy on the device, no synchronisation
                    track_best_kernel(self.best, self.best_eps, est, eps, self.support, enabled=selecting)
                elif selecting:
                    better = eps < self.best_eps
                    # keep the real-space object: the estimate restricted to the current support (the
                    # unrestricted estimate still drives shrink-wrap, so the support can grow back)
                    xp.copyto(self.best, est * self.support, where=better[..., None, None])
                    self.best_eps = xp.where(better, eps, self.best_eps)
            elif record and selecting:
                # R of an iterate whose support spread past the autocorrelation's area means little
                # (a loose support fits the data trivially): such iterates rank after all others
                rank = r + (self.support.sum(axis=(-2, -1)) > self.max_area).astype(xp.float32)
                better = rank < self.best_r
                xp.copyto(self.best, obj, where=better[..., None, None])
                self.best_eps = xp.where(better, eps, self.best_eps)
                self.best_r = xp.where(better, rank, self.best_r)
            self.iteration = it
            if wrap:
                self._shrink_wrap(est, r)
            if record:
                area = self.support.sum(axis=(-2, -1)).astype(xp.float32)
                rec = self._host_read(xp.stack([eps, r, area]))
                self.costs.append(np.asarray(rec[0], dtype=np.float32))
                self.rfactors.append(np.asarray(rec[1], dtype=np.float32))
                self.areas.append(np.asarray(rec[2], dtype=np.int64))
                self.cost_iterations.append(it)
                if self._extensible and self._tested < self.main_iterations <= it:
                    self._tested = self.main_iterations  # at the first record from the end on
                    self._extend()
        return self

    def _extend(self) -> None:
        """Convergence test at the end of the main algorithm, on the host records (no extra read):
        if any view's median R-factor over the runs dropped by more than ``flat_tolerance`` (relative)
        over the last ``flat_window`` iterations, go on ``flat_window`` iterations more (at most
        ``max_iterations`` in all; shrink-wrap goes on with its last sigma)."""
        o = self.options
        its = np.asarray(self.cost_iterations)
        then = np.nonzero(its <= its[-1] - o.flat_window)[0]
        if not len(then) or self.main_iterations >= o.max_iterations:
            return
        r_then = np.median(self.rfactors[then[-1]], axis=1)
        r_now = np.median(self.rfactors[-1], axis=1)
        if np.all(r_then - r_now <= o.flat_tolerance * r_now):
            return
        self.main_iterations = min(o.max_iterations, self.main_iterations + o.flat_window)
        self.max_iter = self.main_iterations + o.final_er

    def _shrink_wrap(self, est, r) -> None:
        """Shrink-wrap every run from ``est``, with the support-collapse guard (``r``: R-factors now).

        Guard (``options.collapse_fraction > 0``), per run, from one update to the next: if the
        support set at the previous update kept less than ``collapse_fraction`` of the area of the
        one before (which was not larger than the autocorrelation's area: a looser support fits the
        data trivially) and the R-factor rose by more than :data:`COLLAPSE_RISE` meanwhile, the
        support has collapsed: the run goes back to the support before (with
        ``shrinkwrap_grow=False`` it keeps its current one, which may not grow) instead of
        shrink-wrapping, and its threshold is halved (down to a quarter of the option's). A slow
        collapse, a little at each update, is not caught.
        """
        xp, o = self.xp, self.options
        new = shrink_wrap(est, sigma=self._sigma(), threshold=self.thresholds)
        if not self.shrinkwrap_grow:
            new &= self.support
        keep = new.sum(axis=(-2, -1)) == 0  # never empty a support
        if self._guard:
            area = self.support.sum(axis=(-2, -1))
            collapsed = (
                (self._ref_area <= self.max_area)
                & (area < o.collapse_fraction * self._ref_area)
                & (r > np.float32(1 + COLLAPSE_RISE) * self._ref_r)
            )
            floor = np.float32(o.shrinkwrap_threshold / 4)
            self.thresholds = xp.where(
                collapsed[..., None, None],
                xp.maximum(self.thresholds * np.float32(0.5), floor),
                self.thresholds,
            )
            self.collapses += collapsed
            back = self._ref_support if self.shrinkwrap_grow else self.support
            new = xp.where(collapsed[..., None, None], back, new)
            # the next reference: the support used up to now and its R (the restored one if collapsed)
            xp.copyto(self._ref_support, self.support, where=~collapsed[..., None, None])
            self._ref_area = xp.where(collapsed, self._ref_area, area)
            self._ref_r = xp.where(collapsed, self._ref_r, r)
        self.support = xp.where(keep[..., None, None], self.support, new)

    def _host_read(self, a):
        """``to_host(a)``, counted in :attr:`host_reads` (the loop's only synchronisation point)."""
        self.host_reads += 1
        return to_host(a)


@dataclass
class PhasingResult:
    """Outcome of :func:`phase_retrieval`.

    Attributes
    ----------
    views : (V, N, N) complex64
        Coherent average of the aligned best iterates of each view (same device as the input),
        centred on pixel ``(N//2, N//2)``; exit-wave scale (the amplitudes are ``sqrt(I)``).
    best : (V, R, N, N) complex64
        The best iterate of every run, *after* alignment (twin choice, subpixel shift, global
        phase): ready for a PRTF.
    best_eps : (V, R) float32
        Relative ``eps`` of each run's best iterate (:attr:`PhaseRetrieval.best_eps`).
    supports : (V, N, N) bool
        Support of each averaged view: shrink-wrap of ``|views|`` with the last shrink-wrap sigma
        and threshold.
    iterations : int
        Iterations per run (main algorithm + final error reduction).
    history : dict
        ``iterations`` (K,) int, ``eps`` and ``rfactor`` (K, V, R) float32, ``support_area``
        (K, V, R) int64: the records; ``r_factor`` (V, R): R-factor of each best iterate on the
        measured pixels; ``collapses`` (V, R) int: collapse-guard back-offs; ``excluded`` (V, R) str:
        why a run is not in the average ("" when it is);
        ``reference`` (V,) int, ``twin`` (V, R) bool, ``shifts`` (V, R, 2) float64,
        ``peak`` (V, R) float32: the alignment of the runs; ``fourier_error`` (V, R): relative
        Fourier error of each best iterate; ``spread`` (V, R) bool: support grown past the
        autocorrelation's area (ranked last); ``averaged`` (V, R) bool: runs in the average
        (``options.average_tolerance``); ``host_reads`` int: device-to-host reads of the iteration
        loop (:attr:`PhaseRetrieval.host_reads`, at most :func:`host_read_limit`);
        ``kernels`` bool: whether the CUDA kernels ran. Host arrays.
    """

    views: object
    best: object
    best_eps: object
    supports: object
    iterations: int
    history: dict = field(default_factory=dict)


def fourier_error(objects, amplitudes, valid):
    """Relative Fourier-space error of each object: ``|| |F x| - A ||_valid / ||A||_valid``.

    Parameters
    ----------
    objects : (V, R, N, N) complex64
        Real-space objects (e.g. the support-projected best iterates).
    amplitudes, valid : (V, 1, N, N)
        Measured amplitudes and valid mask in FFT order (:func:`~.algorithms.fourier_constraint`).

    Returns
    -------
    (V, R) float32
    """
    xp = get_array_module(objects)
    f = xp.abs(fft2(xp.array(objects, dtype=xp.complex64), overwrite=True))
    num = xp.sum(xp.where(valid, (f - amplitudes) ** 2, 0), axis=(-2, -1))
    den = xp.sum(xp.where(valid, amplitudes.astype(xp.float32) ** 2, 0), axis=(-2, -1))
    return xp.sqrt(num / xp.maximum(den, 1e-30)).astype(xp.float32)


def phase_retrieval(
    intensities,
    valid,
    options: PhasingOptions | None = None,
    *,
    support=None,
    progress: Callable[[int, int], None] | None = None,
    kernels: bool | None = None,
    initial_support: str | None = None,
    shrinkwrap_grow: bool | None = None,
    max_memory: int | None = None,
    runs_per_batch: int | None = None,
    view_groups: int = 1,
) -> PhasingResult:
    """Phase every view with ``options.runs`` independent runs and average the best iterates.

    Parameters
    ----------
    intensities : (V, N, N) float32
        Diffraction intensities, zero frequency at pixel ``(N//2, N//2)``  [photons]. NumPy or
        CuPy: the result lives on the same device.
    valid : (V, N, N) bool
        Valid-data mask (False pixels are free in Fourier space).
    options : PhasingOptions, optional
        Defaults to ``PhasingOptions()`` (the paper's 45 runs).
    support : (V, N, N) or (V, R, N, N) bool, optional
        Initial support (default: from the autocorrelation).
    progress : callable, optional
        ``progress(done, total)`` called every ``options.check_every`` iterations.
    kernels : bool, optional
        Use the CUDA kernels on CuPy (default: :func:`~xstereo_gpu.backend.use_kernels`; ``False``
        or ``XSTEREO_KERNELS=0`` runs the twins' array code there). Ignored on NumPy; the
        environment is read once, for all batches.
    initial_support, shrinkwrap_grow : optional
        See :class:`PhaseRetrieval`.
    max_memory : int, optional
        Bytes the runs may take (default: :func:`~xstereo_gpu.memory.memory_budget` of the device:
        most of the free memory, batches aiming at 2 GiB on NumPy). When all runs do not fit, they iterate
        and are aligned in
        batches of runs (:func:`~xstereo_gpu.memory.plan_phasing`); each run gets the random start
        it gets in one batch, and selection, ranking and averaging see all runs, so the result is
        the same (bit-identical on NumPy). Nothing is allocated when even one run per batch does
        not fit: :class:`~xstereo_gpu.errors.InputError` names ``--max-memory``.
    runs_per_batch : int, optional
        Force this batch size (still checked against the memory limit).
    view_groups : int, optional
        The views are this many shots stacked (:class:`PhaseRetrieval`): each gets its own random
        starts, so that :func:`split_phasing` of the result gives what each shot's own phasing
        gives (bit-identical on NumPy) for one set of launches.

    Returns
    -------
    PhasingResult
        ``history["memory"]`` holds the plan (:meth:`~xstereo_gpu.memory.PhasingPlan.to_dict`).
    """
    options = PhasingOptions() if options is None else options
    xp0 = get_array_module(intensities)
    shape = tuple(intensities.shape)
    if len(shape) != 3:
        _validate(intensities, valid, support)  # raises the shape error
    kernels = use_kernels(xp0, kernels)  # the environment read once for every batch
    budget = memory_budget(xp0, max_memory)
    plan = plan_phasing(
        shape[0],
        options.runs,
        shape[-1],
        budget["budget_bytes"],
        limit=budget["limit_bytes"],
        runs_per_batch=runs_per_batch,
    )
    if plan.batches > 1:
        return _phase_in_batches(
            intensities,
            valid,
            options,
            plan,
            support=support,
            progress=progress,
            kernels=kernels,
            initial_support=initial_support,
            shrinkwrap_grow=shrinkwrap_grow,
            budget=budget,
            view_groups=view_groups,
        )
    pr = PhaseRetrieval(
        intensities,
        valid,
        options,
        support=support,
        kernels=kernels,
        initial_support=initial_support,
        shrinkwrap_grow=shrinkwrap_grow,
        view_groups=view_groups,
    )
    while not pr.done():
        pr.update(options.check_every)
        if progress is not None:
            progress(pr.iteration, pr.max_iter)
    return _select_and_average(
        pr.best,
        pr.best_eps,
        fourier_error(pr.best, pr.amplitudes, pr.valid),
        r_factor(pr.best, pr.amplitudes, pr.valid),
        pr.support.sum(axis=(-2, -1)) > pr.max_area,
        options,
        costs=_records(pr),
        collapses=to_host(pr.collapses),
        cost_iterations=pr.cost_iterations,
        host_reads=pr.host_reads,
        uses_kernels=pr.uses_kernels,
        max_iter=pr.max_iter,
        memory={**plan.to_dict(), "budget_source": budget["source"]},
    )


def _records(pr: PhaseRetrieval) -> dict:
    """Host records of ``pr``: ``eps``, ``rfactor`` (K, V, R) float32, ``support_area`` (K, V, R) int64."""
    shape = (0,) + tuple(pr.best_eps.shape)
    out = {}
    for name, recs, dtype in (
        ("eps", pr.costs, np.float32),
        ("rfactor", pr.rfactors, np.float32),
        ("support_area", pr.areas, np.int64),
    ):
        out[name] = np.stack(recs).astype(dtype) if recs else np.zeros(shape, dtype)
    return out


def _selection(err, spread, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Which runs enter the average, and why the others do not (host arrays).

    ``err`` (V, R): Fourier error of each run's best iterate on the measured pixels
    (:func:`fourier_error`, the R-factor's squared-difference form); ``spread`` (V, R): its support
    grew past the autocorrelation's area (it fits the data trivially; ignored when every run of a
    view did). A run is kept when its error is within ``1 + tolerance`` of the view's best run.
    The squared form weighs the strong low-frequency speckles more: with the absolute-difference
    R-factor and the same tolerance, the phase cross's left view kept 1 run instead of 5 (view
    correlation 0.897 instead of 0.915; 0.900 with a tolerance of 0.4).

    Returns ``keep`` (V, R) bool and ``why`` (V, R) str: ``""`` for a kept run, else the reason.
    """
    err, spread = np.asarray(err, dtype=np.float64), np.asarray(spread, dtype=bool)
    spread = spread & ~spread.all(axis=1, keepdims=True)
    rank = np.where(spread, np.inf, err)
    best = rank.min(axis=1, keepdims=True)
    keep = rank <= (1.0 + tolerance) * best
    why = np.full(err.shape, "", dtype=object)
    for v, r in zip(*np.nonzero(~keep)):
        if spread[v, r]:
            why[v, r] = "support spread past the autocorrelation's area"
        else:
            why[v, r] = (
                f"Fourier error {err[v, r]:.4f} above (1 + {tolerance:g}) x the best run's {best[v, 0]:.4f}"
            )
    return keep, why.astype(str)


def _select_and_average(
    best,
    best_eps,
    ferr,
    rf,
    spread,
    options: PhasingOptions,
    *,
    costs: dict,
    collapses,
    cost_iterations,
    host_reads: int,
    uses_kernels: bool,
    max_iter: int,
    memory: dict,
    runs_per_batch: int | None = None,
) -> PhasingResult:
    """Rank the runs, align and average the best ones: the end of :func:`phase_retrieval`.

    ``best`` (V, R, N, N) holds every run's best iterate (aligned in place when ``runs_per_batch``
    is given), ``ferr`` (V, R) their Fourier errors, ``rf`` (V, R) their R-factors (the ranking,
    :func:`_selection`), ``spread`` (V, R) whether a run's support grew past the autocorrelation's area.
    """
    xp = get_array_module(best)
    rf_host, ferr_host = to_host(rf), to_host(ferr)
    keep, why = _selection(ferr_host, to_host(spread), options.average_tolerance)
    rank = np.where(keep, ferr_host, np.inf)  # the reference of the alignment: the best kept run
    aligned, info = align_runs(
        best,
        upsample=options.register_upsample,
        eps=to_device(rank.astype(np.float32), xp),
        keep=to_device(keep, xp),
        runs_per_batch=runs_per_batch,
        out=None if runs_per_batch is None else best,
    )
    views = info["average"]
    supports = shrink_wrap(views, sigma=options.shrinkwrap_sigma[1], threshold=options.shrinkwrap_threshold)
    history = {
        "iterations": np.asarray(cost_iterations, dtype=np.int64),
        **costs,
        "reference": to_host(info["reference"]),
        "twin": to_host(info["twin"]),
        "shifts": to_host(info["shifts"]),
        "peak": to_host(info["peak"]),
        "fourier_error": to_host(ferr),
        "r_factor": rf_host,
        "spread": to_host(spread),
        "collapses": np.asarray(collapses),
        "averaged": keep,
        "excluded": why,
        "host_reads": host_reads,
        "kernels": uses_kernels,
        "memory": memory,
    }
    return PhasingResult(
        views=xp.ascontiguousarray(views, dtype=xp.complex64),
        best=aligned,
        best_eps=best_eps,
        supports=supports,
        iterations=max_iter,
        history=history,
    )


def _phase_in_batches(
    intensities,
    valid,
    options: PhasingOptions,
    plan,
    *,
    support,
    progress,
    kernels,
    initial_support,
    shrinkwrap_grow,
    budget,
    view_groups: int = 1,
) -> PhasingResult:
    """:func:`phase_retrieval` with the runs iterated and aligned ``plan.runs_per_batch`` at a time.

    Per batch: a :class:`PhaseRetrieval` of runs ``lo:hi`` (same random starts as in one batch),
    run to completion; its best iterates, ``eps``, Fourier errors and final support areas are kept
    and the rest is freed. Then the ranking over all runs, and the alignment batch by batch in place.
    """
    nb, b = plan.batches, plan.runs_per_batch
    R = options.runs
    best = best_eps = ferr = rf = area = max_area = None
    costs, collapses, host_reads, uses_kernels, cost_iterations, max_iter = [], [], 0, False, [], 0
    schedule = None
    for j in range(nb):
        lo, hi = j * b, min(R, (j + 1) * b)
        pr = PhaseRetrieval(
            intensities,
            valid,
            options,
            support=support,
            kernels=kernels,
            initial_support=initial_support,
            shrinkwrap_grow=shrinkwrap_grow,
            run_range=(lo, hi),
            view_groups=view_groups,
            schedule=None if j == 0 else schedule,  # the first batch's convergence test sets it
        )
        xp = pr.xp
        if best is None:
            nv, n = pr.x.shape[0], pr.x.shape[-1]
            best = xp.empty((nv, R, n, n), dtype=xp.complex64)
            best_eps = xp.empty((nv, R), dtype=xp.float32)
            ferr = xp.empty((nv, R), dtype=xp.float32)
            rf = xp.empty((nv, R), dtype=xp.float32)
            area = xp.empty((nv, R), dtype=pr.support.sum(axis=(-2, -1)).dtype)
            max_area = xp.empty((nv, R), dtype=pr.max_area.dtype)
        while not pr.done():
            pr.update(options.check_every)
            if progress is not None:
                progress(j * pr.max_iter + pr.iteration, nb * pr.max_iter)
        best[:, lo:hi] = pr.best
        best_eps[:, lo:hi] = pr.best_eps
        ferr[:, lo:hi] = fourier_error(pr.best, pr.amplitudes, pr.valid)
        rf[:, lo:hi] = r_factor(pr.best, pr.amplitudes, pr.valid)
        area[:, lo:hi] = pr.support.sum(axis=(-2, -1))
        max_area[:, lo:hi] = xp.broadcast_to(pr.max_area, (nv, hi - lo))
        costs.append(_records(pr))
        collapses.append(to_host(pr.collapses))
        cost_iterations = list(pr.cost_iterations)
        host_reads += pr.host_reads
        uses_kernels = pr.uses_kernels
        max_iter = pr.max_iter
        schedule = pr.main_iterations
        del pr
    return _select_and_average(
        best,
        best_eps,
        ferr,
        rf,
        area > max_area,
        options,
        costs={k: np.concatenate([c[k] for c in costs], axis=2) for k in costs[0]},
        collapses=np.concatenate(collapses, axis=1),
        cost_iterations=cost_iterations,
        host_reads=host_reads,
        uses_kernels=uses_kernels,
        max_iter=max_iter,
        memory={**plan.to_dict(), "budget_source": budget["source"]},
        runs_per_batch=b,
    )


#: ``history`` entries whose first axis is the view (the rest are per stack: iterations, counts, plan).
_PER_VIEW = (
    "reference",
    "twin",
    "shifts",
    "peak",
    "fourier_error",
    "r_factor",
    "spread",
    "collapses",
    "averaged",
    "excluded",
)


def split_phasing(result: PhasingResult, groups: int) -> list[PhasingResult]:
    """The results of each shot of a stack phased with ``view_groups=groups``: views ``g*k:(g+1)*k``.

    Parameters
    ----------
    result : PhasingResult
        Of ``V = groups * k`` views.
    groups : int
        Shots in the stack.

    Returns
    -------
    list of PhasingResult
        One per shot, ``k`` views each: slices (views) of the stack's device arrays, and the
        history's per-view entries and the ``(K, V, R)`` costs cut the same way; ``host_reads``,
        ``kernels`` and ``memory`` are the stack's (shared by every shot).
    """
    nv = int(result.views.shape[0])
    groups = int(groups)
    if groups < 1 or nv % groups:
        raise InputError("split_phasing.groups", repr(groups), f"a divisor >= 1 of the {nv} views")
    k = nv // groups
    out = []
    for g in range(groups):
        sl = slice(g * k, (g + 1) * k)
        history = dict(result.history)
        for name in _PER_VIEW:
            if name in history:
                history[name] = history[name][sl]
        for name in ("eps", "rfactor", "support_area"):
            if name in history:
                history[name] = history[name][:, sl]
        out.append(
            PhasingResult(
                views=result.views[sl],
                best=result.best[sl],
                best_eps=result.best_eps[sl],
                supports=result.supports[sl],
                iterations=result.iterations,
                history=history,
            )
        )
    return out
