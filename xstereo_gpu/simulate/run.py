"""A simulated serial run: a directory of shot files (hits, blanks, corrupt files) and its manifest.

:func:`simulate_run` writes what a beamtime leaves on disk, small enough to test a batch run with:

``directory/shot-00000.cxi`` ... ``shot-<shots - 1>.cxi``
    One CXI shot file per shot (docs/format.md), of three kinds:

    ``hit``
        A simulated stereo shot (:func:`~xstereo_gpu.simulate.simulate_shot`) of a random sample among
        ``samples``, with its ground truth: a random seed (noise, and the pyramid's sphere placement),
        a random in-plane orientation (``in_plane_rotation_deg`` of the crosses, ``pyramid_rotation_deg``
        of the pyramid), a random lid tilt (amplitude cross), a random photon budget (log-uniform
        factor ``photon_range`` on the sample's ``photons``) and a random position (``sample_offset_px``,
        see below).
    ``blank``
        The beams fired but missed the sample: the geometry of a random sample (same wavelength,
        distance, pixel, angles, pattern centres, beamstop, exposures) and a frame of Poisson counts at
        the dark/background level ``blank_background`` [counts / pixel] only, no ground truth and an
        empty sample name. Thousands of times fewer photons than a hit: a hit veto (minimum photons
        per pattern) rejects it.
    ``corrupt``
        A hit's file damaged after writing, so that it looks like a shot file but fails to read
        (:func:`~xstereo_gpu.io.read_shot` raises :class:`~xstereo_gpu.errors.InputError`), cycling
        through ``CORRUPTIONS``: ``truncated`` (the HDF5 file cut to half its bytes), ``nan-frame``
        (every frame pixel NaN and unmasked), ``missing-dataset`` (``/entry_1/stereo_1/angles``
        deleted).
``directory/manifest.json``
    What each file is (``MANIFEST_FORMAT``, written last, atomically): see :meth:`RunManifest.to_dict`.

The whole directory is staged (:func:`~xstereo_gpu.io.staging.output_directory`): it appears complete
or not at all. Counts are exact: ``round(shots * corrupt_fraction)`` corrupt files (halves rounded up),
``round(shots * hit_rate)`` hits (at most the shots left), the rest blanks, in a random order.

Positions: each hit's sample sits at a random lateral position in its view field, the whole object
moved by ``SimulationOptions.sample_offset_px = (rows, cols)`` whole view pixels from the grid centre
under the same centred illumination, its ground truth moved with it (so scoring needs nothing more).
Each axis is drawn uniformly in ``[-j L, j L]`` and rounded, ``j = position_jitter`` and ``L`` that
shot's :attr:`~xstereo_gpu.simulate.SimulationOptions.max_sample_offset_px` (the room its view field
leaves around the sample at its drawn orientation): a fraction of the free field, 0 = centred. The
manifest records it twice: in ``parameters`` (``sample_offset_px``, which reproduces the shot) and as
``position`` (``offset_px`` (rows, cols) and ``offset_m`` (x, y) [m]).

Reproducible: the same options give a byte-identical ``manifest.json`` and identical frames, masks and
ground truth (the files differ only in ``/entry_1/start_time``, the time of writing). Each hit is
``simulate_shot(SimulationOptions.for_sample(sample, **small, seed=seed, **parameters))`` with
``small = options.sample_options(sample)`` and the manifest's ``seed`` and ``parameters``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..io.cxi import write_shot
from ..io.staging import atomic_file, output_directory
from ..shot import Shot
from .detector import apply_beamstop
from .materials import HC_EV_M
from .options import PAPER_SAMPLES, SimulationOptions
from .simulator import simulate_shot

__all__ = [
    "RunSimulationOptions",
    "RunManifest",
    "SimulatedShot",
    "simulate_run",
    "read_manifest",
    "shot_file_name",
    "SMALL_SHOT_OPTIONS",
    "SHOT_SIZES",
    "sized_shot_options",
    "RUN_KINDS",
    "CORRUPTIONS",
    "MANIFEST_NAME",
    "MANIFEST_FORMAT",
]

#: Kinds of shot in a run.
RUN_KINDS = ("hit", "blank", "corrupt")
#: Ways a corrupt file is damaged, used in turn.
CORRUPTIONS = ("truncated", "nan-frame", "missing-dataset")
#: File name of the manifest in a run directory.
MANIFEST_NAME = "manifest.json"
#: ``format`` of the manifest; ``format_version`` is ``MANIFEST_VERSION``.
MANIFEST_FORMAT = "xstereo-simulated-run"
MANIFEST_VERSION = 2
#: Versions :func:`read_manifest` reads (1: before positions; read with ``position_jitter = 0``).
_READ_VERSIONS = (1, 2)
#: Most shots in a run (file names have five digits).
MAX_SHOTS = 100_000

_PYRAMID_WAVELENGTH_M = HC_EV_M / 750.0
#: Small, fast per-sample settings (256 x 256 frames of a 8 x 8 binned CCD, 128 x 128 crops, no
#: supersampling of the crosses), merged over ``SimulationOptions.for_sample(name)``. The crosses are
#: shrunk to 3 x 3 um (1 um arms) to fit the 5.8 um view field; the phase cross's patterns lie 128 px
#: apart (its default 256 px would put the crops outside the 256 px frame); the pyramid is shrunk to a
#: 1.2 um base and 0.9 um height on 20 nm view pixels (distance chosen for lambda D / (N p) = 20 nm),
#: its two patterns 128 px apart, spheres supersampled 2 x 2.
SMALL_SHOT_OPTIONS: dict[str, dict] = {
    "cross": dict(binning=8, pattern_size=128, cross_size_um=(3.0, 3.0), arm_width_um=1.0, supersample=1),
    "phase-cross": dict(
        binning=8,
        pattern_size=128,
        cross_size_um=(3.0, 3.0),
        arm_width_um=1.0,
        supersample=1,
        pattern_separation_px=128.0,
    ),
    "pyramid": dict(
        binning=8,
        pattern_size=128,
        pattern_separation_px=128.0,
        distance_m=20e-9 * 128 * 8 * 13.5e-6 / _PYRAMID_WAVELENGTH_M,
        pyramid_base_um=1.2,
        pyramid_height_um=0.9,
        supersample=2,
    ),
}

#: Ranges of the random parameters of a hit: lid tilt of the amplitude cross [deg], pyramid rotation
#: [deg] (its square is symmetric under 90 deg), cross rotation [deg].
_CROSS_TILT_DEG = (6.0, 18.0)
_PYRAMID_ROTATION_DEG = (0.0, 90.0)
_CROSS_ROTATION_DEG = (0.0, 360.0)
#: Options a run sets per shot, not to be given in ``shot_options``.
_PER_SHOT = (
    "sample",
    "seed",
    "in_plane_rotation_deg",
    "lid_tilt_deg",
    "pyramid_rotation_deg",
    "sample_offset_px",
)


#: Crop sizes :func:`sized_shot_options` knows: 128 px (``SMALL_SHOT_OPTIONS``, binning 8) times 2, 4, 8
#: (binning 4, 2, 1 of the same CCD).
SHOT_SIZES = (128, 256, 512, 1024)


def sized_shot_options(pattern_size: int) -> dict[str, dict]:
    """``shot_options`` for runs whose crops are ``pattern_size`` px instead of ``SMALL_SHOT_OPTIONS``' 128.

    The same view pixels and samples on a larger field: the binning shrinks by ``pattern_size / 128``
    (8 -> 4 at 256, 2 at 512, 1 at 1024; frames ``2 pattern_size`` px a side) and the phase cross's and
    pyramid's pattern separations grow with it, so ``lambda D / (N p)`` and the samples are unchanged
    and the free field (for positions) grows.

    Parameters
    ----------
    pattern_size : int
        One of ``SHOT_SIZES``.

    Returns
    -------
    dict
        ``{sample: {option: value}}`` for :class:`RunSimulationOptions` ``shot_options`` (empty at 128).

    Raises
    ------
    InputError
        A size not in ``SHOT_SIZES``.
    """
    if isinstance(pattern_size, bool) or pattern_size not in SHOT_SIZES:
        raise InputError("pattern size", repr(pattern_size), f"one of {list(SHOT_SIZES)} px")
    scale = int(pattern_size) // 128
    if scale == 1:
        return {}
    out = {}
    for sample, kw in SMALL_SHOT_OPTIONS.items():
        changes = {"binning": kw["binning"] // scale, "pattern_size": int(pattern_size)}
        if "pattern_separation_px" in kw:
            changes["pattern_separation_px"] = kw["pattern_separation_px"] * scale
        out[sample] = changes
    return out


def shot_file_name(index: int) -> str:
    """File name of shot ``index`` in a run directory: ``shot-00000.cxi``, ``shot-00001.cxi``, ..."""
    return f"shot-{int(index):05d}.cxi"


def _frozen(value):
    """Lists (and nested lists) as tuples, so that options stay hashable and compare equal after JSON."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _fraction(where: str, value) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and 0 <= value <= 1):
        raise InputError(where, repr(value), "a fraction in [0, 1]")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class RunSimulationOptions:
    """Parameters of a simulated run (:func:`simulate_run`); validated on construction.

    Bad values raise :class:`~xstereo_gpu.errors.InputError` naming the option
    (``simulate.run.<name>``), the value found and what was expected.
    """

    #: Number of shot files, in [1, 100000].
    shots: int = 50
    #: Fraction of the shots that are hits (the rest of the non-corrupt ones are blanks), in [0, 1].
    hit_rate: float = 0.3
    #: Fraction of the shots that are corrupt files, in [0, 1]; ``hit_rate + corrupt_fraction <= 1``.
    corrupt_fraction: float = 0.04
    #: Samples the hits are drawn from (uniformly), a non-empty subset of ``PAPER_SAMPLES`` (the
    #: paper's three; runs have no small settings for the particle samples); a single name is
    #: accepted as a one-sample tuple.
    samples: tuple[str, ...] = PAPER_SAMPLES
    #: Seed of the whole run (order of the kinds, each shot's seed and parameters), >= 0.
    seed: int = 0
    #: Per-sample changes ``{sample: {option: value}}`` merged over ``SMALL_SHOT_OPTIONS`` (stored as
    #: ``((sample, ((option, value), ...)), ...)``, sorted). Options set per shot (``sample``,
    #: ``seed``, ``in_plane_rotation_deg``, ``lid_tilt_deg``, ``pyramid_rotation_deg``,
    #: ``sample_offset_px``) are refused here.
    shot_options: Mapping | tuple | None = None
    #: Mean dark/background counts per pixel of a blank frame (Poisson), in (0, 10].
    blank_background: float = 0.02
    #: Range ``(low, high)`` of the log-uniform factor on each hit's photon budget, 0 < low <= high.
    photon_range: tuple[float, float] = (0.5, 2.0)
    #: Spread of the hits' random positions, a fraction of the free field in [0, 1]: each axis of a
    #: hit's ``sample_offset_px`` is uniform in ``[-j L, j L]`` (rounded to whole view pixels), ``L``
    #: the room its view field leaves (``SimulationOptions.max_sample_offset_px``); 0 = centred.
    position_jitter: float = 0.5

    def __post_init__(self):
        _integer("simulate.run.shots", self.shots, 1, MAX_SHOTS)
        object.__setattr__(self, "shots", int(self.shots))
        object.__setattr__(self, "hit_rate", _fraction("simulate.run.hit_rate", self.hit_rate))
        object.__setattr__(
            self, "corrupt_fraction", _fraction("simulate.run.corrupt_fraction", self.corrupt_fraction)
        )
        if self.hit_rate + self.corrupt_fraction > 1 + 1e-12:
            raise InputError(
                "simulate.run.hit_rate",
                f"{self.hit_rate!r} with corrupt_fraction {self.corrupt_fraction!r}",
                "hit_rate + corrupt_fraction <= 1 (the rest are blanks)",
            )
        _integer("simulate.run.seed", self.seed, 0, None)
        object.__setattr__(self, "seed", int(self.seed))

        samples = (self.samples,) if isinstance(self.samples, str) else self.samples
        try:
            samples = tuple(samples)
        except TypeError:
            raise InputError(
                "simulate.run.samples", repr(self.samples), f"names among {list(PAPER_SAMPLES)}"
            ) from None
        bad = [s for s in samples if s not in PAPER_SAMPLES]
        if not samples or bad or len(set(samples)) != len(samples):
            raise InputError(
                "simulate.run.samples",
                repr(self.samples),
                f"one or more distinct names among {list(PAPER_SAMPLES)}",
            )
        object.__setattr__(self, "samples", samples)

        b = self.blank_background
        if not (isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) and 0 < b <= 10):
            raise InputError("simulate.run.blank_background", repr(b), "mean counts per pixel in (0, 10]")
        object.__setattr__(self, "blank_background", float(b))
        try:
            lo, hi = (float(v) for v in self.photon_range)
        except (TypeError, ValueError):
            raise InputError(
                "simulate.run.photon_range", repr(self.photon_range), "two factors (low, high)"
            ) from None
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
            raise InputError(
                "simulate.run.photon_range", repr(self.photon_range), "two factors 0 < low <= high"
            )
        object.__setattr__(self, "photon_range", (lo, hi))
        object.__setattr__(
            self, "position_jitter", _fraction("simulate.run.position_jitter", self.position_jitter)
        )

        object.__setattr__(self, "shot_options", _normalise_shot_options(self.shot_options))
        # Build every sample's options at the extremes of the random parameters, so that a run never
        # fails half-way on an option the simulator refuses.
        for name in self.samples:
            for extreme in (0, 1):
                self.simulation_options(name, seed=0, parameters=_extreme_parameters(name, extreme))

    @property
    def counts(self) -> dict[str, int]:
        """``{"hit": H, "blank": B, "corrupt": C}``: exact numbers of each kind, summing to ``shots``."""
        corrupt = _round_half_up(self.shots * self.corrupt_fraction)
        hits = min(_round_half_up(self.shots * self.hit_rate), self.shots - corrupt)
        return {"hit": hits, "blank": self.shots - hits - corrupt, "corrupt": corrupt}

    def sample_options(self, sample: str) -> dict:
        """Fixed options of ``sample``'s shots: ``SMALL_SHOT_OPTIONS[sample]`` updated by ``shot_options``."""
        kw = dict(SMALL_SHOT_OPTIONS[sample])
        kw.update(dict(dict(self.shot_options).get(sample, ())))
        return kw

    def simulation_options(
        self, sample: str, *, seed: int, parameters: Mapping | None = None
    ) -> SimulationOptions:
        """:class:`SimulationOptions` of one shot of ``sample`` with a seed and its random ``parameters``.

        Raises
        ------
        InputError
            Named ``simulate.run.shot_options[<sample>]: ...`` when the simulator refuses the options.
        """
        kw = self.sample_options(sample)
        kw.update(parameters or {})
        where = f"simulate.run.shot_options[{sample!r}]"
        try:
            return SimulationOptions.for_sample(sample, seed=int(seed), **kw)
        except InputError as exc:
            raise InputError(f"{where}: {exc.where}", exc.found, exc.expected) from None
        except TypeError as exc:  # an option SimulationOptions does not have
            raise InputError(where, str(exc), "options of SimulationOptions") from None

    def to_dict(self) -> dict:
        """Plain JSON types; ``shot_options`` as ``{sample: {option: value}}``."""
        d = dataclasses.asdict(self)
        d["samples"] = list(self.samples)
        d["photon_range"] = list(self.photon_range)
        d["shot_options"] = {s: {k: _jsonable(v) for k, v in kv} for s, kv in self.shot_options}
        return d


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _integer(where: str, value, minimum: int, maximum: int | None) -> None:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    ok = ok or (isinstance(value, float) and value.is_integer())
    expected = f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
    if not ok or int(value) < minimum or (maximum is not None and int(value) > maximum):
        raise InputError(where, repr(value), expected)


