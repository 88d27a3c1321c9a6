"""The run store: one directory per run, one HDF5 file per chunk of shots, merged into ``run.h5``.

Layout (docs/format.md, "Run store")::

    <run>/chunks/chunk-<first>-<last>[-<k>].h5   the records of a chunk of shots, each written atomically
    <run>/run.h5                                  all chunks merged: summary table, clouds, metadata
    <run>/summary.csv                             the summary table for pandas / spreadsheets

The chunk files are the truth: ``run.h5`` and ``summary.csv`` are rebuilt from them by
:meth:`RunStore.finalize`. A run killed at any moment loses at most the chunk it was filling; a
second run over the same inputs skips the indices stored (:meth:`RunStore.done`). When an index is
stored more than once (a failed shot retried) the record of the most recently written chunk wins.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib
import re
import time
import warnings
from collections.abc import Sequence

import numpy as np

from .. import __version__
from ..errors import InputError, InputWarning
from ..io.staging import atomic_file
from .record import COLUMNS, ShotRecord, record_cloud, record_row

__all__ = ["RunStore", "summary_dtype", "read_cloud", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_CHUNK_RE = re.compile(r"^chunk-(\d+)-(\d+)(?:-(\d+))?\.h5$")


def summary_dtype() -> np.dtype:
    """The compound dtype of the summary table: one field per :data:`~xstereo_gpu.batch.record.COLUMNS`.

    Strings are HDF5 variable-length UTF-8 (read back by h5py as ``bytes``), integers int64, floats
    float64.
    """
    import h5py

    kinds = {"str": h5py.string_dtype("utf-8"), "int": np.int64, "float": np.float64}
    return np.dtype([(name, kinds[kind]) for name, kind, _ in COLUMNS])


def _as_str(v) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


class _Table:
    """Rows (structured array) and their clouds, as read from or written to one file."""

    def __init__(self, rows: np.ndarray, offsets: np.ndarray, points: np.ndarray, confidence: np.ndarray):
        self.rows, self.offsets, self.points, self.confidence = rows, offsets, points, confidence

    def cloud(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.points[a:b], self.confidence[a:b]


def _write_table(f, rows: list[dict], clouds: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """``/summary`` and ``/clouds/{offsets,points_nm,confidence}`` of ``rows`` into the open file ``f``."""
    dt = summary_dtype()
    table = np.zeros(len(rows), dtype=dt)
    # a column the row lacks (a chunk of an earlier version, resumed) gets its "does not apply" value
    missing = {
        name: (math.nan if kind == "float" else 0 if kind == "int" else "") for name, kind, _ in COLUMNS
    }
    for i, row in enumerate(rows):
        table[i] = tuple(row.get(name, missing[name]) for name in dt.names)
    ds = f.create_dataset("summary", data=table)
    ds.attrs["columns"] = json.dumps({name: meaning for name, _, meaning in COLUMNS})
    counts = np.array([len(p) for p, _ in clouds], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    g = f.create_group("clouds")
    g.attrs["description"] = (
        "cleaned cloud of summary row i: points_nm[offsets[i]:offsets[i + 1]] "
        "(x, y, z [nm], object frame of docs/geometry.md) and its confidence"
    )
    g.create_dataset("offsets", data=offsets)
    pts = np.concatenate([p for p, _ in clouds]) if clouds else np.zeros((0, 3))
    conf = np.concatenate([c for _, c in clouds]) if clouds else np.zeros(0)
    g.create_dataset("points_nm", data=np.asarray(pts, np.float64).reshape(-1, 3), compression="gzip")
    g.create_dataset("confidence", data=np.asarray(conf, np.float32), compression="gzip")


def _read_table(f) -> _Table:
    g = f["clouds"]
    return _Table(f["summary"][()], g["offsets"][()], g["points_nm"][()], g["confidence"][()])


def _put_metadata(f, metadata: dict) -> None:
    g = f.require_group("metadata")
    for k, v in metadata.items():
        g.attrs[k] = v if isinstance(v, (int, float, np.integer, np.floating)) else str(v)


def read_cloud(path: str | os.PathLike, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The cleaned cloud of shot ``index`` in a ``run.h5``: points (M, 3) float64 [nm], confidence (M,)."""
    import h5py

    with h5py.File(path, "r") as f:
        t = _read_table(f)
    rows = np.flatnonzero(t.rows["index"] == int(index))
    if rows.size == 0:
        raise InputError(f"{path}:/summary", f"no shot of index {index}", "an index of the run")
    return t.cloud(int(rows[0]))


