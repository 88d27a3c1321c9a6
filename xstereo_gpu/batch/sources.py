"""The shots of a run: the frames of one stack file, or a list of shot files, read one at a time.

A run is an ordered list of shots, each with a stable *index* (its frame in a stack, its position in
the sorted file list) and a *label* saying where it comes from (``run.cxi#12``, ``shots/s-0003.cxi``).
A store (:mod:`xstereo_gpu.batch.store`) keys its records by index, so that a second run over the same
inputs skips what is done.
"""

from __future__ import annotations

import glob
import os
import pathlib
from collections.abc import Iterable, Iterator, Sequence

from ..errors import InputError, check
from ..io import read_shot
from ..io.cxi import _TIMES, _dataset, _find_data, _open_hdf5
from ..shot import Shot

__all__ = ["ShotSource", "open_source"]

_GLOB_CHARS = frozenset("*?[")


class ShotSource:
    """The shots of a run, read lazily: one file read per shot, when iterated.

    Build it with :func:`open_source`.

    Attributes
    ----------
    kind : {"stack", "files"}
        One ``(N, H, W)`` stack file (shot k = frame k, shared geometry) or one shot file per shot.
    paths : tuple of pathlib.Path
        The stack file (one), or every shot file of the run in index order (before the selection).
    indices : tuple of int
        Indices of the selected shots, in order.
    read_overrides : dict
        Keywords passed to :func:`~xstereo_gpu.io.read_shot` (geometry of third-party files).
    """

    def __init__(
        self, kind: str, paths: Sequence[pathlib.Path], indices: Sequence[int], read_overrides: dict
    ):
        if kind not in ("stack", "files"):
            raise ValueError(f"ShotSource.kind: found {kind!r}; expected 'stack' or 'files'")
        self.kind = kind
        self.paths = tuple(paths)
        self.indices = tuple(int(i) for i in indices)
        self.read_overrides = dict(read_overrides)

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        what = str(self.paths[0]) if self.kind == "stack" else f"{len(self.paths)} files"
        return f"ShotSource({self.kind}: {what}, {len(self)} shots)"

    def label(self, index: int) -> str:
        """Where shot ``index`` comes from: ``<stack>#<frame>`` or the shot file's path."""
        if self.kind == "stack":
            return f"{self.paths[0]}#{int(index)}"
        return str(self.paths[int(index)])

    def read(self, index: int) -> Shot:
        """Read shot ``index`` (raises :class:`~xstereo_gpu.errors.InputError` when it cannot be read)."""
        if self.kind == "stack":
            return read_shot(self.paths[0], frame=int(index), **self.read_overrides)
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
        """Plain-data description for the store's metadata: kind, paths, indices, overrides."""
        return {
            "kind": self.kind,
            "paths": [str(p) for p in self.paths],
            "indices": list(self.indices),
            "read_overrides": {
                k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in self.read_overrides.items()
            },
        }


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
    inputs, *, start: int = 0, stop: int | None = None, step: int = 1, **read_overrides
) -> ShotSource:
    """The shots of a run: one stack file, or shot files (paths and glob patterns).

    Parameters
    ----------
    inputs : str, path-like or sequence of them
        One CXI/HDF5 file whose detector data is an ``(N, H, W)`` stack of separate shots (no
        ``exposure_times``: an HDR series is one shot), read frame by frame with shared geometry;
        or shot files, one shot each: paths and glob patterns (``"shots/*.cxi"``), each pattern's
        matches sorted by name, in the order given, duplicates dropped.
    start, stop, step : int
        Selection of the run's shots by index, as Python's ``range(N)[start:stop:step]``.
    **read_overrides
        Keywords of :func:`~xstereo_gpu.io.read_shot` (``wavelength_m``, ``angles_deg``,
        ``centres_px``, ``pattern_size``, ...), applied to every shot.

    Returns
    -------
    ShotSource
        ``len()`` selected shots; iteration gives ``(index, label, shot_or_exception)``.

    Raises
    ------
    InputError
        No input, a glob pattern that matches nothing, ``step`` 0.
    """
    check(step != 0, "step", "0", "a non-zero step")
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    check(bool(items), "inputs", "no input", "a stack file, shot files or glob patterns")
    paths = _expand(items)
    frames = None
    if len(paths) == 1 and not (_GLOB_CHARS & set(os.fspath(items[0]))):
        frames = _stack_frames(paths[0])
    if frames is not None:
        kind, n = "stack", frames
    else:
        kind, n = "files", len(paths)
    return ShotSource(kind, paths, range(n)[start:stop:step], read_overrides)