def _normalise_shot_options(value) -> tuple:
    where = "simulate.run.shot_options"
    if value is None:
        return ()
    if isinstance(value, Mapping):
        items = list(value.items())
    else:
        try:
            items = [(s, kv) for s, kv in value]
        except (TypeError, ValueError):
            raise InputError(where, repr(value), "a mapping {sample: {option: value}}") from None
    out = []
    for sample, changes in items:
        if sample not in PAPER_SAMPLES:
            raise InputError(
                f"{where}: key {sample!r}", repr(sample), f"a sample among {list(PAPER_SAMPLES)}"
            )
        if isinstance(changes, Mapping):
            pairs = list(changes.items())
        else:
            try:
                pairs = [(k, v) for k, v in changes]
            except (TypeError, ValueError):
                raise InputError(f"{where}[{sample!r}]", repr(changes), "a mapping {option: value}") from None
        for k, _ in pairs:
            if not isinstance(k, str) or k in _PER_SHOT:
                raise InputError(
                    f"{where}[{sample!r}]",
                    repr(k),
                    f"an option of SimulationOptions other than {list(_PER_SHOT)}",
                )
        out.append((sample, tuple(sorted((k, _frozen(v)) for k, v in pairs))))
    return tuple(sorted(out))


def _extreme_parameters(sample: str, extreme: int) -> dict:
    if sample == "pyramid":
        return {"pyramid_rotation_deg": 45.0 * extreme}  # the widest footprint at 45 deg
    params = {"in_plane_rotation_deg": _CROSS_ROTATION_DEG[0] + 45.0 * extreme}
    if sample == "cross":
        params["lid_tilt_deg"] = _CROSS_TILT_DEG[extreme]
    return params


