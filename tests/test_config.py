import pytest

import xstereo_gpu
from xstereo_gpu.config import (
    MatchOptions,
    PhasingOptions,
    PipelineOptions,
    PreprocessOptions,
)
from xstereo_gpu.errors import InputError


def test_defaults_are_the_papers_values():
    o = PipelineOptions()
    assert o.phasing.algorithm == "dm" and o.phasing.runs == 45
    assert (o.preprocess.upsample, o.preprocess.sigma, o.preprocess.thresholds, o.preprocess.min_region) == (
        4,
        1.9,
        (0.40, 0.25),
        400,
    )
    assert (o.match.block, o.match.dmin, o.match.dmax) == (3, -65, 65)
    assert (o.cloud.k, o.cloud.t) == (80, 0.1)
    assert PhasingOptions(beta=0.8).gammas == pytest.approx((-1.25, 1.25))


@pytest.mark.parametrize("profile", ["paper", "cpu"])
def test_toml_round_trip(profile):
    o = PipelineOptions.for_profile(profile).replace(match__dmin=-30, phasing__gamma_s=-1.0)
    assert PipelineOptions.from_toml(o.to_toml()) == o


def test_cpu_profile_is_smaller_and_named():
    cpu = PipelineOptions.for_profile("cpu")
    assert cpu.profile == "cpu" and cpu.phasing.runs < 45


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: PhasingOptions(algorithm="gs"), "phasing.algorithm"),
        (lambda: PhasingOptions(runs=0), "phasing.runs"),
        (lambda: MatchOptions(block=4), "match.block"),
        (lambda: MatchOptions(dmin=5, dmax=5), "match.range"),
        (lambda: PreprocessOptions(thresholds=(0.4, 1.2)), "preprocess.thresholds"),
        (lambda: PipelineOptions.for_profile("fast"), "profile"),
        (
            lambda: PipelineOptions.from_toml("[phasing]\nrunz = 3\n"),
            "phasing] runz",
        ),  # the TOML key, [phasing] runz
        (lambda: PipelineOptions.from_toml("[phasing\n"), "options file"),
    ],
)
def test_bad_options_name_the_field(make, field):
    with pytest.raises(InputError, match=field.replace(".", r"\.")):
        make()


def test_sample_recipes():
    from xstereo_gpu.config import SAMPLE_NAMES

    assert SAMPLE_NAMES == ("cross", "phase-cross", "pyramid", "clusters", "curve", "rough-surface")
    for name in ("clusters", "curve", "rough-surface"):  # the particles: no planes, no interpolation
        o = PipelineOptions.for_sample(name)
        assert o.stereo.background_mask and o.reconstruct.planes == 0 and not o.reconstruct.interpolate
    cross = PipelineOptions.for_sample("cross", "cpu")
    assert cross.match.method == "sgm" and cross.cloud.t == 0.3 and cross.phasing.runs == 32
    pc = PipelineOptions.for_sample("phase-cross")
    assert pc.stereo.rectify and pc.stereo.gradient_maps and pc.reconstruct.planes == 2
    pyr = PipelineOptions.for_sample("pyramid")
    assert (pyr.match.block, pyr.match.dmin, pyr.match.dmax) == (
        23,
        -30,
        30,
    ) and not pyr.reconstruct.interpolate
    assert PipelineOptions.from_toml(pyr.to_toml()) == pyr
    with pytest.raises(InputError, match="sample"):
        PipelineOptions.for_sample("sphere")


def test_options_api_refuses_wrong_types():
    with pytest.raises(InputError, match=r"found 'many' \(a string\); expected an integer") as err:
        xstereo_gpu.PhasingOptions(runs="many")
    assert err.value.where == "phasing.runs"
    with pytest.raises(InputError, match=r"True \(a boolean\)"):
        xstereo_gpu.PhasingOptions(iterations=True)
