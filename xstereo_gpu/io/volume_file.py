"""Writers for the cloud stage's results: ``volume.h5`` (voxel grid) and a surface mesh as binary PLY.

``volume.h5`` layout (HDF5; all lengths in nm, axes in the order z, y, x):

``/volume``        (Z, Y, X) uint8 (occupancy 0/1, from a bool volume) or float32; gzip-compressed;
                   attributes ``axes = "z,y,x"``, ``units`` (``"occupancy"`` or the caller's).
``/voxel_size``    (3,) float64, ``(dz, dy, dx)``; attribute ``units = "nm"``.
``/origin``        (3,) float64, ``(z0, y0, x0)``, the centre of voxel (0, 0, 0); ``units = "nm"``.
root attributes   ``format = "xstereo-volume"``, ``format_version = 1``, ``creator`` (package and
                   version), plus the caller's ``attrs`` (numbers and strings stored as such, anything
                   else as JSON text).

Voxel ``(k, i, j)`` is centred at ``z = z0 + k dz``, ``y = y0 + i dy``, ``x = x0 + j dx`` in the object
frame of docs/geometry.md.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import __version__
from ..backend import to_host
from ..errors import InputError, check
from .cxi import _dataset, _open_hdf5
from .export import jsonable
from .staging import atomic_file

__all__ = ["write_volume_h5", "read_volume_h5", "write_mesh_ply"]

FORMAT = "xstereo-volume"
FORMAT_VERSION = 1


def write_volume_h5(
    path: str | os.PathLike,
    volume: Any,
    *,
    voxel_size_nm,
    origin_nm=(0.0, 0.0, 0.0),
    attrs: Mapping[str, Any] | None = None,
    units: str | None = None,
) -> pathlib.Path:
    """Write a voxel volume to HDF5 (layout in the module docstring), atomically.

    Parameters
    ----------
    path : str or path-like
        Output file (``volume.h5``).
    volume : (Z, Y, X) bool or real
        NumPy or CuPy. Bool is stored as uint8 0/1, other reals as float32.
    voxel_size_nm : (float, float, float)
        ``(dz, dy, dx)``  [nm], positive.
    origin_nm : (float, float, float)
        ``(z0, y0, x0)``: centre of voxel (0, 0, 0)  [nm].
    attrs : dict, optional
        Extra root attributes (provenance: parameters, geometry, version).
    units : str, optional
        ``units`` attribute of ``/volume`` (default ``"occupancy"`` for bool volumes, ``"arb"``
        otherwise).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import h5py

    vol = np.asarray(to_host(volume))
    check(vol.ndim == 3, f"{path}: volume", f"shape {vol.shape}", "a 3-D (Z, Y, X) volume")
    check(vol.dtype.kind in "biuf", f"{path}: volume", f"dtype {vol.dtype}", "bool or real values")
    vs = _triple(voxel_size_nm, f"{path}: voxel_size_nm", positive=True)
    org = _triple(origin_nm, f"{path}: origin_nm", positive=False)
    is_bool = vol.dtype == bool
    data = vol.astype(np.uint8) if is_bool else vol.astype(np.float32)
    with atomic_file(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["creator"] = f"xstereo-gpu {__version__}"
            for key, value in (attrs or {}).items():
                check(
                    isinstance(key, str) and key not in ("format", "format_version", "creator"),
                    f"{path}: attrs",
                    repr(key),
                    "a string key other than format, format_version, creator",
                )
                f.attrs[key] = _attr(value)
            chunks = tuple(max(1, min(s, 64)) for s in data.shape) if data.size else None
            d = f.create_dataset(
                "volume",
                data=data,
                compression="gzip" if data.size else None,
                compression_opts=4 if data.size else None,
                chunks=chunks,
            )
            d.attrs["axes"] = "z,y,x"
            d.attrs["units"] = units or ("occupancy" if is_bool else "arb")
            d.attrs["dtype_in_memory"] = "bool" if is_bool else str(vol.dtype)
            v = f.create_dataset("voxel_size", data=np.asarray(vs, dtype=np.float64))
            v.attrs["units"] = "nm"
            v.attrs["axes"] = "z,y,x"
            o = f.create_dataset("origin", data=np.asarray(org, dtype=np.float64))
            o.attrs["units"] = "nm"
            o.attrs["axes"] = "z,y,x"
    return pathlib.Path(path)


def read_volume_h5(path: str | os.PathLike, *, allow_external_data: bool = False) -> tuple[np.ndarray, dict]:
    """Read a file written by :func:`write_volume_h5`.

    Parameters
    ----------
    path : str or path-like
        The ``volume.h5`` file.
    allow_external_data : bool
        Follow HDF5 external links, external raw storage and virtual-dataset sources outside the
        file's directory (refused by default, :mod:`xstereo_gpu.io.h5safe`).

    Returns
    -------
    volume : (Z, Y, X) ndarray
        Bool when it was written from a bool volume, float32 otherwise.
    meta : dict
        ``voxel_size_nm`` and ``origin_nm`` (tuples, z, y, x) and ``attrs`` (the root attributes;
        JSON-text attributes are returned as text).
    """
    p = pathlib.Path(path)
    check(p.is_file(), str(p), "no such file" if not p.exists() else "not a file", "an existing volume.h5")
    with _open_hdf5(p, allow_external=allow_external_data) as f:
        fmt = f.attrs.get("format")
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        check(fmt == FORMAT, f"{p}: format attribute", repr(fmt), repr(FORMAT))
        ds = {
            name: _dataset(f, name, str(p), required=True, hint=" written by write_volume_h5")
            for name in ("volume", "voxel_size", "origin")
        }
        vol = ds["volume"][()]
        if ds["volume"].attrs.get("dtype_in_memory") in ("bool", b"bool"):
            vol = vol.astype(bool)
        meta = {
            "voxel_size_nm": tuple(float(v) for v in ds["voxel_size"][()]),
            "origin_nm": tuple(float(v) for v in ds["origin"][()]),
            "attrs": {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()},
        }
    return vol, meta


def write_mesh_ply(
    path: str | os.PathLike, vertices: Any, faces: Any, *, units: str = "nm", comments: tuple[str, ...] = ()
) -> pathlib.Path:
    """Write a triangle mesh as a binary little-endian PLY 1.0 file, atomically.

    Parameters
    ----------
    path : str or path-like
        Output file (``.ply``).
    vertices : (V, 3) float
        ``x, y, z``  [``units``], stored as float32.
    faces : (F, 3) int
        Vertex indices of each triangle (0 <= index < V), stored as a ``uchar`` count and three
        ``int`` (int32) indices per face.
    units : str
        Written as the header comment ``units <units>``.
    comments : tuple of str
        Further single-line ASCII header comments.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    v = np.asarray(to_host(vertices))
    f = np.asarray(to_host(faces))
    check(v.ndim == 2 and v.shape[1] == 3, f"{path}: vertices", f"shape {v.shape}", "(V, 3) x, y, z")
    check(
        v.dtype.kind in "biuf" and bool(np.isfinite(v).all()),
        f"{path}: vertices",
        f"dtype {v.dtype}" if v.dtype.kind not in "biuf" else "non-finite coordinates",
        "finite real numbers",
    )
    check(f.ndim == 2 and f.shape[1] == 3, f"{path}: faces", f"shape {f.shape}", "(F, 3) triangles")
    check(f.dtype.kind in "iu", f"{path}: faces", f"dtype {f.dtype}", "integer vertex indices")
    if f.size:
        lo, hi = int(f.min()), int(f.max())
        check(
            lo >= 0 and hi < v.shape[0],
            f"{path}: faces",
            f"indices in [{lo}, {hi}]",
            f"indices in [0, {v.shape[0] - 1}]",
        )
    for text in (f"units {units}", *comments):
        check(
            text.isascii() and "\n" not in text and "\r" not in text,
            f"{path}: comment",
            repr(text),
            "a single line of ASCII text",
        )
    header = [
        "ply",
        "format binary_little_endian 1.0",
        f"comment units {units}",
        f"comment written by xstereo-gpu {__version__}",
    ]
    header += [f"comment {c}" for c in comments]
    header += [
        f"element vertex {v.shape[0]}",
        "property float x",
        "property float y",
        "property float z",
        f"element face {f.shape[0]}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    rec = np.empty(f.shape[0], dtype=[("n", "u1"), ("i", "<i4", (3,))])
    rec["n"] = 3
    rec["i"] = f
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(("\n".join(header) + "\n").encode("ascii"))
            fh.write(np.ascontiguousarray(v, dtype="<f4").tobytes())
            fh.write(rec.tobytes())
    return pathlib.Path(path)


def _triple(values, where: str, *, positive: bool) -> tuple[float, float, float]:
    try:
        t = tuple(float(x) for x in values)
    except (TypeError, ValueError):
        raise InputError(where, repr(values), "three numbers (z, y, x) in nm") from None
    ok = len(t) == 3 and all(np.isfinite(x) and (x > 0 or not positive) for x in t)
    check(
        ok,
        where,
        repr(values),
        "three " + ("positive " if positive else "") + "finite numbers (z, y, x) in nm",
    )
    return t


def _attr(value: Any):
    if isinstance(value, (bool, int, float, str, np.generic)):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value
    return json.dumps(jsonable(value), allow_nan=False)