# ----------------------------------------------------------------------------------------------------
# the manifest


@dataclass(frozen=True)
class SimulatedShot:
    """One shot file of a run, as the manifest lists it.

    Attributes
    ----------
    index : int
        Position in the run (0-based); the file is ``shot_file_name(index)``.
    file : str
        File name, relative to the run directory.
    kind : str
        ``"hit"``, ``"blank"`` or ``"corrupt"``.
    sample : str or None
        The sample of a hit (and of the hit a corrupt file was made from); ``None`` for a blank.
    geometry : str
        The sample whose (small) geometry the shot has: the sample itself, or a blank's geometry.
    seed : int
        ``SimulationOptions.seed`` of the shot (its Poisson noise, and the pyramid's spheres).
    position : dict or None
        Lateral position of the sample of a hit or corrupt file (module notes): ``offset_px``
        ``[rows, cols]`` [view pixels] and ``offset_m`` ``[x, y]`` [m] of its centre from the
        view-grid centre; ``None`` for a blank.
    parameters : dict
        The random options of the shot: ``photons``, the orientation (``in_plane_rotation_deg``,
        ``lid_tilt_deg`` or ``pyramid_rotation_deg``) and ``sample_offset_px`` of a hit or corrupt
        file; ``{}`` for a blank.
    detected_photons : float or None
        Sum of the unmasked counts of the frame as written (the longest exposure of an HDR series)
        [photons]; ``None`` for a corrupt file.
    corruption : str or None
        One of ``CORRUPTIONS`` for a corrupt file, else ``None``.
    """

    index: int
    file: str
    kind: str
    sample: str | None
    geometry: str
    seed: int
    position: dict | None = None
    parameters: dict = dataclasses.field(default_factory=dict)
    detected_photons: float | None = None
    corruption: str | None = None


