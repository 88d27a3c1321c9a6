"""Argument checks shared by the stages, built on :func:`xstereo_gpu.errors.check`.

Each raises :class:`~xstereo_gpu.errors.InputError` naming the argument (``where``), the value found
and what was expected, and returns the argument in the dtype the caller computes in. They take their
array module from the input (NumPy or CuPy); the finiteness tests are one device reduction each.
"""

from __future__ import annotations

import numbers

import numpy as np

from .backend import get_array_module
from .errors import check

__all__ = ["check_image", "check_points", "check_positive"]


def check_image(img, where: str, *, what: str = "image", finite: bool = True):
    """A finite, real, non-empty 2-D image as float32.

    Parameters
    ----------
    img : (H, W) real array, NumPy or CuPy
    where : str
        The argument's name in the message.
    what : str
        What the image is ("image", "view"), for the message.
    finite : bool
        Check that every value is finite (one device reduction and, on CuPy, one host
        synchronisation); False leaves it to the caller.

    Returns
    -------
    (H, W) float32, same array module (no copy when already float32)
    """
    shape = getattr(img, "shape", None)
    check(
        shape is not None and len(shape) == 2,
        where,
        f"shape {shape if shape is not None else type(img).__name__}",
        f"a 2-D (H, W) {what}",
    )
    xp = get_array_module(img)
    check(not xp.iscomplexobj(img), where, f"dtype {img.dtype}", f"a real {what} (amplitude or phase)")
    check(min(shape) >= 1, where, f"shape {tuple(shape)}", f"a non-empty {what}")
    img = img.astype(np.float32, copy=False)
    if finite:
        check(bool(xp.isfinite(img).all()), where, "non-finite values", f"a finite {what}")
    return img


def check_points(points, where: str, *, columns: int = 3, minimum: int = 0, names: str | None = None):
    """A finite (M, columns) array of real coordinates with at least ``minimum`` rows, as float64.

    Parameters
    ----------
    points : (M, columns) real array, NumPy or CuPy
    where : str
        The argument's name in the message.
    columns : int
        2 for image points ``(x, y)``, 3 for cloud points ``(x, y, z)``.
    minimum : int
        Fewest rows accepted.
    names : str, optional
        The coordinates, for the message (default ``"x, y"`` or ``"x, y, z"``).

    Returns
    -------
    (M, columns) float64, same array module
    """
    names = names or ", ".join("xyz"[:columns])
    shape = getattr(points, "shape", None)
    check(
        shape is not None and len(shape) == 2 and shape[1] == columns,
        where,
        f"shape {tuple(shape) if shape is not None else type(points).__name__}",
        f"(M, {columns}): {names} per point",
    )
    check(
        getattr(points, "dtype", np.dtype(float)).kind in "biuf",
        where,
        f"dtype {points.dtype}",
        "real coordinates",
    )
    check(shape[0] >= minimum, where, f"{shape[0]} points", f"at least {minimum}")
    xp = get_array_module(points)
    pts = points.astype(np.float64, copy=False)
    check(shape[0] == 0 or bool(xp.isfinite(pts).all()), where, "non-finite coordinates", f"finite {names}")
    return pts


def check_positive(
    where: str, value, *, integer: bool = False, allow_zero: bool = False, expected: str | None = None
):
    """``value`` if it is a positive (or, with ``allow_zero``, non-negative) finite number or integer.

    Parameters
    ----------
    where : str
        The argument's name in the message.
    value : real scalar
        Python or NumPy number (a 0-d array passes too).
    integer : bool
        Also require an integral value (``3`` and ``3.0`` pass, ``2.5`` does not).
    allow_zero : bool
        Accept 0.
    expected : str, optional
        What the message says was expected, e.g. with the unit: ``"a positive finite distance in
        nm"`` (default: ``"a positive integer"``, ``"a non-negative finite number"``, ...).

    Returns
    -------
    The value, unchanged.
    """
    try:
        if isinstance(value, numbers.Integral):  # Python, NumPy and bool integers: finite and integral
            ok = bool(value >= 0 if allow_zero else value > 0)
        else:
            ok = bool(np.isfinite(value)) and bool(value >= 0 if allow_zero else value > 0)
            ok = ok and (not integer or int(value) == value)
    except (TypeError, ValueError, OverflowError):  # not a real scalar
        ok = False
    if expected is None:
        expected = ("a non-negative" if allow_zero else "a positive") + (
            " integer" if integer else " finite number"
        )
    check(ok, where, repr(value), expected)
    return value
