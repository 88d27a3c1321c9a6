"""European XFEL runs read with EXtra-data: the frames of one detector source, one shot per frame.

A EuXFEL run directory (``raw/r0042`` or ``proc/r0042``) holds HDF5 files in the European XFEL format
(``RAW-R0042-DA01-S00000.h5``, ``CORR-R0042-AGIPD03-S00001.h5``, ...): the data of many *sources*
(Karabo devices and their output channels, ``SA1_XTD9_HIREX/CAM/BEAMVIEW:daqOutput``,
``SPB_DET_AGIPD1M-1/DET/0CH0:xtdf``), each with *keys* (``data.image.pixels``, ``image.data``),
indexed by train ID. One source and key give the detector frames of a stereo run:

* **Shots.** A shot is one frame of the source: one per train for a camera that records one image
  per train, one per *pulse* when the source records several frames in a train (the ``image.data``
  of AGIPD, LPD or DSSC modules, pulse-resolved). Trains in which the source recorded nothing (its
  ``INDEX`` count is 0) are not shots. Shot ``k`` is the ``k``-th frame of the run in train order,
  so ``start``/``stop``/``step`` select over that list.
* **Labels.** ``<run dir>:train <trainId>`` (one frame per train), ``<run dir>:train <trainId> pulse
  <p>`` when the source has frames per pulse, ``p`` being the frame's position in its train (what
  EXtra-data calls ``by_index`` in a pulse selection, counted from 0).
* **Frames.** Each frame entry must be a 2D image ``(H, W)``, or ``(1, H, W)`` (the raw data of LPD,
  DSSC, single-cell JUNGFRAU); it is read as float32. When the source has a ``<group>.mask`` key of the
  frame's shape beside ``<group>.data`` (corrected AGIPD/LPD/DSSC data), its non-zero pixels are
  marked invalid (CXI mask bit 0x1). Raw AGIPD data (data and gain on one axis, ``(2, 512, 128)``)
  and JUNGFRAU memory cells (``(16, 512, 1024)``) are refused with a message.
* **Multi-module detectors** (AGIPD 1M, LPD 1M, DSSC, JUNGFRAU with several modules: one source
  per module) are read one module at a time: give one module's source, whose frames are 2D images.
  Assembling modules into one detector image needs the detector geometry (EXtra-geom) and is not
  done here: a detector name or a pattern matching several modules is refused with that message.
* **Geometry.** A run records no stereo geometry: the wavelength, the distance, the detector pixel,
  the two beam angles, the two pattern centres and the crop size come from keywords
  (:data:`GEOMETRY_FIELDS`), checked once when the run is opened.
* **Reading.** :func:`scan_run` opens the run with ``extra_data.RunDirectory`` once, reading only
  the index; :func:`read_xfel_shot` then opens the one sequence file holding the shot's train
  (``extra_data.H5File``) and reads that one frame. Nothing is kept open between shots.

EXtra-data is optional (the ``xfel`` extra, ``pip install 'xstereo-gpu[xfel]'``) and imported in the
functions that need it. Like every EXtra-data user, opening a run may write EXtra-data's train-map
cache (``karabo_data_map.json``) into a writable run directory; the data files are never modified.
"""

from __future__ import annotations

import bisect
import fnmatch
import math
import os
import pathlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError, check
from ..geometry import check_plausible
from ..shot import Shot
from .cxi import MASK_INVALID

__all__ = [
    "XFELRun",
    "GEOMETRY_FIELDS",
    "is_run_directory",
    "scan_run",
    "xfel_geometry",
    "read_xfel_shot",
    "INSTALL_HINT",
]

INSTALL_HINT = "pip install 'xstereo-gpu[xfel]'"

#: Geometry keywords an EuXFEL run needs (it records none): name -> (command-line flag, meaning).
GEOMETRY_FIELDS = {
    "wavelength_m": ("--wavelength", "the wavelength [m]"),
    "distance_m": ("--distance", "the sample-detector distance [m]"),
    "detector_pixel_m": ("--detector-pixel", "the detector pixel [m]"),
    "angles_deg": ("--angles", "(t1, t2), the beam angle magnitudes [deg]"),
    "centres_px": ("--centres", "((r1, c1), (r2, c2)), the left and right pattern centres on the frame [px]"),
    "pattern_size": ("--pattern-size", "the crop side N of each pattern [px]"),
}
#: Keywords accepted and ignored: EXtra-data reads the run's own files (``open_source`` passes the
#: command's input-safety flag to every kind of source).
_IGNORED = frozenset({"allow_external_data"})