@dataclass(frozen=True)
class RunManifest:
    """What :func:`simulate_run` wrote: the directory, the options and one :class:`SimulatedShot` per file."""

    directory: pathlib.Path
    options: RunSimulationOptions
    shots: tuple[SimulatedShot, ...]

    @property
    def counts(self) -> dict[str, int]:
        """``{"hit": H, "blank": B, "corrupt": C}`` of the files written."""
        return {k: sum(r.kind == k for r in self.shots) for k in RUN_KINDS}

    def paths(self, kind: str | None = None) -> list[pathlib.Path]:
        """Paths of the shot files (of one kind, or all), in run order."""
        return [self.directory / r.file for r in self.shots if kind is None or r.kind == kind]

    def to_dict(self) -> dict:
        """The content of ``manifest.json``.

        Keys: ``format`` (``MANIFEST_FORMAT``), ``format_version``, ``options``
        (:meth:`RunSimulationOptions.to_dict`), ``counts``, ``shots`` (one dict per file with the
        fields of :class:`SimulatedShot`). No timestamps and no directory: the same options give the
        same bytes.
        """
        return {
            "format": MANIFEST_FORMAT,
            "format_version": MANIFEST_VERSION,
            "options": self.options.to_dict(),
            "counts": self.counts,
            "shots": [dataclasses.asdict(r) for r in self.shots],
        }


