"""Options of every stage: frozen dataclasses whose defaults are the paper's values.

``PipelineOptions`` groups the stages. Two profiles exist: ``"paper"`` (45 runs, as in the paper; the
GPU default) and ``"cpu"`` (fewer runs and iterations so that the demo finishes in about a minute on
two CPU cores; reported as such in ``summary.json``). Options round-trip through plain dicts and TOML.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import InputError

__all__ = [
    "MATCH_COSTS",
    "MATCH_METHODS",
    "PHASING_ALGORITHMS",
    "BEST_ITERATE_CRITERIA",
    "PREPROCESS_MODES",
    "PROFILES",
    "RECIPE_NAMES",
    "SAMPLE_NAMES",
    "SGM_PATHS",
    "VIEW_IMAGES",
    "CloudOptions",
    "MatchOptions",
    "PhasingOptions",
    "PipelineOptions",
    "PrepareOptions",
    "PreprocessOptions",
    "ReconstructOptions",
    "StereoOptions",
]


def _flag(default, flag: str, help: str = "", **argparse_kw):
    """A field that the ``xstereo`` command sets with ``flag`` (:mod:`xstereo_gpu.cli_options`).

    ``help`` is the flag's short help, in the field's units; ``argparse_kw`` (``choices``: a constant of
    this module, ``metavar``, ``type``) go to ``add_argument`` over what the annotation implies. Fields
    that name the same flag take one value each, in their order (``--range DMIN DMAX``).
    """
    return field(default=default, metadata={"cli": flag, "help": help, **argparse_kw})


def _type_ok(value, tp) -> bool:
    """Whether ``value`` (from TOML or Python) fits the field annotation ``tp``."""
    if tp is type(None):
        return value is None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is bool:
        return isinstance(value, (bool, _np_bool()))
    if tp is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, (bool, _np_bool()))
    if tp is str:
        return isinstance(value, str)
    if tp is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(tp)
        if not args:
            return True
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(v, args[0]) for v in value)
        return len(value) == len(args) and all(_type_ok(v, a) for v, a in zip(value, args))
    return True


def _np_bool():
    import numpy as np

    return np.bool_


def _type_text(tp) -> str:
    """What the annotation ``tp`` asks for, in words (for messages)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_text(a) for a in args)
    if tp is tuple or origin is tuple:
        args = typing.get_args(tp)
        if args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} {'numbers' if all(a is float for a in args) else 'values'}"
        return "a list"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _found(value) -> str:
    shown = repr(list(value)) if isinstance(value, tuple) else repr(value)  # TOML lists arrive as tuples
    kind = {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "a list",
        tuple: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)
    return f"{shown} ({kind})"


def _check_types(options, section: str) -> None:
    """Raise :class:`InputError` ``"<section>.<field>"`` when a field's value has the wrong type."""
    hints = typing.get_type_hints(type(options))
    for f in fields(options):
        value = getattr(options, f.name)
        tp = hints.get(f.name)
        if tp is not None and not _type_ok(value, tp):
            raise InputError(f"{section}.{f.name}", _found(value), _type_text(tp))


def _positive(name: str, value, *, integer: bool = False, allow_zero: bool = False):
    ok = value >= 0 if allow_zero else value > 0
    if integer and int(value) != value:
        ok = False
    if not ok:
        raise InputError(
            name,
            repr(value),
            ("a non-negative" if allow_zero else "a positive") + (" integer" if integer else " number"),
        )


@dataclass(frozen=True)
class PrepareOptions:
    """Splitting the frame into the two patterns (the ``prepare`` stage)."""

    #: Side of the square crop around each pattern centre [detector pixels]; ``None`` uses the
    #: ``pattern_size`` stored in the shot file.
    crop: int | None = None
    #: Pixels of a crop lying closer to the *other* pattern's centre than ``overlap_ratio`` times
    #: their distance to their own centre are masked (no data): this removes the high-frequency
    #: overlap of the two patterns (paper: "we crop the overlapped part"). 1.0 = the bisector; the
    #: default 1.6 also drops the band next to it where the other pattern's tail still dominates
    #: (on the simulated cross it doubled the fraction of phasing runs that converge).
    overlap_ratio: float = 1.6

    def __post_init__(self):
        _check_types(self, "prepare")
        if self.crop is not None:
            _positive("prepare.crop", self.crop, integer=True)
        _positive("prepare.overlap_ratio", self.overlap_ratio)


#: Phase-retrieval algorithms.
PHASING_ALGORITHMS = ("dm", "hio", "raar", "er")
#: How a run's best iterate is chosen (``PhasingOptions.select_by``).
BEST_ITERATE_CRITERIA = ("eps", "rfactor")


