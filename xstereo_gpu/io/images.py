"""Single diffraction patterns, masks, supports and real-space images from the files the field writes.

:func:`read_pattern` reads one detector frame with whatever geometry the file carries (CXI,
libspimage HDF5) or none (TIFF, NPY: the geometry then comes from the command line), with an
optional separate mask file. :func:`read_mask` and :func:`read_support` read a pixel mask and a
real-space support. :func:`read_image` reads a real-space image for the stereo stage: one view of a
``views.cxi`` file, a TIFF/NPY array or any PNG/JPEG picture (8/16-bit grey, or colour read as its
luminance). Layouts that could be read two ways (``(H, W, 1)``, channels last in an NPY array) are
refused, never sliced. Formats: docs/format.md.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, check, warn
from .cxi import (
    MASK_INVALID,
    _dataset,
    _open_hdf5,
    _read_frame,
    check_count_dtype,
    check_layout,
    warn_saturated_uint8,
)
from .spimage import is_spimage, read_spimage

__all__ = [
    "Pattern",
    "read_pattern",
    "read_mask",
    "read_support",
    "read_image",
    "HDF5_SUFFIXES",
    "TIFF_SUFFIXES",
    "NPY_SUFFIXES",
    "PICTURE_SUFFIXES",
    "MASK_CONVENTIONS",
]

HDF5_SUFFIXES = (".cxi", ".h5", ".hdf5", ".nxs")
TIFF_SUFFIXES = (".tif", ".tiff")
NPY_SUFFIXES = (".npy",)
#: Pictures read through Pillow: stereo images, masks and supports (not patterns: 8-bit or lossy).
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: What the values of a mask file mean: ``"cxi"`` 0 = good pixel (any bit set excludes it: CXI masks,
#: bad-pixel maps); ``"valid"`` non-zero = measured pixel, 0 = excluded (libspimage, Hawk).
MASK_CONVENTIONS = ("cxi", "valid")
#: ITU-R BT.601 luma weights of R, G, B (what Pillow's ``convert("L")`` uses).
_LUMA = np.array([0.299, 0.587, 0.114])


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
    centre : (2,) float or None
        ``(row, col)`` of the zero frequency the file records [px] (libspimage ``image_center``,
        or the middle of an FFT-ordered image after its ``fftshift``); None when it records none.
    notes : tuple of str
        What was done to the stored values (``"amplitudes squared (scaled = 1)"``, the mask file
        merged, ...), for the record.
    """

    data: np.ndarray
    mask: np.ndarray
    wavelength_m: float | None
    distance_m: float | None
    pixel_size_m: float | None
    source: str
    dataset: str = ""
    frame: int | None = None
    centre: tuple[float, float] | None = None
    notes: tuple[str, ...] = ()


def _suffix(path: pathlib.Path, allowed: tuple[str, ...]) -> str:
    s = path.suffix.lower()
    check(s in allowed, str(path), f"extension {path.suffix!r}", f"one of {', '.join(allowed)}")
    return s


def _exists(path: pathlib.Path) -> None:
    check(path.exists(), str(path), "no such file", "an existing file")
    check(path.is_file(), str(path), "a directory" if path.is_dir() else "not a regular file", "a file")


def _load_tiff(path: pathlib.Path) -> tuple[np.ndarray, bool]:
    """TIFF contents and whether they are a colour image with its samples last (``YXS``)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            arr = np.asarray(series.asarray())
            colour = series.axes.endswith("S") and arr.ndim == 3
    except (tifffile.TiffFileError, OSError, ValueError, IndexError) as exc:
        raise InputError(str(path), f"an unreadable TIFF file ({exc})", "a valid TIFF image") from None
    return arr, colour


def _load_picture(path: pathlib.Path) -> tuple[np.ndarray, bool]:
    """PNG/JPEG pixels through Pillow: (H, W) grey (8/16/32-bit) or (H, W, C) colour."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            n = int(getattr(im, "n_frames", 1))
            check(n == 1, str(path), f"an animated picture of {n} frames", "a single still picture")
            if im.mode in ("P", "PA"):  # palette: its colours
                im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
            elif im.mode == "1":
                im = im.convert("L")
            elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):  # other colour spaces: as RGB
                im = im.convert("RGB")
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(str(path), f"an unreadable picture ({exc})", "a valid PNG or JPEG file") from None
    if arr.ndim == 3 and path.suffix.lower() == ".png":
        with open(path, "rb") as fh:
            head = fh.read(26)
        if len(head) == 26 and head[12:16] == b"IHDR" and head[24] == 16:
            warn(
                str(path),
                "a 16-bit colour PNG, which Pillow reads with 8 bits per channel",
                "a 16-bit grey PNG or a TIFF to keep the full depth",
            )
    return arr, arr.ndim == 3