def _manifest_text(manifest: RunManifest) -> str:
    return json.dumps(manifest.to_dict(), indent=1, allow_nan=False) + "\n"


def read_manifest(directory: str | os.PathLike) -> RunManifest:
    """Read ``directory/manifest.json`` written by :func:`simulate_run`.

    Raises
    ------
    InputError
        No manifest, not JSON, or another format.
    """
    directory = pathlib.Path(directory)
    path = directory / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise InputError(str(path), f"an unreadable file ({exc.strerror})", "a run manifest") from None
    except ValueError as exc:
        raise InputError(str(path), f"invalid JSON ({exc})", "a run manifest") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputError(str(path), f"format {found!r}", f"format {MANIFEST_FORMAT!r}")
    version = data.get("format_version")
    if version not in _READ_VERSIONS:
        raise InputError(str(path), f"format_version {version!r}", f"one of {list(_READ_VERSIONS)}")
    opts = dict(data["options"])
    if version == 1:  # written before positions: every sample centred
        opts.setdefault("position_jitter", 0.0)
    opts["samples"] = tuple(opts["samples"])
    opts["photon_range"] = tuple(opts["photon_range"])
    records = tuple(SimulatedShot(**r) for r in data["shots"])
    return RunManifest(directory=directory, options=RunSimulationOptions(**opts), shots=records)