#: One module of a multi-module detector: ``<detector>/(DET|CORR)/<module>CH<channel>:<output>``.
_MODULE_RE = re.compile(r"^(?P<det>.+/(?:DET|CORR))/(?P<mod>\d+)CH(?P<ch>\d+)(?P<out>:.*)$")
_GLOB_CHARS = frozenset("*?[")
#: Smallest side of an entry listed as an image among a run's sources [px].
_MIN_SIDE = 8
#: Keys of image shape that are not intensities (corrected detectors' per-pixel mask and gain stage).
_NOT_FRAMES = frozenset({"mask", "gain"})
_RUN_EXPECTED = "a EuXFEL run directory: RAW-/CORR-R<run>-<aggregator>-S<sequence>.h5 files (extra_data)"
_READ_ERRORS: tuple = (OSError, KeyError, IndexError, ValueError, RuntimeError)


def _extra_data():
    """The ``extra_data`` module, or an InputError saying how to install it."""
    try:
        import extra_data
    except ImportError:
        raise InputError(
            "extra_data",
            "not installed (EXtra-data reads European XFEL runs)",
            f"EXtra-data installed: {INSTALL_HINT}",
        ) from None
    return extra_data


def _read_errors() -> tuple:
    """Exceptions a damaged or incomplete run raises while read (EXtra-data's own included)."""
    from extra_data.exceptions import FileStructureError

    return _READ_ERRORS + (FileStructureError,)


@dataclass(frozen=True)
class XFELRun:
    """The shots of one detector source of a EuXFEL run: plain, picklable data (no open file).

    Made by :func:`scan_run`; shot ``k`` is the ``k``-th frame of the source in train order.

    Attributes
    ----------
    source : str
        EXtra-data source name (``"SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"``).
    key : str
        Its key holding the frames (``"image.data"``, ``"data.image.pixels"``).
    files : tuple of str
        Names (in the run directory; absolute paths for files elsewhere) of the files holding the
        source.
    train_ids : (T,) tuple of int
        The trains in which the source recorded frames, ascending.
    counts : (T,) tuple of int
        Frames of each of those trains (>= 1).
    file_of : (T,) tuple of int
        Index in ``files`` of the file holding each train.
    per_pulse : bool
        Whether the source records several frames in a train (then a shot is a (train, pulse) frame,
        else a train).
    frame_shape : (2,) tuple of int
        ``(H, W)`` of a frame [px].
    entry_shape : tuple of int
        Shape of one entry as stored (``frame_shape``, or ``(1, H, W)``).
    mask_key : str or None
        Key of the source's per-frame mask read with the frame (non-zero = bad pixel), or None.
    pulse_id_key : str or None
        Key of the pulse IDs of the frames (recorded in ``Shot.extra["pulse_id"]``), or None.
    """

    source: str
    key: str
    files: tuple[str, ...]
    train_ids: tuple[int, ...]
    counts: tuple[int, ...]
    file_of: tuple[int, ...]
    per_pulse: bool
    frame_shape: tuple[int, int]
    entry_shape: tuple[int, ...]
    mask_key: str | None = None
    pulse_id_key: str | None = None
    _starts: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self):
        starts = np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])
        object.__setattr__(self, "_starts", tuple(int(s) for s in starts))

    @property
    def n_shots(self) -> int:
        """Frames of the source in the run (the number of shots)."""
        return self._starts[-1]

    def locate(self, index: int) -> tuple[int, int]:
        """``(t, pulse)`` of shot ``index``: its train's position in ``train_ids`` and its frame there."""
        i = int(index)
        if not 0 <= i < self.n_shots:
            raise IndexError(f"shot {i} of a run of {self.n_shots} frames")
        t = bisect.bisect_right(self._starts, i) - 1
        return t, i - self._starts[t]

    def shot_name(self, index: int) -> str:
        """``"train <trainId>"``, or ``"train <trainId> pulse <p>"`` for a source with frames per pulse."""
        t, p = self.locate(index)
        return f"train {self.train_ids[t]} pulse {p}" if self.per_pulse else f"train {self.train_ids[t]}"

    def one_shot(self, index: int) -> tuple[XFELRun, int]:
        """A run holding only the train of shot ``index`` (its one file), and the shot's index in it.

        Small enough to travel with a task; the shot keeps its label (same train, same pulse).
        """
        t, p = self.locate(index)
        run = XFELRun(
            source=self.source,
            key=self.key,
            files=(self.files[self.file_of[t]],),
            train_ids=(self.train_ids[t],),
            counts=(self.counts[t],),
            file_of=(0,),
            per_pulse=self.per_pulse,
            frame_shape=self.frame_shape,
            entry_shape=self.entry_shape,
            mask_key=self.mask_key,
            pulse_id_key=self.pulse_id_key,
        )
        return run, p

    def describe(self) -> dict:
        """Plain-data summary for the run store's metadata (no per-train table)."""
        return {
            "source": self.source,
            "key": self.key,
            "trains": len(self.train_ids),
            "frames": self.n_shots,
            "per_pulse": self.per_pulse,
            "frame_shape": list(self.frame_shape),
            "mask_key": self.mask_key,
        }