def _load_array(path: pathlib.Path, suffix: str) -> tuple[np.ndarray, bool]:
    """TIFF, NPY (memory-mapped, never unpickled) or picture contents, and whether they are colour."""
    _exists(path)
    if suffix in TIFF_SUFFIXES:
        return _load_tiff(path)
    if suffix in PICTURE_SUFFIXES:
        return _load_picture(path)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False), False
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(
            str(path),
            f"an unreadable .npy file ({exc})",
            "a NumPy .npy array of numbers (no pickled objects)",
        ) from None


def _luminance(arr: np.ndarray, where: str) -> np.ndarray:
    """Grey (H, W) float32 of a colour (H, W, C) image: luma of RGB(A), the grey of grey+alpha."""
    c = arr.shape[-1]
    check(c in (1, 2, 3, 4), where, f"{c} colour channels {arr.shape}", "grey, grey+alpha, RGB or RGBA")
    a = np.asarray(arr, dtype=np.float64)
    if c <= 2:
        grey = a[..., 0]
        what = "a grey+alpha image: read as its grey channel"
    else:
        grey = a[..., :3] @ _LUMA
        kind = "RGBA" if c == 4 else "RGB"
        what = f"an {kind} colour image: read as its luminance 0.299 R + 0.587 G + 0.114 B"
    if c in (2, 4):
        what += " (alpha ignored)"
    warn(where, f"{what} ({arr.dtype})", "a grey image (one value per pixel)", stacklevel=4)
    return grey.astype(np.float32)


def _select(arr: np.ndarray, frame: int | None, where: str, word: str = "frame") -> np.ndarray:
    check(
        arr.ndim in (2, 3),
        where,
        f"{arr.ndim} dimensions {arr.shape}",
        "a 2D image (H, W) or a 3D stack (F, H, W)",
    )
    if arr.ndim == 3:
        check_layout(arr.shape, where)
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


#: Where a mask or a support is looked for in an HDF5 file, before the file's only 2D dataset.
_PLANE_NAMES = {
    "mask": ("mask", "entry_1/instrument_1/detector_1/mask", "entry_1/data_1/mask", "data"),
    "support": ("support", "entry_1/image_1/support", "data"),
}


def _read_plane(path: str | os.PathLike, what: str, allow_external: bool) -> tuple[np.ndarray, str, bool]:
    """A 2D array (mask or support) from TIFF/NPY/PNG/HDF5, where it was read, and whether it was a
    libspimage file (whose mask means 1 = valid)."""
    import h5py

    p = pathlib.Path(path)
    suffix = _suffix(p, HDF5_SUFFIXES + TIFF_SUFFIXES + NPY_SUFFIXES + PICTURE_SUFFIXES)
    src = str(p)
    if suffix not in HDF5_SUFFIXES:
        arr, colour = _load_array(p, suffix)
        check(not colour, src, f"a colour image {arr.shape}", f"a grey {what} image (one value per pixel)")
        check(arr.ndim == 2, src, f"{arr.ndim} dimensions {arr.shape}", f"a 2D {what} (H, W)")
        return np.asarray(arr), src, False
    with _open_hdf5(p, allow_external=allow_external) as f:
        if is_spimage(f, src):
            sp = read_spimage(f, src, intensities=False)
            if what == "mask":
                return (sp["mask"] != 0).astype(np.uint8), f"{src}:/mask", True
            return sp["data"], f"{src}:/real", True
        for name in _PLANE_NAMES[what]:
            ds = _dataset(f, name, src)
            if ds is not None:
                break
        else:
            planes: list[str] = []
            f.visititems(
                lambda n, o: planes.append(n) if isinstance(o, h5py.Dataset) and o.ndim == 2 else None
            )
            check(
                len(planes) == 1,
                src,
                f"no dataset named {what!r} and {len(planes)} 2D datasets {planes[:5]}",
                f"a dataset /{what} (or a file holding a single 2D dataset)",
            )
            name = planes[0]
            ds = _dataset(f, name, src)
        where = f"{src}:/{name}"
        check(ds.ndim == 2, where, f"{ds.ndim} dimensions {ds.shape}", f"a 2D {what} (H, W)")
        return np.asarray(ds[()]), where, False