# ----------------------------------------------------------------------------------------------------
# the shots


def _hit_parameters(sample: str, base: SimulationOptions, rng: np.random.Generator, options) -> dict:
    lo, hi = options.photon_range
    factor = math.exp(rng.uniform(math.log(lo), math.log(hi))) if hi > lo else lo
    params = {"photons": float(f"{base.photons * factor:.4g}")}
    if sample == "pyramid":
        params["pyramid_rotation_deg"] = round(float(rng.uniform(*_PYRAMID_ROTATION_DEG)), 3)
    else:
        params["in_plane_rotation_deg"] = round(float(rng.uniform(*_CROSS_ROTATION_DEG)), 3)
        if sample == "cross":
            params["lid_tilt_deg"] = round(float(rng.uniform(*_CROSS_TILT_DEG)), 3)
    return params


def _position(
    options: RunSimulationOptions, sample: str, seed: int, params: dict, rng: np.random.Generator
) -> list[int] | None:
    """A hit's random ``sample_offset_px`` ``[rows, cols]``; ``None`` (no draw) when the jitter is 0."""
    if options.position_jitter == 0:
        return None
    room = options.simulation_options(sample, seed=seed, parameters=params).max_sample_offset_px
    j = options.position_jitter
    return [int(round(float(rng.uniform(-1.0, 1.0)) * j * r)) for r in room]


