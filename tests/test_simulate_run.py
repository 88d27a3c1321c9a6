"""`simulate_run`: a directory of hits, blanks and corrupt shot files with a manifest (issue 9)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from xstereo_gpu.errors import InputError
from xstereo_gpu.io import read_shot
from xstereo_gpu.simulate import SAMPLES, RunSimulationOptions, read_manifest, simulate_run
from xstereo_gpu.simulate.run import CORRUPTIONS, MANIFEST_NAME, shot_file_name

#: 20 shots: 6 hits, 3 corrupt (one of each corruption), 11 blanks.
OPTIONS = RunSimulationOptions(shots=20, hit_rate=0.3, corrupt_fraction=0.15, seed=5)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("runs") / "run"
    return simulate_run(directory, OPTIONS)


def _frames(shot):
    """(E, H, W) frames and masks of a shot, one exposure or several."""
    f, m = np.asarray(shot.frame), np.asarray(shot.mask)
    return (f, m) if f.ndim == 3 else (f[None], m[None])


def test_counts_follow_the_options_exactly(run):
    assert OPTIONS.counts == {"hit": 6, "blank": 11, "corrupt": 3}
    assert run.counts == OPTIONS.counts
    files = sorted(p.name for p in run.directory.iterdir())
    assert files == sorted([MANIFEST_NAME] + [shot_file_name(i) for i in range(OPTIONS.shots)])
    assert [r.file for r in run.shots] == [shot_file_name(i) for i in range(OPTIONS.shots)]
    assert sorted(r.corruption for r in run.shots if r.kind == "corrupt") == sorted(CORRUPTIONS)
    # the default options: 50 shots, 15 hits, 2 corrupt, 33 blanks
    assert RunSimulationOptions().counts == {"hit": 15, "blank": 33, "corrupt": 2}
    assert RunSimulationOptions(shots=10, hit_rate=0.25, corrupt_fraction=0.05).counts == {
        "hit": 3,
        "blank": 6,
        "corrupt": 1,
    }  # halves round up
    assert RunSimulationOptions(shots=4, hit_rate=1.0, corrupt_fraction=0.0).counts["hit"] == 4


def test_hits_and_blanks_read_back_with_valid_geometry(run):
    for rec in run.shots:
        if rec.kind == "corrupt":
            continue
        shot = read_shot(run.directory / rec.file)
        assert shot.geometry.pixel_size_m > 0
        assert shot.frame_shape == (256, 256)
        assert shot.pattern_size == 128
        if rec.kind == "hit":
            assert rec.sample in SAMPLES and shot.sample == rec.sample
            assert shot.truth is not None and shot.truth.views.shape == (2, 128, 128)
            assert shot.extra["seed"] == rec.seed
            assert "photons" in rec.parameters and rec.position is not None
        else:
            assert rec.sample is None and shot.sample == "" and shot.truth is None
            assert rec.geometry in SAMPLES
        frames, masks = _frames(shot)
        assert rec.detected_photons == pytest.approx(float(frames[-1][masks[-1] == 0].sum()))
    assert {r.sample for r in run.shots if r.kind == "hit"} <= set(SAMPLES)


def test_every_corrupt_file_fails_to_read(run):
    for rec in run.shots:
        if rec.kind != "corrupt":
            continue
        path = run.directory / rec.file
        assert h5py.is_hdf5(path)  # it looks like a shot file
        with pytest.raises((InputError, OSError)) as info:
            read_shot(path)
        print(f"{rec.file} ({rec.corruption}): {info.value}")


def test_blanks_have_far_fewer_photons_than_hits(run):
    hits = [r.detected_photons for r in run.shots if r.kind == "hit"]
    blanks = [r.detected_photons for r in run.shots if r.kind == "blank"]
    ratio = max(blanks) / min(hits)
    print(
        f"blank photons {min(blanks):.0f}..{max(blanks):.0f}, hits {min(hits):.3g}..{max(hits):.3g}, "
        f"max blank / min hit = {ratio:.2e}"
    )
    assert ratio < 1e-3
    assert min(blanks) > 0  # background and noise, not an empty frame


def test_same_options_same_manifest_and_frames(run, tmp_path):
    again = simulate_run(tmp_path / "again", OPTIONS)
    assert (again.directory / MANIFEST_NAME).read_bytes() == (run.directory / MANIFEST_NAME).read_bytes()
    for a, b in zip(run.shots, again.shots):
        if a.kind == "corrupt":
            continue
        sa, sb = read_shot(run.directory / a.file), read_shot(again.directory / b.file)
        np.testing.assert_array_equal(sa.frame, sb.frame)
        np.testing.assert_array_equal(sa.mask, sb.mask)
        if sa.truth is not None:
            np.testing.assert_array_equal(sa.truth.views, sb.truth.views)
    other = RunSimulationOptions(shots=20, hit_rate=0.3, corrupt_fraction=0.15, seed=6)
    assert simulate_run(tmp_path / "other", other).shots != run.shots


def test_manifest_reads_back(run):
    back = read_manifest(run.directory)
    assert back.options == OPTIONS
    assert back.shots == run.shots
    data = json.loads((run.directory / MANIFEST_NAME).read_text())
    assert data["counts"] == OPTIONS.counts
    assert set(data["shots"][0]) >= {"file", "kind", "sample", "seed", "position"}


def test_a_hit_is_reproduced_from_its_manifest_record(run):
    from xstereo_gpu.simulate import simulate_shot

    rec = next(r for r in run.shots if r.kind == "hit")
    shot = simulate_shot(OPTIONS.simulation_options(rec.sample, seed=rec.seed, parameters=rec.parameters))
    np.testing.assert_array_equal(shot.frame, read_shot(run.directory / rec.file).frame)


def test_the_directory_is_not_replaced_without_overwrite(run, tmp_path):
    with pytest.raises(InputError, match="non-empty directory"):
        simulate_run(run.directory, OPTIONS)
    small = RunSimulationOptions(shots=2, hit_rate=0.0, corrupt_fraction=0.0)
    out = simulate_run(tmp_path / "small", small)
    again = simulate_run(out.directory, small, overwrite=True)
    assert again.counts == {"hit": 0, "blank": 2, "corrupt": 0}


def test_samples_and_shot_options_are_used(tmp_path):
    opts = RunSimulationOptions(
        shots=3,
        hit_rate=1.0,
        corrupt_fraction=0.0,
        samples="pyramid",
        shot_options={"pyramid": {"sphere_diameter_nm": 40.0}},
    )
    assert opts.samples == ("pyramid",)
    assert opts.simulation_options("pyramid", seed=1).sphere_diameter_nm == 40.0
    run = simulate_run(tmp_path / "pyr", opts)
    assert {r.sample for r in run.shots} == {"pyramid"}
    assert read_manifest(run.directory).options == opts


@pytest.mark.parametrize(
    "changes, where, expected",
    [
        (dict(shots=0), "simulate.run.shots", "an integer in [1, 100000]"),
        (dict(shots=2.5), "simulate.run.shots", "an integer"),
        (dict(shots=True), "simulate.run.shots", "an integer"),
        (dict(hit_rate=1.5), "simulate.run.hit_rate", "a fraction in [0, 1]"),
        (dict(hit_rate=float("nan")), "simulate.run.hit_rate", "a fraction in [0, 1]"),
        (dict(corrupt_fraction=-0.1), "simulate.run.corrupt_fraction", "a fraction in [0, 1]"),
        (
            dict(hit_rate=0.8, corrupt_fraction=0.3),
            "simulate.run.hit_rate",
            "hit_rate + corrupt_fraction <= 1",
        ),
        (dict(samples=("cross", "sphere")), "simulate.run.samples", "distinct names among"),
        (dict(samples=()), "simulate.run.samples", "distinct names among"),
        (dict(samples=("cross", "cross")), "simulate.run.samples", "distinct names among"),
        (dict(seed=-1), "simulate.run.seed", "an integer >= 0"),
        (dict(blank_background=0.0), "simulate.run.blank_background", "counts per pixel"),
        (dict(photon_range=(2.0, 1.0)), "simulate.run.photon_range", "0 < low <= high"),
        (dict(position_jitter=1.5), "simulate.run.position_jitter", "a fraction in [0, 1]"),
        (
            dict(shot_options={"cross": {"sample_offset_px": (1, 1)}}),
            "simulate.run.shot_options['cross']",
            "other than",
        ),
        (dict(shot_options={"disc": {}}), "simulate.run.shot_options", "a sample among"),
        (dict(shot_options={"cross": {"seed": 3}}), "simulate.run.shot_options['cross']", "other than"),
        (
            dict(shot_options={"cross": {"no_such_option": 3}}),
            "simulate.run.shot_options['cross']",
            "options of SimulationOptions",
        ),
        (
            dict(shot_options={"cross": {"pattern_size": 512}}),
            "simulate.run.shot_options['cross']: simulate.pattern_size",
            "a crop that fits",
        ),
    ],
)
def test_bad_options_are_refused_with_clear_messages(changes, where, expected):
    with pytest.raises(InputError) as info:
        RunSimulationOptions(**changes)
    print(info.value)
    assert info.value.where.startswith(where)
    assert expected in info.value.expected


def test_bad_options_object_is_refused(tmp_path):
    with pytest.raises(InputError, match="a RunSimulationOptions"):
        simulate_run(tmp_path / "x", {"shots": 3})
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------------------------------
# positions


def test_hits_sit_at_recorded_random_positions(run):
    """The module's run (default jitter 0.5): offsets vary, lie in the free field, are recorded twice."""
    assert OPTIONS.position_jitter == 0.5
    offsets = []
    for rec in run.shots:
        if rec.kind == "blank":
            assert rec.position is None and "sample_offset_px" not in rec.parameters
            continue
        opts = OPTIONS.simulation_options(rec.sample, seed=rec.seed, parameters=rec.parameters)
        room = opts.max_sample_offset_px
        rows, cols = rec.position["offset_px"]
        assert [rows, cols] == rec.parameters["sample_offset_px"] == list(opts.sample_offset_px)
        assert abs(rows) <= 0.5 * room[0] + 0.5 and abs(cols) <= 0.5 * room[1] + 0.5
        assert rec.position["offset_m"] == pytest.approx([cols * opts.pixel_size_m, rows * opts.pixel_size_m])
        if rec.kind == "hit":
            extra = read_shot(run.directory / rec.file).truth.extra
            if (rows, cols) != (0, 0):
                np.testing.assert_allclose(extra["sample_offset_m"], rec.position["offset_m"])
        offsets.append((rows, cols))
    print("offsets (rows, cols) of the hits and corrupt files:", offsets)
    assert len(set(offsets)) >= len(offsets) - 1  # they vary (two equal draws are possible, not more)
    assert any(r != 0 for r, _ in offsets) and any(c != 0 for _, c in offsets)