def read_mask(
    path: str | os.PathLike,
    shape: tuple[int, int] | None = None,
    *,
    convention: str = "cxi",
    allow_external_data: bool = False,
) -> np.ndarray:
    """Read a pixel mask file as CXI mask bits (0 = good pixel).

    Parameters
    ----------
    path : str or path-like
        TIFF, NPY, PNG/JPEG (2D, grey) or HDF5: ``/mask`` (or the detector's mask, or the file's
        only 2D dataset); a libspimage file gives its ``/mask`` (1 = valid, whatever ``convention``).
    shape : (2,) int, optional
        The pattern's ``(H, W)``: the mask must have it.
    convention : {"cxi", "valid"}
        ``"cxi"``: 0 = good pixel, non-zero excludes it; ``"valid"``: non-zero = measured pixel,
        0 excludes it (:data:`MASK_CONVENTIONS`).
    allow_external_data : bool
        HDF5 only: follow links outside the file's directory.

    Returns
    -------
    (H, W) uint32
        The CXI bits as stored (``"cxi"``), or ``MASK_INVALID`` at excluded pixels.

    Raises
    ------
    InputError
        Naming the file: unreadable, not 2D, colour, of another shape, not numbers.
    """
    check(convention in MASK_CONVENTIONS, "mask convention", repr(convention), f"one of {MASK_CONVENTIONS}")
    arr, where, spimage = _read_plane(path, "mask", allow_external_data)
    check(arr.dtype.kind in "biuf", where, f"dtype {arr.dtype}", "mask numbers (integers or bool)")
    if shape is not None:
        check(
            tuple(arr.shape) == tuple(shape),
            where,
            f"shape {tuple(arr.shape)}",
            f"the pattern's shape {tuple(int(n) for n in shape)}",
        )
    if spimage:  # read_spimage's own convention: 1 = excluded
        return arr.astype(np.uint32) * np.uint32(MASK_INVALID)
    if convention == "valid":
        return np.where(arr != 0, 0, MASK_INVALID).astype(np.uint32)
    if arr.dtype.kind in "bf" or bool((arr < 0).any()):
        return np.where(arr != 0, MASK_INVALID, 0).astype(np.uint32)
    return arr.astype(np.uint32)


