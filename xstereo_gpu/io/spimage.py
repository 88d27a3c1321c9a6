"""Diffraction patterns in libspimage's HDF5 layout (the ``.h5`` files of libspimage, Hawk and Condor).

libspimage (``sp_image_write`` to ``.h5``, file ``version`` 2) writes at the root of the file:

* ``real`` (and ``imag`` when ``phased``): the image, float32/64, HDF5 shape ``(nx, ny, nz)``
  (``(nx, ny, 1)`` for a 2D image) written from a buffer in which x varies fastest, so that the
  bytes, read in HDF5 order, are the row-major ``(ny, nx)`` image (rows = y). Python writers of the
  layout (h5py) store a 2D NumPy array ``(H, W)`` as it is, and ``image_center`` in its axis order;
  both are read so;
* ``mask``: int32 of the same shape, **1 = valid pixel** (the opposite of a CXI mask);
* ``scaled`` (1 = the image holds amplitudes, 0 = intensities), ``phased`` (1 = complex),
  ``shifted`` (1 = FFT order: the zero frequency at pixel (0, 0));
* ``image_center`` (3,) ``(x, y, z)`` [pixels], ``lambda`` [m], ``detector_distance`` [m],
  ``pixel_size`` (3,) or (1,) [m] (0 where unknown), ``num_dimensions``, ``version``.

:func:`read_spimage` turns that into a :class:`~xstereo_gpu.io.images.Pattern`'s fields: photon
intensities (amplitudes squared), a CXI mask (0 = good), the zero frequency in the middle
(``fftshift`` of a shifted image) and the geometry the file records.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import check
from .cxi import MASK_INVALID, _dataset, is_spimage

__all__ = ["is_spimage", "read_spimage"]


def _flag(f: Any, name: str, src: str) -> bool:
    ds = _dataset(f, name, src)
    if ds is None:
        return False
    v = np.asarray(ds[()]).ravel()
    check(v.size >= 1 and v.dtype.kind in "biuf", f"{src}:/{name}", f"{v.dtype} {v.shape}", "a 0/1 flag")
    return bool(v[0])


def _positive(f: Any, name: str, src: str) -> np.ndarray | None:
    """Values of a geometry dataset, None when missing or 0 (libspimage's 'unknown')."""
    ds = _dataset(f, name, src)
    if ds is None:
        return None
    v = np.asarray(ds[()], dtype=np.float64).ravel()
    if v.size == 0 or not np.all(np.isfinite(v)) or not np.all(v > 0):
        return None
    return v


def _image(ds: Any, where: str) -> np.ndarray:
    """The (H, W) image of a libspimage dataset.

    libspimage's C writer stores a 2D image ``(nx, ny, 1)`` from a buffer in which x varies fastest:
    its bytes are the row-major ``(ny, nx)`` image. Python writers (h5py) store the NumPy array
    ``(H, W)`` as it is: read as stored.
    """
    shape = tuple(int(n) for n in ds.shape)
    check(
        len(shape) == 2 or (len(shape) == 3 and shape[2] == 1),
        where,
        f"shape {shape}" + (" (a 3D volume)" if len(shape) == 3 else ""),
        "a 2D libspimage image: HDF5 shape (nx, ny, 1) or (H, W)",
    )
    arr = np.asarray(ds[()])
    return arr.reshape(shape[1], shape[0]) if len(shape) == 3 else arr


def read_spimage(f: Any, src: str, *, intensities: bool = True) -> dict:
    """Pattern, mask and geometry of a libspimage HDF5 file.

    Parameters
    ----------
    f : h5py.File
        The open file (opened by :func:`~xstereo_gpu.io.cxi._open_hdf5`).
    src : str
        Its path, for messages.
    intensities : bool
        Square the amplitudes of a ``scaled`` image (a diffraction pattern). False: the modulus of
        the image as stored (a real-space image, e.g. a reconstruction or a support Hawk wrote).

    Returns
    -------
    dict
        ``data`` (H, W) float32 intensities [detector units, amplitudes squared when ``scaled``],
        ``mask`` (H, W) uint32 (CXI bits: ``MASK_INVALID`` where libspimage's mask is 0),
        ``centre`` ``(row, col)`` of the zero frequency [px] (after the ``fftshift`` of a shifted
        image) or None, ``wavelength_m``, ``distance_m``, ``pixel_size_m`` (None where the file
        holds 0), ``dataset`` ``"/real"`` and ``notes``: what was done to the stored values.

    Raises
    ------
    InputError
        Naming ``file:/dataset``: a 3D volume, a mask of another shape, non-square pixels.
    """
    real = _dataset(f, "real", src, required=True)
    where = f"{src}:/real"
    check(real.dtype.kind in "biuf", where, f"dtype {real.dtype}", "real numbers")
    amp = _image(real, where).astype(np.float64)
    notes = []
    phased = _flag(f, "phased", src)
    if phased:
        imag = _dataset(f, "imag", src, required=True, hint=" (the file says phased = 1)")
        check(
            tuple(imag.shape) == tuple(real.shape),
            f"{src}:/imag",
            f"shape {imag.shape}",
            f"the shape of /real {real.shape}",
        )
        amp = np.abs(amp + 1j * _image(imag, f"{src}:/imag").astype(np.float64))
        notes.append("|real + i imag|")
    if intensities and _flag(f, "scaled", src):
        data = amp * amp
        notes.append("amplitudes squared (scaled = 1)")
    else:
        data = amp
    mds = _dataset(f, "mask", src, required=True)
    mwhere = f"{src}:/mask"
    check(
        tuple(mds.shape) == tuple(real.shape),
        mwhere,
        f"shape {tuple(mds.shape)}",
        f"the shape of /real {tuple(real.shape)}",
    )
    m = _image(mds, mwhere)
    check(m.dtype.kind in "biuf", mwhere, f"dtype {m.dtype}", "a 0/1 mask (1 = valid pixel)")
    mask = np.where(m != 0, np.uint32(0), np.uint32(MASK_INVALID)).astype(np.uint32)
    centre = None
    c = _dataset(f, "image_center", src)
    if c is not None:
        cv = np.asarray(c[()], dtype=np.float64).ravel()
        if cv.size >= 2 and np.all(np.isfinite(cv[:2])):
            # (x, y) -> (row, col) for the C layout; a Python writer's centre follows its array axes
            centre = (float(cv[1]), float(cv[0])) if real.ndim == 3 else (float(cv[0]), float(cv[1]))
    if _flag(f, "shifted", src):
        data = np.fft.fftshift(data)
        mask = np.fft.fftshift(mask)
        centre = (float(data.shape[0] // 2), float(data.shape[1] // 2))
        notes.append("fftshift (shifted = 1: FFT order)")
    wl = _positive(f, "lambda", src)
    dist = _positive(f, "detector_distance", src)
    pix = _positive(f, "pixel_size", src)
    pixel = None
    if pix is not None:
        px = pix[:2] if pix.size >= 2 else pix[:1]
        check(
            bool(np.all(np.abs(px - px[0]) <= 1e-6 * px[0])),
            f"{src}:/pixel_size",
            f"x {px[0]:g} m and y {px[-1]:g} m",
            "square detector pixels",
        )
        pixel = float(px[0])
    return {
        "data": data.astype(np.float32),
        "mask": mask,
        "centre": centre,
        "wavelength_m": float(wl[0]) if wl is not None else None,
        "distance_m": float(dist[0]) if dist is not None else None,
        "pixel_size_m": pixel if pixel is not None and math.isfinite(pixel) else None,
        "dataset": "/real",
        "notes": tuple(notes),
    }