@dataclass(frozen=True)
class PhasingOptions:
    """Phase retrieval (difference map and friends), per view, ``runs`` independent random starts."""

    #: ``"dm"`` (difference map, Elser 2003), ``"hio"`` (Fienup 1982), ``"raar"`` (relaxed averaged
    #: alternating reflections, Luke 2005) or ``"er"`` (error reduction).
    algorithm: str = _flag("dm", "--algorithm", "phase-retrieval algorithm", choices=PHASING_ALGORITHMS)
    #: Independent runs per view (paper: 45).
    runs: int = _flag(45, "--runs", "independent phase-retrieval runs per view")
    #: Iterations per run (paper: converges after roughly a hundred).
    iterations: int = _flag(200, "--iterations", "iterations per run")
    #: Convergence test: after ``iterations``, the main algorithm goes on by ``flat_window`` iterations at
    #: a time, up to this many in all, while the runs' median R-factor on the measured pixels still drops
    #: by more than ``flat_tolerance`` over the last ``flat_window`` iterations (measured data often need
    #: more than the simulated demos). 0 (or ``iterations`` or less): the paper's fixed schedule, the
    #: default of the pipeline; ``xstereo phase`` (one measured pattern) defaults to 4 x ``iterations``.
    max_iterations: int = _flag(
        0, "--max-iterations", "go on past --iterations, up to this many, while the R-factor drops"
    )
    #: Relative drop of the median R-factor over ``flat_window`` iterations below which it is flat.
    flat_tolerance: float = 0.01
    #: Iterations over which the convergence test compares the R-factor (and extends the schedule).
    flat_window: int = 50
    #: Difference-map beta (Elser's recommended range is 0.7..1; the paper does not state its value).
    beta: float = _flag(0.8, "--beta", "difference-map beta, in (0, 1.5]")
    #: Difference-map gammas; ``None`` gives Elser's optimal choice gamma_S = -1/beta, gamma_M = 1/beta.
    gamma_s: float | None = None
    gamma_m: float | None = None
    #: HIO feedback parameter.
    hio_beta: float = 0.9
    #: RAAR relaxation (Luke 2005 uses 0.75-0.9 on noisy data; 1 is HIO-like).
    raar_beta: float = _flag(0.9, "--raar-beta", "RAAR relaxation, in (0, 1]")
    #: Error-reduction iterations appended to every run to polish the final iterate.
    final_er: int = 20
    #: How each run's best iterate is chosen: ``"eps"`` (lowest ``eps_n = ||x_{n+1} - x_n||``, the
    #: paper's criterion, every iteration) or ``"rfactor"`` (lowest R-factor on the measured pixels,
    #: ``sum | |F x| - sqrt(I) | / sum sqrt(I)``, every ``check_every`` iterations). A run whose support
    #: collapsed stops moving and has the lowest eps without fitting the data (issue 15); the runs are
    #: ranked for the average by their Fourier error on the measured pixels either way, which leaves
    #: such runs out. Measured: the same views on the cross and the pyramid; on the phase cross
    #: ``"rfactor"`` changed the right view slightly (correlation 0.808 against 0.811) and the depth
    #: error rose from 0.93 to 1.18 voxel depths (seed 0), so the paper's criterion stays the default.
    select_by: str = _flag("eps", "--select-by", "best iterate of a run by", choices=BEST_ITERATE_CRITERIA)
    #: Support-collapse guard: when one shrink-wrap update has left a run less than this fraction of
    #: its support's area and its R-factor has risen by more than 25 % until the next update, the run
    #: goes back to the support before and its shrink-wrap threshold is halved. 0 disables the guard.
    collapse_fraction: float = 0.5
    #: The best iterate of a run is looked for from this fraction of the main
    #: iterations on: earlier iterates, before shrink-wrap has tightened the support, can fit the
    #: data trivially with a support that constrains little.
    select_from: float = 0.5
    #: Runs whose best iterate's Fourier error on the measured pixels (the squared-difference R-factor) is
    #: within this relative tolerance of the best run's enter the coherent average (the others are
    #: outliers: twin superpositions, collapsed or unconverged runs; the paper averages the good runs);
    #: ``inf`` averages all runs. Measured on the simulated cross's left view (cpu profile, 32 runs): the
    #: three converged runs at 0.044-0.049 (R-factor 0.12-0.13), all others at 0.077 and above (R-factor
    #: 0.18-0.26; correlation with the truth 0.85 and below).
    average_tolerance: float = 0.25
    #: Initial support: ``"autocorrelation"`` (threshold of the blurred autocorrelation) or ``"box"``
    #: (the centred N/2 box, a loose support valid for any object the sampling can phase).
    initial_support: str = "autocorrelation"
    #: Initial support: threshold of the blurred autocorrelation, as a fraction of its maximum.
    autocorrelation_threshold: float = 0.04
    #: Shrink-wrap (Marchesini 2003) every this many iterations; 0 disables it.
    shrinkwrap_every: int = 20
    #: Gaussian sigma of the shrink-wrap blur, from first to last update [view pixels].
    shrinkwrap_sigma: tuple[float, float] = (3.0, 1.0)
    #: Shrink-wrap threshold as a fraction of the blurred amplitude's maximum.
    shrinkwrap_threshold: float = 0.12
    #: Let shrink-wrap grow the support (True, Marchesini) or only shrink it (False).
    shrinkwrap_grow: bool = True
    #: Upsampling factor of the subpixel DFT registration (Guizar-Sicairos 2008): 1/upsample px.
    register_upsample: int = 20
    #: Progress and host synchronisation at most every this many iterations.
    check_every: int = 10
    #: Seed of the random starting phases (reproducible runs).
    seed: int = _flag(0, "--phasing-seed", "seed of the random starting phases", metavar="SEED")

    def __post_init__(self):
        _check_types(self, "phasing")
        if self.algorithm not in PHASING_ALGORITHMS:
            raise InputError(
                "phasing.algorithm",
                repr(self.algorithm),
                "one of " + ", ".join(map(repr, PHASING_ALGORITHMS)),
            )
        if self.initial_support not in ("autocorrelation", "box"):
            raise InputError(
                "phasing.initial_support", repr(self.initial_support), "'autocorrelation' or 'box'"
            )
        _positive("phasing.runs", self.runs, integer=True)
        _positive("phasing.iterations", self.iterations, integer=True)
        _positive("phasing.max_iterations", self.max_iterations, integer=True, allow_zero=True)
        _positive("phasing.flat_window", self.flat_window, integer=True)
        _positive("phasing.flat_tolerance", self.flat_tolerance, allow_zero=True)
        _positive("phasing.final_er", self.final_er, integer=True, allow_zero=True)
        _positive("phasing.shrinkwrap_every", self.shrinkwrap_every, integer=True, allow_zero=True)
        _positive("phasing.register_upsample", self.register_upsample, integer=True)
        _positive("phasing.check_every", self.check_every, integer=True)
        _positive("phasing.average_tolerance", self.average_tolerance, allow_zero=True)
        if self.select_by not in BEST_ITERATE_CRITERIA:
            expected = "one of " + ", ".join(map(repr, BEST_ITERATE_CRITERIA))
            raise InputError("phasing.select_by", repr(self.select_by), expected)
        if not 0 <= self.collapse_fraction < 1:
            raise InputError(
                "phasing.collapse_fraction", repr(self.collapse_fraction), "a fraction in [0, 1) (0: off)"
            )
        if not 0 < self.raar_beta <= 1:
            raise InputError("phasing.raar_beta", repr(self.raar_beta), "a value in (0, 1]")
        if not 0 <= self.select_from < 1:
            raise InputError("phasing.select_from", repr(self.select_from), "a fraction in [0, 1)")
        if not 0 < self.beta <= 1.5:
            raise InputError("phasing.beta", repr(self.beta), "a value in (0, 1.5]")
        if not 0 < self.shrinkwrap_threshold < 1:
            raise InputError(
                "phasing.shrinkwrap_threshold", repr(self.shrinkwrap_threshold), "a fraction in (0, 1)"
            )
        object.__setattr__(self, "shrinkwrap_sigma", tuple(float(s) for s in self.shrinkwrap_sigma))

    @property
    def gammas(self) -> tuple[float, float]:
        """``(gamma_S, gamma_M)`` actually used by the difference map."""
        gs = -1.0 / self.beta if self.gamma_s is None else self.gamma_s
        gm = 1.0 / self.beta if self.gamma_m is None else self.gamma_m
        return gs, gm