def read_support(path: str | os.PathLike, *, allow_external_data: bool = False) -> np.ndarray:
    """Read a real-space support: True where the object may be (non-zero pixels).

    Parameters
    ----------
    path : str or path-like
        TIFF, NPY, PNG (2D, grey) or HDF5: ``/support`` (or the file's only 2D dataset); a libspimage
        file (Hawk writes its supports so) gives its ``/real``.
    allow_external_data : bool
        HDF5 only: follow links outside the file's directory.

    Returns
    -------
    (N, N) bool
        The support, object centred as the phased view is (pixel ``(N//2, N//2)`` is the centre of
        the field). Its side sets the crop that is phased.

    Raises
    ------
    InputError
        Naming the file: unreadable, not 2D or not square, colour, non-finite, empty.
    """
    arr, where, _ = _read_plane(path, "support", allow_external_data)
    check(arr.dtype.kind in "biuf", where, f"dtype {arr.dtype}", "support numbers (non-zero = inside)")
    a = np.asarray(arr)
    check(
        a.shape[0] == a.shape[1] and a.shape[0] >= 4,
        where,
        f"shape {tuple(a.shape)}",
        "a square (N, N) support with N >= 4, N the side of the phased crop",
    )
    check(bool(np.all(np.isfinite(a))), where, "NaN/inf values", "finite values (non-zero = inside)")
    s = a != 0
    check(bool(s.any()), where, "an empty support (every pixel 0)", "non-zero pixels where the object may be")
    check(
        not bool(s.all()),
        where,
        "a support covering the whole field",
        "a support smaller than the field (the object within it, the rest 0)",
    )
    return s


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
    mask: str | os.PathLike | None = None,
    mask_convention: str = "cxi",
    validate: bool = True,
    allow_external_data: bool = False,
) -> Pattern:
    """Read one diffraction pattern from a CXI/HDF5, libspimage HDF5, TIFF or NPY file.

    Parameters
    ----------
    path : str or path-like
        ``.cxi``/``.h5``/``.hdf5``/``.nxs``: a libspimage file (``/real``, ``/mask`` and its flags
        at the root: :func:`~xstereo_gpu.io.spimage.read_spimage`), else ``entry_1/data_1/data``,
        else ``entry_1/instrument_1/detector_1/data``, else the first 2D/3D numeric dataset named
        ``data``; ``.tif``/``.tiff`` or ``.npy``.
    frame : int, optional
        Frame of a 3D stack ``(F, H, W)``; required for stacks, ``0 <= frame < F``.
    dataset : str, optional
        HDF5 dataset to read instead of the default search (e.g. ``"entry_2/data_1/data"`` for a
        file holding one pattern per entry). ``"real"`` in a libspimage file reads the file as
        libspimage does.
    mask : str or path-like, optional
        A separate mask file (:func:`read_mask`), merged with the file's own mask: a pixel
        excluded by either is excluded.
    mask_convention : {"cxi", "valid"}
        What the values of ``mask`` mean (:data:`MASK_CONVENTIONS`).
    validate : bool
        Check that the intensities are finite and non-negative where the mask is 0. Pass False to
        read data that are not photon counts (the CXI specification's example files, for one).
    allow_external_data : bool
        HDF5 only: follow external links, external raw storage and virtual-dataset sources outside
        the file's directory (refused by default).

    Returns
    -------
    Pattern
        ``data`` (H, W) float32 intensities, ``mask`` (H, W) uint32 and the geometry and centre the
        file carries (CXI, libspimage; None otherwise).

    Raises
    ------
    InputError
        Naming the file (and dataset): missing file, unknown extension, not HDF5/TIFF/NPY,
        truncated file, no data, not 2D after frame selection, stack without ``frame`` or with
        ``frame`` out of range, a layout that could be read two ways (``(H, W, 1)``, channels
        last, a colour TIFF), complex data, non-finite or negative intensities, no signal (every
        pixel masked, or every unmasked pixel 0), a mask file of another shape.
    """
    p = pathlib.Path(path)
    suffix = _suffix(p, HDF5_SUFFIXES + TIFF_SUFFIXES + NPY_SUFFIXES)
    src = str(p)
    if suffix in HDF5_SUFFIXES:
        with _open_hdf5(p, allow_external=allow_external_data) as f:
            if dataset in (None, "real", "/real") and is_spimage(f, src):
                check(
                    frame in (None, 0),
                    f"{src}:/real",
                    f"frame={frame} for a libspimage file (one 2D image)",
                    "no frame index (or 0)",
                )
                fr = read_spimage(f, src)
                fr["frame"] = None
            else:
                fr = _read_frame(f, src, frame=frame, dataset=dataset, counts=validate)
                fr["centre"], fr["notes"] = None, ()
        pat = Pattern(
            data=fr["data"],
            mask=fr["mask"],
            wavelength_m=fr["wavelength_m"],
            distance_m=fr["distance_m"],
            pixel_size_m=fr["pixel_size_m"],
            source=src,
            dataset=fr["dataset"],
            frame=fr["frame"],
            centre=fr["centre"],
            notes=tuple(fr["notes"]),
        )
        where = f"{src}:{fr['dataset']}"
    else:
        check(dataset is None, "dataset", repr(dataset), f"no dataset for a {suffix} file")
        arr, colour = _load_array(p, suffix)
        check(
            not colour,
            src,
            f"a colour image {arr.shape}",
            "one intensity per pixel (a grey TIFF (H, W) or a stack (F, H, W))",
        )
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
    if mask is not None:
        extra = read_mask(
            mask, pat.data.shape, convention=mask_convention, allow_external_data=allow_external_data
        )
        n_bad = int(np.count_nonzero(extra))
        if n_bad > extra.size // 2:
            other = "valid" if mask_convention == "cxi" else "cxi"
            meaning = {"valid": "1 marks the measured pixels", "cxi": "0 marks the good pixels"}[other]
            warn(
                str(mask),
                f"{n_bad} of {extra.size} pixels excluded under the {mask_convention!r} convention",
                f"a mask that excludes a minority of pixels; if {meaning}, pass --mask-convention {other} "
                f"(mask_convention={other!r})",
            )
        pat.mask = pat.mask | extra
        pat.notes = (*pat.notes, f"mask file {mask} ({mask_convention}): {n_bad} pixels excluded")
    if validate:
        _check_intensities(pat.data, pat.mask, where)
    return pat


