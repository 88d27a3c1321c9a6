"""Projection of a voxel object along a tilted beam, and the complex transmission it gives.

View ``k`` has the signed angle ``a_k`` (left ``+t1``, right ``-t2``) and is expressed on the
detector-parallel plane: a point ``(x, y, z)`` appears at ``x_k = x + z tan a_k``, ``y_k = y``
(docs/geometry.md). The rays of view ``k`` are the lines ``x + z tan a_k = const``, i.e. they travel
along ``(-sin a_k, 0, cos a_k)``: the left beam arrives from the ``+x`` side, which is why its pattern
is centred left of the frame centre (paper Fig. 2a). The path length through the material reaching
view pixel ``(y, x_k)`` is therefore

    L_k(x_k, y) = sum_j occ(x_k - z_j tan a_k, y, z_j) dz / cos a_k,

each slice being shifted by ``z_j tan a_k / Dr`` pixels (linear interpolation, which moves the
centroid of every slice by exactly that amount; edge values are replicated, i.e. material outside the
sub-box continues the box's border). The transmission is ``exp(-i k (delta - i beta) L)`` with
``k = 2 pi / lambda``: amplitude ``exp(-k beta L)``, phase ``-k delta L``.

Works on NumPy and CuPy arrays (the array module follows ``occupancy``).
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import get_array_module, scipy_module, to_host
from ..checks import check_positive
from ..errors import InputError

__all__ = [
    "path_length",
    "transmission",
    "project",
    "beta_from_attenuation",
    "misalignment_matrix",
    "misalign",
]


def beta_from_attenuation(wavelength_m: float, attenuation_length_m: float) -> float:
    """Imaginary index decrement ``beta = lambda / (4 pi l)`` of a material whose intensity falls by 1/e "
    "over ``l``."""
    return wavelength_m / (4.0 * math.pi * attenuation_length_m)


def _slice_step(z: np.ndarray, dz_m: float | None) -> float:
    if dz_m is not None:
        check_positive("project: dz_m", dz_m, expected="a positive slice thickness in metres")
        return float(dz_m)
    if z.size < 2:
        raise InputError("project: z_m", f"{z.size} slice(s) and no dz_m", "at least 2 slices, or dz_m given")
    steps = np.diff(z)
    dz = float(steps.mean())
    if not (dz > 0 and np.allclose(steps, dz, rtol=1e-6, atol=0)):
        raise InputError(
            "project: z_m",
            "non-uniform or decreasing slice positions",
            "uniformly increasing z_m, or dz_m given",
        )
    return dz


def path_length(occupancy, *, z_m, pixel_m: float, angle_rad: float, dz_m: float | None = None):
    """Material path length along a beam tilted by ``angle_rad`` in the x-z plane.

    Parameters
    ----------
    occupancy : (Nz, Ny, Nx) float32
        Fraction of each voxel filled with material (NumPy or CuPy).
    z_m : (Nz,) float64
        Slice centres, downstream positive  [m] (host array or sequence).
    pixel_m : float
        Lateral voxel side ``Dr``  [m].
    angle_rad : float
        Signed beam angle ``a_k`` (left view ``+t1``, right view ``-t2``)  [rad], |a| < 90 deg.
    dz_m : float, optional
        Slice thickness  [m]; default: the (uniform) spacing of ``z_m``.

    Returns
    -------
    (Ny, Nx) float32
        ``L_k`` on the view grid of the box  [m], same array module as ``occupancy``.
    """
    xp = get_array_module(occupancy)
    occ = occupancy
    if occ.ndim != 3:
        raise InputError("project: occupancy", f"shape {tuple(occ.shape)}", "a (Nz, Ny, Nx) volume")
    z = np.asarray(to_host(z_m), dtype=np.float64).reshape(-1)
    if z.shape[0] != occ.shape[0]:
        raise InputError(
            "project: z_m", f"{z.shape[0]} slice positions", f"{occ.shape[0]} (occupancy's first axis)"
        )
    check_positive("project: pixel_m", pixel_m, expected="a positive pixel size in metres")
    if not (math.isfinite(angle_rad) and abs(angle_rad) < math.pi / 2):
        raise InputError("project: angle_rad", repr(angle_rad), "a finite angle with |a| < pi/2")
    dz = _slice_step(z, dz_m)
    nx = occ.shape[2]
    # Output column i samples slice j at i - s_j, s_j = z_j tan a / Dr: i0 = i + floor(-s_j), weight f_j.
    shifts = z * math.tan(angle_rad) / pixel_m
    cols = xp.arange(nx)
    acc = xp.zeros(occ.shape[1:], dtype=xp.float32)
    for j in range(occ.shape[0]):
        pos = -shifts[j]
        n0 = math.floor(pos)
        f = np.float32(pos - n0)
        i0 = xp.clip(cols + n0, 0, nx - 1)
        i1 = xp.clip(cols + n0 + 1, 0, nx - 1)
        sl = occ[j]
        if f == 0:
            acc += sl[:, i0]
        else:
            acc += (np.float32(1) - f) * sl[:, i0] + f * sl[:, i1]
    return acc * np.float32(dz / math.cos(angle_rad))