#: Pre-processing modes of the views before matching.
PREPROCESS_MODES = ("binary", "gradient", "none")
#: Disparity methods.
MATCH_METHODS = ("bm", "sgm")
#: Aggregation directions of semi-global matching.
SGM_PATHS = (4, 8)
#: Matching costs: the paper's sum of absolute differences, census (Hamming distance), ZNCC.
MATCH_COSTS = ("sad", "census", "zncc")


@dataclass(frozen=True)
class PreprocessOptions:
    """Pre-processing of the two views before matching (paper, Methods)."""

    #: ``"binary"`` (upsample, low-pass, binarise, drop unmatched small regions), ``"gradient"``
    #: (upsample, low-pass, Sobel derivative along x, the disparity direction, normalised; paper's
    #: extra maps for the phase cross) or ``"none"`` (normalise and upsample only).
    mode: str = _flag(
        "binary",
        "--preprocess",
        "view pre-processing before matching (binary: the cross; gradient: Sobel-x; none)",
        choices=PREPROCESS_MODES,
    )
    #: Bicubic upsampling factor (paper: 4).
    upsample: int = _flag(4, "--upsample", "bicubic upsampling factor before matching")
    #: Gaussian low-pass sigma on the upsampled grid [upsampled pixels] (paper: 1.9).
    sigma: float = 1.9
    #: Binary thresholds on a 0..1 scale, (left, right) (paper: 0.40 and 0.25).
    thresholds: tuple[float, float] = _flag(
        (0.40, 0.25), "--thresholds", "binary thresholds (0..1)", metavar=("LEFT", "RIGHT")
    )
    #: Choose the right view's threshold so that its binary white area equals the left view's
    #: (``thresholds[1]`` is then unused). The paper tuned its two thresholds by hand so that the
    #: binary views agree; equal areas do that automatically and remove the edge shift that a
    #: brightness or blur difference between the views turns into a depth bias.
    equalise_area: bool = True
    #: Regions smaller than this [upsampled pixels] with no counterpart in the other view are
    #: removed (paper: 400).
    min_region: int = 400
    #: Percentile of each view's signal (pixels at or above 10 % of its maximum) mapped to 1.0 when
    #: normalising to the 0..1 scale; the brightest 15 % of the signal saturate, so that noise peaks
    #: do not set the scale (on the simulated cross, 85 recovered 3-5 % more edge points than 99.5).
    normalise_percentile: float = 85.0

    def __post_init__(self):
        _check_types(self, "preprocess")
        if self.mode not in PREPROCESS_MODES:
            raise InputError("preprocess.mode", repr(self.mode), f"one of {list(PREPROCESS_MODES)}")
        _positive("preprocess.upsample", self.upsample, integer=True)
        _positive("preprocess.sigma", self.sigma, allow_zero=True)
        _positive("preprocess.min_region", self.min_region, integer=True, allow_zero=True)
        if len(self.thresholds) != 2 or not all(0 < t < 1 for t in self.thresholds):
            raise InputError("preprocess.thresholds", repr(self.thresholds), "two values in (0, 1)")
        if not 50 < self.normalise_percentile <= 100:
            raise InputError(
                "preprocess.normalise_percentile", repr(self.normalise_percentile), "a value in (50, 100]"
            )
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))