def _hit(options: RunSimulationOptions, sample: str, seed: int, rng: np.random.Generator):
    """A hit of ``sample``: the shot, its random ``parameters`` and its ``position`` record (or None)."""
    base = options.simulation_options(sample, seed=seed)
    params = _hit_parameters(sample, base, rng, options)
    offset = _position(options, sample, seed, params, rng)
    if offset is not None:
        params["sample_offset_px"] = offset
    opts = options.simulation_options(sample, seed=seed, parameters=params)
    x, y = opts.sample_offset_m
    position = {"offset_px": list(opts.sample_offset_px), "offset_m": [x, y]}
    return simulate_shot(opts), params, position


def _blank(options: RunSimulationOptions, sample: str, seed: int) -> Shot:
    """A frame with the beams, no sample: Poisson counts at the background level, ``sample``'s geometry."""
    opts = options.simulation_options(sample, seed=seed)
    rng = np.random.default_rng(seed)
    side = opts.frame_side
    centres = np.asarray(opts.centres_px, dtype=np.float64)
    times = None if opts.exposures_s is None else np.asarray(opts.exposures_s, dtype=np.float64)
    levels = (
        [options.blank_background] if times is None else list(options.blank_background * times / times.max())
    )
    frame = np.stack([rng.poisson(level, (side, side)) for level in levels]).astype(np.float32)
    mask = np.zeros(frame.shape, dtype=np.uint32)
    apply_beamstop(frame, mask, centres, opts.beamstop_radius_px)
    for e in range(frame.shape[0]):  # a constant frame is refused by Shot.validate: give it one count
        good = frame[e][mask[e] == 0]
        if good.size and good.min() == good.max():
            r, c = np.argwhere(mask[e] == 0)[0]
            frame[e, r, c] += 1
    if times is None:
        frame, mask = frame[0], mask[0]
    return Shot(
        frame=frame,
        mask=mask,
        wavelength_m=opts.wavelength_m,
        distance_m=opts.distance_m,
        detector_pixel_m=opts.detector_pixel_m,
        angles_deg=tuple(opts.angles_deg),
        centres_px=centres,
        pattern_size=opts.pattern_size,
        sample="",
        truth=None,
        exposure_times_s=times,
        extra={
            "seed": int(seed),
            "binning": int(opts.binning),
            "background_counts_per_pixel": float(levels[-1]),
        },
    )


def _photons(shot: Shot) -> float:
    """Unmasked counts of the frame (of the longest exposure of an HDR series)."""
    frame, mask = np.asarray(shot.frame), np.asarray(shot.mask)
    if frame.ndim == 3:
        e = int(np.argmax(shot.exposure_times_s))
        frame, mask = frame[e], mask[e]
    return float(frame[mask == 0].sum(dtype=np.float64))


