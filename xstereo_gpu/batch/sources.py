"""The shots of a run: the frames of one stack file, shot files, or a EuXFEL run, read one at a time.

A run is an ordered list of shots, each with a stable *index* (its frame in a stack, its position in
the sorted file list, its frame in a EuXFEL run) and a *label* saying where it comes from
(``run.cxi#12``, ``shots/s-0003.cxi``, ``raw/r0042:train 1234567``). A store
(:mod:`xstereo_gpu.batch.store`) keys its records by index, so that a second run over the same inputs
skips what is done.
"""

from __future__ import annotations

import glob
import os
import pathlib
from collections.abc import Iterable, Iterator, Sequence

from ..errors import InputError, check
from ..io import read_shot
from ..io.cxi import _TIMES, _dataset, _find_data, _open_hdf5
from ..io.xfel import XFELRun, read_xfel_shot, scan_run, xfel_geometry
from ..shot import Shot

__all__ = ["ShotSource", "open_source"]

_GLOB_CHARS = frozenset("*?[")
KINDS = ("stack", "files", "extra-data")


class ShotSource:
    """The shots of a run, read lazily: one file read per shot, when iterated.

    Build it with :func:`open_source`.

    Plain, picklable data: paths, indices, keywords and (EuXFEL) the source's shot table; no file is
    held open.

    Attributes
    ----------
    kind : {"stack", "files", "extra-data"}
        One ``(N, H, W)`` stack file (shot k = frame k, shared geometry), one shot file per shot, or a
        EuXFEL run directory read with EXtra-data (shot k = the k-th frame of one detector source:
        one per train, or per pulse; :mod:`xstereo_gpu.io.xfel`).
    paths : tuple of pathlib.Path
        The stack file (one), every shot file of the run in index order (before the selection), or
        the run directory (one).
    indices : tuple of int
        Indices of the selected shots, in order.
    read_overrides : dict
        Keywords passed to :func:`~xstereo_gpu.io.read_shot` (geometry of third-party files); for a
        EuXFEL run the checked geometry (:func:`~xstereo_gpu.io.xfel.xfel_geometry`).
    xfel : XFELRun or None
        The EuXFEL source, key and shot table (``kind == "extra-data"`` only).
    """

    def __init__(
        self,
        kind: str,
        paths: Sequence[pathlib.Path],
        indices: Sequence[int],
        read_overrides: dict,
        *,
        xfel: XFELRun | None = None,
    ):
        if kind not in KINDS:
            raise ValueError(f"ShotSource.kind: found {kind!r}; expected one of {KINDS}")
        if (kind == "extra-data") != (xfel is not None) or (kind == "extra-data" and len(paths) != 1):
            raise ValueError("ShotSource: a run directory and its XFELRun go with kind 'extra-data' only")
        self.kind = kind
        self.paths = tuple(pathlib.Path(p) for p in paths)
        self.indices = tuple(int(i) for i in indices)
        self.read_overrides = dict(read_overrides)
        self.xfel = xfel

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        if self.kind == "extra-data":
            what = f"{self.paths[0]} {self.xfel.source} {self.xfel.key}"
        else:
            what = str(self.paths[0]) if self.kind == "stack" else f"{len(self.paths)} files"
        return f"ShotSource({self.kind}: {what}, {len(self)} shots)"

    def label(self, index: int) -> str:
        """Where shot ``index`` comes from.

        ``<stack>#<frame>``, the shot file's path, or for a EuXFEL run ``<run dir>:train <trainId>``
        (``<run dir>:train <trainId> pulse <p>`` when the source records several frames per train,
        ``p`` counted from 0 in the train).
        """
        if self.kind == "stack":
            return f"{self.paths[0]}#{int(index)}"
        if self.kind == "extra-data":
            return f"{self.paths[0]}:{self.xfel.shot_name(int(index))}"
        return str(self.paths[int(index)])

    def read(self, index: int) -> Shot:
        """Read shot ``index`` (raises :class:`~xstereo_gpu.errors.InputError` when it cannot be read)."""
        if self.kind == "stack":
            return read_shot(self.paths[0], frame=int(index), **self.read_overrides)
        if self.kind == "extra-data":
            return read_xfel_shot(
                self.paths[0], self.xfel, int(index), self.read_overrides, label=self.label(index)
            )
        return read_shot(self.paths[int(index)], **self.read_overrides)

    def items(self, skip: Iterable[int] = ()) -> Iterator[tuple[int, str, Shot | Exception]]:
        """``(index, label, shot)`` per selected shot not in ``skip``, reading each when it is reached.

        A shot that cannot be read comes as ``(index, label, exc)`` with the exception (an
        :class:`~xstereo_gpu.errors.InputError` naming the file, or the ``OSError`` /
        ``ValueError`` that the read raised) in place of the shot, and the iteration goes on.
        """
        skip = frozenset(int(i) for i in skip)
        for i in self.indices:
            if i in skip:
                continue
            try:
                item: Shot | Exception = self.read(i)
            except (InputError, OSError, ValueError, KeyError, RuntimeError) as exc:
                item = exc
            yield i, self.label(i), item

    def __iter__(self) -> Iterator[tuple[int, str, Shot | Exception]]:
        return self.items()

    def describe(self) -> dict:
        """Plain-data description for the store's metadata: kind, paths, indices, overrides.

        A EuXFEL run adds ``xfel``: its source, key, trains, frames, ``per_pulse``, frame shape and
        mask key.
        """
        out = {
            "kind": self.kind,
            "paths": [str(p) for p in self.paths],
            "indices": list(self.indices),
            "read_overrides": {
                k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in self.read_overrides.items()
            },
        }
        if self.xfel is not None:
            out["xfel"] = self.xfel.describe()
        return out