@dataclass(frozen=True)
class MatchOptions:
    """Block matching: SAD plus a weaker proximity term, parabolic subpixel, left and right maps."""

    #: Block side b [matching-grid pixels], odd (paper: 3).
    block: int = _flag(3, "--block", "block side [matching px], odd")
    #: Signed search range [matching-grid pixels] (paper: -65..65 on the x4 grid).
    dmin: int = _flag(-65, "--range", "disparity search range [matching px]", metavar="DMIN")
    dmax: int = _flag(65, "--range", metavar="DMAX")
    #: Weight of the proximity term ``w |d| / max(|dmin|, |dmax|)`` added to the block's mean
    #: absolute difference (intensities on a 0..1 scale); it breaks ties towards small |d|.
    proximity_weight: float = 0.05
    #: Blocks whose mean |d/dx| (0..1 scale) is below this carry no disparity information along the
    #: epipolar lines (uniform regions, edges parallel to x) and are marked invalid.
    texture_threshold: float = 0.05
    #: Left-right consistency tolerance [matching-grid pixels].
    lr_tolerance: float = 1.0
    #: ``"bm"``: the paper's block matching (winner takes all per block); ``"sgm"``: semi-global
    #: matching, the same block cost aggregated along ``sgm_paths`` scan-line directions.
    method: str = _flag(
        "bm", "--method", "disparity method: block matching or semi-global matching", choices=MATCH_METHODS
    )
    #: SGM penalty for a disparity change of one pixel between neighbours (cost units: mean absolute
    #: difference of a block, 0..1 scale).
    sgm_p1: float = 0.02
    #: SGM penalty for a larger disparity change between neighbours (same units).
    sgm_p2: float = 0.2
    #: Number of aggregation directions for SGM: 4 (horizontal and vertical) or 8 (plus diagonals).
    sgm_paths: int = _flag(
        4, "--sgm-paths", "aggregation directions of semi-global matching", choices=SGM_PATHS
    )
    #: Matching cost: ``"sad"`` (paper: block mean of absolute grey-level differences), ``"census"``
    #: (Hamming distance of census strings, averaged over the block) or ``"zncc"`` (``(1 - ZNCC) / 2``
    #: of the blocks); census and ZNCC are invariant to gain and offset between the views (natural
    #: images, :mod:`xstereo_gpu.stereo.costs`). Both are 0..1, so ``sgm_p1``/``sgm_p2`` keep their units.
    cost: str = _flag(
        "sad",
        "--cost",
        "matching cost: sad (paper); census or zncc (robust to exposure)",
        choices=MATCH_COSTS,
    )
    #: Census window ``(rows, columns)`` [matching-grid pixels], odd, at most 64 pixels.
    census_window: tuple[int, int] = (7, 9)
    #: Uniqueness: a disparity is invalid when its confidence ``1 - S_best / S_second`` (second best
    #: outside ``d_best +- 1``) is below this. OpenCV's ``uniquenessRatio`` r is ``r / (100 + r)``. 0: off.
    uniqueness: float = 0.0
    #: Speckle filter: connected regions (4-neighbours whose disparities differ by at most
    #: ``speckle_range``) of fewer than this many pixels are invalidated after the left-right
    #: check. 0: off.
    speckle_size: int = 0
    #: Largest disparity step inside one speckle region [matching-grid pixels].
    speckle_range: float = 2.0
    #: Fill the invalid pixels left after the checks along each row with the smaller (farther) of the
    #: nearest valid disparities to the left and right, then a 3 x 3 median of the filled pixels
    #: (occlusions are background). For dense maps of natural images; off for the X-ray recipes.
    fill_holes: bool = False

    def __post_init__(self):
        _check_types(self, "match")
        if self.method not in MATCH_METHODS:
            raise InputError("match.method", repr(self.method), f"one of {list(MATCH_METHODS)}")
        if self.sgm_paths not in SGM_PATHS:
            raise InputError("match.sgm_paths", repr(self.sgm_paths), "4 or 8")
        _positive("match.sgm_p1", self.sgm_p1, allow_zero=True)
        _positive("match.sgm_p2", self.sgm_p2, allow_zero=True)
        if self.sgm_p2 < self.sgm_p1:
            raise InputError("match.sgm_p2", repr(self.sgm_p2), f"at least sgm_p1 = {self.sgm_p1!r}")
        if self.block < 1 or self.block % 2 == 0:
            raise InputError("match.block", repr(self.block), "an odd positive integer")
        if self.cost not in MATCH_COSTS:
            raise InputError("match.cost", repr(self.cost), f"one of {list(MATCH_COSTS)}")
        win = tuple(self.census_window)
        if len(win) != 2 or any(int(v) != v or v < 1 or v % 2 == 0 for v in win) or win[0] * win[1] > 64:
            raise InputError(
                "match.census_window", repr(self.census_window), "two odd sizes, at most 64 pixels"
            )
        object.__setattr__(self, "census_window", tuple(int(v) for v in win))
        if not 0 <= self.uniqueness < 1:
            raise InputError("match.uniqueness", repr(self.uniqueness), "a value in [0, 1)")
        _positive("match.speckle_size", self.speckle_size, integer=True, allow_zero=True)
        _positive("match.speckle_range", self.speckle_range, allow_zero=True)
        if self.dmin >= self.dmax:
            raise InputError("match.range", f"dmin={self.dmin}, dmax={self.dmax}", "dmin < dmax")
        _positive("match.proximity_weight", self.proximity_weight, allow_zero=True)
        _positive("match.texture_threshold", self.texture_threshold, allow_zero=True)
        _positive("match.lr_tolerance", self.lr_tolerance)


