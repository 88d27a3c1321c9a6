"""CXI (HDF5) files: stereo shot files, third-party CXI frames, and the phased views of a run.

Layouts are documented field by field in docs/format.md. In short:

* Shot files are CXI 1.6 (``cxi_version`` 160) with a group of our own, ``/entry_1/stereo_1``,
  holding the two beam angles, the two pattern centres on the frame and the crop size, and an
  optional ``/entry_1/ground_truth_1`` written by the simulator.
* Third-party CXI is read as it exists in the wild: datasets reached through soft or external links,
  strings stored as fixed-length bytes, no ``cxi_version``, only ``entry_1/data_1/data``, energy in J
  without a wavelength (or the reverse), ``basis_vectors`` stored (N, 3) or transposed (3, N), 3D
  stacks of frames, and a ``units`` attribute where one is present (NeXus style).
* ``views.cxi`` holds one ``/entry_1/image_{k+1}`` per view with the CXI image fields and a
  ``process_1`` provenance group (program, version, date, command line, parameters as JSON).

All files are read with h5py and written through :func:`xstereo_gpu.io.staging.atomic_file`.
Problems with a file raise :class:`~xstereo_gpu.errors.InputError` naming the file and dataset.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import pathlib
import posixpath
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .. import __version__
from ..backend import to_host
from ..errors import InputError, check, warn
from ..geometry import ANGLE_RANGE_DEG, check_plausible
from ..memory import check_allocation
from ..shot import VIEW_NAMES, GroundTruth, Shot
from .export import jsonable
from .h5safe import H5Access
from .staging import atomic_file

__all__ = [
    "CXI_VERSION",
    "HC_JM",
    "MASK_INVALID",
    "MASK_SATURATED",
    "MASK_SHADOWED",
    "MASK_SUPPORT",
    "read_shot",
    "write_shot",
    "read_views",
    "write_views",
    "energy_to_wavelength",
]

#: Value written to ``/cxi_version`` (CXI 1.6, version x 100).
CXI_VERSION = 160
#: Planck constant times the speed of light  [J m] (exact SI values).
HC_JM = 6.62607015e-34 * 299792458.0

#: CXI pixel-mask bits (0 = good pixel).
MASK_INVALID = 0x1
MASK_SATURATED = 0x2
MASK_SHADOWED = 0x10
#: CXI image-mask bit: pixel inside the support.
MASK_SUPPORT = 0x10000

_LENGTH_UNITS = {
    "m": 1.0,
    "meter": 1.0,
    "metre": 1.0,
    "mm": 1e-3,
    "um": 1e-6,
    "µm": 1e-6,
    "micron": 1e-6,
    "nm": 1e-9,
    "angstrom": 1e-10,
    "å": 1e-10,
    "a": 1e-10,
}
_ENERGY_UNITS = {"j": 1.0, "ev": 1.602176634e-19, "kev": 1.602176634e-16}

_STEREO_DESCRIPTION = (
    "xstereo-gpu stereo metadata (docs/format.md). angles: beam angle magnitudes (t1, t2) of the left "
    "and right views [deg], left beam at +t1 and right beam at -t2 from the detector normal; "
    "pattern_centres: (row, col) of the zero frequency of the left and right patterns on the detector "
    "frame [pixels]; pattern_size: side N of the square crop phased per view [pixels]; view_names: "
    "order of the view axis; exposure_times (optional): integration time [s] of each frame of an "
    "(E, H, W) stack in data_1/data (an HDR series of the same frame). Attributes other than this "
    "description are free-form metadata."
)
_TRUTH_DESCRIPTION = (
    "Ground truth of a simulated shot (docs/format.md): views = true exit waves (left, right) on the view "
    "grid, pixel_size [m]; edge_points = x, y, z [m] in the object frame of docs/geometry.md; edge_labels "
    "= part of the object each point belongs to; extra = sample-specific scoring facts, one dataset per key."
)
_IMAGE_RESERVED = {
    "data",
    "data_space",
    "data_type",
    "image_center",
    "is_fft_shifted",
    "x_pixel_size",
    "y_pixel_size",
    "mask",
    "name",
    "process_1",
}


def energy_to_wavelength(energy_j: float) -> float:
    """Photon wavelength ``h c / E``  [m] of a photon energy ``E``  [J]."""
    return HC_JM / energy_j


# ----------------------------------------------------------------------------------------------------
# low-level HDF5 helpers (shared with images.py)


@contextlib.contextmanager
def _open_hdf5(path: str | os.PathLike, *, allow_external: bool = False) -> Iterator[Any]:
    """Open an HDF5 file read-only; every failure becomes an InputError naming the file.

    Objects are then reached through :func:`_node`, which walks links itself and refuses external
    links, external raw storage and virtual-dataset sources outside the file's directory unless
    ``allow_external`` (:class:`~xstereo_gpu.io.h5safe.H5Access`).
    """
    import h5py

    p = pathlib.Path(path)
    check(p.exists(), str(p), "no such file", "an existing CXI/HDF5 file")
    check(p.is_file(), str(p), "a directory" if p.is_dir() else "not a regular file", "a CXI/HDF5 file")
    try:
        is_h5 = h5py.is_hdf5(os.fspath(p))
    except OSError as exc:
        raise InputError(str(p), f"an unreadable file ({exc})", "a readable CXI/HDF5 file") from None
    check(is_h5, str(p), "not an HDF5 file (no HDF5 signature)", "a CXI/HDF5 file")
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise InputError(
            str(p), f"an unreadable or truncated HDF5 file ({exc})", "a complete CXI/HDF5 file"
        ) from None
    access = H5Access(p, allow_external=allow_external)
    access.register(f)
    f._xstereo_access = access
    try:
        yield f
    except (OSError, RuntimeError) as exc:
        raise InputError(
            str(p), f"a read error ({exc}); the file may be truncated or corrupt", "a complete CXI/HDF5 file"
        ) from None
    finally:
        access.close()
        f.close()


def _access(f: Any, src: str) -> H5Access:
    """The link policy of an open file (files not opened by :func:`_open_hdf5` get the default)."""
    access = getattr(f, "_xstereo_access", None)
    if access is None:
        access = H5Access(f.filename)
        access.register(f)
        f._xstereo_access = access
    return access


def _node(f: Any, name: str, src: str) -> Any:
    """The object at ``name`` or None when no link of that name exists; dangling links raise.

    Links are walked one by one (soft-link loops, external targets and storage are checked by
    :meth:`H5Access.node`).
    """
    return _access(f, src).node(f, name, f"{src}:/{name.lstrip('/')}")


def _children(f: Any, group: str, src: str) -> Iterator[tuple[str, Any]]:
    """``(name, object)`` of every link in ``group``, each resolved by :func:`_node`."""
    import h5py

    g = _node(f, group, src)
    if not isinstance(g, h5py.Group):
        return
    for key in list(g.keys()):
        obj = _node(f, f"{group.rstrip('/')}/{key}", src)
        if obj is not None:
            yield key, obj


def _dataset(f: Any, name: str, src: str, *, required: bool = False, hint: str = "") -> Any:
    import h5py

    obj = _node(f, name, src)
    if obj is None:
        if required:
            raise InputError(f"{src}:/{name.lstrip('/')}", "missing dataset", f"a dataset{hint}")
        return None
    check(isinstance(obj, h5py.Dataset), f"{src}:/{name.lstrip('/')}", "a group", f"a dataset{hint}")
    return obj


def _to_str(value: Any) -> str:
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return " ".join(_to_str(v) for v in value.ravel())
        value = value.ravel()[0]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace").rstrip("\x00")
    return str(value)


def _read_str(f: Any, name: str, src: str) -> str | None:
    ds = _dataset(f, name, src)
    return None if ds is None else _to_str(ds[()])


def _scalar_value(ds: Any, src: str) -> float:
    where = f"{src}:{ds.name}"
    arr = np.asarray(ds[()])
    check(arr.dtype.kind in "biuf", where, f"dtype {arr.dtype}", "a real number")
    check(arr.size >= 1, where, "an empty dataset", "a number")
    flat = arr.ravel().astype(np.float64)
    check(bool(np.all(flat == flat[0])), where, f"{arr.size} different values {arr.shape}", "a single value")
    return float(flat[0])


def _unit_factor(ds: Any, table: dict, src: str, si: str) -> float:
    units = ds.attrs.get("units")
    if units is None:
        return 1.0
    u = _to_str(units).strip()
    factor = table.get(u.lower()) if u.lower() in table else table.get(u)
    check(factor is not None, f"{src}:{ds.name}@units", repr(u), f"one of {sorted(table)} (CXI stores {si})")
    return float(factor)


def _read_length(f: Any, name: str, src: str) -> float | None:
    ds = _dataset(f, name, src)
    if ds is None:
        return None
    v = _scalar_value(ds, src) * _unit_factor(ds, _LENGTH_UNITS, src, "metres")
    check(math.isfinite(v) and v > 0, f"{src}:{ds.name}", repr(v), "a positive finite length in metres")
    return v


def _read_energy(f: Any, name: str, src: str) -> float | None:
    ds = _dataset(f, name, src)
    if ds is None:
        return None
    has_units = ds.attrs.get("units") is not None
    v = _scalar_value(ds, src) * _unit_factor(ds, _ENERGY_UNITS, src, "joules")
    check(math.isfinite(v) and v > 0, f"{src}:{ds.name}", repr(v), "a positive finite photon energy in J")
    check(
        has_units or v < 1e-9,
        f"{src}:{ds.name}",
        f"{v:g} (looks like eV or keV, not J)",
        "a photon energy in J as CXI requires (or a 'units' attribute)",
    )
    return v


def _as_mask(arr: Any, where: str) -> np.ndarray:
    a = np.asarray(arr)
    check(a.dtype.kind in "biu", where, f"dtype {a.dtype}", "an integer CXI bit mask (uint32, 0 = good)")
    if a.dtype.kind == "b":
        return a.astype(np.uint32) * np.uint32(MASK_INVALID)
    if a.dtype.kind == "i":
        check(not bool((a < 0).any()), where, "negative mask values", "a CXI bit mask (uint32, 0 = good)")
    return a.astype(np.uint32)


def _pixel_from_basis(bv: np.ndarray, frame: int | None, where: str) -> tuple[float, float]:
    """``(y, x)`` pixel sizes [m] from CXI basis_vectors, stored (D, 3) or transposed (3, D)."""
    a = np.asarray(bv, dtype=np.float64)
    if a.ndim == 3:  # one set per frame
        a = a[min(frame or 0, a.shape[0] - 1)]
    if a.ndim == 2 and a.shape[1] != 3 and a.shape[0] == 3:
        a = a.T  # transposed (3, D), as in the PETRA III P25 file
    check(
        a.ndim == 2 and a.shape[1] == 3 and a.shape[0] >= 2,
        where,
        f"shape {np.shape(bv)}",
        "(D, 3) basis vectors (one row per data dimension, metres), or (3, D)",
    )
    norms = np.linalg.norm(a[-2:], axis=1)
    check(
        bool(np.all(np.isfinite(norms)) and np.all(norms > 0)),
        where,
        f"vectors {a[-2:].tolist()}",
        "non-zero pixel vectors",
    )
    return float(norms[0]), float(norms[1])


def check_count_dtype(dtype: Any, where: str) -> None:
    """Refuse a boolean detector frame: a bit per pixel is not a diffraction pattern."""
    check(
        np.dtype(dtype).kind != "b",
        where,
        f"dtype {np.dtype(dtype)} (one bit per pixel)",
        "photon counts: integer or floating-point intensities (a bool array is a mask, not a pattern)",
    )


def warn_saturated_uint8(dtype: Any, data: np.ndarray, mask: np.ndarray, where: str) -> None:
    """Warn when uint8 counts reach 255 at unmasked pixels: the detector values were probably clipped."""
    if np.dtype(dtype) != np.uint8:
        return
    top = int(np.count_nonzero((np.asarray(data) >= 255) & (np.asarray(mask) == 0)))
    if top:
        warn(
            where,
            f"uint8 counts with {top} unmasked pixels at 255, the uint8 maximum (clipped counts?)",
            "photon counts in a type that holds them (uint16/uint32/float32 as detectors write), "
            "or saturated pixels masked (CXI mask bit 0x2)",
            stacklevel=4,
        )


def check_layout(shape: tuple, where: str, *, hint: str | Callable[[], str] = "") -> None:
    """Refuse a 3D array whose last axis is too short to be an image axis: ``(H, W, 1)``, ``(H, W, 3)``.

    Such an array is a 2D image stored with a trailing singleton axis (libspimage writes its 2D
    images as ``(x, y, 1)``) or a colour image with its channels last; read as a stack
    ``(F, H, W)`` its frame would be a ``(W, C)`` sliver. It is refused, never sliced.
    """
    if len(shape) != 3 or shape[-1] > 4 or shape[-2] <= 4:
        return
    c = int(shape[-1])
    hint = hint() if callable(hint) else hint
    what = "a trailing axis of length 1" if c == 1 else f"a trailing axis of length {c} (colour channels?)"
    raise InputError(
        where,
        f"shape {tuple(int(n) for n in shape)}: {what}",
        "a 2D frame (H, W) or a stack of frames (F, H, W) with F first; a (H, W, C) layout is not "
        "sliced silently: store the frame as 2D (e.g. arr[..., 0])" + (f"; {hint}" if hint else ""),
    )


#: Datasets whose presence at the root marks a libspimage file (beside ``real`` and ``mask``).
_SPIMAGE_MARKERS = ("scaled", "shifted", "phased", "image_center")


def is_spimage(f: Any, src: str) -> bool:
    """Whether the open HDF5 file ``f`` holds a libspimage image (``/real``, ``/mask`` and its flags)."""
    try:
        return (
            _dataset(f, "real", src) is not None
            and _dataset(f, "mask", src) is not None
            and any(_dataset(f, m, src) is not None for m in _SPIMAGE_MARKERS)
        )
    except InputError:  # "real" or "mask" is a group: not this layout
        return False


def _spimage_hint(f: Any, src: str) -> str:
    if is_spimage(f, src):
        return "this is a libspimage file: read it without a dataset name (or with dataset 'real')"
    return ""


def _resolved_parent(f: Any, path: str) -> str:
    """Group holding the dataset at ``path`` after following a soft link."""
    import h5py

    link = f.get(path, getlink=True)
    if isinstance(link, h5py.SoftLink):
        target = link.path
        if not target.startswith("/"):
            target = posixpath.normpath(posixpath.join(posixpath.dirname("/" + path.lstrip("/")), target))
        return posixpath.dirname(target)
    return posixpath.dirname("/" + path.lstrip("/"))


_DATA_CANDIDATES = ("entry_1/data_1/data", "entry_1/instrument_1/detector_1/data")


def _find_data(f: Any, src: str, dataset: str | None) -> str:
    import h5py

    if dataset is not None:
        _dataset(f, dataset, src, required=True, hint=" holding the detector frame(s)")
        return dataset.lstrip("/")
    for name in _DATA_CANDIDATES:
        if _dataset(f, name, src) is not None:
            return name
    found: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if (
            not found
            and isinstance(obj, h5py.Dataset)
            and posixpath.basename(name) == "data"
            and obj.ndim in (2, 3)
            and obj.dtype.kind in "biuf"
        ):
            found.append(name)

    f.visititems(visit)
    if not found:
        raise InputError(
            f"{src}:/entry_1/data_1/data",
            "missing dataset (and no other 2D/3D dataset named 'data')",
            "detector data at /entry_1/data_1/data or /entry_1/instrument_1/detector_1/data",
        )
    return found[0]


def _read_frame(
    f: Any,
    src: str,
    *,
    frame: int | None = None,
    dataset: str | None = None,
    all_frames: bool = False,
    counts: bool = True,
) -> dict:
    """Detector frame, mask and geometry of a CXI/HDF5 file (geometry values may be None).

    With ``all_frames`` and no ``frame``, a 3D stack ``(F, H, W)`` is returned whole (an HDR
    series), with its mask stacked to ``(F, H, W)`` (a shared ``(H, W)`` mask is repeated).
    With ``counts`` the data must look like photon counts (:func:`check_count_dtype`).
    """
    name = _find_data(f, src, dataset)
    ds = _dataset(f, name, src, required=True)
    where = f"{src}:/{name}"
    check(ds.dtype.kind in "biuf", where, f"dtype {ds.dtype}", "real-valued detector intensities")
    if counts:
        check_count_dtype(ds.dtype, where)
    check(
        ds.ndim in (2, 3),
        where,
        f"{ds.ndim} dimensions {ds.shape}",
        "a 2D frame (H, W) or a 3D stack (F, H, W)",
    )
    check_layout(ds.shape, where, hint=lambda: _spimage_hint(f, src))
    n_frames = ds.shape[0] if ds.ndim == 3 else None
    whole = all_frames and ds.ndim == 3 and frame is None
    # refuse a declared shape too large for the free memory, before reading
    check_allocation(
        ds.shape if whole or ds.ndim == 2 else ds.shape[1:], ds.dtype, where, what="read it with its mask"
    )
    if whole:
        check(n_frames >= 1, where, f"an empty stack {ds.shape}", "at least one frame")
        data = np.asarray(ds[()])
    elif ds.ndim == 3:
        check(
            frame is not None,
            where,
            f"a stack of {n_frames} frames {ds.shape}",
            f"a frame index: frame=i (--frame i) with 0 <= i < {n_frames}",
        )
        check(
            0 <= int(frame) < n_frames,
            where,
            f"frame={frame} but the stack has {n_frames} frames",
            f"0 <= frame < {n_frames}",
        )
        data = np.asarray(ds[int(frame)])
    else:
        check(
            frame in (None, 0),
            where,
            f"frame={frame} for a single 2D frame {ds.shape}",
            "no frame index (or 0)",
        )
        data = np.asarray(ds[()])
    data = data.astype(np.float32, copy=False)

    parts = name.split("/")
    entry = parts[0] if parts[0].startswith("entry") else "entry_1"
    parent = _resolved_parent(f, name).lstrip("/")
    if posixpath.basename(parent).startswith("detector"):
        det = parent
    else:
        det = f"{entry}/instrument_1/detector_1"
    if _node(f, det, src) is None:
        det = None
    instruments = (f"{entry}/instrument_1", f"{entry}/instrument")  # CXI, then NeXus names

    mask = np.zeros(data.shape, dtype=np.uint32)
    if det is not None:
        mds = _dataset(f, f"{det}/mask", src)
        if mds is not None:
            mwhere = f"{src}:/{det}/mask"
            if mds.ndim == 3 and n_frames is not None and mds.shape[0] == n_frames and not whole:
                m = mds[int(frame)]
            else:
                m = mds[()]
            m = _as_mask(m, mwhere)
            if whole and m.shape == data.shape[1:]:
                m = np.broadcast_to(m, data.shape).copy()
            check(m.shape == data.shape, mwhere, f"shape {m.shape}", f"the frame's shape {data.shape}")
            mask = m

    wavelength = energy = None
    wavelength_from = energy_from = None
    for inst in instruments:
        for group, wname, ename in (
            ("source_1", "wavelength", "energy"),
            ("source", "wavelength", "energy"),
            ("beam", "incident_wavelength", "incident_energy"),
            ("monochromator", "wavelength", "energy"),
        ):
            if wavelength is None:
                wavelength = _read_length(f, f"{inst}/{group}/{wname}", src)
                wavelength_from = f"{src}:/{inst}/{group}/{wname}" if wavelength is not None else None
            if energy is None:
                energy = _read_energy(f, f"{inst}/{group}/{ename}", src)
                energy_from = f"{src}:/{inst}/{group}/{ename}" if energy is not None else None
    if wavelength is None and energy is not None:
        wavelength = energy_to_wavelength(energy)
        wavelength_from = f"{energy_from} (as the wavelength h c / E)"

    distance = px = py = None
    if det is not None:
        distance = _read_length(f, f"{det}/distance", src)
        px = _read_length(f, f"{det}/x_pixel_size", src)
        py = _read_length(f, f"{det}/y_pixel_size", src)
        if px is None or py is None:
            bds = _dataset(f, f"{det}/basis_vectors", src)
            if bds is not None:
                by, bx = _pixel_from_basis(bds[()], frame, f"{src}:/{det}/basis_vectors")
                px = bx if px is None else px
                py = by if py is None else py
        if px is None and py is not None:
            px = py
        if py is None and px is not None:
            py = px
    if counts:
        warn_saturated_uint8(ds.dtype, data, mask, where)
    pixel = None
    if px is not None:
        check(
            abs(px - py) <= 1e-6 * max(px, py),
            f"{src}:/{det}/x_pixel_size",
            f"x {px:g} m and y {py:g} m",
            "square detector pixels (x_pixel_size == y_pixel_size)",
        )
        pixel = px
    return {
        "data": data,
        "mask": mask,
        "wavelength_m": wavelength,
        "distance_m": distance,
        "pixel_size_m": pixel,
        "dataset": "/" + name,
        "wavelength_from": wavelength_from,
        "frame": frame if (n_frames is not None and not whole) else None,
        "n_frames": n_frames,
        "entry": entry,
        "detector": det,
    }


# ----------------------------------------------------------------------------------------------------
# shot files


def _prefix_where(exc: InputError, src: str) -> InputError:
    if src in exc.where:
        return exc
    return InputError(f"{src}: {exc.where}", exc.found, exc.expected)


def read_shot(
    path: str | os.PathLike,
    *,
    frame: int | None = None,
    wavelength_m: float | None = None,
    distance_m: float | None = None,
    detector_pixel_m: float | None = None,
    angles_deg: tuple[float, float] | None = None,
    centres_px: Any = None,
    pattern_size: int | None = None,
    allow_external_data: bool = False,
) -> Shot:
    """Read a stereo shot file (docs/format.md) into a validated :class:`~xstereo_gpu.shot.Shot`.

    Parameters
    ----------
    path : str or path-like
        CXI/HDF5 file: our shot files, or third-party CXI with the stereo facts given as keywords.
    frame : int, optional
        Frame of a 3D detector stack ``(F, H, W)``. Required for stacks, except HDR shot files
        (``/entry_1/stereo_1/exposure_times`` present), which are read whole as ``E`` exposures
        unless ``frame`` picks one of them.
    wavelength_m, distance_m, detector_pixel_m : float, optional
        Wavelength, sample-detector distance, detector pixel  [m]; when given they replace the
        file's values (or supply those it lacks).
    angles_deg : (2,) float, optional
        ``(t1, t2)`` beam angle magnitudes  [deg]; replace ``/entry_1/stereo_1/angles``.
    centres_px : (2, 2) float, optional
        ``(row, col)`` of the left and right zero frequencies  [pixels]; replace
        ``/entry_1/stereo_1/pattern_centres``.
    pattern_size : int, optional
        Crop side N  [pixels]; replaces ``/entry_1/stereo_1/pattern_size``.
    allow_external_data : bool
        Follow HDF5 external links, external raw storage and virtual-dataset sources outside the
        file's directory (refused by default: a file could otherwise make any file its data).

    Returns
    -------
    Shot
        With ``frame`` (H, W) float32 (or (E, H, W) for an HDR series), ``mask`` of the frame's
        shape, uint32, ``exposure_times_s`` ((E,) float64 [s], or None when the file has none),
        ``truth`` when the file has ``/entry_1/ground_truth_1`` (with ``truth.extra`` from its
        ``extra`` group), ``extra`` = the attributes of ``/entry_1/stereo_1`` other than
        ``description``, ``source`` = ``str(path)``.

    Raises
    ------
    InputError
        Missing/unreadable/truncated file, not HDF5, a required dataset missing (named), wrong
        dimensions, unmasked non-finite or negative intensities, invalid geometry, exposure times
        that are not positive or not one per frame.
    """
    src = str(path)
    with _open_hdf5(path, allow_external=allow_external_data) as f:
        times = _read_exposure_times(f, src)
        fr = _read_frame(f, src, frame=frame, all_frames=times is not None)
        times = _times_for_frame(times, fr, frame, src)
        entry = fr["entry"]
        det = fr["detector"] or f"{entry}/instrument_1/detector_1"
        wl = wavelength_m if wavelength_m is not None else fr["wavelength_m"]
        if wl is None:
            raise InputError(
                f"{src}:/{entry}/instrument_1/source_1/wavelength",
                "missing (and no energy)",
                "the wavelength [m] or the photon energy [J] (or --wavelength)",
            )
        dist = distance_m if distance_m is not None else fr["distance_m"]
        if dist is None:
            raise InputError(
                f"{src}:/{det}/distance",
                "missing dataset",
                "the sample-detector distance [m] (or --distance)",
            )
        pix = detector_pixel_m if detector_pixel_m is not None else fr["pixel_size_m"]
        if pix is None:
            raise InputError(
                f"{src}:/{det}/x_pixel_size",
                "missing (and no basis_vectors)",
                "the detector pixel size [m] (or --detector-pixel)",
            )

        st = f"{entry}/stereo_1"
        given_angles = angles_deg is not None
        hint = (
            " (written by `xstereo simulate`; for other files give the stereo geometry on the command line)"
        )
        if angles_deg is None:
            a = np.asarray(_dataset(f, f"{st}/angles", src, required=True, hint=hint)[()], dtype=np.float64)
            check(a.shape == (2,), f"{src}:/{st}/angles", f"shape {a.shape}", "(2,): t1, t2 in degrees")
            lo, hi = ANGLE_RANGE_DEG
            for i in range(2):
                check(
                    bool(np.isfinite(a[i]) and lo < a[i] < hi),
                    f"{src}:/{st}/angles[{i}]",
                    f"{float(a[i])!r} deg",
                    f"a beam angle magnitude in ({lo:g}, {hi:g}) deg",
                )
            angles_deg = (float(a[0]), float(a[1]))
        if centres_px is None:
            centres_px = np.asarray(
                _dataset(f, f"{st}/pattern_centres", src, required=True, hint=hint)[()], dtype=np.float64
            )
            check(
                centres_px.shape == (2, 2),
                f"{src}:/{st}/pattern_centres",
                f"shape {centres_px.shape}",
                "(2, 2): (row, col) of the left and right pattern centres",
            )
        if pattern_size is None:
            ps_ds = _dataset(f, f"{st}/pattern_size", src, required=True, hint=hint)
            ps = _scalar_value(ps_ds, src)
            check(ps == int(ps), f"{src}:/{st}/pattern_size", repr(ps), "an integer number of pixels")
            pattern_size = int(ps)
        extra: dict = {}
        stg = _node(f, st, src)
        if stg is not None:
            for k, v in stg.attrs.items():
                if k != "description":
                    extra[k] = _attr_value(v)
        sample = _read_str(f, f"{entry}/sample_1/name", src) or ""
        truth = _read_truth(f, f"{entry}/ground_truth_1", src)

    _check_shot_geometry(
        src,
        fr,
        det,
        st,
        wavelength_m=wavelength_m,
        distance_m=distance_m,
        detector_pixel_m=detector_pixel_m,
        given_angles=given_angles,
        values=dict(
            wavelength_m=float(wl),
            distance_m=float(dist),
            detector_pixel_m=float(pix),
            angles_deg=tuple(angles_deg),
        ),
    )
    shot = Shot(
        frame=fr["data"],
        mask=fr["mask"],
        wavelength_m=float(wl),
        distance_m=float(dist),
        detector_pixel_m=float(pix),
        angles_deg=(float(angles_deg[0]), float(angles_deg[1])),
        centres_px=np.asarray(centres_px, dtype=np.float64).copy(),
        pattern_size=int(pattern_size),
        sample=sample,
        truth=truth,
        source=src,
        extra=extra,
        exposure_times_s=times,
        dataset=fr["dataset"],
    )
    try:
        return shot.validate()
    except InputError as exc:
        raise _prefix_where(exc, src) from None


def _check_shot_geometry(
    src: str, fr: dict, det: str, st: str, *, given_angles: bool, values: dict, **given: float | None
) -> None:
    """:func:`~xstereo_gpu.geometry.check_plausible` on a shot's geometry, each value named by its origin."""
    options = {
        "wavelength_m": "--wavelength",
        "distance_m": "--distance",
        "detector_pixel_m": "--detector-pixel",
    }
    where = {
        "wavelength_m": fr.get("wavelength_from") or f"{src}: wavelength",
        "distance_m": f"{src}:/{det}/distance",
        "detector_pixel_m": f"{src}:/{det}/x_pixel_size",
        "angles_deg": "--angles" if given_angles else f"{src}:/{st}/angles",
    }
    for name, flag in options.items():
        if given.get(name) is not None:
            where[name] = f"{flag} ({name}=)"
    if given_angles:
        where["angles_deg"] = "--angles (angles_deg=)"
    check_plausible(where=where, **values)