def transmission(path_m, *, wavelength_m: float, delta: float, beta: float):
    """Complex transmission ``exp(-i (2 pi / lambda) (delta - i beta) L)``.

    Parameters
    ----------
    path_m : (...) float32
        Path length through the material  [m] (NumPy or CuPy).
    wavelength_m : float
        Wavelength  [m].
    delta, beta : float
        Refractive index decrement and absorption index of the material (``n = 1 - delta + i beta``).

    Returns
    -------
    (...) complex64
    """
    xp = get_array_module(path_m)
    check_positive("project: wavelength_m", wavelength_m, expected="a positive wavelength in metres")
    if not (math.isfinite(delta) and math.isfinite(beta) and beta >= 0):
        raise InputError(
            "project: delta, beta", f"delta={delta!r}, beta={beta!r}", "finite values with beta >= 0"
        )
    kw = 2.0 * math.pi / wavelength_m
    path = xp.asarray(path_m, dtype=xp.float32)
    amp = xp.exp(path * np.float32(-kw * beta))
    if delta == 0:
        return amp.astype(xp.complex64)
    return (amp * xp.exp(path * np.complex64(-1j * kw * delta))).astype(xp.complex64)


def project(
    occupancy,
    *,
    z_m,
    pixel_m: float,
    angle_rad: float,
    wavelength_m: float,
    delta: float,
    beta: float,
    dz_m: float | None = None,
):
    """Complex transmission of a voxel object seen along a beam tilted by ``angle_rad``.

    ``T_k(x_k, y) = exp(-i (2 pi / lambda) (delta - i beta) L_k(x_k, y))`` with ``L_k`` from
    :func:`path_length`.

    Parameters
    ----------
    occupancy : (Nz, Ny, Nx) float32
        Fraction of each voxel filled with the material (NumPy or CuPy).
    z_m : (Nz,) float64
        Slice centres  [m].
    pixel_m : float
        Lateral voxel side  [m].
    angle_rad : float
        Signed beam angle (left ``+t1``, right ``-t2``)  [rad].
    wavelength_m : float
        Wavelength  [m].
    delta, beta : float
        Refractive index decrement and absorption index of the material. An amplitude sample has
        ``delta = 0`` and ``beta = lambda / (4 pi l)`` (see :func:`beta_from_attenuation`), so the
        intensity transmission is ``exp(-L / l)``.
    dz_m : float, optional
        Slice thickness  [m]; default: the spacing of ``z_m``.

    Returns
    -------
    (Ny, Nx) complex64
    """
    L = path_length(occupancy, z_m=z_m, pixel_m=pixel_m, angle_rad=angle_rad, dz_m=dz_m)
    return transmission(L, wavelength_m=wavelength_m, delta=delta, beta=beta)


def misalignment_matrix(n: int, *, rotation_deg: float, shift_px) -> np.ndarray:
    """Homogeneous map of the misalignment applied by :func:`misalign`, in pixel coordinates.

    A feature at pixel ``(col, row)`` of the aligned view appears at ``M @ (col, row, 1)`` of the
    misaligned one: a rotation by ``rotation_deg`` about the grid centre ``(N//2, N//2)``
    (``x' = cos x - sin y``, ``y' = sin x + cos y`` with ``x`` = col, ``y`` = row, both from the centre)
    followed by the shift ``(rows, cols)``.

    Parameters
    ----------
    n : int
        Grid side N [pixels].
    rotation_deg : float
        Rotation  [deg].
    shift_px : (2,) float
        ``(rows, cols)`` shift after the rotation [pixels].

    Returns
    -------
    (3, 3) float64
    """
    th = math.radians(rotation_deg)
    c, s = math.cos(th), math.sin(th)
    cen = float(n // 2)
    dy, dx = (float(v) for v in shift_px)
    a = np.array([[c, -s], [s, c]])
    t = np.array([cen, cen]) - a @ np.array([cen, cen]) + np.array([dx, dy])
    out = np.eye(3)
    out[:2, :2], out[:2, 2] = a, t
    return out


def misalign(image, *, rotation_deg: float, shift_px, order: int = 1):
    """Resample an image (real or complex) under :func:`misalignment_matrix`.

    ``out(p') = image(M^-1 p')``: bilinear (``order=1``) by default, so complex transmissions stay
    bounded; values beyond the grid repeat its border (``mode="nearest"``).

    Parameters
    ----------
    image : (N, N) complex64 or float32
        Image on the view grid (NumPy or CuPy).
    rotation_deg : float
        Rotation about the grid centre  [deg].
    shift_px : (2,) float
        ``(rows, cols)`` shift [pixels].
    order : int
        Spline order of the interpolation.

    Returns
    -------
    (N, N) same dtype as ``image``
    """
    xp = get_array_module(image)
    if image.ndim != 2 or image.shape[0] != image.shape[1]:
        raise InputError("misalign: image", f"shape {tuple(image.shape)}", "a square (N, N) image")
    ndi = scipy_module(xp, "ndimage")
    m = misalignment_matrix(image.shape[0], rotation_deg=rotation_deg, shift_px=shift_px)
    inv = np.linalg.inv(m)
    # (row, col) index order for ndimage: swap the axes of the (col, row) map
    swap = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=float)
    inv_rc = swap @ inv @ swap
    mat, off = inv_rc[:2, :2], inv_rc[:2, 2]
    if not xp.iscomplexobj(image):
        return ndi.affine_transform(image, xp.asarray(mat), offset=tuple(off), order=order, mode="nearest")
    re = ndi.affine_transform(image.real, xp.asarray(mat), offset=tuple(off), order=order, mode="nearest")
    im = ndi.affine_transform(image.imag, xp.asarray(mat), offset=tuple(off), order=order, mode="nearest")
    return (re + 1j * im).astype(image.dtype)