@dataclass(frozen=True)
class CloudOptions:
    """Point cloud cleaning: statistical outlier removal on the k nearest neighbours."""

    #: Neighbours per point (paper: 80). A point is not counted among its own neighbours.
    k: int = _flag(80, "--outlier-k", "neighbours per point of the outlier removal", metavar="K")
    #: A point is an outlier when its mean kNN distance exceeds mean + t * std (paper: 0.1).
    t: float = _flag(0.1, "--outlier-t", "outliers: mean kNN distance above mean + T std", metavar="T")

    def __post_init__(self):
        _check_types(self, "cloud")
        _positive("cloud.k", self.k, integer=True)


#: Images of the complex views that can be matched.
VIEW_IMAGES = ("amplitude", "phase")


@dataclass(frozen=True)
class StereoOptions:
    """The sample-specific steps around matching (paper, Methods): which image is matched, rectification,
    extra gradient maps, a background mask.

    Defaults are the amplitude cross's recipe; :meth:`PipelineOptions.for_sample` sets the others.
    """

    #: Image of the complex views that is matched: ``"amplitude"`` or ``"phase"`` (phase-contrast views).
    image: str = _flag(
        "amplitude", "--image", "image of the complex views that is matched", choices=VIEW_IMAGES
    )
    #: Rectify the views before matching (feature matches, normalised eight-point fundamental matrix,
    #: rectifying homographies). The cross on one CCD needs none (paper); the simulated phase cross does.
    rectify: bool = False
    #: Point pairs for the rectification given by the user, ``((x_left, y_left, x_right, y_right), ...)``
    #: [view pixels of the phased, aligned views] (the paper picked 16 edge points by hand); ``None``:
    #: automatic feature matching.
    rectify_points: tuple | None = _flag(
        None,
        "--points",
        "rectify with these point pairs (text: x_left y_left x_right y_right per row, view pixels)",
        metavar="FILE",
        type=str,
    )
    #: Also match Sobel-x gradient views and merge their consistent points with the intensity maps'
    #: (paper: the phase cross's extra maps).
    gradient_maps: bool = False
    #: Multiply the views by a mask of populated regions before matching and the maps after it
    #: (paper: the nanoparticle pyramid's background filtering).
    background_mask: bool = False

    def __post_init__(self):
        _check_types(self, "stereo")
        if self.image not in VIEW_IMAGES:
            raise InputError("stereo.image", repr(self.image), f"one of {list(VIEW_IMAGES)}")
        if self.rectify_points is not None:
            try:
                pts = tuple(tuple(float(v) for v in row) for row in self.rectify_points)
            except (TypeError, ValueError):
                raise InputError(
                    "stereo.rectify_points",
                    _found(self.rectify_points),
                    "rows of 4 numbers (x_left, y_left, x_right, y_right) in view pixels",
                ) from None
            if (
                len(pts) < 4
                or any(len(row) != 4 for row in pts)
                or not all(math.isfinite(v) for row in pts for v in row)
            ):
                raise InputError(
                    "stereo.rectify_points",
                    f"{len(pts)} rows",
                    "at least 4 finite rows (x_left, y_left, x_right, y_right) in view pixels",
                )
            object.__setattr__(self, "rectify_points", pts)