_TIMES = "entry_1/stereo_1/exposure_times"


def _read_exposure_times(f: Any, src: str) -> np.ndarray | None:
    """``/entry_1/stereo_1/exposure_times`` in seconds (units attribute honoured), or None."""
    ds = _dataset(f, _TIMES, src)
    if ds is None:
        return None
    where = f"{src}:/{_TIMES}"
    a = np.asarray(ds[()])
    check(a.dtype.kind in "biuf", where, f"dtype {a.dtype}", "real integration times [s]")
    check(
        a.ndim <= 1 and a.size >= 1, where, f"shape {a.shape}", "(E,): one integration time per exposure [s]"
    )
    units = ds.attrs.get("units")
    factor = 1.0
    if units is not None:
        u = _to_str(units).strip().lower()
        table = {"s": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "us": 1e-6}
        check(u in table, f"{where}@units", repr(u), f"one of {sorted(table)}")
        factor = table[u]
    t = a.astype(np.float64).ravel() * factor
    check(
        bool(np.all(np.isfinite(t) & (t > 0))),
        where,
        f"{t.tolist()!r}",
        "positive finite integration times [s]",
    )
    return t


def _times_for_frame(times: np.ndarray | None, fr: dict, frame: int | None, src: str) -> np.ndarray | None:
    """The exposure times matching the frame(s) read: all of them, or the one ``frame`` picks."""
    if times is None:
        return None
    where = f"{src}:/{_TIMES}"
    data = fr["data"]
    n = fr["n_frames"]
    if n is None:  # a single 2D frame
        check(
            times.size == 1,
            where,
            f"{times.size} times for a single 2D frame {data.shape}",
            "one integration time for a 2D frame (or an (E, H, W) stack with E times)",
        )
        return times
    check(
        times.size == n,
        where,
        f"{times.size} times for a stack of {n} frames {(n,) + data.shape[-2:]}",
        f"({n},): one integration time per frame of {fr['dataset']}",
    )
    return times if frame is None else times[int(frame) : int(frame) + 1]