def _stack_frames(path: pathlib.Path) -> int | None:
    """Frames of a shot file holding a stack of separate shots ``(N, H, W)``; None otherwise.

    An HDR shot (``/entry_1/stereo_1/exposure_times`` present) is one shot, not a stack. A file
    that cannot be probed is None (its read then fails as one shot, with the reason).
    """
    src = str(path)
    try:
        with _open_hdf5(path) as f:
            if _dataset(f, _TIMES, src) is not None:
                return None
            ds = _dataset(f, _find_data(f, src, None), src)
            return int(ds.shape[0]) if ds is not None and ds.ndim == 3 else None
    except (InputError, OSError, ValueError, KeyError, RuntimeError):
        return None


def _expand(inputs: Sequence[str | os.PathLike]) -> list[pathlib.Path]:
    """Paths of ``inputs`` in order, each glob pattern's matches sorted, duplicates dropped."""
    out: list[pathlib.Path] = []
    seen: set[str] = set()
    for item in inputs:
        text = os.fspath(item)
        if _GLOB_CHARS & set(text):
            matches = sorted(glob.glob(text))
            check(bool(matches), text, "a pattern that matches no file", "a glob pattern matching shot files")
        else:
            matches = [text]
        for m in matches:
            key = os.path.abspath(m)
            if key not in seen:
                seen.add(key)
                out.append(pathlib.Path(m))
    return out