@dataclass(frozen=True)
class ReconstructOptions:
    """The post-processing of the cleaned cloud (paper, Methods): planes, interpolation, carving, volume.

    Defaults are the amplitude cross's recipe; :meth:`PipelineOptions.for_sample` sets the others.
    """

    #: Planes fitted to the cleaned cloud with RANSAC: 1 (the cross: the membrane cut), 2 (the phase
    #: cross: membrane and lid, each interpolated separately), 0 (none).
    planes: int = 1
    #: RANSAC inlier distance [voxel depths]; seeded with ``seed`` so that runs are reproducible.
    ransac_threshold_voxels: float = 1.0
    seed: int = 0
    #: Natural-neighbour interpolation onto the grid, empty-space carving, volume and surface mesh
    #: (the pyramid: none, as in the paper).
    interpolate: bool = True
    #: Voxels within this distance of the empty space seen in both views are carved [um] (paper: 0.2).
    carve_distance_um: float = 0.2

    def __post_init__(self):
        _check_types(self, "reconstruct")
        if self.planes not in (0, 1, 2):
            raise InputError("reconstruct.planes", repr(self.planes), "0, 1 or 2")
        _positive("reconstruct.ransac_threshold_voxels", self.ransac_threshold_voxels)
        _positive("reconstruct.seed", self.seed, integer=True, allow_zero=True)
        _positive("reconstruct.carve_distance_um", self.carve_distance_um, allow_zero=True)


