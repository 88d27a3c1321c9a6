"""Simulation options (xstereo_gpu.simulate.options): derived geometry, sample defaults, validation."""

from __future__ import annotations

import dataclasses
import math

import pytest

from xstereo_gpu.errors import InputError
from xstereo_gpu.geometry import StereoGeometry
from xstereo_gpu.simulate import SAMPLES, SimulationOptions, simulate_shot


def test_options_derived_geometry():
    demo, paper = SimulationOptions(), SimulationOptions.paper()
    assert (demo.frame_side, demo.pattern_size, demo.binning) == (512, 256, 4)
    assert (paper.frame_side, paper.pattern_size, paper.binning, paper.beamstop_radius_px) == (
        2048,
        1024,
        1,
        12,
    )
    # Dr = lambda D / (N p) = 45.1 nm in both sizes
    for o in (demo, paper):
        assert o.pixel_size_m == pytest.approx(24e-9 * 26e-3 / (o.pattern_size * 13.5e-6 * o.binning))
        assert o.pixel_size_m * 1e9 == pytest.approx(45.14, abs=0.01)
    # centres: D tan(9.5 deg) / p = 80.56 binned pixels -> 81; 322.2 unbinned -> 322
    assert demo.centres_px == ((256.0, 175.0), (256.0, 337.0))
    assert paper.centres_px == ((1024.0, 702.0), (1024.0, 1346.0))
    asym = SimulationOptions(angles_deg=(9.5, 3.5))
    assert asym.centres_px[1][1] == 256 + round(26e-3 * math.tan(math.radians(3.5)) / 54e-6)


@pytest.mark.parametrize(
    "changes, where",
    [
        (dict(angles_deg=(0.0, 9.5)), "simulate.angles_deg[0]"),
        (dict(angles_deg=(9.5, 60.0)), "simulate.angles_deg[1]"),
        (dict(angles_deg=(9.5, -3.0)), "simulate.angles_deg[1]"),
        (dict(angles_deg=(9.5,)), "simulate.angles_deg"),
        (dict(sample="sphere"), "simulate.sample"),
        (dict(pattern_size=512), "simulate.pattern_size"),  # crop does not fit the 512 frame
        (dict(distance_m=13e-3), "simulate.pattern_size"),  # view field 5.8 um < sample
        (dict(binning=0), "simulate.binning"),
        (dict(pattern_size=100.5), "simulate.pattern_size"),
        (dict(photons=-1.0), "simulate.photons"),
        (dict(photons=float("nan")), "simulate.photons"),
        (dict(kerf_nm=1500.0), "simulate.kerf_nm"),
        (dict(arm_width_um=7.0), "simulate.arm_width_um"),
        (dict(lid_tilt_deg=75.0), "simulate.lid_tilt_deg"),
        (dict(beam_fwhm_um=(10.0, -1.0)), "simulate.beam_fwhm_um"),
        (dict(supersample=0), "simulate.supersample"),
        (dict(beamstop_radius_px=-2), "simulate.beamstop_radius_px"),
    ],
)
def test_options_validation(changes, where):
    with pytest.raises(InputError) as err:
        SimulationOptions(**changes)
    assert err.value.where == where


