"""Writing results: TIFF with JSON metadata, PLY, JSON.

Every writer here writes through :func:`~xstereo_gpu.io.staging.atomic_file`: to a temporary name next
to its target, renamed onto the target only when the file is complete (DESIGN.md section 10), so a
failed or interrupted run never leaves a half-written file that looks finished. File layouts are
documented in docs/format.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import __version__
from ..backend import to_host
from ..errors import InputError, check
from .staging import atomic_file

__all__ = [
    "write_tiff",
    "read_tiff",
    "write_ply",
    "write_json",
    "jsonable",
]


def jsonable(obj: Any) -> Any:
    """Convert ``obj`` to plain JSON types.

    NumPy (and CuPy) scalars and arrays become numbers and (nested) lists, NaN and infinities become
    ``None`` (JSON ``null``), tuples and sets become lists, paths become strings, dataclasses become
    dicts and mapping keys become strings. Anything else raises ``TypeError``.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if type(obj).__module__.startswith("cupy"):
        return jsonable(to_host(obj))
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "c":
            raise TypeError("complex arrays have no JSON form; store real and imaginary parts")
        return jsonable(obj.tolist())
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    raise TypeError(f"cannot convert {type(obj).__name__} to JSON")


def write_json(path: str | os.PathLike, obj: Any) -> pathlib.Path:
    """Write ``obj`` as JSON (indent 2, UTF-8), atomically.

    Parameters
    ----------
    path : str or path-like
        Output file.
    obj : any
        Converted by :func:`jsonable` (NumPy scalars and arrays, NaN -> ``null``).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    text = json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n"
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return pathlib.Path(path)


def write_tiff(path: str | os.PathLike, image: Any, *, metadata: dict | None = None) -> pathlib.Path:
    """Write a 2D float32 TIFF with JSON metadata in its ImageDescription tag, atomically.

    Parameters
    ----------
    path : str or path-like
        Output file (``.tif``).
    image : (H, W) float32
        The image, NumPy or CuPy; real values are cast to float32. NaN pixels are kept (they mark
        invalid pixels in disparity and depth maps).
    metadata : dict, optional
        Stored as JSON (see :func:`jsonable`; NaN in the metadata becomes ``null``).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import tifffile

    img = np.asarray(to_host(image))
    check(img.ndim == 2, f"{path}: image", f"{img.ndim} dimensions {img.shape}", "a 2D image (H, W)")
    check(img.dtype.kind in "biuf", f"{path}: image", f"dtype {img.dtype}", "real numbers")
    img = np.ascontiguousarray(img, dtype=np.float32)
    description = json.dumps(jsonable(metadata or {}), allow_nan=False)
    with atomic_file(path) as tmp:
        tifffile.imwrite(tmp, img, description=description, metadata=None, photometric="minisblack")
    return pathlib.Path(path)


def read_tiff(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Read a TIFF written by :func:`write_tiff` (or any single-image TIFF).

    Parameters
    ----------
    path : str or path-like
        Input file.

    Returns
    -------
    image : (H, W) or (F, H, W) ndarray
        The image as stored (:func:`write_tiff` stores float32).
    metadata : dict
        The JSON of the ImageDescription tag; ``{"description": text}`` when the tag is not a JSON
        object; ``{}`` when there is none.
    """
    import tifffile

    p = pathlib.Path(path)
    check(p.is_file(), str(p), "no such file" if not p.exists() else "not a file", "an existing TIFF file")
    try:
        with tifffile.TiffFile(p) as tif:
            image = tif.asarray()
            desc = tif.pages[0].description if len(tif.pages) else ""
    except (tifffile.TiffFileError, OSError, ValueError) as exc:
        raise InputError(str(p), f"an unreadable TIFF file ({exc})", "a valid TIFF image") from None
    meta: dict = {}
    if desc:
        try:
            parsed = json.loads(desc)
        except ValueError:
            parsed = None
        meta = parsed if isinstance(parsed, dict) else {"description": desc}
    return image, meta


_PLY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def write_ply(
    path: str | os.PathLike,
    points: Any,
    *,
    scalars: Mapping[str, Any] | None = None,
    units: str = "nm",
    comments: tuple[str, ...] = (),
) -> pathlib.Path:
    """Write a point cloud as a binary little-endian PLY 1.0 file, atomically.

    Parameters
    ----------
    path : str or path-like
        Output file (``.ply``).
    points : (M, 3) float
        ``x, y, z`` of each point, in ``units`` (NumPy or CuPy); stored as float32.
    scalars : dict of str to (M,) float, optional
        Extra per-vertex properties, stored as float32 after ``x, y, z`` in the order given (e.g.
        ``confidence``, ``view``).
    units : str
        Written as the header comment ``units <units>``.
    comments : tuple of str
        Further header comment lines.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    pts = np.asarray(to_host(points))
    check(pts.ndim == 2 and pts.shape[1] == 3, f"{path}: points", f"shape {pts.shape}", "(M, 3) x, y, z")
    check(pts.dtype.kind in "biuf", f"{path}: points", f"dtype {pts.dtype}", "real numbers")
    m = pts.shape[0]
    columns = [("x", pts[:, 0]), ("y", pts[:, 1]), ("z", pts[:, 2])]
    for name, values in (scalars or {}).items():
        v = np.asarray(to_host(values))
        check(
            bool(_PLY_NAME.match(name)) and name not in ("x", "y", "z"),
            f"{path}: scalar name",
            repr(name),
            "an identifier other than x, y, z",
        )
        check(v.shape == (m,), f"{path}: scalar {name!r}", f"shape {v.shape}", f"({m},), one value per point")
        check(v.dtype.kind in "biuf", f"{path}: scalar {name!r}", f"dtype {v.dtype}", "real numbers")
        columns.append((name, v))
    for text in (f"units {units}", *comments):
        check(
            text.isascii() and "\n" not in text and "\r" not in text,
            f"{path}: comment",
            repr(text),
            "a single line of ASCII text",
        )
    rec = np.empty(m, dtype=[(name, "<f4") for name, _ in columns])
    for name, v in columns:
        rec[name] = v
    header = [
        "ply",
        "format binary_little_endian 1.0",
        f"comment units {units}",
        f"comment written by xstereo-gpu {__version__}",
    ]
    header += [f"comment {c}" for c in comments]
    header.append(f"element vertex {m}")
    header += [f"property float {name}" for name, _ in columns]
    header.append("end_header")
    blob = ("\n".join(header) + "\n").encode("ascii")
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(blob)
            fh.write(rec.tobytes())
    return pathlib.Path(path)
