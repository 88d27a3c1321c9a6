"""The xstereo command: reports, round trips and the bad-input contract (message, exit 2, no outputs)."""

import json

import pytest

from xstereo_gpu.cli import main
from xstereo_gpu.config import PipelineOptions


def test_geometry_reproduces_the_paper(capsys):
    assert (
        main(
            [
                "geometry",
                "--pixel-size",
                "49e-9",
                "--angles",
                "9.5",
                "9.5",
                "--resolution",
                "127e-9",
                "--json",
            ]
        )
        == 0
    )
    rep = json.loads(capsys.readouterr().out)
    assert round(rep["voxel_depth_nm"]) == 146 and round(rep["resolution_z_nm"]) == 379
    assert main(["geometry", "--pixel-size", "15e-9", "--angles", "3.5", "3.5", "--resolution", "42e-9"]) == 0
    text = capsys.readouterr().out
    assert "122.6 nm" in text and "343.3 nm" in text


def test_geometry_from_detector(capsys):
    assert (
        main(
            [
                "geometry",
                "--wavelength",
                "24e-9",
                "--distance",
                "0.026",
                "--detector-pixel",
                "13.5e-6",
                "--size",
                "1024",
                "--angles",
                "9.5",
                "9.5",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["pixel_size_nm"] == pytest.approx(45.14, abs=0.01)


def test_geometry_bad_angles_exit_2(capsys):
    assert main(["geometry", "--pixel-size", "49e-9", "--angles", "70", "9.5"]) == 2
    err = capsys.readouterr().err
    assert "angles[0]" in err and "70" in err and "(0, 60)" in err


def test_info_says_numpy(capsys, monkeypatch):
    monkeypatch.setenv("XSTEREO_BACKEND", "numpy")
    assert main(["info"]) == 0
    assert "backend: NumPy" in capsys.readouterr().out


def test_config_round_trip(capsys):
    assert main(["config", "--profile", "cpu"]) == 0
    assert PipelineOptions.from_toml(capsys.readouterr().out) == PipelineOptions.for_profile("cpu")


def _subcommands(parser) -> dict:
    """Subcommand name -> its parser."""
    import argparse

    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _field(opts, target: str):
    stage, name = target.split("__")
    return getattr(getattr(opts, stage), name)


def test_every_pipeline_flag_reaches_its_fields(tmp_path):
    """Each declared flag, given a value other than the command's without it, sets its fields and no other."""
    from xstereo_gpu.cli import _options, build_parser
    from xstereo_gpu.cli_options import CONVERT, PIPELINE_FLAGS, STAGE_GROUPS

    points = [(1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0), (9.0, 1.0, 2.0, 3.0), (4.0, 5.0, 6.5, 7.5)]
    (tmp_path / "pts.txt").write_text("".join(" ".join(map(str, row)) + "\n" for row in points))
    argv = ["run", "s.cxi", "-o", "o", "--profile", "cpu", "--recipe", "cross"]
    base = _options(build_parser().parse_args(argv))
    subcommands = _subcommands(build_parser())
    names = {f.flag for f in PIPELINE_FLAGS}
    assert names >= {
        "--runs",
        "--iterations",
        "--algorithm",
        "--range",
        "--block",
        "--preprocess",
        "--method",
        "--points",
        "--upsample",
        "--thresholds",
    }
    assert len(PIPELINE_FLAGS) == len(names) == len({f.dest for f in PIPELINE_FLAGS})
    for flag in PIPELINE_FLAGS:
        kw = flag.argparse
        current = [_field(base, t) for t in flag.targets]
        if flag.flag in CONVERT:  # --points: a file of point pairs, which also turns rectification on
            given = [tmp_path / "pts.txt"]
            expected = {flag.targets[0]: tuple(points), "stereo__rectify": True}
        elif "choices" in kw:
            given = [next(c for c in kw["choices"] if c != current[0])]
            expected = {flag.targets[0]: given[0]}
        else:
            values = list(current[0]) if len(flag.targets) == 1 and kw.get("nargs") else current
            given = [v + 2 if kw["type"] is int else v / 2 for v in values]  # odd stays odd; fractions too
            expected = (
                dict(zip(flag.targets, given))
                if len(flag.targets) > 1
                else {flag.targets[0]: tuple(given) if kw.get("nargs") else given[0]}
            )
        assert all(_field(base, t) != v for t, v in expected.items()), flag.flag
        opts = _options(build_parser().parse_args(argv + [flag.flag, *map(str, given)]))
        assert opts == base.replace(**expected), flag.flag
        phasing = STAGE_GROUPS[flag.stage] == "phasing"
        for (
            name,
            sub,
        ) in subcommands.items():  # phasing: run, demo, batch, stream, phase; others: ..., stereo
            wanted = name in ("run", "demo", "batch", "stream") or name == ("phase" if phasing else "stereo")
            assert (flag.flag in sub._option_string_actions) == wanted, (flag.flag, name)


def test_choices_are_the_config_constants():
    from xstereo_gpu import config
    from xstereo_gpu.backend import select_backend
    from xstereo_gpu.cli import build_parser
    from xstereo_gpu.cli_options import BACKENDS, DEMO_STARTS
    from xstereo_gpu.errors import InputError
    from xstereo_gpu.io.images import MASK_CONVENTIONS
    from xstereo_gpu.simulate import SAMPLES
    from xstereo_gpu.stream.bridge import SOCKETS
    from xstereo_gpu.stream.queues import POLICIES
    from xstereo_gpu.stream.serve import SERVER_TYPES

    expected = {
        "--backend": BACKENDS,
        "--profile": tuple(config.PROFILES),
        "--recipe": config.RECIPE_NAMES,
        "--sample": config.SAMPLE_NAMES,
        "--start": DEMO_STARTS,
        "--algorithm": config.PHASING_ALGORITHMS,
        "--select-by": config.BEST_ITERATE_CRITERIA,
        "--preprocess": config.PREPROCESS_MODES,
        "--method": config.MATCH_METHODS,
        "--sgm-paths": config.SGM_PATHS,
        "--cost": config.MATCH_COSTS,
        "--image": config.VIEW_IMAGES,
        "--policy": POLICIES,
        "--mask-convention": MASK_CONVENTIONS,
    }
    per_command = {("stream", "--sock"): SOCKETS, ("serve-run", "--sock"): SERVER_TYPES}
    seen = set()
    for name, sub in _subcommands(build_parser()).items():
        for action in sub._actions:
            if action.choices is not None:
                flag = action.option_strings[-1]
                want = per_command.get((name, flag)) or expected[flag]
                assert tuple(action.choices) == tuple(want), (name, flag)
                seen.add(flag)
    assert seen == set(expected) | {"--sock"}
    assert config.SAMPLE_NAMES == SAMPLES
    with pytest.raises(InputError) as err:
        select_backend("abacus")
    assert all(repr(b) in err.value.expected for b in BACKENDS)


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["demo"],
        ["simulate"],
        ["run"],
        ["phase"],
        ["stereo"],
        ["geometry"],
        ["bench"],
        ["stream"],
        ["serve-run"],
        ["config"],
        ["info"],
    ],
)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    assert "usage: xstereo" in capsys.readouterr().out


def test_simulate_shots_writes_a_run(tmp_path, capsys):
    """``xstereo simulate --shots N``: N shot files and a manifest whose counts follow the options."""
    out = tmp_path / "run"
    assert main(["simulate", "--shots", "8", "--hit-rate", "0.5", "--corrupt-fraction", "0.25",
                 "--sample", "cross", "-o", str(out), "-q"]) == 0  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    kinds = [s["kind"] for s in manifest["shots"]]
    assert sorted(kinds) == ["blank"] * 2 + ["corrupt"] * 2 + ["hit"] * 4
    assert {s["sample"] for s in manifest["shots"] if s["kind"] == "hit"} == {"cross"}
    assert sorted(p.name for p in out.glob("shot-*.cxi")) == [f"shot-{i:05d}.cxi" for i in range(8)]
    assert "8 shot files" in capsys.readouterr().out


@pytest.mark.parametrize("jitter", ["0", "1"])
def test_simulate_shots_position_jitter(tmp_path, jitter):
    """``--position-jitter``: 0 centres every hit; 1 spreads them over the whole free field."""
    out = tmp_path / "run"
    assert main(["simulate", "--shots", "3", "--hit-rate", "1", "--corrupt-fraction", "0",
                 "--position-jitter", jitter, "--sample", "cross", "-o", str(out), "-q"]) == 0  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["position_jitter"] == float(jitter)
    offsets = [tuple(s["position"]["offset_px"]) for s in manifest["shots"]]
    if jitter == "0":
        assert offsets == [(0, 0)] * 3
    else:
        assert len(set(offsets)) == 3