def test_no_jitter_centres_every_sample(tmp_path):
    opts = RunSimulationOptions(shots=3, hit_rate=1.0, corrupt_fraction=0.0, position_jitter=0.0, seed=2)
    run = simulate_run(tmp_path / "centred", opts)
    for rec in run.shots:
        assert rec.position == {"offset_px": [0, 0], "offset_m": [0.0, 0.0]}
        assert "sample_offset_px" not in rec.parameters
        assert "sample_offset_m" not in read_shot(run.directory / rec.file).truth.extra


def test_a_version_1_manifest_reads_as_centred(run, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(run.directory, old)
    data = json.loads((old / MANIFEST_NAME).read_text())
    data["format_version"] = 1
    del data["options"]["position_jitter"]
    for r in data["shots"]:
        r["position"] = None
    (old / MANIFEST_NAME).write_text(json.dumps(data))
    assert read_manifest(old).options.position_jitter == 0.0


def test_a_shot_far_off_centre_reconstructs_and_scores(tmp_path):
    """The hit farthest off centre of a run at full jitter scores as its centred twin does, because its
    truth moved with it: stereo from its true views scores near-perfectly, the whole pipeline (tiny
    options of tests/batch_helpers.py) as well as on the same shot centred; scored against edge points
    left at the centre, the same cloud finds almost nothing."""
    from batch_helpers import OPTIONS as FAST

    from xstereo_gpu import Pipeline, score, simulate_shot
    from xstereo_gpu.shot import GroundTruth

    opts = RunSimulationOptions(
        shots=6, hit_rate=1.0, corrupt_fraction=0.0, samples="cross", position_jitter=1.0, seed=18
    )
    run = simulate_run(tmp_path / "far", opts)
    offsets = [tuple(r.position["offset_px"]) for r in run.shots]
    assert len(set(offsets)) == len(offsets)
    again = simulate_run(tmp_path / "again", opts)  # reproducible by seed
    assert [tuple(r.position["offset_px"]) for r in again.shots] == offsets
    rec = max(run.shots, key=lambda r: max(abs(v) for v in r.position["offset_px"]))
    rows, cols = rec.position["offset_px"]
    shot = read_shot(run.directory / rec.file)
    room = opts.simulation_options("cross", seed=rec.seed, parameters=rec.parameters).max_sample_offset_px
    assert max(abs(rows), abs(cols)) >= 0.5 * min(room)  # well off centre
    t = shot.truth
    stale = GroundTruth(
        t.views,
        t.pixel_size_m,
        t.edge_points_m - np.array([*rec.position["offset_m"], 0.0]),
        t.edge_labels,
        t.description,
        t.extra,
    )

    pipe = Pipeline(FAST)
    exact = pipe.run_views(t.views, shot.geometry, truth=t)
    acc = exact.accuracy
    print(f"offset {rec.position}: stereo from the true views {acc}")
    assert acc["depth_error_median_voxels"] < 0.3 and acc["completeness_2dz"] > 0.9
    assert acc["registration_shift_px"] == pytest.approx([0.0, 0.0], abs=0.1)
    wrong = score(exact.cloud.cleaned_nm, exact.views.views, stale, shot.geometry)
    assert wrong["completeness_2dz"] < 0.3 * acc["completeness_2dz"]  # measured 0.21 against 0.95

    phased = pipe.run(shot).accuracy
    params = dict(rec.parameters, sample_offset_px=(0, 0))
    centred = pipe.run(simulate_shot(opts.simulation_options("cross", seed=rec.seed, parameters=params)))
    twin = centred.accuracy
    print(f"phased: at the offset {phased}; centred {twin}")
    # measured (seed 18, offset (-16, 9) px): completeness 0.722 / 0.727 centred, median 0.54 / 0.51 voxel
    assert phased["completeness_2dz"] > max(0.5, twin["completeness_2dz"] - 0.1)
    assert phased["depth_error_median_voxels"] < 1.0
