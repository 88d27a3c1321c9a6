"""Single diffraction patterns and real-space images from CXI/HDF5, TIFF and NPY files.

:func:`read_pattern` reads one detector frame with whatever geometry the file carries (CXI) or none
(TIFF, NPY: the geometry then comes from the command line). :func:`read_image` reads a real-space
image for the stereo stage, e.g. one view of a ``views.cxi`` file. Formats: docs/format.md.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, check
from .cxi import _dataset, _open_hdf5, _read_frame, check_count_dtype, warn_saturated_uint8
from .export import read_tiff

__all__ = ["Pattern", "read_pattern", "read_image", "HDF5_SUFFIXES", "TIFF_SUFFIXES", "NPY_SUFFIXES"]

HDF5_SUFFIXES = (".cxi", ".h5", ".hdf5", ".nxs")
TIFF_SUFFIXES = (".tif", ".tiff")
NPY_SUFFIXES = (".npy",)


@dataclass
class Pattern:
    """One detector frame and the geometry its file records.

    Attributes
    ----------
    data : (H, W) float32
        Detected intensity [photons or detector units].
    mask : (H, W) uint32
        CXI pixel mask bits, 0 = good (all zero when the file has no mask).
    wavelength_m : float or None
        Wavelength [m] (CXI ``source_1/wavelength``, or ``h c / energy``).
    distance_m : float or None
        Sample-detector distance [m].
    pixel_size_m : float or None
        Detector pixel [m] (``x_pixel_size``, or the length of the fast-axis basis vector).
    source : str
        The file it was read from.
    dataset : str
        HDF5 dataset read (``""`` for TIFF/NPY).
    frame : int or None
        Frame of a 3D stack, None for a 2D file.
    """

    data: np.ndarray
    mask: np.ndarray
    wavelength_m: float | None
    distance_m: float | None
    pixel_size_m: float | None
    source: str
    dataset: str = ""
    frame: int | None = None


def _suffix(path: pathlib.Path) -> str:
    s = path.suffix.lower()
    check(
        s in HDF5_SUFFIXES + TIFF_SUFFIXES + NPY_SUFFIXES,
        str(path),
        f"extension {path.suffix!r}",
        f"one of {', '.join(HDF5_SUFFIXES + TIFF_SUFFIXES + NPY_SUFFIXES)}",
    )
    return s


def _exists(path: pathlib.Path) -> None:
    check(path.exists(), str(path), "no such file", "an existing file")
    check(path.is_file(), str(path), "a directory" if path.is_dir() else "not a regular file", "a file")


def _load_array(path: pathlib.Path, suffix: str) -> np.ndarray:
    """TIFF or NPY contents (NPY memory-mapped, never unpickled)."""
    _exists(path)
    if suffix in TIFF_SUFFIXES:
        return np.asarray(read_tiff(path)[0])
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(
            str(path),
            f"an unreadable .npy file ({exc})",
            "a NumPy .npy array of numbers (no pickled objects)",
        ) from None


def _select(arr: np.ndarray, frame: int | None, where: str, word: str = "frame") -> np.ndarray:
    check(
        arr.ndim in (2, 3),
        where,
        f"{arr.ndim} dimensions {arr.shape}",
        "a 2D image (H, W) or a 3D stack (F, H, W)",
    )
    if arr.ndim == 3:
        n = arr.shape[0]
        check(
            frame is not None,
            where,
            f"a stack of {n} frames {arr.shape}",
            f"a {word} index: {word}=i with 0 <= i < {n}",
        )
        check(
            0 <= int(frame) < n, where, f"{word}={frame} but the stack has {n} frames", f"0 <= {word} < {n}"
        )
        return np.asarray(arr[int(frame)])
    check(
        frame in (None, 0),
        where,
        f"{word}={frame} for a single 2D image {arr.shape}",
        f"no {word} index (or 0)",
    )
    return np.asarray(arr)


def _check_intensities(data: np.ndarray, mask: np.ndarray, where: str) -> None:
    good = mask == 0
    bad = ~np.isfinite(data) & good
    check(
        not bad.any(),
        where,
        f"{int(bad.sum())} NaN/inf pixels not masked",
        "finite intensities (mask bad pixels with CXI mask bits)",
    )
    neg = (data < 0) & good
    check(
        not neg.any(),
        where,
        f"{int(neg.sum())} negative intensities (min {float(data[neg].min()) if neg.any() else 0:g})",
        "non-negative photon counts (clip or mask them)",
    )
    n_good = int(good.sum())
    check(
        n_good > 0,
        where,
        f"no signal: every one of the {mask.size} pixels is masked",
        "a pattern with unmasked pixels (mask value 0)",
    )
    check(
        bool((data[good] > 0).any()),
        where,
        f"no signal: all {n_good} unmasked pixels are 0",
        "a diffraction pattern with positive intensities",
    )
    vals = data[good]
    lo, hi = float(vals.min()), float(vals.max())
    check(
        lo != hi,
        where,
        f"a constant pattern: all {n_good} unmasked pixels are {lo:g}",
        "a diffraction pattern (intensities that vary from pixel to pixel; a constant cannot be phased)",
    )


def read_pattern(
    path: str | os.PathLike,
    *,
    frame: int | None = None,
    dataset: str | None = None,
    validate: bool = True,
    allow_external_data: bool = False,
) -> Pattern:
    """Read one diffraction pattern from a CXI/HDF5, TIFF or NPY file.

    Parameters
    ----------
    path : str or path-like
        ``.cxi``/``.h5``/``.hdf5``/``.nxs`` (HDF5: ``entry_1/data_1/data``, else
        ``entry_1/instrument_1/detector_1/data``, else the first 2D/3D numeric dataset named
        ``data``), ``.tif``/``.tiff`` or ``.npy``.
    frame : int, optional
        Frame of a 3D stack ``(F, H, W)``; required for stacks, ``0 <= frame < F``.
    dataset : str, optional
        HDF5 dataset to read instead of the default search (e.g. ``"entry_2/data_1/data"`` for a
        file holding one pattern per entry).
    validate : bool
        Check that the intensities are finite and non-negative where the mask is 0. Pass False to
        read data that are not photon counts (the CXI specification's example files, for one).
    allow_external_data : bool
        HDF5 only: follow external links, external raw storage and virtual-dataset sources outside
        the file's directory (refused by default).

    Returns
    -------
    Pattern
        ``data`` (H, W) float32, ``mask`` (H, W) uint32 and the geometry the file carries
        (CXI only; None otherwise).

    Raises
    ------
    InputError
        Naming the file (and dataset): missing file, unknown extension, not HDF5/TIFF/NPY,
        truncated file, no data, not 2D after frame selection, stack without ``frame`` or with
        ``frame`` out of range, complex data, non-finite or negative intensities, no signal
        (every pixel masked, or every unmasked pixel 0).
    """
    p = pathlib.Path(path)
    suffix = _suffix(p)
    src = str(p)
    if suffix in HDF5_SUFFIXES:
        with _open_hdf5(p, allow_external=allow_external_data) as f:
            fr = _read_frame(f, src, frame=frame, dataset=dataset, counts=validate)
        pat = Pattern(
            data=fr["data"],
            mask=fr["mask"],
            wavelength_m=fr["wavelength_m"],
            distance_m=fr["distance_m"],
            pixel_size_m=fr["pixel_size_m"],
            source=src,
            dataset=fr["dataset"],
            frame=fr["frame"],
        )
        where = f"{src}:{fr['dataset']}"
    else:
        check(dataset is None, "dataset", repr(dataset), f"no dataset for a {suffix} file")
        arr = _load_array(p, suffix)
        check(arr.dtype.kind in "biuf", src, f"dtype {arr.dtype}", "real-valued intensities")
        if validate:
            check_count_dtype(arr.dtype, src)
        data = _select(arr, frame, src).astype(np.float32)
        pat = Pattern(
            data=data,
            mask=np.zeros(data.shape, dtype=np.uint32),
            wavelength_m=None,
            distance_m=None,
            pixel_size_m=None,
            source=src,
            frame=frame if arr.ndim == 3 else None,
        )
        where = src
        if validate:
            warn_saturated_uint8(arr.dtype, data, pat.mask, where)
    if validate:
        _check_intensities(pat.data, pat.mask, where)
    return pat


def read_image(path: str | os.PathLike, *, index: int = 0, allow_external_data: bool = False) -> np.ndarray:
    """Read a real-space image for the stereo stage.

    Parameters
    ----------
    path : str or path-like
        ``.tif``/``.tiff`` or ``.npy`` (2D; a 3D stack or a (V, N, N) array is indexed by
        ``index``), or CXI/HDF5: ``entry_1/image_{index+1}/data`` of a ``views.cxi`` file, else the
        detector data as :func:`read_pattern` finds it (``index`` = frame of a stack).
    index : int
        Which image (0 = left view of a ``views.cxi`` file).
    allow_external_data : bool
        HDF5 only: follow external links, external raw storage and virtual-dataset sources outside
        the file's directory (refused by default).

    Returns
    -------
    (H, W) float32
        The image; the modulus when the stored data are complex.

    Raises
    ------
    InputError
        Naming the file: missing or unreadable file, no such image, not 2D, non-finite values.
    """
    p = pathlib.Path(path)
    suffix = _suffix(p)
    src = str(p)
    check(int(index) >= 0, "index", repr(index), "a non-negative image index")
    if suffix in HDF5_SUFFIXES:
        with _open_hdf5(p, allow_external=allow_external_data) as f:
            name = f"entry_1/image_{int(index) + 1}/data"
            ds = _dataset(f, name, src)
            if ds is not None:
                where = f"{src}:/{name}"
                arr = np.asarray(ds[()])
                check(arr.ndim == 2, where, f"{arr.ndim} dimensions {arr.shape}", "a 2D image (H, W)")
            elif int(index) > 0 and _dataset(f, "entry_1/image_1/data", src) is not None:
                raise InputError(
                    f"{src}:/{name}",
                    "missing dataset",
                    "an index below the number of /entry_1/image_* groups",
                )
            else:
                fr = _read_frame(f, src, frame=int(index), dataset=None, counts=False)
                where = f"{src}:{fr['dataset']}"
                arr = fr["data"]
    else:
        arr = _select(_load_array(p, suffix), int(index), src, word="index")
        where = src
    check(arr.dtype.kind in "biufc", where, f"dtype {arr.dtype}", "numbers")
    img = (np.abs(arr) if arr.dtype.kind == "c" else arr).astype(np.float32)
    bad = ~np.isfinite(img)
    check(not bad.any(), where, f"{int(bad.sum())} NaN/inf pixels", "finite values")
    return img
