"""Optical constants of the sample materials (xstereo_gpu.simulate.materials) against xraydb."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xstereo_gpu.errors import InputError
from xstereo_gpu.simulate import (
    Layer,
    delta_beta,
    energy_from_wavelength,
    stack_delta_beta,
    stack_transmission,
    wavelength_from_energy,
)

xraydb = pytest.importorskip("xraydb")


E24 = 1.239841984e-6 / 24e-9  # photon energy at 24 nm [eV]


@pytest.mark.parametrize(
    "formula, density, energy",
    [("Si3N4", 3.17, E24), ("Au", 19.3, E24), ("Cr", 7.15, E24), ("Si3N4", 3.17, 750.0), ("Au", 19.3, 750.0)],
)
def test_delta_beta_agree_with_xraydb(formula, density, energy):
    d, b = delta_beta(formula, energy)  # density from xraydb's tables
    rd, rb, _ = xraydb.xray_delta_beta(formula, density, energy)
    assert d == pytest.approx(rd, rel=1e-12) and b == pytest.approx(rb, rel=1e-12)
    assert d > 0 and b > 0
    d2, b2 = delta_beta(formula, energy, density_g_cm3=2 * density)  # linear in density
    assert d2 == pytest.approx(2 * d, rel=1e-9) and b2 == pytest.approx(2 * b, rel=1e-9)


def test_stack_transmission_is_product_of_layers():
    layers = [("Si3N4", 75e-9), ("Au", 150e-9), Layer("Cr", 4e-9)]
    a = math.radians(9.5)
    k = 2 * math.pi / wavelength_from_energy(E24)
    expected = 1.0 + 0j
    for f, t, rho in (("Si3N4", 75e-9, 3.17), ("Au", 150e-9, 19.3), ("Cr", 4e-9, 7.15)):
        d, b, _ = xraydb.xray_delta_beta(f, rho, E24)
        expected *= np.exp(-1j * k * (d - 1j * b) * t / math.cos(a))
    got = stack_transmission(layers, energy_eV=E24, angle_rad=a)
    assert got == pytest.approx(expected, rel=1e-9)
    # the paper's membrane is nearly opaque at 24 nm: |T| ~ 0.02
    assert 0.005 < abs(got) < 0.05
    d, b, t = stack_delta_beta(layers, E24)
    assert t == pytest.approx(229e-9)
    assert np.exp(-1j * k * (d - 1j * b) * t / math.cos(a)) == pytest.approx(expected, rel=1e-9)


def test_energy_wavelength_and_bad_materials():
    assert energy_from_wavelength(24e-9) == pytest.approx(51.66, abs=0.01)
    assert wavelength_from_energy(750.0) == pytest.approx(1.6531e-9, rel=1e-4)
    assert energy_from_wavelength(wavelength_from_energy(123.0)) == pytest.approx(123.0, rel=1e-12)
    with pytest.raises(InputError, match="material"):
        delta_beta("Unobtainium", 750.0)
    with pytest.raises(InputError, match="photon energy"):
        delta_beta("Au", -1.0)
    with pytest.raises(InputError, match="thickness"):
        Layer("Au", -5e-9)