def open_source(
    inputs,
    *,
    start: int = 0,
    stop: int | None = None,
    step: int = 1,
    kind: str | None = None,
    source: str | None = None,
    key: str | None = None,
    **read_overrides,
) -> ShotSource:
    """The shots of a run: one stack file, shot files (paths and glob patterns), or a EuXFEL run.

    Parameters
    ----------
    inputs : str, path-like or sequence of them
        One CXI/HDF5 file whose detector data is an ``(N, H, W)`` stack of separate shots (no
        ``exposure_times``: an HDR series is one shot), read frame by frame with shared geometry;
        or shot files, one shot each: paths and glob patterns (``"shots/*.cxi"``), each pattern's
        matches sorted by name, in the order given, duplicates dropped; or one European XFEL run
        directory (``.../raw/r0042``: ``RAW-``/``CORR-*.h5`` files), read with EXtra-data: shot k is
        the k-th frame of the detector ``source`` and ``key``, one per train or, when the source
        records several frames in a train, one per pulse (:mod:`xstereo_gpu.io.xfel`).
    start, stop, step : int
        Selection of the run's shots by index, as Python's ``range(N)[start:stop:step]`` (for a EuXFEL
        run, over its frames in train order).
    kind : {None, "extra-data"}
        ``"extra-data"`` reads ``inputs`` as a EuXFEL run directory; None (default) tells the kinds
        apart from the inputs: a directory, or ``source`` / ``key`` given, is a EuXFEL run.
    source : str, optional
        EuXFEL runs: the EXtra-data source name of the detector, a camera output
        (``"SA1_XTD9_HIREX/CAM/BEAMVIEW:daqOutput"``) or one module of a multi-module detector
        (``"SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"``; modules are not assembled).
    key : str, optional
        EuXFEL runs: the source's key holding the frames (``"data.image.pixels"``, ``"image.data"``).
    **read_overrides
        Keywords of :func:`~xstereo_gpu.io.read_shot` (``wavelength_m``, ``angles_deg``,
        ``centres_px``, ``pattern_size``, ...), applied to every shot. A EuXFEL run records no
        geometry: it needs all of ``wavelength_m``, ``distance_m``, ``detector_pixel_m`` [m],
        ``angles_deg`` (2,) [deg], ``centres_px`` (2, 2) [px] and ``pattern_size`` [px]
        (``allow_external_data`` has no effect there).

    Returns
    -------
    ShotSource
        ``len()`` selected shots; iteration gives ``(index, label, shot_or_exception)``.

    Raises
    ------
    InputError
        No input, a glob pattern that matches nothing, ``step`` 0, an unknown ``kind``. EuXFEL runs:
        EXtra-data not installed (``pip install 'xstereo-gpu[xfel]'``), not one readable run
        directory, ``source`` or ``key`` missing or not in the run (the message lists the run's
        detector-like sources with their image keys), several modules named, frames that are not 2D,
        geometry keywords missing (each named, with its command-line flag) or impossible.
    """
    check(step != 0, "step", "0", "a non-zero step")
    check(
        kind in (None, "extra-data"),
        "kind",
        repr(kind),
        "'extra-data' for a EuXFEL run, or None (stack files and shot files are told from the inputs)",
    )
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    check(
        bool(items), "inputs", "no input", "a stack file, shot files, glob patterns or a EuXFEL run directory"
    )
    paths = _expand(items)
    xfel = kind == "extra-data" or source is not None or key is not None
    if xfel or any(p.is_dir() for p in paths):
        return _open_xfel(paths, source, key, read_overrides, start, stop, step)
    frames = None
    if len(paths) == 1 and not (_GLOB_CHARS & set(os.fspath(items[0]))):
        frames = _stack_frames(paths[0])
    if frames is not None:
        kind, n = "stack", frames
    else:
        kind, n = "files", len(paths)
    return ShotSource(kind, paths, range(n)[start:stop:step], read_overrides)


def _open_xfel(
    paths: list[pathlib.Path], source: str | None, key: str | None, overrides: dict, start, stop, step
) -> ShotSource:
    """A EuXFEL run's source: the shot table of ``source`` / ``key`` and the checked geometry."""
    check(
        len(paths) == 1,
        "inputs",
        f"{len(paths)} inputs ({', '.join(str(p) for p in paths[:3])}{', ...' if len(paths) > 3 else ''})",
        "one EuXFEL run directory (with source= and key=), or shot files without directories",
    )
    run = scan_run(paths[0], source=source, key=key)
    geometry = xfel_geometry(str(paths[0]), overrides, run.frame_shape)
    return ShotSource("extra-data", paths, range(run.n_shots)[start:stop:step], geometry, xfel=run)