@dataclass(frozen=True)
class PipelineOptions:
    """All stages. ``profile`` names the preset the values came from (reported in summaries)."""

    profile: str = "paper"
    prepare: PrepareOptions = field(default_factory=PrepareOptions)
    phasing: PhasingOptions = field(default_factory=PhasingOptions)
    preprocess: PreprocessOptions = field(default_factory=PreprocessOptions)
    match: MatchOptions = field(default_factory=MatchOptions)
    stereo: StereoOptions = field(default_factory=StereoOptions)
    cloud: CloudOptions = field(default_factory=CloudOptions)
    reconstruct: ReconstructOptions = field(default_factory=ReconstructOptions)

    @classmethod
    def for_profile(cls, name: str) -> PipelineOptions:
        """The preset ``"paper"`` (45 runs) or ``"cpu"`` (32 runs, 150 iterations)."""
        try:
            return PROFILES[name]()
        except KeyError:
            raise InputError("profile", repr(name), f"one of {sorted(PROFILES)}") from None

    @classmethod
    def for_sample(cls, sample: str, profile: str = "paper") -> PipelineOptions:
        """The paper's recipe for one of its three experiments, on top of a profile.

        ``"cross"``: the profile with semi-global matching (better than block matching there,
        docs/validation.md) and an outlier threshold t = 0.3 (see ``SAMPLE_RECIPES``). ``"phase-cross"``:
        rectification, intensity and extra Sobel-x maps (SGM),
        two planes. ``"pyramid"``: background mask, 23 x 23 blocks over 30 pixels (on the x2
        matching grid), block matching on intensity and Sobel-x views, no interpolation.
        ``"natural"`` (not a sample: camera stereo pairs, ``IMAGE_RECIPES``): grey levels at the
        input's grid, census cost, 8-path SGM, uniqueness and speckle filter.
        """
        base = cls.for_profile(profile)
        try:
            changes = RECIPES[sample]
        except KeyError:
            raise InputError("sample", repr(sample), f"one of {list(RECIPES)}") from None
        return base.replace(**changes)

    def replace(self, **changes) -> PipelineOptions:
        """A copy with whole stages or ``stage__field`` values replaced (``phasing__runs=8``)."""
        stages: dict[str, Any] = {}
        top: dict[str, Any] = {}
        for key, value in changes.items():
            if "__" in key:
                stage, name = key.split("__", 1)
                stages.setdefault(stage, {})[name] = value
            else:
                top[key] = value
        for stage, vals in stages.items():
            if stage not in _STAGES:
                raise InputError("option", repr(stage), f"one of {sorted(_STAGES)}")
            top[stage] = dataclasses.replace(top.get(stage, getattr(self, stage)), **vals)
        return dataclasses.replace(self, **top)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PipelineOptions:
        """Options from a dict as :meth:`to_dict` writes it (or parsed TOML).

        Raises
        ------
        InputError
            Named as in the TOML file (``"[phasing] runs"``): an unknown section or key, a value
            of the wrong type (``runs = "many"``, a float or a bool for an integer, a list for a
            number) or out of range.
        """
        kw: dict[str, Any] = {}
        for key, value in data.items():
            if key == "profile":
                if not isinstance(value, str):
                    raise InputError("profile", _found(value), f"a string, e.g. one of {sorted(PROFILES)}")
                kw[key] = value
            elif key in _STAGES:
                kw[key] = _stage_from_dict(key, value)
            else:
                raise InputError(
                    f"[{key}]",
                    "an unknown section" + _did_you_mean(key, list(_STAGES)),
                    f"one of the sections {['[' + k + ']' for k in _STAGES]} or the key 'profile'",
                )
        return cls(**kw)

    def to_toml(self) -> str:
        """TOML text of every option (``None`` values are omitted, as TOML has no null)."""
        d = self.to_dict()
        lines = [f"profile = {_toml_value(d.pop('profile'))}"]
        for stage, values in d.items():
            lines.append(f"\n[{stage}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_toml(cls, text: str) -> PipelineOptions:
        try:
            return cls.from_dict(tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise InputError(
                "options file", f"invalid TOML ({exc})", "TOML as written by `to_toml`"
            ) from None


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _stage_from_dict(section: str, value) -> Any:
    """One stage's options from its TOML table; errors are named ``[section] key``."""
    if not isinstance(value, dict):
        raise InputError(
            f"[{section}]", _found(value), "a table of options ([section] followed by key = value lines)"
        )
    known = [f.name for f in fields(_STAGES[section])]
    for k in value:
        if k not in known:
            raise InputError(
                f"[{section}] {k}", "an unknown key" + _did_you_mean(k, known), f"one of {known}"
            )
    try:
        return _STAGES[section](**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
    except InputError as exc:
        where = exc.where
        if where.startswith(section + "."):
            where = f"[{section}] {where[len(section) + 1 :]}"
        raise InputError(where, exc.found, exc.expected) from None


_STAGES = {
    "prepare": PrepareOptions,
    "phasing": PhasingOptions,
    "preprocess": PreprocessOptions,
    "match": MatchOptions,
    "stereo": StereoOptions,
    "cloud": CloudOptions,
    "reconstruct": ReconstructOptions,
}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _cpu_profile() -> PipelineOptions:
    return PipelineOptions(profile="cpu", phasing=PhasingOptions(runs=32, iterations=150))


PROFILES = {"paper": PipelineOptions, "cpu": _cpu_profile}

#: Stage options that differ from the defaults (the amplitude cross) for each of the paper's samples.
SAMPLE_RECIPES: dict[str, dict[str, Any]] = {
    # semi-global matching recovered more of the cross's edges than the paper's block matching on every
    # seed of docs/validation.md at the same median error (within 1 nm); block matching stays the
    # pyramid's method (better height)
    # The left-right consistent cloud of the cross has almost no outliers (99.9 % of it lies within
    # 1.5 px of a true edge); the paper's t = 0.1 (mean + 0.1 std) then drops ~20 % of valid points,
    # whole stretches of single edges that are sparser than the kerf's doubled edges: t = 0.3 keeps
    # them and still removes injected strays (tests/test_pipeline_cross.py). A deviation from the paper.
    "cross": {"match__method": "sgm", "cloud__t": 0.3},
    "phase-cross": {
        "preprocess__mode": "none",
        # grey levels of semi-transparent layers carry little x-gradient: a low texture threshold keeps
        # them; SGM fills the uniform regions between edges (measured: docs/validation.md)
        "match__method": "sgm",
        "match__texture_threshold": 0.003,
        "match__proximity_weight": 0.01,
        "cloud__t": 0.3,
        "stereo__rectify": True,
        "stereo__gradient_maps": True,
        "reconstruct__planes": 2,
    },
    "pyramid": {
        "preprocess__mode": "none",
        "preprocess__upsample": 2,
        "match__block": 23,
        "match__dmin": -30,
        "match__dmax": 30,
        "match__texture_threshold": 0.03,
        "stereo__background_mask": True,
        "reconstruct__planes": 0,
        "reconstruct__interpolate": False,
        # faces inclined along x have different grey levels in the two views (different path lengths
        # through the membrane): SAD on intensities fails there; the Sobel-x maps fill those faces
        "stereo__gradient_maps": True,
        # phasing from the pattern (--start pattern): the notch fills a centrosymmetric square, from
        # which difference-map runs stagnate in object + twin superpositions; an asymmetric start (the
        # half-field box, cut by a random half-plane per run) with HIO and a longer schedule breaks
        # the stagnation (docs/validation.md)
        "phasing__algorithm": "hio",
        "phasing__initial_support": "box",
        "phasing__iterations": 400,
    },
}
# Nanoparticles in general 3D arrangements (simulate/particles.py; not in the paper): the pyramid's
# matching on the particles' grey levels (small dark discs on an empty field), smaller blocks (the
# depth changes from particle to particle), no plane fit and no interpolation (no surfaces to fill).
_PARTICLES_RECIPE: dict[str, Any] = {
    "preprocess__mode": "none",
    "preprocess__upsample": 2,
    "match__block": 15,
    "match__dmin": -30,
    "match__dmax": 30,
    "match__texture_threshold": 0.03,
    "stereo__background_mask": True,
    "reconstruct__planes": 0,
    "reconstruct__interpolate": False,
}
SAMPLE_RECIPES.update({name: dict(_PARTICLES_RECIPE) for name in ("clusters", "curve", "rough-surface")})
SAMPLE_NAMES = tuple(SAMPLE_RECIPES)

#: Recipes for images that are not the paper's X-ray views (``--recipe natural``, issue 10).
IMAGE_RECIPES: dict[str, dict[str, Any]] = {
    # natural (camera) stereo pairs: grey levels as they are (no binarisation, no x4 upsampling, no
    # saturation of the bright 15 %), census cost (robust to exposure differences), 8-path SGM, the
    # uniqueness and speckle rules of OpenCV's StereoSGBM; d = 0..64 px (use --range for wider
    # baselines). Measured on the Middlebury motorcycle pair against StereoSGBM: docs/validation.md,
    # benchmarks/natural_stereo.py.
    "natural": {
        "preprocess__mode": "none",
        "preprocess__upsample": 1,
        "preprocess__normalise_percentile": 100.0,
        "match__method": "sgm",
        "match__cost": "census",
        "match__block": 3,
        "match__dmin": 0,
        "match__dmax": 64,
        "match__sgm_paths": 8,
        "match__sgm_p1": 0.05,
        "match__sgm_p2": 0.5,
        "match__texture_threshold": 0.0,
        "match__proximity_weight": 0.0,
        "match__uniqueness": 0.03,
        "match__speckle_size": 100,
    },
}
#: Every recipe ``--recipe`` accepts: the paper's samples, then the image recipes.
RECIPES: dict[str, dict[str, Any]] = {**SAMPLE_RECIPES, **IMAGE_RECIPES}
RECIPE_NAMES = tuple(RECIPES)