def _corrupt(path: pathlib.Path, how: str) -> None:
    """Damage a written shot file in place so that :func:`~xstereo_gpu.io.read_shot` refuses it."""
    import h5py  # imported where used, as in io/cxi.py: `import xstereo_gpu` stays light

    if how == "truncated":
        os.truncate(path, path.stat().st_size // 2)
        return
    with h5py.File(path, "r+") as f:
        if how == "nan-frame":
            det = f["entry_1/instrument_1/detector_1"]
            det["data"][...] = np.nan
            det["mask"][...] = 0
        elif how == "missing-dataset":
            del f["entry_1/stereo_1/angles"]
        else:  # pragma: no cover - CORRUPTIONS is closed
            raise ValueError(how)


def _plan(options: RunSimulationOptions) -> tuple[list[str], list[int]]:
    """Kind and seed of every shot: the kinds in a random order, one seed each (from ``options.seed``)."""
    rng = np.random.default_rng(options.seed)
    counts = options.counts
    kinds = np.array([k for k in RUN_KINDS for _ in range(counts[k])])
    kinds = kinds[rng.permutation(options.shots)].tolist()
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=options.shots)]
    return kinds, seeds


def simulate_run(
    directory: str | os.PathLike,
    options: RunSimulationOptions | None = None,
    *,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> RunManifest:
    """Write a simulated run: ``options.shots`` shot files and ``manifest.json`` in ``directory``.

    Parameters
    ----------
    directory : str or path-like
        Run directory to create (missing parents are created). Staged: it appears complete or not
        at all (:func:`~xstereo_gpu.io.staging.output_directory`).
    options : RunSimulationOptions, optional
        Default ``RunSimulationOptions()``: 50 shots, 30 % hits, 4 % corrupt, all three samples.
    overwrite : bool
        Replace an existing non-empty ``directory`` (the CLI's ``--overwrite``).
    progress : callable, optional
        Called as ``progress(message)`` once per shot.

    Returns
    -------
    RunManifest
        The records of ``manifest.json``, with ``directory`` the final directory.

    Raises
    ------
    InputError
        Bad options, or an output directory that cannot be used (a file, non-empty without
        ``overwrite``, not writable).

    Notes
    -----
    Files: ``shot-00000.cxi`` ... (:func:`shot_file_name`), each a CXI shot file of docs/format.md
    with 256 x 256 frames by default (HDR pairs ``(2, 256, 256)`` for the amplitude cross, whose
    defaults are an HDR series); see the module notes for the three kinds.
    """
    opts = RunSimulationOptions() if options is None else options
    if not isinstance(opts, RunSimulationOptions):
        raise InputError("simulate_run: options", type(opts).__name__, "a RunSimulationOptions")
    say = progress or (lambda message: None)
    final = pathlib.Path(directory)
    kinds, seeds = _plan(opts)
    records = []
    n_corrupt = 0
    with output_directory(final, overwrite=overwrite) as tmp:
        for i, (kind, seed) in enumerate(zip(kinds, seeds)):
            rng = np.random.default_rng(seed)
            sample = opts.samples[int(rng.integers(len(opts.samples)))]
            name = shot_file_name(i)
            path = tmp / name
            if kind == "blank":
                shot = _blank(opts, sample, seed)
                write_shot(path, shot, replace=False)
                rec = SimulatedShot(i, name, kind, None, sample, seed, detected_photons=_photons(shot))
            else:
                shot, params, position = _hit(opts, sample, seed, rng)
                write_shot(path, shot, replace=False)
                common = dict(position=position, parameters=params)
                if kind == "hit":
                    common["detected_photons"] = _photons(shot)
                else:
                    common["corruption"] = CORRUPTIONS[n_corrupt % len(CORRUPTIONS)]
                    n_corrupt += 1
                    _corrupt(path, common["corruption"])
                rec = SimulatedShot(i, name, kind, sample, sample, seed, **common)
            records.append(rec)
            detail = f" ({rec.corruption})" if rec.corruption else ""
            say(f"shot {i + 1}/{opts.shots}: {kind}{detail}, {rec.sample or 'no sample'}, seed {seed}")
        manifest = RunManifest(directory=final, options=opts, shots=tuple(records))
        with atomic_file(tmp / MANIFEST_NAME, replace=False) as t:
            t.write_text(_manifest_text(manifest))
    say(f"run written to {final}: {manifest.counts}")
    return manifest
