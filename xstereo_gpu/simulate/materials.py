"""Optical constants of the sample materials, from the maintained ``xraydb`` package.

The refractive index of a material at a photon energy is ``n = 1 - delta + i beta`` (engine
convention; ``xraydb`` writes ``1 - delta - i beta`` with the same positive ``beta``). ``delta`` and
``beta`` come from ``xraydb.xray_delta_beta`` (Chantler's tables of f1, f2), never from hand-typed
numbers. A *stack* of layers ``j`` of thickness ``t_j`` crossed by a beam tilted by ``a`` transmits

    T = exp(-i (2 pi / lambda) sum_j (delta_j - i beta_j) t_j / cos a),

i.e. amplitude ``exp(-k sum beta_j t_j / cos a)`` and phase ``-k sum delta_j t_j / cos a``. A stack
therefore acts as one material of thickness ``sum t_j`` with the thickness-weighted mean ``delta``
and ``beta`` (:func:`stack_delta_beta`), which is how the voxel simulator uses it.

``xraydb`` is imported lazily (only when a value is needed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..checks import check_positive
from ..errors import InputError

__all__ = [
    "HC_EV_M",
    "Layer",
    "wavelength_from_energy",
    "energy_from_wavelength",
    "material_density",
    "delta_beta",
    "stack_delta_beta",
    "stack_transmission",
    "parse_layers",
]

#: Planck constant times speed of light  [eV m] (CODATA 2018, exact).
HC_EV_M = 1.239841984e-6


def _xraydb():
    try:
        import xraydb
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the simulator's optical constants need the 'xraydb' package (pip install xraydb)"
        ) from exc
    return xraydb


def wavelength_from_energy(energy_eV: float) -> float:
    """Wavelength  [m] of a photon of ``energy_eV``  [eV]."""
    check_positive("photon energy", energy_eV, expected="a positive energy in eV")
    return HC_EV_M / float(energy_eV)


def energy_from_wavelength(wavelength_m: float) -> float:
    """Photon energy  [eV] of ``wavelength_m``  [m]."""
    check_positive("wavelength", wavelength_m, expected="a positive wavelength in metres")
    return HC_EV_M / float(wavelength_m)


def material_density(formula: str) -> float:
    """Density  [g/cm^3] of a material known to ``xraydb`` (its materials table, then the elements).

    Raises
    ------
    InputError
        If ``xraydb`` knows neither a material nor an element of that name: give the density.
    """
    xdb = _xraydb()
    try:
        found = xdb.get_material(formula)
    except Exception:  # xraydb raises different errors for unknown names across versions
        found = None
    if found is not None:
        return float(found[1])
    try:
        return float(xdb.atomic_density(formula))
    except Exception:
        raise InputError(
            "material",
            repr(formula),
            "a material or element known to xraydb, or an explicit density in g/cm^3",
        ) from None


def delta_beta(formula: str, energy_eV: float, *, density_g_cm3: float | None = None) -> tuple[float, float]:
    """``(delta, beta)`` of a compound at a photon energy, from ``xraydb.xray_delta_beta``.

    Parameters
    ----------
    formula : str
        Chemical formula (``"Si3N4"``, ``"Au"``, ``"Cr"``).
    energy_eV : float
        Photon energy  [eV].
    density_g_cm3 : float, optional
        Density  [g/cm^3]; default: ``xraydb``'s value for the material (:func:`material_density`).

    Returns
    -------
    delta, beta : float
        Refractive index decrement and absorption index (both >= 0 for these materials).
    """
    if not isinstance(formula, str) or not formula:
        raise InputError("material", repr(formula), "a chemical formula such as 'Si3N4'")
    check_positive("photon energy", energy_eV, expected="a positive energy in eV")
    rho = material_density(formula) if density_g_cm3 is None else float(density_g_cm3)
    if not (math.isfinite(rho) and rho > 0):
        raise InputError(f"density of {formula}", repr(density_g_cm3), "a positive density in g/cm^3")
    xdb = _xraydb()
    try:
        delta, beta, _ = xdb.xray_delta_beta(formula, rho, float(energy_eV))
    except Exception as exc:
        raise InputError("material", repr(formula), f"a formula xraydb can evaluate ({exc})") from None
    return float(delta), float(beta)


@dataclass(frozen=True)
class Layer:
    """One layer of a stack.

    Parameters
    ----------
    formula : str
        Chemical formula.
    thickness_m : float
        Thickness along the layer's normal  [m].
    density_g_cm3 : float or None
        Density  [g/cm^3]; ``None`` = xraydb's value.
    """

    formula: str
    thickness_m: float
    density_g_cm3: float | None = None

    def __post_init__(self):
        if not isinstance(self.formula, str) or not self.formula:
            raise InputError("layer formula", repr(self.formula), "a chemical formula such as 'Si3N4'")
        check_positive(
            f"layer {self.formula} thickness", self.thickness_m, expected="a positive thickness in m"
        )


def parse_layers(spec, where: str) -> tuple[tuple[str, float], ...]:
    """Validate a layer spec ``((formula, thickness_nm), ...)`` as written in the options.

    Parameters
    ----------
    spec : sequence of (str, float)
        Layers, thickness in nm.
    where : str
        Option name for error messages.

    Returns
    -------
    tuple of (str, float)
    """
    expected = "a non-empty sequence of (formula, thickness_nm) pairs, e.g. (('Si3N4', 75.0), ('Au', 150.0))"
    try:
        items = list(spec)
    except TypeError:
        raise InputError(where, repr(spec), expected) from None
    if not items:
        raise InputError(where, repr(spec), expected)
    out = []
    for item in items:
        try:
            formula, t = item
            t = float(t)
        except (TypeError, ValueError):
            raise InputError(where, repr(spec), expected) from None
        if not isinstance(formula, str) or not formula:
            raise InputError(where, repr(spec), expected)
        if not (math.isfinite(t) and t > 0):
            raise InputError(where, f"thickness {t!r} nm of {formula}", "a positive thickness in nm")
        out.append((formula, t))
    return tuple(out)


def _as_layers(layers) -> list[Layer]:
    out = []
    for lay in layers:
        if isinstance(lay, Layer):
            out.append(lay)
        else:
            out.append(Layer(*lay))
    if not out:
        raise InputError("layers", "an empty stack", "at least one layer")
    return out


def stack_delta_beta(layers, energy_eV: float) -> tuple[float, float, float]:
    """Thickness-weighted ``delta`` and ``beta`` of a stack, and its total thickness.

    Parameters
    ----------
    layers : sequence of Layer or (formula, thickness_m[, density_g_cm3])
        The stack.
    energy_eV : float
        Photon energy  [eV].

    Returns
    -------
    delta, beta : float
        ``sum(delta_j t_j) / T`` and ``sum(beta_j t_j) / T``.
    thickness_m : float
        ``T = sum t_j``  [m].
    """
    lays = _as_layers(layers)
    total = sum(lay.thickness_m for lay in lays)
    d = b = 0.0
    for lay in lays:
        dj, bj = delta_beta(lay.formula, energy_eV, density_g_cm3=lay.density_g_cm3)
        d += dj * lay.thickness_m
        b += bj * lay.thickness_m
    return d / total, b / total, total


def stack_transmission(layers, *, energy_eV: float, angle_rad: float = 0.0) -> complex:
    """Complex transmission of a flat stack crossed by a beam tilted by ``angle_rad``.

    ``exp(-i (2 pi / lambda) sum_j (delta_j - i beta_j) t_j / cos a)``.

    Parameters
    ----------
    layers : sequence of Layer or (formula, thickness_m[, density_g_cm3])
        The stack (thicknesses along its normal, which is the beam axis at ``a = 0``).
    energy_eV : float
        Photon energy  [eV].
    angle_rad : float
        Angle between the beam and the stack's normal  [rad], |a| < pi/2.

    Returns
    -------
    complex
    """
    if not (math.isfinite(angle_rad) and abs(angle_rad) < math.pi / 2):
        raise InputError("angle_rad", repr(angle_rad), "a finite angle with |a| < pi/2")
    k = 2.0 * math.pi / wavelength_from_energy(energy_eV)
    d, b, t = stack_delta_beta(layers, energy_eV)
    return complex(np.exp(-1j * k * (d - 1j * b) * t / math.cos(angle_rad)))