def test_options_are_frozen_and_keyword_only():
    o = SimulationOptions(angles_deg=[8, 7])
    assert o.angles_deg == (8.0, 7.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.seed = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        SimulationOptions("cross")  # type: ignore[misc]
    with pytest.raises(InputError):
        simulate_shot("cross")  # type: ignore[arg-type]


def test_sample_defaults_and_geometry():
    assert SAMPLES == ("cross", "phase-cross", "pyramid", "clusters", "curve", "rough-surface")
    assert SimulationOptions.for_sample("cross") == SimulationOptions(
        exposures_s=(30.0, 240.0)
    )  # HDR, as the paper
    pc = SimulationOptions.for_sample("phase-cross")
    assert pc.sample == "phase-cross" and sum(pc.angles_deg) == pytest.approx(12.0)
    assert pc.energy_eV == pytest.approx(51.66, abs=0.01)
    assert pc.membrane_layers == (("Si3N4", 60.0),) and pc.membrane_thickness_nm == 60.0
    assert pc.right_rotation_deg == 1.0 and pc.right_shift_px == (2.0, 0.0)
    # 12 deg at 24 nm and 45 nm pixels: the physical separation (102 px) would put each pattern's centre
    # inside the other's crop; the phase cross records them side by side, crops disjoint
    assert (
        SimulationOptions.for_sample("phase-cross", pattern_separation_px=None).centres_px[1][1]
        - SimulationOptions.for_sample("phase-cross", pattern_separation_px=None).centres_px[0][1]
        == 102
    )
    (_, cl), (_, cr) = pc.centres_px
    assert cr - cl == pc.pattern_size and cl - pc.pattern_size // 2 >= 0
    assert cr + pc.pattern_size - pc.pattern_size // 2 <= pc.frame_side
    py = SimulationOptions.for_sample("pyramid")
    assert py.energy_eV == pytest.approx(750.0, rel=1e-12)
    assert py.pixel_size_m == pytest.approx(15e-9, rel=1e-12)
    assert py.angles_deg == (3.5, 3.5) and py.pattern_size <= 512
    assert (py.pyramid_base_um, py.pyramid_height_um, py.sphere_diameter_nm, py.membrane_thickness_nm) == (
        2.5,
        1.8,
        50.0,
        100.0,
    )
    # both crops fit the frame without overlapping
    (_, cl), (_, cr) = py.centres_px
    n = py.pattern_size
    assert cl - n // 2 >= 0 and cr + n - n // 2 <= py.frame_side and cr - cl >= n
    # the paper's voxel for 7 deg and 15 nm: ~120 nm deep
    g = StereoGeometry(py.pixel_size_m, py.angles_deg)
    assert g.voxel_depth_m == pytest.approx(122.6e-9, abs=0.2e-9)
    # changes apply on top of the sample's defaults
    assert SimulationOptions.for_sample("pyramid", seed=4, sphere_coverage=0.1).sphere_coverage == 0.1
    assert SimulationOptions.for_sample("pyramid").replace(seed=2).pixel_size_m == pytest.approx(15e-9)


@pytest.mark.parametrize(
    "sample, changes, where",
    [
        ("pyramid", dict(sample="sphere"), "simulate.sample"),
        ("phase-cross", dict(membrane_layers=()), "simulate.membrane_layers"),
        ("phase-cross", dict(membrane_layers=(("Si3N4", -5.0),)), "simulate.membrane_layers"),
        ("phase-cross", dict(lid_layers=(("Au",),)), "simulate.lid_layers"),
        ("pyramid", dict(lid_layers=(("Au", 5.0),)), "simulate.lid_layers"),
        ("cross", dict(membrane_layers=(("Au", 5.0),)), "simulate.membrane_layers"),
        ("phase-cross", dict(right_rotation_deg=90.0), "simulate.right_rotation_deg"),
        ("phase-cross", dict(right_shift_px=(1.0,)), "simulate.right_shift_px"),
        ("phase-cross", dict(right_shift_px=(float("nan"), 0.0)), "simulate.right_shift_px"),
        ("pyramid", dict(sphere_coverage=0.8), "simulate.sphere_coverage"),
        ("phase-cross", dict(pattern_separation_px=-3.0), "simulate.pattern_separation_px"),
        ("phase-cross", dict(pattern_separation_px=400.0), "simulate.pattern_size"),  # crops leave the frame
        ("pyramid", dict(pyramid_base_um=-1.0), "simulate.pyramid_base_um"),
        ("pyramid", dict(pyramid_height_um=float("inf")), "simulate.pyramid_height_um"),
        ("pyramid", dict(sphere_diameter_nm=1000.0), "simulate.sphere_diameter_nm"),
        ("pyramid", dict(sphere_material=""), "simulate.sphere_material"),
        ("pyramid", dict(distance_m=40e-3), "simulate.pattern_size"),  # 2.4 um field < the notch
    ],
)
def test_bad_sample_options_name_the_option(sample, changes, where):
    with pytest.raises(InputError) as err:
        SimulationOptions.for_sample(sample, **changes)
    assert err.value.where == where


def test_sample_without_its_defaults_is_refused():
    with pytest.raises(InputError) as err:
        SimulationOptions(sample="pyramid")
    assert err.value.where == "simulate.membrane_layers" and "for_sample" in err.value.expected
    with pytest.raises(InputError, match="simulate.sample"):
        SimulationOptions.for_sample("sphere")


@pytest.mark.parametrize(
    "changes, where",
    [
        (dict(stray_spheres=-1), "simulate.stray_spheres"),
        (dict(stray_spheres=2.5), "simulate.stray_spheres"),
        (dict(stray_spheres=4, stray_band_um=0.1), "simulate.stray_band_um"),
        (dict(stray_band_um=float("nan")), "simulate.stray_band_um"),
    ],
)
def test_bad_stray_options_name_the_option(changes, where):
    with pytest.raises(InputError) as err:
        SimulationOptions.for_sample("pyramid", **changes)
    assert err.value.where == where
