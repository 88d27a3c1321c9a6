"""The shots of a run (xstereo_gpu/batch/sources.py): shot files, glob patterns, stacks, selection."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from batch_helpers import CORRUPT, N_SHOTS, NAN, make_run, make_stack

from xstereo_gpu.batch import open_source
from xstereo_gpu.errors import InputError
from xstereo_gpu.shot import Shot


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("shots"))


def test_glob_patterns_are_sorted_and_indexed(run_files):
    folder = run_files[0].parent
    src = open_source(str(folder / "shot-*.cxi"))
    assert src.kind == "files" and len(src) == N_SHOTS
    assert [p.name for p in src.paths] == [p.name for p in run_files]
    assert src.indices == tuple(range(N_SHOTS))
    assert src.label(3).endswith("shot-03.cxi")
    # explicit paths keep their order; duplicates (also through a pattern) are dropped
    src = open_source([run_files[4], run_files[2], str(folder / "shot-0[24].cxi")])
    assert [p.name for p in src.paths] == ["shot-04.cxi", "shot-02.cxi"]


def test_selection_start_stop_step(run_files):
    src = open_source(run_files, start=1, stop=10, step=3)
    assert src.indices == (1, 4, 7)
    assert [i for i, _, _ in src] == [1, 4, 7]
    assert open_source(run_files, start=-2).indices == (10, 11)
    with pytest.raises(InputError, match="step"):
        open_source(run_files, step=0)


def test_unreadable_shots_are_failures_and_the_iteration_goes_on(run_files):
    items = list(open_source(run_files))
    assert [i for i, _, _ in items] == list(range(N_SHOTS))
    for i, label, item in items:
        if i in (CORRUPT, NAN):
            assert isinstance(item, InputError), (i, item)
            assert label in str(item)
        else:
            assert isinstance(item, Shot) and item.source == label
    assert "truncated" in str(items[CORRUPT][2])
    assert "NaN" in str(items[NAN][2])


def test_missing_inputs(run_files, tmp_path):
    with pytest.raises(InputError, match="matches no file"):
        open_source(str(tmp_path / "nothing-*.cxi"))
    with pytest.raises(InputError, match="no input"):
        open_source([])
    ((_, _, item),) = list(open_source([tmp_path / "missing.cxi"]))
    assert isinstance(item, InputError) and "no such file" in str(item)


def test_a_stack_file_is_read_frame_by_frame(run_files, tmp_path):
    with h5py.File(run_files[0], "r") as f:
        frame = f["entry_1/instrument_1/detector_1/data"][()]
    bad = np.full_like(frame, np.nan)
    path = make_stack(tmp_path / "stack.cxi", [frame, frame * 0.5, bad, frame * 2], run_files[0])
    src = open_source(path)
    assert src.kind == "stack" and len(src) == 4
    assert src.label(2) == f"{path}#2"
    items = list(src)
    np.testing.assert_array_equal(items[1][2].frame, frame * 0.5)
    np.testing.assert_array_equal(items[3][2].frame, frame * 2)
    assert isinstance(items[2][2], InputError)
    assert open_source(path, start=1, step=2).indices == (1, 3)
    # a single 2D shot file is one shot
    assert open_source(run_files[0]).kind == "files" and len(open_source(run_files[0])) == 1