class RunStore:
    """The store of one run: a directory of chunk files (created when missing).

    Parameters
    ----------
    path : str or path-like
        The run's directory.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        self.chunks_dir = self.path / "chunks"
        self.chunks_dir.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r}, {len(self.chunk_paths())} chunks)"

    @property
    def run_file(self) -> pathlib.Path:
        """``<run>/run.h5``."""
        return self.path / "run.h5"

    def chunk_paths(self) -> list[pathlib.Path]:
        """The chunk files, by first index (temporaries of writes in flight are not chunks)."""
        found = [
            (int(m[1]), int(m[2]), int(m[3] or 0), p)
            for p in self.chunks_dir.iterdir()
            if (m := _CHUNK_RE.match(p.name))
        ]
        return [p for *_, p in sorted(found)]

    def _chunks(self) -> list[tuple[int, pathlib.Path, _Table]]:
        """``(written_ns, path, table)`` of every readable chunk, oldest first; unreadable ones warn."""
        import h5py

        out = []
        for p in self.chunk_paths():
            try:
                with h5py.File(p, "r") as f:
                    out.append((int(f.attrs["written_ns"]), p, _read_table(f)))
            except (OSError, KeyError, ValueError) as exc:
                warnings.warn(
                    InputWarning(
                        str(p),
                        f"an unreadable chunk ({exc})",
                        "a chunk written by RunStore.write_chunk; its shots are redone",
                    ),
                    stacklevel=3,
                )
        out.sort(key=lambda t: (t[0], str(t[1])))
        return out

    def _latest(self) -> dict[int, tuple[np.void, tuple[np.ndarray, np.ndarray]]]:
        """index -> (row, cloud) of the most recently written record of every stored index."""
        latest = {}
        for _, _, t in self._chunks():
            for i, row in enumerate(t.rows):
                latest[int(row["index"])] = (row, t.cloud(i))
        return latest

    def done(self, *, retry_failed: bool = False) -> set[int]:
        """Indices already stored: ok and blank ones, and failed ones unless ``retry_failed``."""
        return {
            i
            for i, (row, _) in self._latest().items()
            if not (retry_failed and _as_str(row["status"]) == "failed")
        }

    def statuses(self) -> dict[int, str]:
        """index -> status (``ok``, ``blank``, ``failed``) of every stored shot (latest record)."""
        return {i: _as_str(row["status"]) for i, (row, _) in self._latest().items()}

    def labels(self) -> dict[int, str]:
        """index -> label of every stored shot (to check that a resumed run has the same inputs)."""
        return {i: _as_str(row["label"]) for i, (row, _) in self._latest().items()}

    def _chunk_name(self, first: int, last: int) -> pathlib.Path:
        base = f"chunk-{first:06d}-{last:06d}"
        p, k = self.chunks_dir / f"{base}.h5", 0
        while p.exists():
            k += 1
            p = self.chunks_dir / f"{base}-{k}.h5"
        return p

    def write_chunk(
        self, records: Sequence[ShotRecord], *, metadata: dict | None = None
    ) -> pathlib.Path | None:
        """Write the records of a chunk of shots as one new chunk file, atomically.

        Parameters
        ----------
        records : sequence of ShotRecord
            Any statuses; their clouds (ok records) go in the chunk too.
        metadata : dict, optional
            str -> str or number, stored as attributes of ``/metadata`` (options, program, ...).

        Returns
        -------
        pathlib.Path or None
            ``chunks/chunk-<first>-<last>.h5`` (``-<k>`` appended when that name is taken: a chunk
            never replaces another); None for no records.
        """
        records = list(records)
        return self.write_rows(
            [record_row(r) for r in records], [record_cloud(r) for r in records], metadata=metadata
        )

    def write_rows(
        self,
        rows: Sequence[dict],
        clouds: Sequence[tuple[np.ndarray, np.ndarray]],
        *,
        metadata: dict | None = None,
    ) -> pathlib.Path | None:
        """:meth:`write_chunk` of rows already made by :func:`~xstereo_gpu.batch.record.record_row`.

        ``clouds`` holds one ``(points (M, 3) float64 [nm], confidence (M,) float32)`` per row
        (:func:`~xstereo_gpu.batch.record.record_cloud`), so that a caller can drop the records'
        results before the chunk is full.
        """
        import h5py

        rows, clouds = list(rows), list(clouds)
        if len(rows) != len(clouds):
            raise ValueError(
                f"write_rows: {len(rows)} rows but {len(clouds)} clouds; expected one cloud per row"
            )
        if not rows:
            return None
        idx = [int(r["index"]) for r in rows]
        target = self._chunk_name(min(idx), max(idx))
        with atomic_file(target, replace=False) as tmp, h5py.File(tmp, "w") as f:
            f.attrs.update(
                format="xstereo-run-chunk",
                format_version=FORMAT_VERSION,
                written_ns=time.time_ns(),
                program="xstereo-gpu",
                version=__version__,
            )
            _write_table(f, rows, clouds)
            _put_metadata(f, metadata or {})
        return target

    def finalize(self, *, metadata: dict | None = None) -> pathlib.Path:
        """Merge every chunk into ``run.h5`` and ``summary.csv`` (both written atomically).

        Rows are sorted by index; an index stored in several chunks keeps the most recent record.

        Parameters
        ----------
        metadata : dict, optional
            str -> str or number for ``/metadata`` (the options TOML, sources, ...); the chunk files'
            names are added as ``chunks``.

        Returns
        -------
        pathlib.Path
            ``<run>/run.h5``.
        """
        import h5py

        latest = self._latest()
        order = sorted(latest)
        rows = [
            {
                name: (_as_str(v) if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v)
                for name, v in zip(latest[i][0].dtype.names, latest[i][0])
            }
            for i in order
        ]
        clouds = [latest[i][1] for i in order]
        meta = dict(metadata or {})
        meta["chunks"] = json.dumps([p.name for p in self.chunk_paths()])
        meta.setdefault("date", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        with atomic_file(self.run_file) as tmp, h5py.File(tmp, "w") as f:
            f.attrs.update(
                format="xstereo-run",
                format_version=FORMAT_VERSION,
                program="xstereo-gpu",
                version=__version__,
            )
            _write_table(f, rows, clouds)
            _put_metadata(f, meta)
        with (
            atomic_file(self.path / "summary.csv") as tmp,
            open(tmp, "w", newline="", encoding="utf-8") as fh,
        ):
            w = csv.writer(fh)
            names = [name for name, _, _ in COLUMNS]
            w.writerow(names)
            for row in rows:
                values = [row.get(n, math.nan) for n in names]
                w.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in values])
        return self.run_file