def is_run_directory(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory holding ``.h5`` files (read as a EuXFEL run)."""
    p = pathlib.Path(path)
    try:
        return p.is_dir() and any(c.suffix == ".h5" and c.is_file() for c in p.iterdir())
    except OSError:
        return False


def _open_run(path: pathlib.Path):
    ed = _extra_data()
    src = str(path)
    check(path.exists(), src, "no such directory", _RUN_EXPECTED)
    check(path.is_dir(), src, "not a directory", _RUN_EXPECTED)
    check(
        is_run_directory(path),
        src,
        "a directory holding no .h5 files",
        _RUN_EXPECTED + " (shot files: give them, or a glob pattern such as DIR/*.cxi)",
    )
    try:
        return ed.RunDirectory(src)
    except Exception as exc:  # noqa: BLE001 - EXtra-data raises a bare Exception when no file is usable
        raise InputError(
            src, f"not a readable EuXFEL run ({type(exc).__name__}: {exc})", _RUN_EXPECTED
        ) from None


def _frame_shape(entry_shape: tuple[int, ...]) -> tuple[int, int] | None:
    """``(H, W)`` of an entry that is one 2D frame (``(H, W)`` or ``(1, H, W)``), else None."""
    if len(entry_shape) == 2:
        return int(entry_shape[0]), int(entry_shape[1])
    if len(entry_shape) == 3 and entry_shape[0] == 1:
        return int(entry_shape[1]), int(entry_shape[2])
    return None


def _image_keys(run, source: str) -> list[tuple[str, tuple, str]]:
    """``(key, entry shape, dtype)`` of the keys of ``source`` whose entries are images."""
    out = []
    for key in sorted(run[source].keys()):
        if key.rpartition(".")[2] in _NOT_FRAMES:
            continue
        try:
            kd = run[source, key]
            shape, dtype = tuple(kd.entry_shape), str(kd.dtype)
        except _read_errors():
            continue
        if len(shape) >= 2 and min(shape[-2:]) >= _MIN_SIDE:
            out.append((key, shape, dtype))
    return out


def _describe_key(key: str, shape: tuple, dtype: str) -> str:
    fs = _frame_shape(shape)
    if fs is not None:
        return f"key {key!r}: {fs[0]} x {fs[1]} {dtype} frames"
    return f"key {key!r}: entries {shape} {dtype} (not one 2D frame: not readable here)"


def _candidates(run) -> str:
    """The run's detector-like sources with their image keys, one module line per detector."""
    lines = []
    modules: dict[tuple[str, str, str], list[tuple[int, str]]] = {}
    plain = []
    for s in sorted(run.instrument_sources):
        m = _MODULE_RE.match(s)
        if m:
            modules.setdefault((m["det"], m["ch"], m["out"]), []).append((int(m["mod"]), s))
        else:
            plain.append(s)
    for (det, ch, out), mods in sorted(modules.items()):
        mods.sort()
        if len(mods) == 1:
            plain.append(mods[0][1])
            continue
        keys = _image_keys(run, mods[0][1])
        if keys:
            nums = ", ".join(str(n) for n, _ in mods)
            what = "; ".join(_describe_key(*k) for k in keys)
            lines.append(
                f"{det}/<M>CH{ch}{out} for module M in {nums} ({len(mods)} modules: give one module's "
                f"source, e.g. {mods[0][1]!r}; {what})"
            )
    for s in sorted(plain):
        keys = _image_keys(run, s)
        if keys:
            lines.append(f"{s!r} (" + "; ".join(_describe_key(*k) for k in keys) + ")")
    if not lines:
        return "none: no instrument source of this run records 2D images"
    return " | ".join(lines)


def _choose_source(run, where: str, source: str | None, key: str | None) -> None:
    """Refuse a missing or unknown source or key, listing what the run offers."""
    pick = "source= and key= (--source NAME --key KEY) of a detector source of the run, one of: "
    if source is None:
        raise InputError(where, "no source given", pick + _candidates(run))
    inst = run.instrument_sources
    if source not in inst:
        if _GLOB_CHARS & set(source):
            matched = sorted(s for s in inst if fnmatch.fnmatchcase(s, source))
        else:
            prefix = source.rstrip("/") + "/"
            matched = sorted(s for s in inst if s.startswith(prefix))
        mods = [s for s in matched if _MODULE_RE.match(s)]
        if len(mods) > 1:
            raise InputError(
                f"source={source!r}",
                f"{len(mods)} detector modules ({mods[0]} ... {mods[-1]})",
                "one module's source, whose frames are 2D images (e.g. "
                f"{mods[0]!r}): assembling several modules into one image needs the detector geometry "
                "(EXtra-geom), which this reader does not do (assemble them into CXI shot files first)",
            )
        found = (
            f"source {source!r}: a control (slow-data) source, not detector frames"
            if source in run.control_sources
            else f"source {source!r}: not an instrument source of this run"
        )
        raise InputError(where, found, pick + _candidates(run))
    if key is None or key not in run[source].keys():
        keys = _image_keys(run, source)
        listed = "; ".join(_describe_key(*k) for k in keys) if keys else "none: it records no 2D images"
        raise InputError(
            f"{where}: {source}",
            "no key given" if key is None else f"no key {key!r}",
            f"key= (--key KEY) naming its frames, one of: {listed}",
        )


def _sibling(run, source: str, key: str, name: str, shape: tuple | None) -> str | None:
    """``<group>.<name>`` beside ``<group>.<leaf>`` in ``source`` (of entry shape ``shape`` if given)."""
    group, _, _ = key.rpartition(".")
    other = f"{group}.{name}" if group else name
    if other == key or other not in run[source].keys():
        return None
    try:
        kd = run[source, other]
        if shape is not None and tuple(kd.entry_shape) != tuple(shape):
            return None
    except _read_errors():
        return None
    return other


def scan_run(path: str | os.PathLike, *, source: str | None, key: str | None) -> XFELRun:
    """Open a EuXFEL run directory and list the frames of one detector source and key.

    Only the run's index is read (EXtra-data's ``RunDirectory`` and the source's ``INDEX`` counts),
    never the frames.

    Parameters
    ----------
    path : str or path-like
        The run directory (``.../raw/r0042``, ``.../proc/r0042``).
    source : str
        EXtra-data source name of the detector: a camera output
        (``"SA1_XTD9_HIREX/CAM/BEAMVIEW:daqOutput"``) or one detector module
        (``"SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"``).
    key : str
        The source's key holding the frames (``"data.image.pixels"``, ``"image.data"``).

    Returns
    -------
    XFELRun
        The source's shot table (trains, frames per train, files).

    Raises
    ------
    InputError
        EXtra-data not installed; not a directory, no ``.h5`` files, not readable as a run; no
        ``source`` / ``key``, or ones the run does not have (the message lists the run's detector-like
        sources and their image keys); a detector name or pattern matching several modules; entries
        that are not one 2D frame; a source without any frame.
    """
    p = pathlib.Path(path)
    with _open_run(p) as run:  # its files are closed when the index is read
        return _scan(run, str(p), source, key)


def _file_name(filename: str, run_dir: str) -> str:
    """A file of the run by its name in the run directory, or its absolute path when elsewhere (an
    EXtra-data overview file in the proposal's scratch space)."""
    full = os.path.abspath(filename)
    if os.path.dirname(full) == os.path.abspath(run_dir):
        return os.path.basename(full)
    return full


def _scan(run, where: str, source: str | None, key: str | None) -> XFELRun:
    _choose_source(run, where, source, key)
    try:
        kd = run[source, key]
        entry = tuple(int(v) for v in kd.entry_shape)
        dtype = np.dtype(kd.dtype)
        tids = np.asarray(kd.train_ids, dtype=np.uint64)
        counts = np.asarray(kd.data_counts(labelled=False), dtype=np.uint64)
        files = list(kd.files)
    except _read_errors() as exc:
        raise InputError(
            f"{where}: {source} {key}", f"an unreadable index ({type(exc).__name__}: {exc})", _RUN_EXPECTED
        ) from None
    fs = _frame_shape(entry)
    what = f"{where}: {source} {key}"
    if fs is None:
        hint = ""
        if len(entry) == 3 and entry[0] == 2:
            hint = " (raw AGIPD data holds data and gain on the first axis: read the corrected run, proc/)"
        elif len(entry) == 3:
            hint = " (several memory cells or images per entry, e.g. JUNGFRAU burst mode, are not supported)"
        raise InputError(
            what, f"entries of shape {entry}", "one 2D frame (H, W) or (1, H, W) per entry" + hint
        )
    check(
        dtype.kind in "iuf",
        what,
        f"dtype {dtype}",
        "detector intensities: integer or floating-point frames (a bool array is a mask)",
    )
    keep = counts > 0
    check(
        bool(keep.any()),
        what,
        f"no frame in any of the run's {len(tids)} trains",
        "a source that recorded frames",
    )
    tids, counts = tids[keep], counts[keep]
    order = np.argsort(tids, kind="stable")
    tids, counts = tids[order], counts[order]
    # the file of each train: the first file holding it, as EXtra-data looks trains up
    names = [_file_name(fa.filename, where) for fa in files]
    holder: dict[int, int] = {}
    for j, fa in enumerate(files):
        for t in np.asarray(fa.train_ids).tolist():
            holder.setdefault(int(t), j)
    used = sorted({holder[int(t)] for t in tids.tolist()}, key=lambda j: names[j])
    renum = {j: k for k, j in enumerate(used)}
    return XFELRun(
        source=source,
        key=key,
        files=tuple(names[j] for j in used),
        train_ids=tuple(int(t) for t in tids.tolist()),
        counts=tuple(int(c) for c in counts.tolist()),
        file_of=tuple(renum[holder[int(t)]] for t in tids.tolist()),
        per_pulse=bool((counts > 1).any()),
        frame_shape=fs,
        entry_shape=entry,
        mask_key=_sibling(run, source, key, "mask", entry) if key.endswith(".data") else None,
        pulse_id_key=_sibling(run, source, key, "pulseId", None),
    )


def _flag(name: str) -> str:
    return f"{GEOMETRY_FIELDS[name][0]} ({name}=)"


def _number(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    check(
        math.isfinite(v) and v > 0, _flag(name), repr(value), GEOMETRY_FIELDS[name][1] + ": a positive number"
    )
    return v


def xfel_geometry(where: str, overrides: dict, frame_shape: tuple[int, int]) -> dict:
    """The stereo geometry of a EuXFEL run's shots, from keywords (a run records none).

    Parameters
    ----------
    where : str
        The run directory (for messages).
    overrides : dict
        ``wavelength_m``, ``distance_m``, ``detector_pixel_m`` [m], ``angles_deg`` (2,) [deg],
        ``centres_px`` (2, 2) [px] and ``pattern_size`` [px], all required
        (:data:`GEOMETRY_FIELDS`); ``allow_external_data`` is accepted and has no effect.
    frame_shape : (2,) tuple of int
        ``(H, W)`` of the frames [px] (the centres must lie inside).

    Returns
    -------
    dict
        The six fields as plain Python values (floats, a tuple of 2 floats, a 2-tuple of 2-tuples, an
        int), ready to build each :class:`~xstereo_gpu.shot.Shot`.

    Raises
    ------
    InputError
        An unknown keyword, a missing field (all missing ones named, with their flags), a value that
        is not a positive number, angles that are not two numbers, centres that are not (2, 2) or lie
        outside the frame, a crop side that is not an integer >= 2; an impossible wavelength,
        distance or pixel (:func:`~xstereo_gpu.geometry.check_plausible`, which warns about
        implausible ones).
    """
    unknown = sorted(set(overrides) - set(GEOMETRY_FIELDS) - _IGNORED)
    check(
        not unknown,
        f"{where}: {', '.join(unknown)}",
        "keywords a EuXFEL source does not take",
        "the geometry keywords " + ", ".join(GEOMETRY_FIELDS),
    )
    missing = [n for n in GEOMETRY_FIELDS if overrides.get(n) is None]
    if missing:
        raise InputError(
            f"{where}: geometry",
            f"{', '.join(missing)} not given (a EuXFEL run records no stereo geometry)",
            "; ".join(f"{n}=: {GEOMETRY_FIELDS[n][1]} ({GEOMETRY_FIELDS[n][0]})" for n in missing),
        )
    geo: dict = {n: _number(n, overrides[n]) for n in ("wavelength_m", "distance_m", "detector_pixel_m")}
    try:
        angles = np.asarray(overrides["angles_deg"], dtype=np.float64)
    except (TypeError, ValueError):
        angles = np.full(0, np.nan)
    check(
        angles.shape == (2,) and bool(np.isfinite(angles).all()),
        _flag("angles_deg"),
        repr(overrides["angles_deg"]),
        GEOMETRY_FIELDS["angles_deg"][1],
    )
    geo["angles_deg"] = (float(angles[0]), float(angles[1]))
    try:
        c = np.asarray(overrides["centres_px"], dtype=np.float64)
    except (TypeError, ValueError):
        c = np.full(0, np.nan)
    if c.shape == (4,):  # r1, c1, r2, c2 as the command line gives them
        c = c.reshape(2, 2)
    check(
        c.shape == (2, 2) and bool(np.isfinite(c).all()),
        _flag("centres_px"),
        repr(overrides["centres_px"]),
        GEOMETRY_FIELDS["centres_px"][1],
    )
    h, w = frame_shape
    for k, name in enumerate(("left", "right")):
        check(
            0 <= c[k, 0] < h and 0 <= c[k, 1] < w,
            f"{_flag('centres_px')}: {name} centre",
            f"({c[k, 0]:g}, {c[k, 1]:g})",
            f"inside the {h} x {w} frames of the run",
        )
    geo["centres_px"] = tuple((float(r), float(col)) for r, col in c)
    n = overrides["pattern_size"]
    ok = isinstance(n, (int, np.integer)) or (isinstance(n, float) and n.is_integer())
    check(
        ok and int(n) >= 2,
        _flag("pattern_size"),
        repr(n),
        GEOMETRY_FIELDS["pattern_size"][1] + ": an integer >= 2",
    )
    geo["pattern_size"] = int(n)
    check_plausible(
        where={
            name: _flag(name) for name in ("wavelength_m", "distance_m", "detector_pixel_m", "angles_deg")
        },
        wavelength_m=geo["wavelength_m"],
        distance_m=geo["distance_m"],
        detector_pixel_m=geo["detector_pixel_m"],
        angles_deg=geo["angles_deg"],
    )
    return geo


def _row(fa, run: XFELRun, kd, tid: int, pulse: int, where: str) -> int:
    """Row of frame ``pulse`` of train ``tid`` in the file's dataset of ``kd`` (from the file's INDEX)."""
    hits = np.flatnonzero(np.asarray(fa.train_ids) == tid)
    check(hits.size > 0, where, f"no train {tid} in the file", "the train the run's index lists")
    firsts, counts = fa.get_index(run.source, kd.index_group)
    ix = int(hits[0])
    n = int(counts[ix])
    check(
        pulse < n,
        where,
        f"{n} frames in train {tid} (missing data)",
        f"frame {pulse} of train {tid}, as the run's index listed it when the run was opened",
    )
    return int(firsts[ix]) + int(pulse)


def _dataset_row(fa, path: str, row: int, where: str) -> np.ndarray:
    ds = fa.file[path]
    check(
        0 <= row < ds.shape[0],
        where,
        f"row {row} of a dataset of {ds.shape[0]} entries (the index points past the data: missing data)",
        "the frame the run's INDEX lists",
    )
    return np.asarray(ds[row])


def read_xfel_shot(
    path: str | os.PathLike, run: XFELRun, index: int, geometry: dict, *, label: str | None = None
) -> Shot:
    """Read shot ``index`` of a EuXFEL run: one frame of one train, with the given geometry.

    Parameters
    ----------
    path : str or path-like
        The run directory.
    run : XFELRun
        The source's shot table (:func:`scan_run`).
    index : int
        The shot, ``0 <= index < run.n_shots``.
    geometry : dict
        :func:`xfel_geometry`'s result.
    label : str, optional
        The shot's label, used as ``Shot.source`` and in messages (default
        ``"<path>:<run.shot_name(index)>"``).

    Returns
    -------
    Shot
        Validated: ``frame`` (H, W) float32 (the stored counts or detector units), ``mask`` (H, W)
        uint32 (0x1 where the source's mask is non-zero, else 0), the given geometry, ``extra`` with
        ``train_id``, ``pulse`` (position in the train), ``pulse_id`` (when recorded), ``xfel_source``
        and ``xfel_key``; ``dataset`` = ``<file>:<HDF5 path>``.

    Raises
    ------
    InputError
        Naming the label and the file: EXtra-data missing; the file unreadable or truncated; the train
        or its frame missing from the file (the index points past the data); the frame refused by
        :meth:`~xstereo_gpu.shot.Shot.validate` (NaN/inf or negative values not masked, a constant
        frame, centres or crop that do not fit).
    """
    ed = _extra_data()
    t, pulse = run.locate(index)
    tid = run.train_ids[t]
    label = label if label is not None else f"{path}:{run.shot_name(index)}"
    file = pathlib.Path(path) / run.files[run.file_of[t]]
    data_path = f"/INSTRUMENT/{run.source}/{run.key.replace('.', '/')}"
    where = f"{label}: {file}:{data_path}"
    extra: dict = {"train_id": tid, "pulse": pulse, "xfel_source": run.source, "xfel_key": run.key}
    try:
        with ed.H5File(str(file)) as h5:
            kd = h5[run.source, run.key]
            fa = kd.files[0]
            row = _row(fa, run, kd, tid, pulse, where)
            data = _dataset_row(fa, kd.hdf5_data_path, row, where)
            mask = np.zeros(run.frame_shape, dtype=np.uint32)
            if run.mask_key is not None:
                m = _dataset_row(fa, h5[run.source, run.mask_key].hdf5_data_path, row, where)
                mask[np.asarray(m).reshape(run.frame_shape) != 0] = MASK_INVALID
            if run.pulse_id_key is not None:
                pid = _dataset_row(fa, h5[run.source, run.pulse_id_key].hdf5_data_path, row, where)
                extra["pulse_id"] = int(np.asarray(pid).ravel()[0])
    except InputError:
        raise
    except _read_errors() as exc:
        raise InputError(
            where,
            f"train {tid} unreadable ({type(exc).__name__}: {exc})",
            "a complete, readable sequence file holding the frame the run's index lists",
        ) from None
    check(
        data.shape in (run.frame_shape, run.entry_shape),
        where,
        f"a frame of shape {data.shape}",
        f"{run.entry_shape}, as the run's first file declares",
    )
    check(data.dtype.kind in "iuf", where, f"dtype {data.dtype}", "integer or floating-point intensities")
    shot = geometry_shot(
        data.reshape(run.frame_shape), mask, geometry, label=label, extra=extra, dataset=f"{file}:{data_path}"
    )
    return shot.validate()


def geometry_shot(frame, mask, geometry: dict, *, label: str, extra: dict, dataset: str = "") -> Shot:
    """A :class:`~xstereo_gpu.shot.Shot` of one detector frame and the geometry given for the run.

    Parameters
    ----------
    frame : (H, W) array
        Intensities [photons or ADU], converted to float32.
    mask : (H, W) uint32
        CXI mask bits (0 = good pixel).
    geometry : dict
        As :func:`xfel_geometry` returns it.
    label, extra, dataset
        ``Shot.source``, ``Shot.extra`` and ``Shot.dataset``.
    """
    return Shot(
        frame=np.asarray(frame).astype(np.float32),
        mask=mask,
        wavelength_m=geometry["wavelength_m"],
        distance_m=geometry["distance_m"],
        detector_pixel_m=geometry["detector_pixel_m"],
        angles_deg=tuple(geometry["angles_deg"]),
        centres_px=np.asarray(geometry["centres_px"], dtype=np.float64),
        pattern_size=int(geometry["pattern_size"]),
        source=label,
        extra=extra,
        dataset=dataset,
    )