def read_image(path: str | os.PathLike, *, index: int = 0, allow_external_data: bool = False) -> np.ndarray:
    """Read a real-space image for the stereo stage.

    Parameters
    ----------
    path : str or path-like
        ``.png``/``.jpg``/``.jpeg`` (read through Pillow: 8- or 16-bit grey, or colour read as its
        luminance with a warning); ``.tif``/``.tiff`` (grey; an RGB(A) TIFF is read as its
        luminance with a warning) or ``.npy`` (2D; a 3D stack or a (V, N, N) array is indexed by
        ``index``); or CXI/HDF5: ``entry_1/image_{index+1}/data`` of a ``views.cxi`` file, else
        the modulus of a libspimage image (:func:`~xstereo_gpu.io.spimage.read_spimage`, not
        squared), else the detector data as :func:`read_pattern` finds it (``index`` = frame of a
        stack).
    index : int
        Which image (0 = left view of a ``views.cxi`` file).
    allow_external_data : bool
        HDF5 only: follow external links, external raw storage and virtual-dataset sources outside
        the file's directory (refused by default).

    Returns
    -------
    (H, W) float32
        The image in its stored units (0..255 for 8-bit, 0..65535 for 16-bit pictures); the
        modulus when the stored data are complex.

    Raises
    ------
    InputError
        Naming the file: missing or unreadable file, no such image, not 2D, a layout that could be
        read two ways (``(H, W, 1)`` or channels last in an NPY array), non-finite values.
    """
    p = pathlib.Path(path)
    suffix = _suffix(p, HDF5_SUFFIXES + TIFF_SUFFIXES + NPY_SUFFIXES + PICTURE_SUFFIXES)
    src = str(p)
    check(int(index) >= 0, "index", repr(index), "a non-negative image index")
    if suffix in HDF5_SUFFIXES:
        with _open_hdf5(p, allow_external=allow_external_data) as f:
            name = f"entry_1/image_{int(index) + 1}/data"
            ds = _dataset(f, name, src)
            if ds is not None:
                where = f"{src}:/{name}"
                check_layout(ds.shape, where)
                arr = np.asarray(ds[()])
                check(arr.ndim == 2, where, f"{arr.ndim} dimensions {arr.shape}", "a 2D image (H, W)")
            elif int(index) > 0 and _dataset(f, "entry_1/image_1/data", src) is not None:
                raise InputError(
                    f"{src}:/{name}",
                    "missing dataset",
                    "an index below the number of /entry_1/image_* groups",
                )
            elif is_spimage(f, src):  # e.g. a reconstruction Hawk wrote: the modulus of the image
                check(int(index) == 0, "index", repr(index), f"0 for the single libspimage image {src}")
                where = f"{src}:/real"
                arr = read_spimage(f, src, intensities=False)["data"]
            else:
                fr = _read_frame(f, src, frame=int(index), dataset=None, counts=False)
                where = f"{src}:{fr['dataset']}"
                arr = fr["data"]
    else:
        arr, colour = _load_array(p, suffix)
        where = src
        if colour:
            check(int(index) == 0, "index", repr(index), f"0 for the single picture {src}")
            arr = _luminance(arr, src)
        else:
            arr = _select(arr, int(index), src, word="index")
    check(arr.dtype.kind in "biufc", where, f"dtype {arr.dtype}", "numbers")
    img = (np.abs(arr) if arr.dtype.kind == "c" else arr).astype(np.float32)
    bad = ~np.isfinite(img)
    check(not bad.any(), where, f"{int(bad.sum())} NaN/inf pixels", "finite values")
    return img