def _attr_value(v: Any) -> Any:
    if isinstance(v, (bytes, np.bytes_)):
        return _to_str(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        return [_to_str(x) if isinstance(x, (bytes, np.bytes_)) else x for x in v.tolist()]
    return v


def _read_truth(f: Any, group: str, src: str) -> GroundTruth | None:
    if _node(f, group, src) is None:
        return None
    views = np.asarray(_dataset(f, f"{group}/views", src, required=True)[()])
    check(
        views.ndim == 3 and views.shape[0] == 2 and views.shape[1] == views.shape[2],
        f"{src}:/{group}/views",
        f"shape {views.shape}",
        "(2, N, N) complex views",
    )
    pix_ds = _dataset(f, f"{group}/pixel_size", src, required=True)
    pts = np.asarray(_dataset(f, f"{group}/edge_points", src, required=True)[()], dtype=np.float64)
    check(
        pts.ndim == 2 and pts.shape[1] == 3,
        f"{src}:/{group}/edge_points",
        f"shape {pts.shape}",
        "(M, 3) x, y, z [m]",
    )
    labels = np.asarray(_dataset(f, f"{group}/edge_labels", src, required=True)[()])
    check(
        labels.shape == (pts.shape[0],),
        f"{src}:/{group}/edge_labels",
        f"shape {labels.shape}",
        f"({pts.shape[0]},), one label per edge point",
    )
    return GroundTruth(
        views=views.astype(np.complex64),
        pixel_size_m=_scalar_value(pix_ds, src),
        edge_points_m=pts,
        edge_labels=labels.astype(np.int8),
        description=_read_str(f, f"{group}/description", src) or "",
        extra=_read_truth_extra(f, f"{group}/extra", src),
    )


def _read_truth_extra(f: Any, group: str, src: str) -> dict:
    """Datasets of ``ground_truth_1/extra``: 0-d ones as Python scalars, others as arrays."""
    import h5py

    g = _node(f, group, src)
    if g is None:
        return {}
    check(isinstance(g, h5py.Group), f"{src}:/{group}", "a dataset", "a group of datasets")
    out: dict = {}
    for key, obj in _children(f, group, src):
        if not isinstance(obj, h5py.Dataset):
            continue
        a = np.asarray(obj[()])
        if a.dtype.kind in "SOU":
            out[key] = _to_str(a) if a.ndim == 0 else [_to_str(x) for x in a.ravel()]
        elif a.ndim == 0:
            out[key] = a.item()
        else:
            out[key] = a
    return out


def _check_truth_extra(extra: Mapping) -> None:
    for k, v in extra.items():
        check(
            isinstance(k, str) and k and "/" not in k and k != ".",
            f"truth.extra key {k!r}",
            repr(k),
            "a non-empty dataset name without '/'",
        )
        if isinstance(v, str):
            continue
        a = np.asarray(to_host(v))
        check(
            a.dtype.kind in "biufc",
            f"truth.extra[{k!r}]",
            f"{type(v).__name__} of dtype {a.dtype}",
            "a number, a str, or a numeric/bool array",
        )


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def _put_scalar(g: Any, name: str, value: Any, units: str | None = None) -> None:
    ds = g.create_dataset(name, data=value)
    if units:
        ds.attrs["units"] = units


def write_shot(
    path: str | os.PathLike, shot: Shot, *, compression: str | None = "gzip", replace: bool = True
) -> pathlib.Path:
    """Write a :class:`~xstereo_gpu.shot.Shot` as a CXI 1.6 stereo shot file (docs/format.md), atomically.

    Parameters
    ----------
    path : str or path-like
        Output file (``.cxi``).
    shot : Shot
        Validated before writing. ``shot.extra`` values (str, int, float, bool, or 1D lists of
        numbers or strings, read back as lists) become attributes of ``/entry_1/stereo_1``;
        ``shot.truth`` (when set) becomes ``/entry_1/ground_truth_1`` (``truth.extra`` its group
        ``extra``, one dataset per key). An ``(E, H, W)`` stack of exposures is written as one
        stacked dataset with ``exposure_times_s`` in ``/entry_1/stereo_1/exposure_times``.
    compression : {"gzip", None}
        HDF5 filter for the frame and mask (gzip is readable everywhere).
    replace : bool
        Replace an existing file at ``path``; with ``False`` nothing at ``path`` is ever replaced, not
        even a file that appeared while this one was written (:func:`~xstereo_gpu.io.staging.atomic_file`).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import h5py

    shot.validate()
    for k, v in shot.extra.items():
        check(
            isinstance(k, str) and k and k != "description" and "/" not in k,
            f"shot.extra key {k!r}",
            repr(k),
            "a non-empty attribute name other than 'description'",
        )
        ok = isinstance(v, (str, int, float, bool, np.integer, np.floating, np.bool_))
        if not ok and isinstance(v, (list, tuple, np.ndarray)):
            a = np.asarray(v)
            ok = a.ndim == 1 and a.size > 0 and (a.dtype.kind in "biuf" or all(isinstance(x, str) for x in v))
        check(
            ok,
            f"shot.extra[{k!r}]",
            type(v).__name__,
            "a str, int, float or bool, or a non-empty 1D list of numbers or of strings",
        )
    check(compression in ("gzip", None), "compression", repr(compression), "'gzip' or None")
    if shot.truth is not None:
        _check_truth_extra(shot.truth.extra)
    frame = np.asarray(to_host(shot.frame), dtype=np.float32)
    times = None if shot.exposure_times_s is None else np.asarray(shot.exposure_times_s, np.float64).ravel()
    mask = np.asarray(to_host(shot.mask), dtype=np.uint32)
    comp = {"compression": "gzip", "compression_opts": 4, "shuffle": True} if compression else {}
    with atomic_file(path, replace=replace) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("cxi_version", data=np.int64(CXI_VERSION))
            e = f.create_group("entry_1")
            e.create_dataset("start_time", data=_utc_now())
            e.create_group("sample_1").create_dataset("name", data=str(shot.sample))
            inst = e.create_group("instrument_1")
            s = inst.create_group("source_1")
            _put_scalar(s, "energy", np.float64(HC_JM / shot.wavelength_m), "J")
            _put_scalar(s, "wavelength", np.float64(shot.wavelength_m), "m")
            d = inst.create_group("detector_1")
            d.create_dataset("data", data=frame, **comp)
            _put_scalar(d, "distance", np.float64(shot.distance_m), "m")
            _put_scalar(d, "x_pixel_size", np.float64(shot.detector_pixel_m), "m")
            _put_scalar(d, "y_pixel_size", np.float64(shot.detector_pixel_m), "m")
            d.create_dataset("mask", data=mask, **comp)
            p = float(shot.detector_pixel_m)
            d.create_dataset(
                "basis_vectors", data=np.array([[0.0, -p, 0.0], [-p, 0.0, 0.0]], dtype=np.float64)
            )
            if times is not None:
                # mirror for NeXus/CXI readers (NXdetector count_time, one value per frame)
                _put_scalar(d, "count_time", times if frame.ndim == 3 else np.float64(times[0]), "s")
                if frame.ndim == 3:
                    e.create_dataset(
                        "experiment_identifier",
                        data=np.array(
                            [f"exposure_{i + 1} {t:g} s" for i, t in enumerate(times)],
                            dtype=h5py.string_dtype(),
                        ),
                    )
            e.create_group("data_1")["data"] = h5py.SoftLink("/entry_1/instrument_1/detector_1/data")
            st = e.create_group("stereo_1")
            st.attrs["description"] = _STEREO_DESCRIPTION
            for k, v in shot.extra.items():
                if isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
                    v = np.array(v, dtype=h5py.string_dtype())
                st.attrs[k] = v
            _put_scalar(st, "angles", np.asarray(shot.angles_deg, dtype=np.float64), "deg")
            _put_scalar(st, "pattern_centres", np.asarray(shot.centres_px, dtype=np.float64), "pixels")
            _put_scalar(st, "pattern_size", np.int64(shot.pattern_size), "pixels")
            st.create_dataset("view_names", data=np.array(VIEW_NAMES, dtype=h5py.string_dtype()))
            if times is not None:
                _put_scalar(st, "exposure_times", times, "s")
            if shot.truth is not None:
                t = shot.truth
                g = e.create_group("ground_truth_1")
                g.attrs["description"] = _TRUTH_DESCRIPTION
                g.create_dataset("views", data=np.asarray(to_host(t.views), dtype=np.complex64), **comp)
                _put_scalar(g, "pixel_size", np.float64(t.pixel_size_m), "m")
                _put_scalar(g, "edge_points", np.asarray(to_host(t.edge_points_m), dtype=np.float64), "m")
                g.create_dataset("edge_labels", data=np.asarray(to_host(t.edge_labels), dtype=np.int8))
                g.create_dataset("description", data=str(t.description))
                if t.extra:
                    gx = g.create_group("extra")
                    for k, v in t.extra.items():
                        if isinstance(v, str):
                            gx.create_dataset(k, data=v)
                        else:
                            a = np.asarray(to_host(v))
                            gx.create_dataset(k, data=a, **(comp if a.size > 1024 else {}))
    return pathlib.Path(path)


# ----------------------------------------------------------------------------------------------------
# views.cxi


def write_views(
    path: str | os.PathLike,
    views: Any,
    *,
    supports: Any,
    pixel_size_m: float,
    parameters: Mapping[str, Any],
    names: Sequence[str] = VIEW_NAMES,
    extra: Mapping[str, Any] | None = None,
) -> pathlib.Path:
    """Write phased views as CXI 1.6 images with provenance (``views.cxi``), atomically.

    Parameters
    ----------
    path : str or path-like
        Output file.
    views : (V, N, N) complex64
        Reconstructed exit waves, NumPy or CuPy, on the view grid (pixel (i, j) at
        ``((i - N//2) Dr, (j - N//2) Dr)``).
    supports : (V, N, N) bool
        Final supports; stored as CXI mask bit 0x10000 of ``image_{k+1}/mask``.
    pixel_size_m : float or None
        Real-space pixel ``Dr``  [m]; None or NaN when the geometry is unknown (the pixel-size
        datasets are then omitted).
    parameters : dict
        Effective run parameters, stored as JSON in every ``image_{k+1}/process_1/parameters``.
    names : sequence of str
        One name per view.
    extra : dict of str to ndarray, optional
        Further results. Arrays whose leading axis has length V go to ``image_{k+1}/<name>`` (slice
        k); others to ``entry_1/result_1/<name>``.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import h5py

    src = str(path)
    v = np.asarray(to_host(views))
    check(
        v.ndim == 3 and v.shape[1] == v.shape[2] and v.shape[0] >= 1,
        f"{src}: views",
        f"shape {v.shape}",
        "(V, N, N) complex views",
    )
    check(v.dtype.kind in "biufc", f"{src}: views", f"dtype {v.dtype}", "complex numbers")
    nv = v.shape[0]
    s = np.asarray(to_host(supports))
    check(s.shape == v.shape, f"{src}: supports", f"shape {s.shape}", f"the views' shape {v.shape}")
    known = pixel_size_m is not None and not (isinstance(pixel_size_m, float) and math.isnan(pixel_size_m))
    check(
        not known or (math.isfinite(pixel_size_m) and pixel_size_m > 0),
        f"{src}: pixel_size_m",
        repr(pixel_size_m),
        "a positive length in metres (or None/NaN when unknown)",
    )
    names = [str(n) for n in names]
    check(len(names) == nv, f"{src}: names", repr(names), f"{nv} names, one per view")
    params_json = json.dumps(jsonable(dict(parameters)), indent=2, allow_nan=False)
    per_view: dict[str, np.ndarray] = {}
    results: dict[str, np.ndarray] = {}
    for k, arr in (extra or {}).items():
        a = np.asarray(to_host(arr))
        check(
            isinstance(k, str) and k and "/" not in k and k not in _IMAGE_RESERVED,
            f"{src}: extra key {k!r}",
            repr(k),
            f"a dataset name without '/' other than {sorted(_IMAGE_RESERVED)}",
        )
        check(a.dtype.kind in "biufc", f"{src}: extra[{k!r}]", f"dtype {a.dtype}", "a numeric array")
        (per_view if a.ndim >= 1 and a.shape[0] == nv else results)[k] = a
    n = v.shape[1]
    date = _utc_now()
    command = " ".join(sys.argv)
    with atomic_file(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("cxi_version", data=np.int64(CXI_VERSION))
            e = f.create_group("entry_1")
            e.create_dataset("start_time", data=date)
            for k in range(nv):
                g = e.create_group(f"image_{k + 1}")
                g.create_dataset("data", data=v[k].astype(np.complex64))
                g.create_dataset("data_space", data="real")
                g.create_dataset("data_type", data="exit wave")
                g.create_dataset("image_center", data=np.array([n // 2, n // 2, 0], dtype=np.float64))
                g.create_dataset("is_fft_shifted", data=np.int64(0))
                if known:
                    _put_scalar(g, "x_pixel_size", np.float64(pixel_size_m), "m")
                    _put_scalar(g, "y_pixel_size", np.float64(pixel_size_m), "m")
                g.create_dataset(
                    "mask", data=np.where(s[k].astype(bool), np.uint32(MASK_SUPPORT), np.uint32(0))
                )
                g.create_dataset("name", data=names[k])
                p = g.create_group("process_1")
                p.create_dataset("program", data="xstereo-gpu")
                p.create_dataset("version", data=__version__)
                p.create_dataset("date", data=date)
                p.create_dataset("command", data=command)
                p.create_dataset("parameters", data=params_json)
                for name, a in per_view.items():
                    g.create_dataset(name, data=a[k])
            if results:
                r = e.create_group("result_1")
                for name, a in results.items():
                    r.create_dataset(name, data=a)
    return pathlib.Path(path)


def read_views(path: str | os.PathLike, *, allow_external_data: bool = False) -> tuple[np.ndarray, dict]:
    """Read the phased views of a ``views.cxi`` file written by :func:`write_views`.

    Parameters
    ----------
    path : str or path-like
        CXI file with ``/entry_1/image_1``, ``/entry_1/image_2``, ...
    allow_external_data : bool
        Follow HDF5 external links, external raw storage and virtual-dataset sources outside the
        file's directory (refused by default).

    Returns
    -------
    views : (V, N, N) complex64
        The views in file order.
    info : dict
        ``pixel_size_m`` (float, m; None when not recorded), ``names`` (list of str), ``parameters`` (dict,
        from the JSON of
        ``image_1/process_1/parameters``; ``{}`` when absent), ``supports`` ((V, N, N) bool, mask bit
        0x10000), ``program``, ``version``, ``date``, ``command`` (str or None), and ``extra`` (dict:
        per-view datasets stacked on a leading V axis, plus the datasets of ``entry_1/result_1``).
    """
    import h5py

    src = str(path)
    with _open_hdf5(path, allow_external=allow_external_data) as f:
        check(
            _node(f, "entry_1/image_1", src) is not None,
            f"{src}:/entry_1/image_1",
            "missing group",
            "phased views in /entry_1/image_1, /entry_1/image_2, ... (a views.cxi file)",
        )
        views, supports, names = [], [], []
        per_view: dict[str, list] = {}
        k = 1
        while _node(f, f"entry_1/image_{k}", src) is not None:
            g = f"entry_1/image_{k}"
            d = np.asarray(_dataset(f, f"{g}/data", src, required=True)[()])
            check(d.ndim == 2 and d.shape[0] == d.shape[1], f"{src}:/{g}/data", f"shape {d.shape}", "(N, N)")
            check(
                not views or d.shape == views[0].shape,
                f"{src}:/{g}/data",
                f"shape {d.shape}",
                f"the shape of image_1 {views[0].shape if views else ''}",
            )
            check(d.dtype.kind in "biufc", f"{src}:/{g}/data", f"dtype {d.dtype}", "numbers")
            views.append(d.astype(np.complex64))
            mds = _dataset(f, f"{g}/mask", src)
            if mds is None:
                supports.append(np.ones(d.shape, dtype=bool))
            else:
                m = _as_mask(mds[()], f"{src}:/{g}/mask")
                check(
                    m.shape == d.shape, f"{src}:/{g}/mask", f"shape {m.shape}", f"the data's shape {d.shape}"
                )
                supports.append((m & MASK_SUPPORT) != 0)
            names.append(_read_str(f, f"{g}/name", src) or (VIEW_NAMES[k - 1] if k <= 2 else f"view_{k - 1}"))
            for key, obj in _children(f, g, src):
                if key not in _IMAGE_RESERVED and isinstance(obj, h5py.Dataset):
                    per_view.setdefault(key, []).append(np.asarray(obj[()]))
            k += 1
        pixel = _read_length(f, "entry_1/image_1/x_pixel_size", src)
        proc = "entry_1/image_1/process_1"
        text = _read_str(f, f"{proc}/parameters", src)
        try:
            parameters = json.loads(text) if text else {}
        except ValueError as exc:
            raise InputError(f"{src}:/{proc}/parameters", f"invalid JSON ({exc})", "a JSON object") from None
        info = {
            "pixel_size_m": pixel,
            "names": names,
            "parameters": parameters,
            "supports": np.stack(supports),
        }
        for key in ("program", "version", "date", "command"):
            info[key] = _read_str(f, f"{proc}/{key}", src)
        extra = {key: np.stack(vals) for key, vals in per_view.items() if len(vals) == len(views)}
        for key, obj in _children(f, "entry_1/result_1", src):
            if isinstance(obj, h5py.Dataset):
                extra[key] = np.asarray(obj[()])
        info["extra"] = extra
    return np.stack(views), info
